"""The journal: what the core was fed, in order, and the order and fill books, in SQLite.

One file, `STATE_DIR/journal.sqlite3`, in WAL mode with `synchronous=NORMAL`: a process crash
(`kill -9`) loses nothing committed; a power cut may lose the last transactions, never corrupt.
One writer: the opener takes an exclusive `flock` on `STATE_DIR/journal.lock`.

It is an input log. Bars are buffered in memory and written with the next close, event or
control (one transaction), so a bar costs a list append. Every write that precedes an action is
committed before the method returns (write-ahead): the caller sends the orders of a slice only
after `close_slice` returned, and applies an execution event only after `event` returned.

    segment   one daemon run: its config, its ledger at the start, the switches it found
    input     bar | warmup_bar | updated_bar | warmup_done | close | event | control, in order
    decision  per closed slice: the composed targets and the orders (and a flatten's orders)
    orders    one row per client order id: intent -> accepted -> filled/canceled/rejected
    fill      one row per execution id: the de-duplication key of fills
    state     last_slice_ts, last_event_ts, the kill switch latch, the halt flag

Strategy and composer state are not stored: a restart rebuilds them by a warm-up through the
core (the recorded bars, or the broker's history), which is also what the audit replays.

Errors: every sqlite3 or OS error becomes a `JournalError` naming the file. The daemon stops
sending orders when a write fails: it never trades without a journal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeAlias

import orjson

from brokers.orders import (
    ExecutionEvent,
    Fill,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderSide,
    OrderType,
    SubmitOrder,
    TimeInForce,
)
from composer.targets import Targets
from feeds.bar import Bar
from feeds.errors import TradingdError
from portfolio.ledger import Ledger

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
]
SCHEMA_VERSION = len(MIGRATIONS)

_AUTOCHECKPOINT_PAGES = 10_000
_ZERO = Decimal(0)


class JournalError(TradingdError):
    """The journal cannot be opened, read or written. The message names the file.

    The daemon stops sending orders when it sees one: it never trades without a journal.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerSnapshot:
    """The ledger at the start of a segment: what a replay of the segment starts from.

    Attributes:
        positions: symbol -> (signed qty, average cost, last price).
    """

    cash: Decimal
    start_cash: Decimal
    high_water: Decimal
    realized_pnl: Decimal
    positions: dict[str, tuple[Decimal, Decimal, Decimal]] = field(default_factory=dict)

    @classmethod
    def of(cls, ledger: Ledger) -> LedgerSnapshot:
        return cls(
            cash=ledger.cash,
            start_cash=ledger.start_cash,
            high_water=ledger.high_water,
            realized_pnl=ledger.realized_pnl,
            positions={
                s: (p.qty, p.avg_cost, p.last_price) for s, p in sorted(ledger.positions.items())
            },
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "cash": str(self.cash),
            "start_cash": str(self.start_cash),
            "high_water": str(self.high_water),
            "realized_pnl": str(self.realized_pnl),
            "positions": positions_to_json(self.positions),
        }

    def restore_into(self, ledger: Ledger) -> None:
        """Make `ledger` this snapshot again (a restart, or an audit of the run it began)."""
        ledger.adopt(self.cash, self.positions, restart=True)
        ledger.start_cash = self.start_cash
        ledger.realized_pnl = self.realized_pnl
        ledger.restore_high_water(self.high_water)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LedgerSnapshot:
        return cls(
            cash=Decimal(data["cash"]),
            start_cash=Decimal(data["start_cash"]),
            high_water=Decimal(data["high_water"]),
            realized_pnl=Decimal(data["realized_pnl"]),
            positions=positions_from_json(data["positions"]),
        )


def positions_to_json(
    positions: Mapping[str, tuple[Decimal, Decimal, Decimal]],
) -> dict[str, list[str]]:
    """Positions as the journal writes them: symbol -> [qty, average cost, last price]."""
    return {s: [str(q), str(a), str(p)] for s, (q, a, p) in sorted(positions.items())}


def positions_from_json(
    data: Mapping[str, Sequence[str]],
) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
    return {s: (Decimal(q), Decimal(a), Decimal(p)) for s, (q, a, p) in data.items()}


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
class OrderRecord:
    """One order's row: its intent and what the broker said since.

    Attributes:
        status: intent | accepted | partially_filled | filled | canceled | rejected.
        side, qty, order_type, slice_ts: None for an order this journal never decided (an
            event arrived for it first).
        filled_notional: sum of qty * price over its fills.
    """

    client_order_id: str
    symbol: str
    side: OrderSide | None
    qty: Decimal | None
    order_type: OrderType | None
    limit_price: Decimal | None
    slice_ts: int | None
    ts: int
    status: str
    broker_order_id: str | None
    filled_qty: Decimal
    filled_notional: Decimal
    terminal: bool

    def remaining(self) -> SubmitOrder | None:
        """What is still open of this order, as the order book holds it after a restart; None
        when it ended, or was never decided here (an event came first)."""
        if self.terminal or self.side is None or self.qty is None or self.order_type is None:
            return None
        if self.qty <= self.filled_qty:
            return None
        return SubmitOrder(
            client_order_id=self.client_order_id,
            symbol=self.symbol,
            side=self.side,
            qty=self.qty - self.filled_qty,
            order_type=self.order_type,
            ts=self.ts,
            limit_price=self.limit_price,
        )


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


# -- encoding --------------------------------------------------------------------------------

_EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        OrderAccepted,
        OrderFilled,
        OrderPartiallyFilled,
        OrderCanceled,
        OrderRejected,
        SubmitOrder,
    )
}
_DECIMAL_FIELDS = frozenset({"qty", "price", "commission", "leaves_qty", "limit_price"})
_ENUM_FIELDS: dict[str, type[Any]] = {
    "side": OrderSide,
    "order_type": OrderType,
    "time_in_force": TimeInForce,
}
_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in _EVENT_TYPES.values()
}


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot journal a {type(value).__name__}")


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=_default).decode()


def encode_event(event: ExecutionEvent | SubmitOrder) -> dict[str, Any]:
    """An event or order as JSON-ready data: its class name and fields (Decimals as strings)."""
    cls = type(event)
    out: dict[str, Any] = {"type": cls.__name__}
    for name in _FIELD_NAMES[cls]:
        value = getattr(event, name)
        out[name] = str(value) if isinstance(value, Decimal) else value
    return out


def decode_event(data: dict[str, Any]) -> Any:
    """The inverse of `encode_event`: the same class with equal fields."""
    cls = _EVENT_TYPES[data["type"]]
    kwargs: dict[str, Any] = {}
    for name in _FIELD_NAMES[cls]:
        if name not in data:
            continue
        value = data[name]
        if value is not None:
            if name in _DECIMAL_FIELDS:
                value = Decimal(value)
            elif name in _ENUM_FIELDS:
                value = _ENUM_FIELDS[name](value)
        kwargs[name] = value
    return cls(**kwargs)


def _encode_order_record(record: OrderRecord) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(OrderRecord)}


def _decode_order_record(data: dict[str, Any]) -> OrderRecord:
    def dec(value: str | None) -> Decimal | None:
        return None if value is None else Decimal(value)

    return OrderRecord(
        client_order_id=data["client_order_id"],
        symbol=data["symbol"],
        side=None if data["side"] is None else OrderSide(data["side"]),
        qty=dec(data["qty"]),
        order_type=None if data["order_type"] is None else OrderType(data["order_type"]),
        limit_price=dec(data["limit_price"]),
        slice_ts=data["slice_ts"],
        ts=data["ts"],
        status=data["status"],
        broker_order_id=data["broker_order_id"],
        filled_qty=Decimal(data["filled_qty"]),
        filled_notional=Decimal(data["filled_notional"]),
        terminal=data["terminal"],
    )


def _encode_targets(targets: Targets) -> dict[str, Any]:
    return {
        "ts": targets.ts,
        "weights": targets.weights,
        "strategy_weights": targets.strategy_weights,
        "by_strategy": targets.by_strategy,
        "signals": targets.signals,
    }


# -- the journal -----------------------------------------------------------------------------

_INSERT_BAR = (
    "INSERT INTO input (segment, kind, ts, symbol, open, high, low, close, volume, "
    "trade_count, vwap) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_INPUT = "INSERT INTO input (segment, kind, ts, payload) VALUES (?, ?, ?, ?)"
_INSERT_INTENT = (
    "INSERT OR IGNORE INTO orders (client_order_id, segment, symbol, side, qty, order_type, "
    "limit_price, time_in_force, slice_ts, ts, status) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'intent')"
)
_ORDER_COLUMNS = (
    "SELECT client_order_id, symbol, side, qty, order_type, limit_price, slice_ts, ts, status, "
    "broker_order_id, filled_qty, filled_notional, terminal FROM orders"
)
_SELECT_ORDERS = _ORDER_COLUMNS + " ORDER BY ts, rowid"
_SELECT_OPEN_ORDERS = _ORDER_COLUMNS + " WHERE terminal = 0 ORDER BY ts, rowid"
_SET_STATE = "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)"


class Journal:
    """The daemon's journal in `state_dir` (created if missing). One writer at a time.

    Args:
        read_only: open for reading only (the audit, while a daemon may be running): no lock,
            no migration, every write raises JournalError.
        max_bytes: cap the file's size: a write beyond it fails as on a full disk (the drill
            of a journal that cannot be written).

    Raises:
        JournalError: the file or its lock cannot be opened, another tradingd holds it, or its
            schema is newer than this code.
    """

    def __init__(
        self, state_dir: Path, *, read_only: bool = False, max_bytes: int | None = None
    ) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / JOURNAL_FILE
        self.lock_path = self.state_dir / LOCK_FILE
        self.read_only = read_only
        self.segment: int | None = None
        # The last write's failure, until a write succeeds: what /state and /readyz show.
        self.failed: str | None = None
        self._bars: list[tuple[Any, ...]] = []
        self._lock_fd: int | None = None
        self._closed = False
        if read_only:
            if not self.path.exists():
                raise JournalError(f"journal {self.path}: no such file")
            try:
                self._db = sqlite3.connect(
                    f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None
                )
                self.schema_version = self._user_version()
            except sqlite3.Error as e:
                raise JournalError(f"journal {self.path}: cannot open: {e}") from None
            self._check_version()
            return
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise JournalError(
                f"journal {self.path}: cannot create {self.state_dir}: {e}"
            ) from None
        self._lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # A checkpoint syncs the file; at SQLite's default (every 1000 pages, about 125
            # slices) it more than doubled the mean cost of a write. Call `checkpoint()` off the
            # hot path; this is the backstop (a WAL of up to ~40 MB).
            self._db.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT_PAGES}")
            if max_bytes is not None:
                page = int(self._db.execute("PRAGMA page_size").fetchone()[0])
                self._db.execute(f"PRAGMA max_page_count={max(max_bytes // page, 1)}")
            self.schema_version = self._user_version()
            self._check_version()
            self._migrate()
        except sqlite3.Error as e:
            self._unlock()
            raise JournalError(f"journal {self.path}: cannot open: {e}") from None
        except JournalError:
            self._unlock()
            raise

    # -- opening -------------------------------------------------------------------------------

    def _lock(self) -> None:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise JournalError(f"journal {self.path}: cannot open {self.lock_path}: {e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise JournalError(
                f"journal {self.path} is in use by another tradingd (pid {pid})"
            ) from None
        except OSError as e:
            os.close(fd)
            raise JournalError(f"journal {self.path}: cannot lock {self.lock_path}: {e}") from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as e:
            os.close(fd)
            raise JournalError(f"journal {self.path}: cannot write {self.lock_path}: {e}") from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def _user_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _check_version(self) -> None:
        if self.schema_version > SCHEMA_VERSION:
            raise JournalError(
                f"journal {self.path} has schema version {self.schema_version}, newer than this "
                f"tradingd's {SCHEMA_VERSION}: run the tradingd that wrote it, or a newer one"
            )

    def _migrate(self) -> None:
        db = self._db
        for version in range(self.schema_version + 1, SCHEMA_VERSION + 1):
            try:
                db.execute("BEGIN IMMEDIATE")
                for statement in _statements(MIGRATIONS[version - 1]):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {version}")
                db.execute("COMMIT")
            except sqlite3.Error as e:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise JournalError(
                    f"journal {self.path}: migration to schema version {version} failed: {e}"
                ) from None
            self.schema_version = version

    # -- writing -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One transaction. On failure: rolled back, the buffered bars kept, JournalError."""
        if self._closed:
            raise JournalError(f"journal {self.path}: {what}: the journal is closed")
        if self.read_only:
            raise JournalError(f"journal {self.path}: {what}: opened read-only")
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except (sqlite3.Error, OSError) as e:
            with contextlib.suppress(sqlite3.Error):
                if db.in_transaction:
                    db.execute("ROLLBACK")
            self.failed = f"journal {self.path}: cannot write {what}: {e}"
            raise JournalError(self.failed) from None
        self.failed = None

    def _segment_id(self) -> int:
        if self.segment is None:
            raise JournalError(f"journal {self.path}: no segment begun: call begin_segment first")
        return self.segment

    def _flush(self, db: sqlite3.Connection) -> None:
        if self._bars:
            db.executemany(_INSERT_BAR, self._bars)

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
        kill = self._switch("kill_switch")
        halted = self._switch("halted")
        open_orders = [_encode_order_record(o) for o in self._orders(open_only=True)]
        with self._write("segment") as db:
            self._flush(db)
            cur = db.execute(
                "INSERT INTO segment (mode, config_digest, config, config_files, ledger, "
                "kill_switch, kill_reason, halted, halt_reason, open_orders, ts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    mode,
                    config_digest,
                    _dumps(config),
                    _dumps(list(config_files)),
                    _dumps(ledger.to_json()),
                    int(kill[0]),
                    kill[1],
                    int(halted[0]),
                    halted[1],
                    _dumps(open_orders),
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
            db.execute(_INSERT_INPUT, (segment, "warmup_done", ts, _dumps({"ts": ts})))
        self._commit_bars()

    def close_slice(
        self, slice_ts: int, *, targets: Targets | None, orders: Sequence[SubmitOrder]
    ) -> None:
        """Record a slice's close and what it decided, write-ahead.

        One transaction: the buffered bars, the `close` input, the decision (targets, orders),
        an intent row per order, and last_slice_ts. Send the orders only after this returns.

        Raises:
            JournalError: nothing was written; send nothing.
        """
        segment = self._segment_id()
        with self._write(f"slice {slice_ts}") as db:
            self._flush(db)
            db.execute(_INSERT_INPUT, (segment, "close", slice_ts, f'{{"slice_ts":{slice_ts}}}'))
            if targets is not None or orders:
                self._decision(
                    db=db,
                    segment=segment,
                    slice_ts=slice_ts,
                    kind="close",
                    targets=targets,
                    orders=orders,
                )
            db.execute(_SET_STATE, ("last_slice_ts", str(slice_ts)))
        self._commit_bars()

    def _decision(
        self,
        *,
        db: sqlite3.Connection,
        segment: int,
        slice_ts: int,
        kind: str,
        targets: Targets | None,
        orders: Sequence[SubmitOrder],
    ) -> None:
        db.execute(
            "INSERT OR REPLACE INTO decision (segment, slice_ts, kind, targets, orders) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                segment,
                slice_ts,
                kind,
                None if targets is None else _dumps(_encode_targets(targets)),
                _dumps([encode_event(o) for o in orders]),
            ),
        )
        if orders:
            db.executemany(
                _INSERT_INTENT,
                [
                    (
                        o.client_order_id,
                        segment,
                        o.symbol,
                        o.side.value,
                        str(o.qty),
                        o.order_type.value,
                        None if o.limit_price is None else str(o.limit_price),
                        o.time_in_force.value,
                        slice_ts,
                        o.ts,
                    )
                    for o in orders
                ],
            )

    def event(self, event: ExecutionEvent) -> bool:
        """Record a broker event before the core applies it (write-ahead), and update its order.

        Returns:
            False, writing nothing, for a fill whose execution id is journaled already (the
            core de-duplicates it too: feeding it is harmless).
        """
        segment = self._segment_id()
        db = self._db
        if isinstance(event, OrderFilled | OrderPartiallyFilled):
            try:
                seen = db.execute(
                    "SELECT 1 FROM fill WHERE execution_id = ?", (event.execution_id,)
                ).fetchone()
            except sqlite3.Error as e:
                raise JournalError(f"journal {self.path}: cannot read fills: {e}") from None
            if seen is not None:
                return False
        payload = _dumps(encode_event(event))
        cid = event.client_order_id
        with self._write(f"event {type(event).__name__} {cid}") as db:
            self._flush(db)
            cur = db.execute(_INSERT_INPUT, (segment, "event", event.ts, payload))
            db.execute(
                "INSERT OR IGNORE INTO orders (client_order_id, segment, symbol, ts, status) "
                "VALUES (?, ?, ?, ?, 'intent')",
                (cid, segment, event.symbol, event.ts),
            )
            match event:
                case OrderAccepted():
                    db.execute(
                        "UPDATE orders SET status = CASE WHEN status = 'intent' THEN 'accepted' "
                        "ELSE status END, broker_order_id = COALESCE(NULLIF(?, ''), "
                        "broker_order_id) WHERE client_order_id = ?",
                        (event.broker_order_id, cid),
                    )
                case OrderFilled() | OrderPartiallyFilled():
                    db.execute(
                        "INSERT INTO fill (execution_id, seq, client_order_id, payload) "
                        "VALUES (?, ?, ?, ?)",
                        (event.execution_id, cur.lastrowid, cid, payload),
                    )
                    row = db.execute(
                        "SELECT filled_qty, filled_notional, side FROM orders "
                        "WHERE client_order_id = ?",
                        (cid,),
                    ).fetchone()
                    done = isinstance(event, OrderFilled)
                    db.execute(
                        # A terminal status sticks: events may arrive out of order (a
                        # reconciliation's fill after the stream's cancel).
                        "UPDATE orders SET filled_qty = ?, filled_notional = ?, "
                        "status = CASE WHEN terminal = 1 THEN status ELSE ? END, "
                        "terminal = MAX(terminal, ?), side = COALESCE(side, ?) "
                        "WHERE client_order_id = ?",
                        (
                            str(Decimal(row[0]) + event.qty),
                            str(Decimal(row[1]) + event.qty * event.price),
                            "filled" if done else "partially_filled",
                            int(done),
                            event.side.value,
                            cid,
                        ),
                    )
                case OrderCanceled() | OrderRejected():
                    status = "canceled" if isinstance(event, OrderCanceled) else "rejected"
                    db.execute(
                        "UPDATE orders SET status = CASE WHEN status = 'filled' THEN status "
                        "ELSE ? END, terminal = 1 WHERE client_order_id = ?",
                        (status, cid),
                    )
            db.execute(_SET_STATE, ("last_event_ts", str(event.ts)))
        self._commit_bars()
        return True

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
            db.execute(_INSERT_INPUT, (segment, "control", ts, _dumps(payload)))
            if orders or action == "flatten":
                self._decision(
                    db=db, segment=segment, slice_ts=ts, kind="flatten", targets=None, orders=orders
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
            db.execute(_SET_STATE, (name, _dumps({"on": on, "reason": reason, "ts": ts})))
            db.execute(
                "INSERT INTO switch (name, on_, reason, ts) VALUES (?, ?, ?, ?)",
                (name, int(on), reason, ts),
            )

    def difference(self, kind: str, detail: dict[str, Any], ts: int) -> None:
        """Record a reconciliation finding (what differed between the journal and the broker)."""
        with self._write(f"difference {kind}") as db:
            db.execute(
                "INSERT INTO difference (segment, kind, detail, ts) VALUES (?, ?, ?, ?)",
                (self.segment, kind, _dumps(detail), ts),
            )

    def flush(self) -> None:
        """Write the buffered bars now (close() does it too)."""
        if self._bars:
            with self._write("bars") as db:
                self._flush(db)
            self._commit_bars()

    def checkpoint(self) -> None:
        """Move the WAL into the database file (PASSIVE: never waits for readers).

        Cheap to call when there is little to move; the daemon calls it when idle (after a
        slice's orders are out), so the hot path rarely pays for a sync.
        """
        if self.read_only or self._closed:
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
            if not self.read_only and self._bars and self.segment is not None:
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

    # -- reading -------------------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise JournalError(f"journal {self.path}: cannot read: {e}") from None

    def _switch(self, name: str) -> tuple[bool, str | None]:
        rows = self._query("SELECT value FROM state WHERE key = ?", (name,))
        if not rows:
            return (False, None)
        data = orjson.loads(rows[0][0])
        return (bool(data["on"]), data["reason"])

    def state(self) -> JournalState:
        """What a restart restores: the switches, the last slice, the order and fill books."""
        values = dict(self._query("SELECT key, value FROM state"))
        first = self._query("SELECT ledger FROM segment ORDER BY id LIMIT 1")
        fills = [
            decode_event(orjson.loads(p))
            for (p,) in self._query("SELECT payload FROM fill ORDER BY seq")
        ]
        orders = self._orders(open_only=False)
        (segments,) = self._query("SELECT count(*) FROM segment")[0]
        (differences,) = self._query("SELECT count(*) FROM difference")[0]
        return JournalState(
            last_slice_ts=int(values["last_slice_ts"]) if "last_slice_ts" in values else None,
            kill_switch=self._switch("kill_switch"),
            halted=self._switch("halted"),
            baseline=LedgerSnapshot.from_json(orjson.loads(first[0][0])) if first else None,
            fills=fills,
            orders=orders,
            last_event_ts=int(values["last_event_ts"]) if "last_event_ts" in values else None,
            segments=segments,
            differences=differences,
        )

    def _orders(self, *, open_only: bool) -> list[OrderRecord]:
        return [
            OrderRecord(
                client_order_id=r[0],
                symbol=r[1],
                side=None if r[2] is None else OrderSide(r[2]),
                qty=None if r[3] is None else Decimal(r[3]),
                order_type=None if r[4] is None else OrderType(r[4]),
                limit_price=None if r[5] is None else Decimal(r[5]),
                slice_ts=r[6],
                ts=r[7],
                status=r[8],
                broker_order_id=r[9],
                filled_qty=Decimal(r[10]),
                filled_notional=Decimal(r[11]),
                terminal=bool(r[12]),
            )
            for r in self._query(_SELECT_OPEN_ORDERS if open_only else _SELECT_ORDERS)
        ]

    def segments(self) -> list[Segment]:
        """Every segment, oldest first."""
        return [
            Segment(
                id=r[0],
                mode=r[1],
                digest=r[2],
                config=orjson.loads(r[3]),
                files=orjson.loads(r[4]),
                ledger=LedgerSnapshot.from_json(orjson.loads(r[5])),
                kill_switch=(bool(r[6]), r[7]),
                halted=(bool(r[8]), r[9]),
                open_orders=[_decode_order_record(o) for o in orjson.loads(r[10])],
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
                    decoded = decode_event(orjson.loads(payload))
                else:
                    decoded = orjson.loads(payload)
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
                targets=None if targets is None else Targets(**orjson.loads(targets)),
                orders=[decode_event(o) for o in orjson.loads(orders)],
            )
        return out


def _statements(script: str) -> list[str]:
    """A migration's statements (they hold no semicolons inside literals)."""
    return [s.strip() for s in script.split(";") if s.strip()]
