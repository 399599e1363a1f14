"""Reading a journal: the one way to, for a restart, the audit and the tests.

A `JournalReader` is either opened on a state directory, read-only (`JournalReader.open`: no
lock, no migration, so it may run beside the daemon that writes the file), or obtained from an
open writer (`Journal.reader()`), sharing its connection: it then sees every committed write,
but not the bars the writer still buffers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

from brokers.orders import ExecutionEvent, Fill, SubmitOrder
from composer.targets import Targets
from feeds.bar import Bar
from portfolio.journal.codec import (
    ORDER_FIELDS,
    AccountIdentity,
    LedgerSnapshot,
    OrderRecord,
    decode_event,
    decode_order_record,
    decode_targets,
    loads,
)
from portfolio.journal.schema import (
    ACCOUNT_VERSION,
    JOURNAL_FILE,
    SNAPSHOT_VERSION,
    JournalError,
    check_version,
    user_version,
)

SwitchName: TypeAlias = Literal["kill_switch", "halted"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    """One daemon run, as `begin_segment` recorded it.

    Attributes:
        kill_switch, halted: the switches the journal held when the segment began (what the
            run restores before it trades): (on, reason).
        open_orders: the orders not terminal when the segment began (what the run restores
            into its order book; reconciliation then journals what became of them).
        ts: when the segment began, UTC ns.
    """

    id: int
    mode: str
    config: dict[str, Any]
    digest: str
    files: list[str]
    ledger: LedgerSnapshot
    kill_switch: tuple[bool, str | None]
    halted: tuple[bool, str | None]
    open_orders: list[OrderRecord]
    ts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """The ledger and the switches at one point of a segment (a session's close, say).

    Everything the segment's inputs up to `seq` did is in it: a restart applies only the
    inputs after `seq`; an audit of a range starts from it as from a segment's start.

    Attributes:
        seq: the last input it covers.
        session: the session it closed (New York date, YYYY-MM-DD).
        open_orders: the orders not terminal at `seq`.
        last_slice_ts: the last slice decided by then (None: none yet).
        ts: when it was taken, UTC ns.
    """

    id: int
    segment: int
    seq: int
    session: str
    ledger: LedgerSnapshot
    kill_switch: tuple[bool, str | None]
    halted: tuple[bool, str | None]
    open_orders: list[OrderRecord]
    last_slice_ts: int | None
    ts: int


InputPayload: TypeAlias = Bar | ExecutionEvent | dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Input:
    """One input of the core, in the order it was fed.

    Attributes:
        kind: bar | warmup_bar | updated_bar | warmup_done | close | event | control.
        payload: a Bar (bar kinds), an ExecutionEvent (event), else a dict: close
            {"slice_ts"}, warmup_done {"ts"}, control {"action", "ts", "orders"?, ...fields}.
    """

    seq: int
    kind: str
    ts: int
    payload: InputPayload


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionRecord:
    """What was decided at the close of a slice (kind "close") or by a flatten ("flatten").

    Attributes:
        slice_ts: the slice's start; a flatten's control ts.
        targets: the composed targets, None when the slice decided nothing (not due, warm-up).
        orders: the orders handed to the broker.
    """

    slice_ts: int
    kind: str
    targets: Targets | None
    orders: list[SubmitOrder]


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalState:
    """What a restart needs from the journal.

    Attributes:
        baseline: the first segment's ledger snapshot (None before any segment).
        fills: every journaled fill, in the order journaled.
        orders: every order row, oldest first.
    """

    last_slice_ts: int | None
    kill_switch: tuple[bool, str | None]
    halted: tuple[bool, str | None]
    baseline: LedgerSnapshot | None
    fills: list[Fill]
    orders: list[OrderRecord]
    last_event_ts: int | None
    segments: int
    differences: int


_SNAPSHOT_FIELDS = (
    "id, segment, seq, session, ledger, kill_switch, kill_reason, halted, halt_reason, "
    "open_orders, last_slice_ts, ts"
)
_INPUT_FIELDS = "seq, kind, ts, symbol, open, high, low, close, volume, trade_count, vwap, payload"
_SELECT_ORDERS = f"SELECT {', '.join(ORDER_FIELDS)} FROM orders"  # noqa: S608 - field names


class JournalReader:
    """Reads one journal file. Every failure is a `JournalError` naming the file.

    Build one with `JournalReader.open(state_dir)` or `Journal.reader()`; the constructor is
    theirs.

    Args:
        db: an open connection to the file.
        path: the file, for messages.
        owned: the reader closes `db` on `close()` (it opened it); a writer's reader does not.
    """

    def __init__(self, db: sqlite3.Connection, path: Path, *, owned: bool = False) -> None:
        self.path = path
        self._db = db
        self._owned = owned
        try:
            self.schema_version = user_version(db)
        except sqlite3.Error as e:
            raise JournalError(f"journal {path}: cannot read: {e}") from None
        check_version(self.schema_version, path)

    @classmethod
    def open(cls, state_dir: Path) -> JournalReader:
        """Open the journal in `state_dir` read-only: no lock, no migration, never a write.

        Raises:
            JournalError: there is no journal, it cannot be opened, or its schema is newer
                than this code.
        """
        path = Path(state_dir) / JOURNAL_FILE
        if not path.exists():
            raise JournalError(f"journal {path}: no such file")
        try:
            db = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None
            )
        except sqlite3.Error as e:
            raise JournalError(f"journal {path}: cannot open: {e}") from None
        try:
            return cls(db, path, owned=True)
        except JournalError:
            db.close()
            raise

    def close(self) -> None:
        """Close the file if this reader opened it; a writer's reader leaves it to the writer.
        Idempotent."""
        if self._owned:
            self._owned = False
            self._db.close()

    def __enter__(self) -> JournalReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise JournalError(f"journal {self.path}: cannot read: {e}") from None

    def state(self) -> JournalState:
        """What a restart restores: the switches, the last slice, the order and fill books."""
        return self._state(books_since=None)

    def restart_state(self, *, margin_ns: int = 3_600 * 10**9) -> JournalState:
        """`state()` bounded by what a restart can meet, not by history: no fills (the ledger
        is rebuilt from the last snapshot and the events after it; the fill table
        de-duplicates by lookup), and the orders still open plus every order journaled since
        `margin_ns` before the oldest open one or the last event, whichever is earlier.

        Those are every order of ours a reconciliation's listings can return (they start at
        the last event, or at the oldest unresolved order), so none comes back unknown to the
        broker adapter (it would report its fills again under new execution ids).
        """
        (oldest_open,) = self._query("SELECT min(ts) FROM orders WHERE terminal = 0")[0]
        rows = self._query("SELECT value FROM state WHERE key = 'last_event_ts'")
        starts = [t for t in (oldest_open, int(rows[0][0]) if rows else None) if t is not None]
        since = min(starts) - margin_ns if starts else 2**63 - 1
        return self._state(books_since=since)

    def fills(self) -> list[Fill]:
        """Every fill journaled, in the order booked."""
        return [
            decode_event(loads(p)) for (p,) in self._query("SELECT payload FROM fill ORDER BY seq")
        ]

    def _state(self, *, books_since: int | None) -> JournalState:
        values = dict(self._query("SELECT key, value FROM state"))
        first = self._query("SELECT ledger FROM segment ORDER BY id LIMIT 1")
        if books_since is None:
            fills = self.fills()
            orders = self.orders()
        else:
            fills = []
            orders = [
                decode_order_record(dict(zip(ORDER_FIELDS, row, strict=True)))
                for row in self._query(
                    f"{_SELECT_ORDERS} WHERE terminal = 0 OR ts >= ? ORDER BY ts, rowid",
                    (books_since,),
                )
            ]
        (segments,) = self._query("SELECT count(*) FROM segment")[0]
        (differences,) = self._query("SELECT count(*) FROM difference")[0]
        return JournalState(
            last_slice_ts=int(values["last_slice_ts"]) if "last_slice_ts" in values else None,
            kill_switch=self.switch("kill_switch"),
            halted=self.switch("halted"),
            baseline=LedgerSnapshot.from_json(loads(first[0][0])) if first else None,
            fills=fills,
            orders=orders,
            last_event_ts=int(values["last_event_ts"]) if "last_event_ts" in values else None,
            segments=segments,
            differences=differences,
        )

    def connection(self) -> sqlite3.Connection:
        """The reader's connection, for `retention` (exports in bulk); read through it only."""
        return self._db

    def counts(self) -> dict[str, int]:
        """Rows per table of the file."""
        tables = [
            name
            for (name,) in self._query(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        return {t: int(self._query(f'SELECT count(*) FROM "{t}"')[0][0]) for t in tables}  # noqa: S608

    def switch(self, name: SwitchName) -> tuple[bool, str | None]:
        """A switch as last set: (on, reason); (False, None) if it never was."""
        rows = self._query("SELECT value FROM state WHERE key = ?", (name,))
        if not rows:
            return (False, None)
        data = loads(rows[0][0])
        return (bool(data["on"]), data["reason"])

    def orders(self, *, open_only: bool = False) -> list[OrderRecord]:
        """Every order row, oldest first; with `open_only`, those not terminal."""
        where = " WHERE terminal = 0" if open_only else ""
        return [
            decode_order_record(dict(zip(ORDER_FIELDS, row, strict=True)))
            for row in self._query(f"{_SELECT_ORDERS}{where} ORDER BY ts, rowid")
        ]

    def has_order(self, client_order_id: str) -> bool:
        """Whether this daemon decided an order by this client order id (its intent is
        journaled; an order known only from its events is not one)."""
        sql = "SELECT 1 FROM orders WHERE client_order_id = ? AND qty IS NOT NULL"
        return bool(self._query(sql, (client_order_id,)))

    def has_fill(self, execution_id: str) -> bool:
        """Whether a fill with this execution id is journaled (the de-duplication key)."""
        return bool(self._query("SELECT 1 FROM fill WHERE execution_id = ?", (execution_id,)))

    def segments(self) -> list[Segment]:
        """Every segment, oldest first."""
        return [
            Segment(
                id=r[0],
                mode=r[1],
                digest=r[2],
                config=loads(r[3]),
                files=loads(r[4]),
                ledger=LedgerSnapshot.from_json(loads(r[5])),
                kill_switch=(bool(r[6]), r[7]),
                halted=(bool(r[8]), r[9]),
                open_orders=[decode_order_record(o) for o in loads(r[10])],
                ts=r[11],
            )
            for r in self._query(
                "SELECT id, mode, config_digest, config, config_files, ledger, kill_switch, "
                "kill_reason, halted, halt_reason, open_orders, ts FROM segment ORDER BY id"
            )
        ]

    def inputs(
        self, segment: int, *, after_seq: int | None = None, through_seq: int | None = None
    ) -> Iterator[Input]:
        """The segment's inputs in the order the core saw them, decoded; with `after_seq` and
        `through_seq`, only those in (after_seq, through_seq]."""
        where, params = _seq_range(segment, after_seq, through_seq)
        sql = f"SELECT {_INPUT_FIELDS} FROM input WHERE {where} ORDER BY seq"  # noqa: S608
        return self._decoded(sql, params)

    def book_inputs(self, segment: int, *, after_seq: int | None = None) -> Iterator[Input]:
        """The segment's events and controls (what moves the ledger) after `after_seq`, in
        order, without walking its bars (a partial index from schema version 4)."""
        where, params = _seq_range(segment, after_seq, None)
        sql = (
            f"SELECT {_INPUT_FIELDS} FROM input WHERE {where} "  # noqa: S608 - fixed fragments
            "AND kind IN ('event', 'control') ORDER BY seq"
        )
        return self._decoded(sql, params)

    def _decoded(self, sql: str, params: Sequence[Any]) -> Iterator[Input]:
        try:
            cursor = self._db.execute(sql, params)
            for seq, kind, ts, symbol, o, h, low, c, v, n, vw, payload in cursor:
                decoded: InputPayload
                if payload is None:
                    decoded = Bar(symbol, ts, o, h, low, c, v, n, vw)
                elif kind == "event":
                    decoded = decode_event(loads(payload))
                else:
                    decoded = loads(payload)
                yield Input(seq=seq, kind=kind, ts=ts, payload=decoded)
        except sqlite3.Error as e:
            raise JournalError(f"journal {self.path}: cannot read inputs: {e}") from None

    def warmup_start(self, segment: int, seq: int, closes: int) -> int | None:
        """Where the warm-up of a replay that starts at input `seq` begins: the input after
        which the segment's last `closes` slices closed at or before `seq` (-1: from the
        segment's first input, when it holds fewer); None when compaction removed the
        inputs those closes need."""
        rows = self._query(
            "SELECT seq FROM input WHERE segment = ? AND seq <= ? AND kind = 'close' "
            "ORDER BY seq DESC LIMIT 1 OFFSET ?",
            (segment, seq, max(closes, 0)),
        )
        if rows:
            return int(rows[0][0])
        compacted = self.compacted()
        if compacted is not None and segment <= compacted[0]:
            return None
        return -1

    def compacted(self) -> tuple[int, int] | None:
        """(segment, seq) of the last input compaction moved out of the file; None if it
        never ran. Segments before that one have no inputs left; that one, only after seq."""
        values = dict(
            self._query(
                "SELECT key, value FROM state WHERE key IN ('compacted_segment', 'compacted_seq')"
            )
        )
        if "compacted_seq" not in values:
            return None
        return int(values["compacted_segment"]), int(values["compacted_seq"])

    def snapshots(self, segment: int | None = None) -> list[Snapshot]:
        """The snapshots (of one segment, or all), oldest first; none before schema 4."""
        if self.schema_version < SNAPSHOT_VERSION:
            return []
        where, params = ("WHERE segment = ?", (segment,)) if segment is not None else ("", ())
        return [
            Snapshot(
                id=r[0],
                segment=r[1],
                seq=r[2],
                session=r[3],
                ledger=LedgerSnapshot.from_json(loads(r[4])),
                kill_switch=(bool(r[5]), r[6]),
                halted=(bool(r[7]), r[8]),
                open_orders=[decode_order_record(o) for o in loads(r[9])],
                last_slice_ts=r[10],
                ts=r[11],
            )
            for r in self._query(
                f"SELECT {_SNAPSHOT_FIELDS} FROM snapshot {where} ORDER BY seq",  # noqa: S608
                params,
            )
        ]

    def last_snapshot(self, segment: int) -> Snapshot | None:
        """The segment's latest snapshot, if it has one."""
        if self.schema_version < SNAPSHOT_VERSION:
            return None
        rows = self._query("SELECT max(id) FROM snapshot WHERE segment = ?", (segment,))
        if rows[0][0] is None:
            return None
        found = [s for s in self.snapshots(segment) if s.id == rows[0][0]]
        return found[0] if found else None

    def decisions(
        self, segment: int, *, after_ts: int | None = None
    ) -> dict[tuple[int, str], DecisionRecord]:
        """The segment's decisions by (slice_ts, kind): kind "close" or "flatten"; with
        `after_ts`, only those of slices after it."""
        out: dict[tuple[int, str], DecisionRecord] = {}
        for slice_ts, kind, targets, orders in self._query(
            "SELECT slice_ts, kind, targets, orders FROM decision WHERE segment = ? "
            "AND slice_ts > ? ORDER BY slice_ts",
            (segment, -(2**63) if after_ts is None else after_ts),
        ):
            out[(slice_ts, kind)] = DecisionRecord(
                slice_ts=slice_ts,
                kind=kind,
                targets=None if targets is None else decode_targets(loads(targets)),
                orders=[decode_event(o) for o in loads(orders)],
            )
        return out

    def account(self) -> AccountIdentity | None:
        """The account the journal belongs to; None if none was stored yet (or the file is of
        a schema before accounts, not opened by a writer since)."""
        if self.schema_version < ACCOUNT_VERSION:
            return None
        rows = self._query("SELECT account_id, account_number, base_url FROM account")
        if not rows:
            return None
        account_id, number, url = rows[0]
        return AccountIdentity(account_id=account_id, account_number=number, base_url=url)

    def sequence(self, name: str) -> int:
        """The last number `Journal.next_sequence(name)` returned; 0 if it never did."""
        if self.schema_version < ACCOUNT_VERSION:
            return 0
        rows = self._query("SELECT value FROM sequence WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0


def _seq_range(
    segment: int, after_seq: int | None, through_seq: int | None
) -> tuple[str, tuple[int, ...]]:
    where = "segment = ? AND seq > ?"
    params: tuple[int, ...] = (segment, -1 if after_seq is None else after_seq)
    if through_seq is not None:
        where += " AND seq <= ?"
        params = (*params, through_seq)
    return where, params
