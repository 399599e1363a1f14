"""The Alpaca adapter's order sender: one worker that POSTs submits and DELETEs cancels once the
adapter is reconciled, and the queue of what the broker cannot take yet.

The queue holds at most one unsent submit per symbol (a second one for the same symbol
supersedes the first, which ends as OrderCanceled(NOT_SENT_SUPERSEDED) and is never sent).
Cancels go first; then reductions (a sell of a long, a buy of a short) before increases, each
the larger first (quantity times the last price known). An order whose decision is older than
the age limit when the limiter lets it through is dropped (OrderCanceled(NOT_SENT_STALE)), never
POSTed; `withdraw` takes back every order not sent yet.

A submit never duplicates: when a POST's outcome is unknown (429, 5xx, timeout, lost
connection) the order is looked up by its client order id, and POSTed again (same id) only
when Alpaca answers 404. After `attempts` POSTs whose outcome stayed unknown it is given up as
OrderRejected("not sent: ...").
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from decimal import Decimal

from brokers.alpaca_json import OrderSnapshot
from brokers.alpaca_rest import (
    AlpacaRejected,
    AlpacaRest,
    DuplicateClientOrderId,
    OrderNotFound,
    Unsent,
)
from brokers.alpaca_retry import Backoff, RestWatch
from brokers.alpaca_tracker import OrderTracker
from brokers.base import NOT_SENT_STALE, NOT_SENT_SUPERSEDED, wait_first
from brokers.errors import TransientBrokerError
from brokers.orders import CancelOrder, OrderCanceled, OrderSide, SubmitOrder
from brokers.outbox import Outbox

_ONE = Decimal(1)


class AgeLimit:
    """How old (market time) an order's decision may be when it is sent."""

    def __init__(self, max_age_s: float, market_now: Callable[[], int]) -> None:
        self.max_age_ns = int(max_age_s * 1e9)
        self.market_now = market_now

    def age_ns(self, command: SubmitOrder) -> int:
        return self.market_now() - command.ts


class OrderSender:
    """Submits and cancels, queued by `submit`/`cancel` and sent by the task running `run`.

    Args:
        ready: set while orders may be sent (reconciled since the stream's last connect);
            every POST and DELETE waits for it.
        attempts: tries of one submit (or cancel) whose outcome stayed unknown.
        sleep: awaited for every backoff.
    """

    def __init__(
        self,
        *,
        rest: AlpacaRest,
        watch: RestWatch,
        tracker: OrderTracker,
        outbox: Outbox,
        ready: asyncio.Event,
        backoff: Backoff,
        attempts: int,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._rest = rest
        self._watch = watch
        self._tracker = tracker
        self._outbox = outbox
        self._ready = ready
        self._backoff = backoff
        self._attempts = attempts
        self._sleep = sleep
        self._cancels: deque[CancelOrder] = deque()
        # One decision's orders per symbol at most: by client order id in the order queued,
        # and by symbol (what a later decision of the symbol supersedes).
        self._unsent: dict[str, SubmitOrder] = {}
        self._unsent_of: dict[str, list[SubmitOrder]] = {}
        self._current: SubmitOrder | None = None  # taken by the worker, maybe not POSTed yet
        self._committed = False  # the current one's POST went out (or may have)
        self._committed_once = False
        self._taken_back = asyncio.Event()  # the current one was withdrawn before its POST
        self._work = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.age_limit: AgeLimit | None = None
        self.prices: dict[str, float] = {}  # last price per symbol (for sizing the queue)
        self.in_flight = 0  # submits handed over whose outcome is not known yet
        self.sent = 0  # submits POSTed at least once
        self.not_sent: dict[str, int] = {}  # submits ended unsent, by reason

    @property
    def unsent(self) -> int:
        """Submits handed over and not POSTed yet."""
        waiting = self._withdrawable(self._current)
        return len(self._unsent) + (1 if waiting else 0)

    def submit(self, command: SubmitOrder) -> None:
        """Queue one submit (the caller checked its client order id is new).

        An unsent order of the same symbol decided earlier (a smaller `ts`) is superseded:
        ended as OrderCanceled(NOT_SENT_SUPERSEDED), never sent. The caller sizes the later
        order as the whole trade wanted (the daemon takes back what is unsent before it
        decides). Orders of one decision (the same `ts`) queue side by side.
        """
        symbol, ts = command.symbol, command.ts
        queued = self._unsent_of.get(symbol)
        if queued:
            for old in [o for o in queued if o.ts < ts]:
                self._dequeue(old)
                self._end_unsent(old, NOT_SENT_SUPERSEDED)
        current = self._current
        if current is not None and self._withdrawable(current, symbol) and current.ts < ts:
            self._take_back_current(NOT_SENT_SUPERSEDED)
        self._unsent[command.client_order_id] = command
        self._unsent_of.setdefault(symbol, []).append(command)
        self.in_flight += 1
        self._idle.clear()
        self._work.set()

    def cancel(self, command: CancelOrder) -> None:
        """Queue one cancel (an order still unsent is ended here, never sent)."""
        cid = command.client_order_id
        queued = self._unsent.get(cid)
        if queued is not None:
            self._dequeue(queued)
            self._end_unsent(queued, "canceled before it was sent")
            return
        current = self._current
        if self._withdrawable(current) and current is not None and current.client_order_id == cid:
            self._take_back_current("canceled before it was sent")
            return
        self._cancels.append(command)
        self._work.set()

    def withdraw(self, reason: str) -> int:
        """End every submit not POSTed yet as OrderCanceled(`reason`); how many."""
        queued = list(self._unsent.values())
        self._unsent, self._unsent_of = {}, {}
        for command in queued:
            self._end_unsent(command, reason)
        n = len(queued)
        if self._withdrawable(self._current):
            self._take_back_current(reason)
            n += 1
        return n

    async def drain(self, timeout_s: float) -> bool:
        """Wait until no submit is in flight; False if `timeout_s` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def cancel_open(self, ours: Callable[[str], bool]) -> list[str]:
        """Cancel now (not queued) every open order whose client order id `ours` accepts;
        the ids whose cancel Alpaca accepted. A refused cancel (404, 422) is a notice."""
        call = self._watch.call
        cancelled: list[str] = []
        for snap in await call(self._rest.orders(status="open")):
            cid = snap.client_order_id
            if not ours(cid):
                continue
            try:
                await call(self._rest.cancel_order(snap.broker_order_id))
            except (OrderNotFound, AlpacaRejected) as e:
                self._outbox.notice("warning", "cancel_refused", client_order_id=cid, error=str(e))
                continue
            cancelled.append(cid)
        return cancelled

    async def run(self) -> None:
        """Send what is queued (cancels first, then the best submit) until cancelled."""
        while True:
            while not (self._cancels or self._unsent):
                self._work.clear()
                await self._work.wait()
            if self._cancels:
                await self._cancel(self._cancels.popleft())
                continue
            command = self._next()
            self._dequeue(command)
            self._current, self._committed, self._committed_once = command, False, False
            self._taken_back.clear()
            try:
                await self._send(command)
            finally:
                self._current = None
            if not self._taken_back.is_set():  # a withdrawn one was counted out already
                self._one_done()

    # -- the queue ------------------------------------------------------------------------------

    def _dequeue(self, command: SubmitOrder) -> None:
        del self._unsent[command.client_order_id]
        same = self._unsent_of[command.symbol]
        same.remove(command)
        if not same:
            del self._unsent_of[command.symbol]

    def _next(self) -> SubmitOrder:
        """Reductions before increases, then the larger (quantity x last price) first."""
        positions = self._tracker.positions
        prices = self.prices

        def key(command: SubmitOrder) -> tuple[bool, Decimal]:
            symbol = command.symbol
            held = positions.get(symbol)
            qty = held.qty if held is not None else Decimal(0)
            reduces = (qty > 0 and command.side is OrderSide.SELL) or (
                qty < 0 and command.side is OrderSide.BUY
            )
            price = command.limit_price
            if price is None:
                last = prices.get(symbol)
                price = Decimal(repr(last)) if last is not None else _ONE
            return (not reduces, -command.qty * price)

        return min(self._unsent.values(), key=key)  # the first queued among equals

    def _withdrawable(self, current: SubmitOrder | None, symbol: str | None = None) -> bool:
        """The worker's order may still be taken back: not POSTed (nor maybe POSTed), not
        taken back already."""
        return (
            current is not None
            and (symbol is None or current.symbol == symbol)
            and not self._committed
            and not self._taken_back.is_set()
        )

    def _take_back_current(self, reason: str) -> None:
        current = self._current
        assert current is not None
        self._taken_back.set()
        self._end_unsent(current, reason)
        self._one_done()

    def _end_unsent(self, command: SubmitOrder, reason: str) -> None:
        """End a submit that never left: terminal in the tracker, an OrderCanceled out."""
        order = self._tracker.orders.get(command.client_order_id)
        if order is not None:
            order.terminal = True
        self.not_sent[reason] = self.not_sent.get(reason, 0) + 1
        self._outbox.emit(
            OrderCanceled(
                client_order_id=command.client_order_id,
                symbol=command.symbol,
                ts=command.ts,
                reason=reason,
            )
        )
        if self._current is not command:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()
                self._outbox.ready.set()

    def _one_done(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()
            self._outbox.ready.set()  # the caller may be waiting for a quiet broker

    def _gate(self) -> str | None:
        """Asked right before the POST: a reason not to send the current order now."""
        command = self._current
        if command is None or self._taken_back.is_set():
            return "withdrawn"
        limit = self.age_limit
        if limit is not None:
            age_ns = limit.age_ns(command)
            if age_ns > limit.max_age_ns:
                self._outbox.notice(
                    "warning",
                    "order_dropped_stale",
                    client_order_id=command.client_order_id,
                    symbol=command.symbol,
                    age_s=round(age_ns / 1e9, 3),
                    limit_s=round(limit.max_age_ns / 1e9, 3),
                )
                self._take_back_current(NOT_SENT_STALE)
                return NOT_SENT_STALE
        if not self._committed_once:
            self._committed_once = True
            self.sent += 1
        self._committed = True
        self._outbox.notice(
            "debug",
            "order_posted",
            client_order_id=command.client_order_id,
            age_s=None if limit is None else round(limit.age_ns(command) / 1e9, 3),
        )
        return None

    async def _wait_ready(self) -> bool:
        """Wait until orders may be sent; False if the current one was withdrawn meanwhile."""
        if not self._ready.is_set():
            await wait_first(self._ready, self._taken_back)
        return not self._taken_back.is_set()

    # -- sending --------------------------------------------------------------------------------

    async def _send(self, cmd: SubmitOrder) -> None:
        cid = cmd.client_order_id
        tracker, notice = self._tracker, self._outbox.notice
        attempt = 0
        while True:
            attempt += 1
            if not await self._wait_ready():
                return
            try:
                snap = await self._watch.call(self._rest.submit_order(cmd, gate=self._gate))
            except Unsent:
                return
            except DuplicateClientOrderId:
                notice("info", "submit_duplicate_id_lookup", client_order_id=cid)
                found = await self._lookup(cid)
                if found is None:
                    tracker.reject(
                        cmd, "client_order_id already used, yet Alpaca has no such order"
                    )
                else:
                    tracker.apply(found)
                return
            except AlpacaRejected as e:
                tracker.reject(cmd, e.message)
                return
            except TransientBrokerError as e:
                notice("warning", "submit_outcome_unknown", client_order_id=cid, error=str(e))
                found = await self._lookup(cid)
                if found is not None:
                    tracker.apply(found)
                    return
                if attempt >= self._attempts:
                    tracker.reject(cmd, f"not sent: {e}")
                    return
                # Alpaca has no such order: not sent after all, and it may still be withdrawn.
                self._committed = False
                if self._committed_once:
                    self._committed_once = False
                    self.sent -= 1
                await self._sleep(self._backoff.delay(attempt, e))
                continue
            tracker.apply(snap)
            return

    async def _cancel(self, cmd: CancelOrder) -> None:
        cid = cmd.client_order_id
        notice = self._outbox.notice
        order = self._tracker.orders.get(cid)
        if order is None:
            notice("warning", "cancel_unknown_order", client_order_id=cid)
            return
        attempt = 0
        while not order.terminal:
            attempt += 1
            await self._ready.wait()
            try:
                if order.broker_order_id is None:
                    found = await self._watch.call(self._rest.order_by_client_id(cid))
                    if found is None:
                        notice("warning", "cancel_unknown_order", client_order_id=cid)
                        return
                    self._tracker.apply(found)
                    continue
                await self._watch.call(self._rest.cancel_order(order.broker_order_id))
                return
            except (OrderNotFound, AlpacaRejected) as e:
                # 422: no longer cancelable (it filled or is being canceled): the stream or
                # the next reconciliation tells how it ended.
                notice("warning", "cancel_refused", client_order_id=cid, error=str(e))
                return
            except TransientBrokerError as e:
                if attempt >= self._attempts:
                    notice("error", "cancel_not_sent", client_order_id=cid, error=str(e))
                    return
                await self._sleep(self._backoff.delay(attempt, e))
        notice("info", "cancel_after_terminal", client_order_id=cid)

    async def _lookup(self, cid: str) -> OrderSnapshot | None:
        """GET by client order id, retried while the answer is transient (never given up: an
        unknown outcome must not become a second order)."""
        attempt = 0
        while True:
            try:
                return await self._watch.call(self._rest.order_by_client_id(cid))
            except TransientBrokerError as e:
                attempt += 1
                self._outbox.notice("warning", "lookup_failed", client_order_id=cid, error=str(e))
                await self._sleep(self._backoff.delay(attempt, e))
