"""Writing the journal: one writer, under an exclusive lock, one transaction per write.

The opener takes an exclusive `flock` on `STATE_DIR/journal.lock` and migrates the file to the
current schema. Bars are buffered in memory and written with the next close, event or control
(one transaction), so a bar costs a list append. Every write that precedes an action is
committed before the method returns (write-ahead): the caller sends the orders of a slice only
after `close_slice` returned, and applies an execution event only after `event` returned. A
slice that sends nothing may be closed behind (`close_slice(..., behind=True)`): its records
wait in memory and are written first by the next transaction of any kind, or by
`write_behind()`, so the file holds the same records in the same order either way.

Every sqlite3 or OS error becomes a `JournalError` naming the file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from brokers.orders import (
    ExecutionEvent,
    SubmitOrder,
)
from composer.targets import Targets
from feeds.bar import Bar
from portfolio.journal.books import book_events, fresh_events
from portfolio.journal.codec import (
    AccountIdentity,
    LedgerSnapshot,
    dumps,
    encode_order_record,
)
from portfolio.journal.lock import take_lock
from portfolio.journal.reader import JournalReader
from portfolio.journal.schema import (
    JOURNAL_FILE,
    LOCK_FILE,
    JournalError,
    check_version,
    migrate,
    user_version,
)
from portfolio.journal.slices import (
    INSERT_BAR,
    INSERT_INPUT,
    SET_STATE,
    BehindClose,
    write_close,
    write_decision,
)

_AUTOCHECKPOINT_PAGES = 10_000


class Journal:
    """The daemon's journal in `state_dir` (created if missing). One writer at a time.

    Read it through `reader()` (this connection) or `JournalReader.open` (another, read-only).

    Args:
        max_bytes: cap the file's size: a write beyond it fails as on a full disk (the drill
            of a journal that cannot be written).

    Raises:
        JournalError: the file or its lock cannot be opened, another tradingd holds it, its
            schema is newer than this code, or its migration failed.
    """

    def __init__(self, state_dir: Path, *, max_bytes: int | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / JOURNAL_FILE
        self.lock_path = self.state_dir / LOCK_FILE
        self.segment: int | None = None
        # The last write's failure, until a write succeeds: what /state and /readyz show.
        self.failed: str | None = None
        self._bars: list[tuple[Any, ...]] = []
        self._behind: BehindClose | None = None
        self._closed = False
        self._lock_fd: int | None = take_lock(self.lock_path, self.path)
        db: sqlite3.Connection | None = None
        try:
            db = self._db = sqlite3.connect(self.path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            # A checkpoint syncs the file; at SQLite's default (every 1000 pages, about 125
            # slices) it more than doubled the mean cost of a write. Call `checkpoint()` off the
            # hot path; this is the backstop (a WAL of up to ~40 MB).
            db.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT_PAGES}")
            if max_bytes is not None:
                page = int(db.execute("PRAGMA page_size").fetchone()[0])
                db.execute(f"PRAGMA max_page_count={max(max_bytes // page, 1)}")
            version = user_version(db)
            check_version(version, self.path)
            self.schema_version = migrate(db, version, self.path)
            self._reader = JournalReader(db, self.path)
        except (sqlite3.Error, JournalError) as e:
            if db is not None:
                db.close()
            self._unlock()
            if isinstance(e, JournalError):
                raise
            raise JournalError(f"journal {self.path}: cannot open: {e}") from None

    def reader(self) -> JournalReader:
        """A reader on this writer's connection: it sees every committed write (not the bars
        still buffered, nor a slice closed behind until it is written). Valid until the writer
        closes; its own `close` does nothing."""
        return self._reader

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    @contextlib.contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One transaction, which first writes a slice closed behind. On failure: rolled back,
        the buffered bars and the slice closed behind kept, JournalError."""
        if self._closed:
            raise JournalError(f"journal {self.path}: {what}: the journal is closed")
        db = self._db
        behind = self._behind
        try:
            db.execute("BEGIN IMMEDIATE")
            if behind is not None:
                behind.write(db)
            yield db
            db.execute("COMMIT")
        except (sqlite3.Error, OSError) as e:
            with contextlib.suppress(sqlite3.Error):
                if db.in_transaction:
                    db.execute("ROLLBACK")
            if behind is not None:
                what = f"slice {behind.slice_ts} (closed behind), then {what}"
            self.failed = f"journal {self.path}: cannot write {what}: {e}"
            raise JournalError(self.failed) from None
        self._behind = None
        self.failed = None

    def _segment_id(self) -> int:
        if self.segment is None:
            raise JournalError(f"journal {self.path}: no segment begun: call begin_segment first")
        return self.segment

    def _flush(self, db: sqlite3.Connection) -> None:
        if self._bars:
            db.executemany(INSERT_BAR, self._bars)

    def _commit_bars(self) -> None:
        # The buffer is cleared only once its transaction committed.
        self._bars = []

    def begin_segment(
        self,
        *,
        mode: str,
        config_digest: str,
        config: dict[str, Any],
        config_files: list[str],
        ledger: LedgerSnapshot,
        ts: int,
    ) -> int:
        """Start recording one daemon run; every input after this belongs to it.

        The switches the journal holds now are copied into the segment: the run restores them
        before it trades, and an audit of the segment starts from them.

        Returns:
            The segment id.
        """
        kill = self._reader.switch("kill_switch")
        halted = self._reader.switch("halted")
        open_orders = [encode_order_record(o) for o in self._reader.orders(open_only=True)]
        with self._write("segment") as db:
            self._flush(db)
            cur = db.execute(
                "INSERT INTO segment (mode, config_digest, config, config_files, ledger, "
                "kill_switch, kill_reason, halted, halt_reason, open_orders, ts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    mode,
                    config_digest,
                    dumps(config),
                    dumps(list(config_files)),
                    dumps(ledger.to_json()),
                    int(kill[0]),
                    kill[1],
                    int(halted[0]),
                    halted[1],
                    dumps(open_orders),
                    ts,
                ),
            )
        self._commit_bars()
        assert cur.lastrowid is not None
        self.segment = cur.lastrowid
        return cur.lastrowid

    def bar(self, bar: Bar, *, warmup: bool = False) -> None:
        """Record a bar shown to the core (`engine.on_bar`); written with the next commit."""
        symbol, ts, o, h, low, c, v, n, vw = bar
        kind = "warmup_bar" if warmup else "bar"
        self._bars.append((self._segment_id(), kind, ts, symbol, o, h, low, c, v, n, vw))

    def updated_bar(self, bar: Bar) -> None:
        """Record a correction shown to the core (`engine.on_updated_bar`); buffered likewise."""
        symbol, ts, o, h, low, c, v, n, vw = bar
        self._bars.append((self._segment_id(), "updated_bar", ts, symbol, o, h, low, c, v, n, vw))

    def warmup_done(self, ts: int) -> None:
        """Record the end of the warm-up: slices after this input may trade."""
        segment = self._segment_id()
        with self._write("warmup_done") as db:
            self._flush(db)
            db.execute(INSERT_INPUT, (segment, "warmup_done", ts, dumps({"ts": ts})))
        self._commit_bars()

    def close_slice(
        self,
        slice_ts: int,
        *,
        targets: Targets | None,
        orders: Sequence[SubmitOrder],
        held: str | None = None,
        behind: bool = False,
    ) -> None:
        """Record a slice's close and what it decided, write-ahead.

        One transaction: the buffered bars, the `close` input, the decision (targets, orders),
        an intent row per order, and last_slice_ts. Send the orders only after this returns.

        Args:
            held: why the slice was decided without orders (catch_up, broker_unavailable);
                the audit replays it the same way.
            behind: for a slice without orders (ignored with orders): keep its records, and
                the bars buffered so far, in memory; the next transaction writes them first,
                or `write_behind()` does (call it soon: a crash before loses them, as it loses
                buffered bars). Nothing leaves on them, so nothing waits for the disk.

        Raises:
            JournalError: nothing was written; send nothing.
        """
        segment = self._segment_id()
        if behind and not orders:
            if self._behind is not None:
                self.write_behind()  # one slice behind at most
            self._behind = BehindClose(segment, slice_ts, targets, held, self._bars)
            self._bars = []
            return
        with self._write(f"slice {slice_ts}") as db:
            self._flush(db)
            write_close(
                db, segment=segment, slice_ts=slice_ts, targets=targets, orders=orders, held=held
            )
        self._commit_bars()

    def write_behind(self) -> None:
        """Write the slice closed behind, if any (with the bars buffered before its close).

        Raises:
            JournalError: nothing was written; the slice stays behind for the next write.
        """
        behind = self._behind
        if behind is not None:
            with self._write(f"slice {behind.slice_ts}"):
                pass

    def event(self, event: ExecutionEvent) -> bool:
        """Record a broker event before the core applies it (write-ahead), and update its order.

        Returns:
            False, writing nothing, for a fill whose execution id is journaled already (the
            core de-duplicates it too: feeding it is harmless).
        """
        return self.events([event])[0]

    def events(self, events: Sequence[ExecutionEvent]) -> list[bool]:
        """Record broker events, in order, in one transaction (what `event` does for each,
        with one commit instead of one per event: a slice can take back hundreds of orders).

        Returns:
            Per event, False for a fill whose execution id is journaled already or comes
            earlier in `events` (not written); nothing is written when every one is such.
        """
        segment = self._segment_id()
        fresh, new = fresh_events(events, self._reader.has_fill)
        if not new:
            return fresh
        first = new[0]
        what = f"event {type(first).__name__} {first.client_order_id}"
        with self._write(what if len(new) == 1 else f"{len(new)} events, the first {what}") as db:
            self._flush(db)
            book_events(db, new, segment=segment)
        self._commit_bars()
        return fresh

    def control(
        self, action: str, ts: int, *, orders: Sequence[SubmitOrder] = (), **fields: Any
    ) -> None:
        """Record an operator's control (halt, resume, flatten, reset) as an input.

        Args:
            ts: the time handed to the engine (for flatten: the ts given to `engine.flatten`).
            orders: the orders it produced (flatten): recorded as intents, write-ahead, and as
                a "flatten" decision keyed by `ts`.
            fields: anything else worth keeping (who, why); JSON-ready values.
        """
        segment = self._segment_id()
        payload: dict[str, Any] = {**fields, "action": action, "ts": ts}
        if orders:
            payload["orders"] = [o.client_order_id for o in orders]
        with self._write(f"control {action}") as db:
            self._flush(db)
            db.execute(INSERT_INPUT, (segment, "control", ts, dumps(payload)))
            if orders or action == "flatten":
                write_decision(
                    db, segment=segment, slice_ts=ts, kind="flatten", targets=None, orders=orders
                )
        self._commit_bars()

    def set_kill_switch(self, on: bool, reason: str | None, ts: int) -> None:
        """Latch (or reset) the kill switch: it stays as set across restarts."""
        self._set_switch("kill_switch", on, reason, ts)

    def set_halted(self, on: bool, reason: str | None, ts: int) -> None:
        """Set (or clear) the operator's halt: it stays as set across restarts."""
        self._set_switch("halted", on, reason, ts)

    def _set_switch(self, name: str, on: bool, reason: str | None, ts: int) -> None:
        with self._write(name) as db:
            db.execute(SET_STATE, (name, dumps({"on": on, "reason": reason, "ts": ts})))
            db.execute(
                "INSERT INTO switch (name, on_, reason, ts) VALUES (?, ?, ?, ?)",
                (name, int(on), reason, ts),
            )

    def difference(self, kind: str, detail: dict[str, Any], ts: int) -> None:
        """Record a reconciliation finding (what differed between the journal and the broker)."""
        with self._write(f"difference {kind}") as db:
            db.execute(
                "INSERT INTO difference (segment, kind, detail, ts) VALUES (?, ?, ?, ?)",
                (self.segment, kind, dumps(detail), ts),
            )

    def set_account(self, account: AccountIdentity) -> None:
        """Store the account this journal belongs to. Once: storing the same identity again
        writes nothing; another one is refused (a journal never changes accounts).

        Raises:
            JournalError: the journal belongs to another account, or the write failed.
        """
        held = self._reader.account()
        if held == account:
            return
        if held is not None:
            raise JournalError(
                f"journal {self.path} belongs to account {held.account_number} "
                f"({held.account_id} at {held.base_url}), not {account.account_number} "
                f"({account.account_id} at {account.base_url})"
            )
        with self._write("account") as db:
            db.execute(
                "INSERT INTO account (id, account_id, account_number, base_url) "
                "VALUES (1, ?, ?, ?)",
                (account.account_id, account.account_number, account.base_url),
            )

    def next_sequence(self, name: str) -> int:
        """The next number of the counter `name`: 1, 2, 3, ... across restarts, each once.

        Committed before it returns: a number handed out (say, in a client order id) is never
        handed out again, even after a crash. Counters of different names are independent.
        """
        with self._write(f"sequence {name}") as db:
            db.execute(
                "INSERT INTO sequence (name, value) VALUES (?, 1) "
                "ON CONFLICT (name) DO UPDATE SET value = value + 1",
                (name,),
            )
            (value,) = db.execute("SELECT value FROM sequence WHERE name = ?", (name,)).fetchone()
        return int(value)

    def snapshot(self, *, ledger: LedgerSnapshot, session: str, ts: int) -> int:
        """Record the ledger and the switches as of now (with the buffered bars written first):
        a restart reads only the inputs after it, an audit of a range may start from it.

        Call it from the task that feeds the core, between inputs (at a session's close, say):
        `ledger` must be what the core holds after every input journaled so far.

        Args:
            session: the session it closes (New York date, YYYY-MM-DD).

        Returns:
            The snapshot's id.
        """
        segment = self._segment_id()
        kill = self._reader.switch("kill_switch")
        halted = self._reader.switch("halted")
        open_orders = [encode_order_record(o) for o in self._reader.orders(open_only=True)]
        with self._write("snapshot") as db:
            self._flush(db)
            (seq,) = db.execute("SELECT coalesce(max(seq), 0) FROM input").fetchone()
            last = db.execute("SELECT value FROM state WHERE key = 'last_slice_ts'").fetchone()
            cur = db.execute(
                "INSERT INTO snapshot (segment, seq, session, ledger, kill_switch, kill_reason, "
                "halted, halt_reason, open_orders, last_slice_ts, ts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    segment,
                    seq,
                    session,
                    dumps(ledger.to_json()),
                    int(kill[0]),
                    kill[1],
                    int(halted[0]),
                    halted[1],
                    dumps(open_orders),
                    None if last is None else int(last[0]),
                    ts,
                ),
            )
        self._commit_bars()
        assert cur.lastrowid is not None
        return cur.lastrowid

    def flush(self) -> None:
        """Write the slice closed behind and the buffered bars now (close() does it too)."""
        if self._bars or self._behind is not None:
            with self._write("bars") as db:
                self._flush(db)
            self._commit_bars()

    def connection(self) -> sqlite3.Connection:
        """The writer's connection, for reads beside it (retention); write through
        `transaction` only."""
        return self._db

    def transaction(self, what: str) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT), with a slice closed behind
        written first (not the buffered bars); on failure rolled back and a JournalError naming
        `what`."""
        return self._write(what)

    def vacuum(self) -> None:
        """Give the pages freed by deletions back to the file system (rewrites the file: run
        it with the daemon stopped, as `tradingd journal compact` does)."""
        self.flush()
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("VACUUM")
        except sqlite3.Error as e:
            raise JournalError(f"journal {self.path}: vacuum failed: {e}") from None

    def checkpoint(self) -> None:
        """Move the WAL into the database file (PASSIVE: never waits for readers).

        Cheap to call when there is little to move; the daemon calls it when idle (after a
        slice's orders are out), so the hot path rarely pays for a sync.
        """
        if self._closed:
            return
        try:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as e:
            raise JournalError(f"journal {self.path}: checkpoint failed: {e}") from None

    def close(self) -> None:
        """Flush the buffered bars, close the file, release the lock. Idempotent."""
        if self._closed:
            return
        try:
            if (self._bars or self._behind is not None) and self.segment is not None:
                self.flush()
        finally:
            self._closed = True
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._unlock()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
