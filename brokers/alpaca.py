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

Its parts: `alpaca_rest` (the REST calls), `trade_stream` (the websocket), `alpaca_tracker`
(the one state machine for orders, positions and cash), `alpaca_reconciler`, `alpaca_sender`
(the worker that POSTs and DELETEs), `alpaca_retry` (backoff, REST health), `outbox`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence

from brokers.alpaca_reconciler import Reconciler
from brokers.alpaca_rest import AlpacaRest
from brokers.alpaca_retry import Backoff, RestWatch
from brokers.alpaca_sender import AgeLimit, OrderSender
from brokers.alpaca_tracker import OrderTracker
from brokers.base import (
    AccountSnapshot,
    BrokerHealth,
    BrokerNotice,
    PositionSnapshot,
    Reconciliation,
    RestoredOrder,
    wait_first,
)
from brokers.errors import TransientBrokerError
from brokers.orders import CancelOrder, ExecutionEvent, SubmitOrder
from brokers.outbox import Outbox
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
        poll_s: while the trade stream is down, our open orders are read through REST this
            often (one request a poll, within the limiter), so fills are booked meanwhile.
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
        poll_s: float = 2.0,
    ) -> None:
        if submit_attempts < 1:
            raise ValueError("submit_attempts must be at least 1")
        self._rest = rest
        self._sleep = sleep
        rng = rng or random.Random()
        self._stream = TradeStream(
            url=stream_url,
            key=key,
            secret=secret,
            on_signal=self._on_signal,
            backoff_min_s=max(1.0, backoff_min_s),
            backoff_max_s=backoff_max_s,
            sleep=sleep,
            rng=rng,
        )
        self._outbox = Outbox()
        self._watch = RestWatch(self._outbox)
        self._backoff = Backoff(min_s=backoff_min_s, max_s=backoff_max_s, rng=rng)
        self._tracker = OrderTracker(self._outbox, now_ns)
        self._reconciler = Reconciler(
            rest=rest, watch=self._watch, tracker=self._tracker, outbox=self._outbox, now_ns=now_ns
        )
        self._ready = asyncio.Event()
        self._sender = OrderSender(
            rest=rest,
            watch=self._watch,
            tracker=self._tracker,
            outbox=self._outbox,
            ready=self._ready,
            backoff=self._backoff,
            attempts=submit_attempts,
            sleep=sleep,
        )
        self._poll_s = poll_s
        self._stream_down = asyncio.Event()
        self._reconcile_wanted = asyncio.Event()
        self._failed = asyncio.Event()
        self._fatal: BaseException | None = None
        self._generation = 0
        self._tasks: list[asyncio.Task[None]] = []
        # Set when there are events or notices to poll, or when the last in-flight submit ended.
        self.events_ready = self._outbox.ready
        self.reconciliations = 0
        self.last_reconcile: Reconciliation | None = None

    # -- state --------------------------------------------------------------------------------

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
        return self._watch.ok

    @property
    def stream_connected(self) -> bool:
        """The trade-updates websocket is up (authenticated and listening)."""
        return self._stream.connected

    @property
    def in_flight(self) -> int:
        """Submits handed over whose outcome (accepted or rejected) is not known yet."""
        return self._sender.in_flight

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
        return self._tracker.account

    @property
    def positions(self) -> dict[str, PositionSnapshot]:
        """Positions at the last reconciliation, kept current from fills since, by symbol."""
        return self._tracker.positions

    def health(self) -> BrokerHealth:
        """The trade stream, reconciliation since its last connect, REST, submits in flight."""
        return BrokerHealth(
            stream_connected=self._stream.connected,
            reconciled=self._ready.is_set(),
            rest_ok=self._watch.ok,
            in_flight=self._sender.in_flight,
            sent=self._sender.sent,
            unsent=self._sender.unsent,
        )

    # -- lifecycle ----------------------------------------------------------------------------
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
            self._tracker.restore(r)

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
        self._tracker.last_seen_ns = since_ns
        for name, coro in (
            ("alpaca-trade-stream", self._stream.run()),
            ("alpaca-reconcile", self._reconcile_loop()),
            ("alpaca-orders", self._sender.run()),
            ("alpaca-poll", self._poll_loop()),
        ):
            self._tasks.append(asyncio.create_task(self._guard(name, coro), name=name))
        await wait_first(self._ready, self._failed)
        if self._fatal is not None:
            raise self._fatal

    async def close(self) -> None:
        """Stop the adapter's tasks, close the stream and the REST client."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._rest.close()

    # -- orders and events --------------------------------------------------------------------

    def submit(self, command: SubmitOrder) -> None:
        """Hand over one order; a client order id seen before is ignored (a notice)."""
        if not self._tracker.submitted(command):
            self._outbox.notice(
                "warning", "duplicate_submit_ignored", client_order_id=command.client_order_id
            )
            return
        self._sender.submit(command)

    def cancel(self, command: CancelOrder) -> None:
        """Hand over one cancel; the OrderCanceled comes from Alpaca's answer (stream or REST)."""
        self._sender.cancel(command)

    def poll_events(self) -> list[ExecutionEvent]:
        """Events since the last call, in order. Raises the fatal error once they are drained."""
        events = self._outbox.take_events()
        if not events and self._fatal is not None:
            raise self._fatal
        return events

    def poll_notices(self) -> list[BrokerNotice]:
        """Notices since the last call, in order."""
        return self._outbox.take_notices()

    async def drain(self, timeout_s: float) -> bool:
        """Wait until no submit is in flight; False if `timeout_s` passed first."""
        return await self._sender.drain(timeout_s)

    def on_bar(self, bar: Bar) -> None:
        """Alpaca fills against its own market: the price only sizes the queue's order."""
        self._sender.prices[bar.symbol] = bar.close

    def limit_age(self, max_age_s: float, market_now: Callable[[], int]) -> None:
        """Drop, when the limiter lets it through, an order decided more than `max_age_s`
        before `market_now()`: OrderCanceled(NOT_SENT_STALE) and an `order_dropped_stale`
        notice with its age; it is never POSTed."""
        self._sender.age_limit = AgeLimit(max_age_s, market_now)

    def withdraw_unsent(self, reason: str) -> int:
        """Take back every order handed over and not POSTed yet (each ends as
        OrderCanceled(`reason`)); how many."""
        return self._sender.withdraw(reason)

    async def settle(self) -> bool:
        """Reconcile once through REST if the trade stream is not up and reconciled (a stop
        while it is down must report what the account holds); True if it did.

        Raises:
            TransientBrokerError: REST did not answer.
        """
        if self._ready.is_set():
            return False
        found = await self._reconciler.run(first=self.reconciliations == 0)
        self.reconciliations += 1
        self.last_reconcile = found
        self.events_ready.set()
        return True

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
        return await self._sender.cancel_open(ours)

    # -- tasks --------------------------------------------------------------------------------

    async def _guard(self, name: str, coro: Awaitable[None]) -> None:
        """Run one of the adapter's tasks; an error stops the adapter loudly (never silently)."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._fatal = e
            self._outbox.notice("error", "broker_failed", task=name, error=str(e))
            self._ready.clear()
            self._failed.set()
            self.events_ready.set()

    async def _reconcile_loop(self) -> None:
        while True:
            await self._reconcile_wanted.wait()
            self._reconcile_wanted.clear()
            generation = self._generation
            attempt = 0
            while True:
                try:
                    found = await self._reconciler.run(first=self.reconciliations == 0)
                    break
                except TransientBrokerError as e:
                    attempt += 1
                    self._outbox.notice("warning", "reconcile_retry", error=str(e))
                    await self._sleep(self._backoff.delay(attempt, e))
            self.reconciliations += 1
            self.last_reconcile = found
            if (
                generation == self._generation
                and self._stream.connected
                and not self._reconcile_wanted.is_set()
            ):
                self._ready.set()
                self._outbox.notice("info", "broker_ready", reconciliations=self.reconciliations)

    async def _poll_loop(self) -> None:
        """While the trade stream is down, read our open orders through REST every `poll_s`
        (the stream has no replay: without this no fill is booked until it returns)."""
        while True:
            await self._stream_down.wait()
            await asyncio.sleep(self._poll_s)  # a drop that heals at once costs no request
            if not self._stream_down.is_set():
                continue
            try:
                fills = await self._reconciler.poll_open()
            except TransientBrokerError as e:
                self._outbox.notice("warning", "order_poll_failed", error=str(e))
            else:
                if fills:
                    self._outbox.notice("info", "fills_polled", fills=fills)

    def _on_signal(self, signal: StreamSignal) -> None:
        notice = self._outbox.notice
        match signal:
            case TradeUpdate(data=data):
                self._tracker.on_trade_update(data)
            case StreamUp(connects=n):
                self._stream_down.clear()
                self._generation += 1
                notice("info", "trade_stream_up", connects=n)
                self._reconcile_wanted.set()
            case StreamDown(reason=reason, retry_in_s=delay, was_up=was_up):
                self._ready.clear()
                self._stream_down.set()
                notice(
                    "warning" if was_up else "info",
                    "trade_stream_down" if was_up else "trade_stream_retry",
                    reason=reason,
                    retry_in_s=round(delay, 3),
                )
            case StreamOddity(what=what, sample=sample):
                notice("warning", "trade_stream_oddity", what=what, sample=sample)
