"""The journal's file: its names, its schema by version, the migrations, and its one error.

The schema version is SQLite's `PRAGMA user_version`. The writer migrates a file up to
`SCHEMA_VERSION` when it opens it; a reader never migrates (it may run beside the writer), so
it reads every version up to `SCHEMA_VERSION` and refuses a newer one.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from feeds.errors import TradingdError

JOURNAL_FILE = "journal.sqlite3"
LOCK_FILE = "journal.lock"

# Each entry moves the schema one version up (user_version = its index + 1); applied in order,
# one transaction each. Never edit a released entry: append a new one.
MIGRATIONS: list[str] = [
    # 1: the input log and the books.
    """
    CREATE TABLE segment (
        id INTEGER PRIMARY KEY,
        mode TEXT NOT NULL,
        config_digest TEXT NOT NULL,
        config TEXT NOT NULL,
        config_files TEXT NOT NULL,
        ledger TEXT NOT NULL,
        kill_switch INTEGER NOT NULL,
        kill_reason TEXT,
        halted INTEGER NOT NULL,
        halt_reason TEXT,
        open_orders TEXT NOT NULL,
        ts INTEGER NOT NULL
    );
    CREATE TABLE input (
        seq INTEGER PRIMARY KEY,
        segment INTEGER NOT NULL,
        kind TEXT NOT NULL,
        ts INTEGER NOT NULL,
        symbol TEXT,
        open REAL, high REAL, low REAL, close REAL, volume REAL,
        trade_count INTEGER, vwap REAL,
        payload TEXT
    );
    CREATE TABLE decision (
        segment INTEGER NOT NULL,
        slice_ts INTEGER NOT NULL,
        kind TEXT NOT NULL,
        targets TEXT,
        orders TEXT NOT NULL,
        PRIMARY KEY (segment, slice_ts, kind)
    );
    CREATE TABLE orders (
        client_order_id TEXT PRIMARY KEY,
        segment INTEGER,
        symbol TEXT NOT NULL,
        side TEXT,
        qty TEXT,
        order_type TEXT,
        limit_price TEXT,
        time_in_force TEXT,
        slice_ts INTEGER,
        ts INTEGER NOT NULL,
        status TEXT NOT NULL,
        broker_order_id TEXT,
        filled_qty TEXT NOT NULL DEFAULT '0',
        filled_notional TEXT NOT NULL DEFAULT '0',
        terminal INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE fill (
        execution_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        client_order_id TEXT NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE difference (
        id INTEGER PRIMARY KEY,
        segment INTEGER,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL,
        ts INTEGER NOT NULL
    );
    """,
    # 2: what restarts and audits look up: a segment's inputs, open orders, fills in order;
    # and the history of the switches (the state table keeps only their latest value).
    """
    CREATE INDEX input_segment ON input (segment, seq);
    CREATE INDEX orders_open ON orders (terminal, ts);
    CREATE INDEX fill_seq ON fill (seq);
    CREATE TABLE switch (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        on_ INTEGER NOT NULL,
        reason TEXT,
        ts INTEGER NOT NULL
    );
    """,
    # 3: the account the journal belongs to (one row at most: it never changes), and named
    # counters that survive restarts (unique client order ids outside the slices).
    """
    CREATE TABLE account (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        account_id TEXT NOT NULL,
        account_number TEXT NOT NULL,
        base_url TEXT NOT NULL
    );
    CREATE TABLE sequence (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    """,
    # 4: months of running. Snapshots of the ledger and the switches (at each session close):
    # a restart reads only the inputs after the last one, an audit of a range starts at one.
    # The books' inputs (events, controls) get their own partial index, so rebuilding the
    # ledger never walks the bars. `archive` lists what compaction moved out of the file.
    """
    CREATE TABLE snapshot (
        id INTEGER PRIMARY KEY,
        segment INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        session TEXT NOT NULL,
        ledger TEXT NOT NULL,
        kill_switch INTEGER NOT NULL,
        kill_reason TEXT,
        halted INTEGER NOT NULL,
        halt_reason TEXT,
        open_orders TEXT NOT NULL,
        last_slice_ts INTEGER,
        ts INTEGER NOT NULL
    );
    CREATE INDEX snapshot_segment ON snapshot (segment, seq);
    CREATE INDEX input_book ON input (segment, seq) WHERE kind IN ('event', 'control');
    CREATE TABLE archive (
        id INTEGER PRIMARY KEY,
        through_seq INTEGER NOT NULL,
        through_slice_ts INTEGER,
        inputs INTEGER NOT NULL,
        decisions INTEGER NOT NULL,
        orders INTEGER NOT NULL,
        path TEXT,
        ts INTEGER NOT NULL
    );
    """,
    # 5: no table changes. A decision's targets keep each strategy's shares of its capital
    # (once per distinct allocation) instead of its contributions, which are computed from
    # them (`codec.encode_targets`). This code reads both forms; an older tradingd cannot read
    # the new one, and the version makes it refuse the file instead of failing on a record.
    "",
]
SCHEMA_VERSION = len(MIGRATIONS)
# The first version with the account and sequence tables: a reader of an older file (one the
# writer has not opened since) finds neither.
ACCOUNT_VERSION = 3
# The first version with snapshots, the books' index and the archive list.
SNAPSHOT_VERSION = 4


class JournalError(TradingdError):
    """The journal cannot be opened, read or written. The message names the file.

    The daemon stops sending orders when it sees one: it never trades without a journal.
    """


def user_version(db: sqlite3.Connection) -> int:
    """The file's schema version (0 for a new, empty file)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def check_version(version: int, path: Path) -> None:
    """Refuse a file written by a newer tradingd: its schema may mean what this code cannot read.

    Raises:
        JournalError: naming the file and both versions.
    """
    if version > SCHEMA_VERSION:
        raise JournalError(
            f"journal {path} has schema version {version}, newer than this "
            f"tradingd's {SCHEMA_VERSION}: run the tradingd that wrote it, or a newer one"
        )


def migrate(db: sqlite3.Connection, version: int, path: Path) -> int:
    """Move the file from schema `version` up to `SCHEMA_VERSION`, one transaction per step.

    The caller holds the writer's lock. A failed step is rolled back: the file stays at the
    version before it, usable by this code's next attempt.

    Returns:
        The version reached (`SCHEMA_VERSION`).

    Raises:
        JournalError: a step failed, naming the version it was moving to.
    """
    for target in range(version + 1, SCHEMA_VERSION + 1):
        try:
            db.execute("BEGIN IMMEDIATE")
            for statement in _statements(MIGRATIONS[target - 1]):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {target}")
            db.execute("COMMIT")
        except sqlite3.Error as e:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise JournalError(
                f"journal {path}: migration to schema version {target} failed: {e}"
            ) from None
        version = target
    return version


def _statements(script: str) -> list[str]:
    """A migration's statements (they hold no semicolons inside literals)."""
    return [s.strip() for s in script.split(";") if s.strip()]
