"""The journal's reader: opened read-only on a file, or taken from the writer; the only way to
read a journal."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from feeds.bar import Bar
from portfolio.journal import (
    JOURNAL_FILE,
    SCHEMA_VERSION,
    Journal,
    JournalError,
    JournalReader,
)
from tests.portfolio.test_journal import T0, TARGETS, begin, order


def test_a_reader_opened_on_a_path_sees_what_the_writer_committed(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        segment = begin(journal)
        journal.close_slice(T0, targets=TARGETS, orders=[order("o1")])
        # Beside the running writer: no lock needed, every committed write visible.
        with JournalReader.open(tmp_path) as reader:
            assert reader.schema_version == SCHEMA_VERSION
            assert reader.state().last_slice_ts == T0
            assert [o.client_order_id for o in reader.orders(open_only=True)] == ["o1"]
            journal.set_halted(True, "operator", T0 + 1)
            assert reader.switch("halted") == (True, "operator")
            assert reader.switch("kill_switch") == (False, None)
            assert list(reader.decisions(segment)) == [(T0, "close")]


def test_a_reader_from_the_writer_shares_its_connection_and_its_life(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    reader = journal.reader()
    assert reader is journal.reader()
    segment = begin(journal)
    journal.bar(Bar("AAA", T0, 1.0, 1.0, 1.0, 1.0, 1.0))
    # A buffered bar is not written yet: the reader sees what is committed.
    assert list(reader.inputs(segment)) == []
    journal.close_slice(T0, targets=None, orders=[])
    assert [i.kind for i in reader.inputs(segment)] == ["bar", "close"]
    reader.close()  # not the reader's connection to close: the writer goes on
    journal.set_kill_switch(True, "max_drawdown", T0 + 1)
    assert reader.state().kill_switch == (True, "max_drawdown")
    journal.close()
    with pytest.raises(JournalError, match=str(tmp_path / JOURNAL_FILE)):
        reader.state()


def test_the_writer_has_no_read_methods() -> None:
    for name in ("state", "segments", "inputs", "decisions", "orders", "account", "switch"):
        assert not hasattr(Journal, name), name


def test_a_reader_of_a_missing_journal_is_refused_and_creates_nothing(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with pytest.raises(JournalError, match=rf"{state_dir / JOURNAL_FILE}: no such file"):
        JournalReader.open(state_dir)
    assert not state_dir.exists()


def test_a_reader_refuses_a_file_newer_than_the_code(tmp_path: Path) -> None:
    Journal(tmp_path).close()
    db = sqlite3.connect(tmp_path / JOURNAL_FILE)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(JournalError, match=f"schema version {SCHEMA_VERSION + 1}, newer than"):
        JournalReader.open(tmp_path)


def test_a_reader_never_writes(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        begin(journal)
    with JournalReader.open(tmp_path) as reader:
        assert reader.state().segments == 1
        # Opened read-only by SQLite itself: not even a stray statement can write.
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader._db.execute("DELETE FROM segment")
