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
        values = dict(self._query("SELECT key, value FROM state"))
        first = self._query("SELECT ledger FROM segment ORDER BY id LIMIT 1")
        fills = [
            decode_event(loads(p)) for (p,) in self._query("SELECT payload FROM fill ORDER BY seq")
        ]
        (segments,) = self._query("SELECT count(*) FROM segment")[0]
        (differences,) = self._query("SELECT count(*) FROM difference")[0]
        return JournalState(
            last_slice_ts=int(values["last_slice_ts"]) if "last_slice_ts" in values else None,
            kill_switch=self.switch("kill_switch"),
            halted=self.switch("halted"),
            baseline=LedgerSnapshot.from_json(loads(first[0][0])) if first else None,
            fills=fills,
            orders=self.orders(),
            last_event_ts=int(values["last_event_ts"]) if "last_event_ts" in values else None,
            segments=segments,
            differences=differences,
        )

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

    def inputs(self, segment: int) -> Iterator[Input]:
        """The segment's inputs in the order the core saw them, decoded."""
        try:
            cursor = self._db.execute(
                "SELECT seq, kind, ts, symbol, open, high, low, close, volume, trade_count, "
                "vwap, payload FROM input WHERE segment = ? ORDER BY seq",
                (segment,),
            )
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

    def decisions(self, segment: int) -> dict[tuple[int, str], DecisionRecord]:
        """The segment's decisions by (slice_ts, kind): kind "close" or "flatten"."""
        out: dict[tuple[int, str], DecisionRecord] = {}
        for slice_ts, kind, targets, orders in self._query(
            "SELECT slice_ts, kind, targets, orders FROM decision WHERE segment = ? "
            "ORDER BY slice_ts",
            (segment,),
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
