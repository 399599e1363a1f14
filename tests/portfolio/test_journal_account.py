"""Schema 3 of the journal: the account's identity, named sequences, and the upgrade in place of
a schema-2 file (what every journal written before them is)."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from brokers.orders import OrderAccepted
from portfolio.journal import (
    JOURNAL_FILE,
    MIGRATIONS,
    SCHEMA_VERSION,
    AccountIdentity,
    Journal,
    JournalError,
    JournalReader,
)
from tests.portfolio.test_journal import T0, TARGETS, begin, filled, order

PAPER = AccountIdentity(
    account_id="904837e3-3b76-47ec-b432-046db621571b",
    account_number="PA3T8N6QXLQ4",
    base_url="https://paper-api.alpaca.markets",
)
OTHER = AccountIdentity(
    account_id="0d3b3a2c-47a1-4b0e-9c6e-5d1f8e6a7b90",
    account_number="PA9ZZZZZZZZZ",
    base_url="https://paper-api.alpaca.markets",
)


def test_a_journal_has_no_account_until_one_is_stored_then_keeps_it(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        assert journal.reader().account() is None
        journal.set_account(PAPER)
        assert journal.reader().account() == PAPER
    with JournalReader.open(tmp_path) as reader:
        assert reader.account() == PAPER
    with Journal(tmp_path) as journal:
        assert journal.reader().account() == PAPER


def test_the_same_account_again_is_accepted_another_is_refused(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        journal.set_account(PAPER)
        journal.set_account(PAPER)
        with pytest.raises(JournalError) as err:
            journal.set_account(OTHER)
        message = str(err.value)
        assert str(tmp_path / JOURNAL_FILE) in message
        assert PAPER.account_number in message
        assert OTHER.account_number in message
        assert journal.failed is None  # a refusal, not a failed write
        assert journal.reader().account() == PAPER


def test_a_sequence_counts_from_one_per_name_across_restarts(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        assert [journal.next_sequence("flatten") for _ in range(3)] == [1, 2, 3]
        assert journal.next_sequence("other") == 1
        assert journal.reader().sequence("flatten") == 3
    with Journal(tmp_path) as journal:
        assert journal.next_sequence("flatten") == 4
        assert journal.next_sequence("other") == 2
    with JournalReader.open(tmp_path) as reader:
        assert reader.sequence("flatten") == 4
        assert reader.sequence("never") == 0


def schema_of(db: sqlite3.Connection) -> list[tuple[str, str, str]]:
    return db.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"
    ).fetchall()


def drop_schema_4(db: sqlite3.Connection) -> None:
    """Take out what schema 4 added (snapshots, the books' index, the archive list)."""
    for index in ("snapshot_segment", "input_book"):
        db.execute(f"DROP INDEX {index}")
    db.execute("DROP TABLE snapshot")
    db.execute("DROP TABLE archive")
    db.execute("PRAGMA user_version = 3")


def write_schema_2_journal(state_dir: Path) -> None:
    """A journal as the code before schema 3 left it: a segment, a slice's orders, a fill, an
    acknowledgement, the switches; then the schema-3 tables taken out and the version set back,
    checked to be schema 2 exactly."""
    with Journal(state_dir) as journal:
        begin(journal)
        journal.close_slice(T0, targets=TARGETS, orders=[order("o1"), order("o2", "BBB")])
        journal.event(filled("o1", "e1"))
        journal.event(OrderAccepted(client_order_id="o2", symbol="BBB", ts=T0 + 1))
        journal.set_kill_switch(True, "max_drawdown", T0 + 2)
        journal.difference("position", {"symbol": "CCC"}, T0 + 3)
    db = sqlite3.connect(state_dir / JOURNAL_FILE, isolation_level=None)
    reference = sqlite3.connect(":memory:")
    try:
        drop_schema_4(db)
        db.execute("DROP TABLE account")
        db.execute("DROP TABLE sequence")
        db.execute("PRAGMA user_version = 2")
        reference.executescript(MIGRATIONS[0] + MIGRATIONS[1])
        assert schema_of(db) == schema_of(reference)
    finally:
        db.close()
        reference.close()


def test_a_schema_2_journal_upgrades_in_place_keeping_every_row(tmp_path: Path) -> None:
    write_schema_2_journal(tmp_path)
    with JournalReader.open(tmp_path) as reader:
        assert reader.schema_version == 2
        before = (reader.state(), reader.segments(), list(reader.inputs(1)), reader.decisions(1))

    with Journal(tmp_path) as journal:
        assert journal.schema_version == SCHEMA_VERSION == 5
        reader = journal.reader()
        assert reader.schema_version == SCHEMA_VERSION
        after = (reader.state(), reader.segments(), list(reader.inputs(1)), reader.decisions(1))
        assert after == before
        assert reader.account() is None
        assert reader.state().fills[0].qty == Decimal(10)
        journal.set_account(PAPER)
        assert journal.next_sequence("flatten") == 1

    db = sqlite3.connect(tmp_path / JOURNAL_FILE)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        db.close()
    with JournalReader.open(tmp_path) as reader:
        assert reader.account() == PAPER
        assert reader.sequence("flatten") == 1
        assert reader.state() == before[0]


def test_a_reader_of_a_schema_2_journal_reads_it_as_it_is(tmp_path: Path) -> None:
    write_schema_2_journal(tmp_path)
    with JournalReader.open(tmp_path) as reader:
        assert reader.schema_version == 2
        assert reader.account() is None
        assert reader.sequence("flatten") == 0
        assert reader.state().kill_switch == (True, "max_drawdown")
    db = sqlite3.connect(tmp_path / JOURNAL_FILE)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2  # a reader never migrates
    finally:
        db.close()


def test_a_failed_upgrade_leaves_the_file_at_schema_2(tmp_path: Path) -> None:
    write_schema_2_journal(tmp_path)
    db = sqlite3.connect(tmp_path / JOURNAL_FILE)
    with db:
        db.execute("CREATE TABLE sequence (x INTEGER)")  # in the way of the migration
    db.close()
    with pytest.raises(JournalError, match="migration to schema version 3 failed"):
        Journal(tmp_path)
    with JournalReader.open(tmp_path) as reader:
        assert reader.schema_version == 2
        assert reader.state().segments == 1
    db = sqlite3.connect(tmp_path / JOURNAL_FILE)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "account" not in tables  # the step's first statement was rolled back too
    finally:
        db.close()
