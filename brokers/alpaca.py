"""AlpacaBroker: the LiveBroker protocol over Alpaca's Trading REST API and trade-updates stream.

Guarantees (DESIGN.md, "Orders are idempotent"):
    - Submits never duplicate. A client order id is POSTed only by this adapter's one worker,
      in submission order, and only after reconciliation. When a POST's outcome is unknown
      (429, 5xx, timeout, lost connection) the order is looked up by its client order id and
      POSTed again (same id) only when Alpaca answers 404.
    - Fills are counted once. Per order, the cumulative filled quantity already reported is
      kept; the stream and reconciliation both only report what lies above it, so a fill seen
      by both paths counts once. Execution ids are Alpaca's on the stream and
      ``f"{broker_order_id}:{cum_qty}"`` from REST.
    - Every order this adapter learns of gets at most one OrderAccepted and exactly one
      terminal event (OrderFilled, OrderCanceled or OrderRejected), nothing after it.
    - After every (re)connect of the trade stream: open orders, orders submitted since the last
      event seen, every order still open by our books, positions and account are read back
      before any new order goes out (`ready`).
    - Across a restart (`restore`, before `start`): the journal's orders count as submitted
      (never POSTed again) and their fills start from what the journal booked, so the first
      reconciliation reports only fills beyond it. An intent Alpaca never received ends as
      OrderCanceled(reason="not sent before restart").

Health: `ready` is False from a trade-stream drop until the reconciliation after the reconnect
has finished (it stays False while REST failures keep that from finishing); `rest_ok` is False
from a transient REST failure (429, 5xx, timeout, connection) until the next call Alpaca
answers. A daemon is ready to trade when both are True.

What a daemon should log or count is reported as `BrokerNotice`s (`poll_notices`). A fatal
failure (keys refused, an unexpected error in one of the adapter's tasks) is raised by
`poll_events` once the events before it were handed out, and by `start`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from brokers.alpaca_rest import (
    AlpacaRejected,
    AlpacaRest,
    DuplicateClientOrderId,
    OrderNotFound,
    OrderSnapshot,
    TransientRestError,
    parse_order,
    parse_ts,
)
from brokers.base import (
    NOT_SENT_BEFORE_RESTART,
    AccountSnapshot,
    BrokerHealth,
    BrokerNotice,
    NoticeLevel,
    PositionSnapshot,
    Reconciliation,
    RestoredOrder,
)
from brokers.errors import BrokerError, TransientBrokerError
from brokers.orders import (
    CancelOrder,
    ExecutionEvent,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderSide,
    SubmitOrder,
)
from brokers.trade_stream import (
    StreamDown,
    StreamOddity,
    StreamSignal,
    StreamUp,
    TradeStream,
    TradeUpdate,
)
from feeds.bar import Bar
from feeds.errors import InvariantViolation

_ZERO = Decimal(0)
_PRICE_QUANTUM = Decimal("1e-9")
_SINCE_MARGIN_NS = 2_000_000_000  # `after` is exclusive and clocks differ: look a bit further
_TERMINAL_STATUSES = {"canceled", "expired", "rejected"}
# Events that change nothing the ledger needs (their state shows up in later events or REST).
_QUIET_EVENTS = {
    "pending_new",
    "pending_cancel",
    "pending_replace",
    "calculated",
    "stopped",
    "suspended",
    "held",
    "order_cancel_rejected",
    "order_replace_rejected",
    "restated",
}
_ORDER_EVENTS = {"new", "accepted", "fill", "partial_fill", "canceled", "expired", "rejected"}
_LOUD_EVENTS = {"replaced", "trade_bust", "trade_correct"}

_T = TypeVar("_T")


class _Order:
    """What the adapter knows of one order, keyed by client order id (unique per account)."""

    __slots__ = (
        "accepted",
        "broker_order_id",
        "cid",
        "cum_notional",
        "cum_qty",
        "ours",
        "qty",
        "side",
        "symbol",
        "terminal",
        "tif",
    )

    def __init__(self, cid: str, symbol: str, side: OrderSide, *, ours: bool) -> None:
        self.cid = cid
        self.symbol = symbol
        self.side = side
        self.ours = ours
        self.broker_order_id: str | None = None
        self.qty: Decimal | None = None
        self.tif = ""
        self.accepted = False
        self.terminal = False
        self.cum_qty = _ZERO
        self.cum_notional = _ZERO


@dataclass(frozen=True, slots=True, kw_only=True)
class _Execution:
    """The execution details a stream fill carries."""

    execution_id: str
    price: Decimal | None
    qty: Decimal | None
    position_qty: Decimal | None


class AlpacaBroker:
    """The `brokers.base.LiveBroker` protocol against Alpaca. `submit`/`cancel` hand over; a
    worker task sends. Track mode wraps it in `brokers.read_only.ReadOnlyBroker`.

    Args:
        rest: the REST client (the broker closes it in `close`).
        stream_url: the trade-updates websocket, e.g. ``wss://paper-api.alpaca.markets/stream``.
        submit_attempts: POSTs of one order whose outcome stayed unknown before it is given up
            as OrderRejected("not sent: ...") (each one followed by a lookup).
        backoff_min_s, backoff_max_s: the retry delay, doubling with equal jitter; a 429's
            reset time is honoured.
        sleep, rng, now_ns: injected for tests (every wait of the adapter uses `sleep`).
    """

    def __init__(
        self,
        *,
        rest: AlpacaRest,
        stream_url: str,
        key: str,
        secret: str,
        submit_attempts: int = 6,
        backoff_min_s: float = 0.5,
        backoff_max_s: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        if submit_attempts < 1:
            raise ValueError("submit_attempts must be at least 1")
        self._rest = rest
        self._submit_attempts = submit_attempts
        self._backoff_min_s = backoff_min_s
        self._backoff_max_s = backoff_max_s
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._now_ns = now_ns
        self._stream = TradeStream(
            url=stream_url,
            key=key,
            secret=secret,
            on_signal=self._on_signal,
            backoff_min_s=max(1.0, backoff_min_s),
            backoff_max_s=backoff_max_s,
            sleep=sleep,
            rng=self._rng,
        )
        self._orders: dict[str, _Order] = {}
        self._submitted: set[str] = set()
        # Restored orders the journal never saw acknowledged: looked up at reconciliation
        # until Alpaca says whether the POST landed.
        self._unacked_restored: set[str] = set()
        self._rest_ok = True
        self._rest_failures = 0
        self._recovered = 0  # fill events emitted by the reconciliation under way
        self._queue: deque[SubmitOrder | CancelOrder] = deque()
        self._work = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._ready = asyncio.Event()
        self._reconcile_wanted = asyncio.Event()
        self._failed = asyncio.Event()
        self._fatal: BaseException | None = None
        self._generation = 0
        self._last_seen_ns: int | None = None
        self._warned_events: set[str] = set()
        self._events: list[ExecutionEvent] = []
        self._notices: list[BrokerNotice] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight = 0
        # Set when there are events or notices to poll, or when the last in-flight submit ended.
        self.events_ready = asyncio.Event()
        self.reconciliations = 0
        self.last_reconcile: Reconciliation | None = None
        self._positions: dict[str, PositionSnapshot] = {}
        self._account: AccountSnapshot | None = None

    # -- public surface -----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """The trade stream is up and reconciliation finished since its last connect.

        False from a stream drop until the reconciliation after the reconnect completes, however
        long REST failures keep it from completing. It does not drop on a REST failure while the
        stream stays up (see `rest_ok`)."""
        return self._ready.is_set()

    @property
    def rest_ok(self) -> bool:
        """False after a transient failure (429, 5xx, timeout, connection error) of any REST
        call, True again once Alpaca answers a call (a refusal or a 404 is an answer)."""
        return self._rest_ok

    @property
    def stream_connected(self) -> bool:
        return self._stream.connected

    @property
    def in_flight(self) -> int:
        """Submits handed over whose outcome (accepted or rejected) is not known yet."""
        return self._in_flight

    @property
    def fatal(self) -> BaseException | None:
        """The error that stopped the adapter, if one did."""
        return self._fatal

    @property
    def read_only(self) -> bool:
        """False: this adapter sends orders (track mode wraps it in `ReadOnlyBroker`)."""
        return False

    @property
    def shares_account(self) -> bool:
        """True: a person or another program may place orders on the same account."""
        return True

    @property
    def account(self) -> AccountSnapshot | None:
        """The account at the last reconciliation, its cash kept current from fills since;
        None before the first reconciliation."""
        return self._account

    @property
    def positions(self) -> dict[str, PositionSnapshot]:
        """Positions at the last reconciliation, kept current from fills since, by symbol."""
        return self._positions

    def health(self) -> BrokerHealth:
        """The trade stream, reconciliation since its last connect, REST, submits in flight."""
        return BrokerHealth(
            stream_connected=self._stream.connected,
            reconciled=self._ready.is_set(),
            rest_ok=self._rest_ok,
            in_flight=self._in_flight,
        )

    def restore(self, orders: Sequence[RestoredOrder]) -> None:
        """Take over the orders a journal knows of, after a restart; call before `start`.

        Their client order ids count as submitted (`submit` of one sends nothing). Fills are
        reported only beyond the restored `filled_qty`. Each restored order that is not
        terminal is reconciled at `start` (by client order id, however old): its state at
        Alpaca is applied (OrderAccepted if the journal never saw the ack, fills beyond the
        journal's, its end); if Alpaca has no such order and the journal never saw an ack,
        the POST never landed: OrderCanceled(reason="not sent before restart").

        Raises:
            InvariantViolation: called after `start`, or a client order id given twice or
                already submitted.
        """
        if self._tasks:
            raise InvariantViolation("AlpacaBroker.restore must be called before start")
        for r in orders:
            cid = r.client_order_id
            if cid in self._orders or cid in self._submitted:
                raise InvariantViolation(f"restored order {cid} is known already")
            order = _Order(cid, r.symbol, r.side, ours=True)
            order.broker_order_id = r.broker_order_id
            order.qty = r.qty
            order.cum_qty = r.filled_qty
            order.cum_notional = r.filled_notional
            # Booked fills imply Alpaca had the order: no second OrderAccepted for it.
            order.accepted = r.broker_order_id is not None or r.filled_qty > 0
            order.terminal = r.terminal or r.filled_qty >= r.qty
            self._orders[cid] = order
            self._submitted.add(cid)
            if not order.terminal and not order.accepted:
                self._unacked_restored.add(cid)

    async def start(self, *, since_ns: int | None = None) -> None:
        """Connect the trade stream and reconcile; returns once `ready`.

        Args:
            since_ns: also recover fills of orders submitted after this time (e.g. the last
                slice a restarted daemon journaled); by default only open orders are read.

        Raises:
            BrokerError: the keys were refused, or another fatal failure.
        """
        if self._tasks:
            raise InvariantViolation("AlpacaBroker.start called twice")
        self._last_seen_ns = since_ns
        for name, coro in (
            ("alpaca-trade-stream", self._stream.run()),
            ("alpaca-reconcile", self._reconcile_loop()),
            ("alpaca-orders", self._worker()),
        ):
            self._tasks.append(asyncio.create_task(self._guard(name, coro), name=name))
        ready = asyncio.create_task(self._ready.wait())
        failed = asyncio.create_task(self._failed.wait())
        try:
            await asyncio.wait({ready, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            failed.cancel()
        if self._fatal is not None:
            raise self._fatal

    def submit(self, command: SubmitOrder) -> None:
        """Hand over one order; a client order id seen before is ignored (a notice)."""
        cid = command.client_order_id
        if cid in self._submitted or cid in self._orders:
            self._notice("warning", "duplicate_submit_ignored", client_order_id=cid)
            return
        self._submitted.add(cid)
        self._orders[cid] = _Order(cid, command.symbol, command.side, ours=True)
        self._enqueue(command)
        self._in_flight += 1
        self._idle.clear()

    def cancel(self, command: CancelOrder) -> None:
        """Hand over one cancel; the OrderCanceled comes from Alpaca's answer (stream or REST)."""
        self._enqueue(command)

    def poll_events(self) -> list[ExecutionEvent]:
        """Events since the last call, in order. Raises the fatal error once they are drained."""
        events, self._events = self._events, []
        self.events_ready.clear()
        if not events and self._fatal is not None:
            raise self._fatal
        return events

    def poll_notices(self) -> list[BrokerNotice]:
        """Notices since the last call, in order."""
        notices, self._notices = self._notices, []
        return notices

    async def drain(self, timeout_s: float) -> bool:
        """Wait until no submit is in flight; False if `timeout_s` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def on_bar(self, bar: Bar) -> None:
        """Nothing: Alpaca fills against its own market."""

    async def cancel_open(self, ours: Callable[[str], bool]) -> list[str]:
        """Cancel now (not queued) every open order whose client order id `ours` accepts.

        Lists the open orders (GET /v2/orders) and DELETEs each accepted one, every request
        within the REST limiter. An order Alpaca no longer lets cancel (404, 422: it filled or
        is being canceled) is skipped with a notice. Returns the ids whose cancel Alpaca
        accepted; their OrderCanceled events follow from the stream (or the next
        reconciliation).

        Raises:
            TransientBrokerError: a request's outcome is unknown (the rest are not tried).
        """
        cancelled: list[str] = []
        for snap in await self._call(self._rest.orders(status="open")):
            cid = snap.client_order_id
            if not ours(cid):
                continue
            try:
                await self._call(self._rest.cancel_order(snap.broker_order_id))
            except (OrderNotFound, AlpacaRejected) as e:
                self._notice("warning", "cancel_refused", client_order_id=cid, error=str(e))
                continue
            cancelled.append(cid)
        return cancelled

    async def close(self) -> None:
        """Stop the adapter's tasks, close the stream and the REST client."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._rest.close()

    # -- tasks --------------------------------------------------------------------------------

    async def _guard(self, name: str, coro: Awaitable[None]) -> None:
        """Run one of the adapter's tasks; an error stops the adapter loudly (never silently)."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._fatal = e
            self._notice("error", "broker_failed", task=name, error=str(e))
            self._ready.clear()
            self._failed.set()
            self.events_ready.set()

    async def _worker(self) -> None:
        while True:
            while not self._queue:
                self._work.clear()
                await self._work.wait()
            command = self._queue[0]
            if isinstance(command, SubmitOrder):
                await self._send(command)
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.set()
                    self.events_ready.set()  # the caller may be waiting for a quiet broker
            else:
                await self._cancel(command)
            self._queue.popleft()

    async def _send(self, cmd: SubmitOrder) -> None:
        cid = cmd.client_order_id
        attempt = 0
        while True:
            attempt += 1
            await self._ready.wait()
            try:
                snap = await self._call(self._rest.submit_order(cmd))
            except DuplicateClientOrderId:
                self._notice("info", "submit_duplicate_id_lookup", client_order_id=cid)
                found = await self._lookup(cid)
                if found is None:
                    self._reject(cmd, "client_order_id already used, yet Alpaca has no such order")
                else:
                    self._apply(found)
                return
            except AlpacaRejected as e:
                self._reject(cmd, e.message)
                return
            except TransientBrokerError as e:
                self._notice("warning", "submit_outcome_unknown", client_order_id=cid, error=str(e))
                found = await self._lookup(cid)
                if found is not None:
                    self._apply(found)
                    return
                if attempt >= self._submit_attempts:
                    self._reject(cmd, f"not sent: {e}")
                    return
                await self._sleep(self._delay(attempt, e))
                continue
            self._apply(snap)
            return

    async def _cancel(self, cmd: CancelOrder) -> None:
        cid = cmd.client_order_id
        order = self._orders.get(cid)
        if order is None:
            self._notice("warning", "cancel_unknown_order", client_order_id=cid)
            return
        attempt = 0
        while not order.terminal:
            attempt += 1
            await self._ready.wait()
            try:
                if order.broker_order_id is None:
                    found = await self._call(self._rest.order_by_client_id(cid))
                    if found is None:
                        self._notice("warning", "cancel_unknown_order", client_order_id=cid)
                        return
                    self._apply(found)
                    continue
                await self._call(self._rest.cancel_order(order.broker_order_id))
                return
            except (OrderNotFound, AlpacaRejected) as e:
                # 422: no longer cancelable (it filled or is being canceled): the stream or
                # the next reconciliation tells how it ended.
                self._notice("warning", "cancel_refused", client_order_id=cid, error=str(e))
                return
            except TransientBrokerError as e:
                if attempt >= self._submit_attempts:
                    self._notice("error", "cancel_not_sent", client_order_id=cid, error=str(e))
                    return
                await self._sleep(self._delay(attempt, e))
        self._notice("info", "cancel_after_terminal", client_order_id=cid)

    async def _lookup(self, cid: str) -> OrderSnapshot | None:
        """GET by client order id, retried while the answer is transient (never given up: an
        unknown outcome must not become a second order)."""
        attempt = 0
        while True:
            try:
                return await self._call(self._rest.order_by_client_id(cid))
            except TransientBrokerError as e:
                attempt += 1
                self._notice("warning", "lookup_failed", client_order_id=cid, error=str(e))
                await self._sleep(self._delay(attempt, e))

    async def _reconcile_loop(self) -> None:
        while True:
            await self._reconcile_wanted.wait()
            self._reconcile_wanted.clear()
            generation = self._generation
            attempt = 0
            while True:
                try:
                    await self._reconcile()
                    break
                except TransientBrokerError as e:
                    attempt += 1
                    self._notice("warning", "reconcile_retry", error=str(e))
                    await self._sleep(self._delay(attempt, e))
            if (
                generation == self._generation
                and self._stream.connected
                and not self._reconcile_wanted.is_set()
            ):
                self._ready.set()
                self._notice("info", "broker_ready", reconciliations=self.reconciliations)

    async def _reconcile(self) -> None:
        if self._last_seen_ns is None:
            self._last_seen_ns = (await self._call(self._rest.clock())).ts
        since = self._last_seen_ns - _SINCE_MARGIN_NS
        open_orders = await self._call(self._rest.orders(status="open"))
        recent = await self._call(self._rest.orders(status="all", after_ns=since))
        listed = {o.client_order_id for o in open_orders} | {o.client_order_id for o in recent}
        # Fills emitted by an attempt that failed later still count for the one that finishes.
        for snap in (*recent, *open_orders):
            self._recovered += self._apply(snap)
        self._unacked_restored -= listed  # Alpaca has them: `_apply` accepted them above
        # Orders open by our books but in neither list (filled or canceled while the stream
        # was down or the daemon was not running, submitted before `since`): ask for each.
        for order in list(self._orders.values()):
            restored = order.cid in self._unacked_restored and not order.accepted
            if order.terminal or order.cid in listed or not (order.accepted or restored):
                continue
            found = await self._call(self._rest.order_by_client_id(order.cid))
            self._unacked_restored.discard(order.cid)
            if found is not None:
                self._recovered += self._apply(found)
            elif restored:
                # A 404 is final: the crash came before the POST reached Alpaca (an id once
                # used stays findable), and it never will now: only this process sends it.
                order.terminal = True
                self._emit(
                    OrderCanceled(
                        client_order_id=order.cid,
                        symbol=order.symbol,
                        ts=self._now_ns(),
                        reason=NOT_SENT_BEFORE_RESTART,
                    )
                )
                self._notice("warning", "restored_order_not_sent", client_order_id=order.cid)
            else:
                self._notice("error", "order_vanished", client_order_id=order.cid)
        positions = await self._call(self._rest.positions())
        account = await self._call(self._rest.account())
        fills, self._recovered = self._recovered, 0
        differences = self._differences(positions, account) if self.reconciliations else []
        self._positions = {p.symbol: p for p in positions}
        self._account = account
        self.reconciliations += 1
        self.last_reconcile = Reconciliation(
            ts=self._now_ns(),
            open_orders=len(open_orders),
            fills_recovered=fills,
            positions={p.symbol: p.qty for p in positions},
            cash=account.cash,
            differences=differences,
        )
        self._notice(
            "warning" if differences else "info",
            "reconciled",
            open_orders=len(open_orders),
            fills_recovered=fills,
            positions=len(positions),
            cash=str(account.cash),
            differences=differences,
        )
        if account.trading_blocked or account.status.upper() != "ACTIVE":
            self._notice("error", "account_not_tradable", status=account.status, blocked=True)

    def _differences(
        self, positions: list[PositionSnapshot], account: AccountSnapshot
    ) -> list[str]:
        out = []
        theirs = {p.symbol: p.qty for p in positions}
        ours = {s: p.qty for s, p in self._positions.items()}
        for symbol in sorted(theirs.keys() | ours.keys()):
            a, b = ours.get(symbol, _ZERO), theirs.get(symbol, _ZERO)
            if a != b:
                out.append(f"{symbol}: tracked {a}, Alpaca {b}")
        if self._account is not None and self._account.cash != account.cash:
            out.append(f"cash: tracked {self._account.cash}, Alpaca {account.cash}")
        return out

    # -- the stream ---------------------------------------------------------------------------

    def _on_signal(self, signal: StreamSignal) -> None:
        match signal:
            case TradeUpdate(data=data):
                self._on_update(data)
            case StreamUp(connects=n):
                self._generation += 1
                self._notice("info", "trade_stream_up", connects=n)
                self._reconcile_wanted.set()
            case StreamDown(reason=reason, retry_in_s=delay, was_up=was_up):
                self._ready.clear()
                self._notice(
                    "warning" if was_up else "info",
                    "trade_stream_down" if was_up else "trade_stream_retry",
                    reason=reason,
                    retry_in_s=round(delay, 3),
                )
            case StreamOddity(what=what, sample=sample):
                self._notice("warning", "trade_stream_oddity", what=what, sample=sample)

    def _on_update(self, data: dict[str, Any]) -> None:
        event = str(data.get("event", ""))
        raw_order = data.get("order")
        if event in _ORDER_EVENTS or (event == "done_for_day" and isinstance(raw_order, dict)):
            if not isinstance(raw_order, dict):
                self._notice("warning", "trade_update_without_order", trade_event=event)
                return
            try:
                snap = parse_order(raw_order)
                ts = _opt_ts(data.get("timestamp"))
                execution = None
                if event in ("fill", "partial_fill"):
                    execution = _Execution(
                        execution_id=str(data.get("execution_id") or ""),
                        price=_opt_dec(data.get("price")),
                        qty=_opt_dec(data.get("qty")),
                        position_qty=_opt_dec(data.get("position_qty")),
                    )
            except (KeyError, ValueError, ArithmeticError) as e:
                self._notice("error", "trade_update_unreadable", trade_event=event, error=str(e))
                return
            self._apply(snap, ts=ts, execution=execution)
        elif event in _QUIET_EVENTS:
            self._notice("debug", "trade_update_ignored", trade_event=event)
        elif event in _LOUD_EVENTS:
            self._notice("warning", "trade_update_unhandled", trade_event=event, data=data)
        elif event not in self._warned_events:
            self._warned_events.add(event)
            self._notice(
                "warning", "trade_update_unknown", trade_event=event, keys=sorted(data.keys())
            )

    # -- the one state machine for stream and REST --------------------------------------------

    def _apply(
        self, snap: OrderSnapshot, *, ts: int | None = None, execution: _Execution | None = None
    ) -> int:
        """Advance one order to what `snap` says; returns how many fill events it emitted."""
        ts = ts or snap.updated_at_ns or self._now_ns()
        self._last_seen_ns = max(self._last_seen_ns or 0, ts)
        order = self._orders.get(snap.client_order_id)
        if order is None:
            order = _Order(snap.client_order_id, snap.symbol, snap.side, ours=False)
            self._orders[order.cid] = order
            self._notice("info", "foreign_order", client_order_id=order.cid, symbol=order.symbol)
        order.broker_order_id = snap.broker_order_id
        order.qty = snap.qty
        order.tif = snap.time_in_force
        if order.terminal:
            if snap.filled_qty > order.cum_qty:
                self._notice(
                    "error",
                    "fill_after_terminal",
                    client_order_id=order.cid,
                    filled_qty=str(snap.filled_qty),
                )
            return 0
        status = snap.status
        if not order.accepted and status != "rejected":
            order.accepted = True
            self._emit(
                OrderAccepted(
                    client_order_id=order.cid,
                    symbol=order.symbol,
                    ts=snap.created_at_ns or ts,
                    broker_order_id=snap.broker_order_id,
                )
            )
        fills = 0
        if snap.filled_qty > order.cum_qty:
            fills = 1
            if self._fill(order, snap, ts, execution):
                return fills
        if status in _TERMINAL_STATUSES or (status == "done_for_day" and order.tif == "day"):
            order.terminal = True
            if status == "rejected":
                self._emit(
                    OrderRejected(
                        client_order_id=order.cid,
                        symbol=order.symbol,
                        ts=ts,
                        reason="rejected by Alpaca",
                    )
                )
            else:
                self._emit(
                    OrderCanceled(
                        client_order_id=order.cid, symbol=order.symbol, ts=ts, reason=status
                    )
                )
        elif status == "filled":
            self._notice("error", "filled_without_quantity", client_order_id=order.cid)
        return fills

    def _fill(
        self, order: _Order, snap: OrderSnapshot, ts: int, execution: _Execution | None
    ) -> bool:
        """Emit the fill above what was reported; True if it was the order's last."""
        delta = snap.filled_qty - order.cum_qty
        if execution is not None and execution.price is not None and execution.qty == delta:
            price = execution.price
        elif snap.filled_avg_price:
            price = (snap.filled_avg_price * snap.filled_qty - order.cum_notional) / delta
            price = price.quantize(_PRICE_QUANTUM)
        elif execution is not None and execution.price is not None:
            price = execution.price
        else:
            raise InvariantViolation(
                f"order {order.cid} filled {snap.filled_qty} without any price from Alpaca"
            )
        if execution is not None and execution.execution_id:
            execution_id = execution.execution_id
        else:
            execution_id = f"{snap.broker_order_id}:{snap.filled_qty}"
        order.cum_qty = snap.filled_qty
        order.cum_notional += delta * price
        done = snap.status == "filled" or (snap.qty is not None and snap.filled_qty >= snap.qty)
        if done:
            order.terminal = True
            self._emit(
                OrderFilled(
                    client_order_id=order.cid,
                    symbol=order.symbol,
                    side=order.side,
                    qty=delta,
                    price=price,
                    commission=_ZERO,
                    ts=ts,
                    execution_id=execution_id,
                )
            )
        else:
            leaves = snap.qty - snap.filled_qty if snap.qty is not None else _ZERO
            self._emit(
                OrderPartiallyFilled(
                    client_order_id=order.cid,
                    symbol=order.symbol,
                    side=order.side,
                    qty=delta,
                    price=price,
                    commission=_ZERO,
                    ts=ts,
                    execution_id=execution_id,
                    leaves_qty=leaves,
                )
            )
        self._book(order, delta, price, None if execution is None else execution.position_qty)
        return done

    def _book(
        self, order: _Order, delta: Decimal, price: Decimal, position_qty: Decimal | None
    ) -> None:
        """Keep positions and cash current from a fill until the next reconciliation."""
        signed = delta if order.side is OrderSide.BUY else -delta
        held = self._positions.get(order.symbol)
        old_qty = held.qty if held is not None else _ZERO
        new_qty = position_qty if position_qty is not None else old_qty + signed
        if new_qty == 0:
            self._positions.pop(order.symbol, None)
        else:
            if held is None or old_qty == 0 or (old_qty > 0) != (new_qty > 0):
                avg = price
            elif abs(new_qty) > abs(old_qty):
                avg = (old_qty * held.avg_entry_price + signed * price) / new_qty
            else:
                avg = held.avg_entry_price
            self._positions[order.symbol] = PositionSnapshot(
                symbol=order.symbol,
                qty=new_qty,
                avg_entry_price=avg,
                market_value=new_qty * price,
                current_price=price,
            )
        if self._account is not None:
            a = self._account
            self._account = dataclasses.replace(
                a, cash=a.cash - signed * price, buying_power=a.buying_power - signed * price
            )

    # -- helpers ------------------------------------------------------------------------------

    async def _call(self, call: Awaitable[_T]) -> _T:
        """Await one REST call and keep `rest_ok` current (every call of the adapter goes
        through here)."""
        try:
            result = await call
        except TransientBrokerError as e:
            self._rest_failures += 1
            if self._rest_ok:
                self._rest_ok = False
                self._notice("warning", "rest_down", error=str(e))
            raise
        except BrokerError as e:
            # Refused before sending (status 0) says nothing of Alpaca's health.
            if not (isinstance(e, AlpacaRejected) and e.status == 0):
                self._rest_answered()
            raise
        self._rest_answered()
        return result

    def _rest_answered(self) -> None:
        if not self._rest_ok:
            self._rest_ok = True
            self._notice("info", "rest_up", failures=self._rest_failures)
            self._rest_failures = 0

    def _reject(self, cmd: SubmitOrder, reason: str) -> None:
        order = self._orders[cmd.client_order_id]
        if order.terminal:
            return
        order.terminal = True
        self._emit(
            OrderRejected(
                client_order_id=cmd.client_order_id,
                symbol=cmd.symbol,
                ts=self._now_ns(),
                reason=reason,
            )
        )

    def _delay(self, attempt: int, error: BaseException | None = None) -> float:
        ceiling = min(self._backoff_max_s, self._backoff_min_s * 2 ** (attempt - 1))
        delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        if isinstance(error, TransientRestError) and error.retry_after_s is not None:
            delay = max(delay, error.retry_after_s + self._rng.uniform(0, 1))
        return float(delay)

    def _enqueue(self, command: SubmitOrder | CancelOrder) -> None:
        self._queue.append(command)
        self._work.set()

    def _emit(self, event: ExecutionEvent) -> None:
        self._events.append(event)
        self.events_ready.set()

    def _notice(self, level: NoticeLevel, event: str, **fields: Any) -> None:
        self._notices.append(BrokerNotice(level=level, event=event, fields=fields))
        self.events_ready.set()  # a notice is worth a wake-up too: the caller logs it now


def _opt_dec(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    return Decimal(str(value))


def _opt_ts(value: Any) -> int | None:
    return parse_ts(value) if isinstance(value, str) and value else None
