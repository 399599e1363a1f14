"""The Alpaca adapter's order sender: one worker that POSTs submits and DELETEs cancels in the
order they were handed over, once the adapter is reconciled.

A submit never duplicates: when a POST's outcome is unknown (429, 5xx, timeout, lost
connection) the order is looked up by its client order id, and POSTed again (same id) only
when Alpaca answers 404. After `attempts` POSTs whose outcome stayed unknown it is given up as
OrderRejected("not sent: ...").
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from brokers.alpaca_json import OrderSnapshot
from brokers.alpaca_rest import AlpacaRejected, AlpacaRest, DuplicateClientOrderId, OrderNotFound
from brokers.alpaca_retry import Backoff, RestWatch
from brokers.alpaca_tracker import OrderTracker
from brokers.errors import TransientBrokerError
from brokers.orders import CancelOrder, SubmitOrder
from brokers.outbox import Outbox


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
        self._queue: deque[SubmitOrder | CancelOrder] = deque()
        self._work = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.in_flight = 0  # submits handed over whose outcome is not known yet

    def submit(self, command: SubmitOrder) -> None:
        """Queue one submit (the caller checked its client order id is new)."""
        self._enqueue(command)
        self.in_flight += 1
        self._idle.clear()

    def cancel(self, command: CancelOrder) -> None:
        """Queue one cancel."""
        self._enqueue(command)

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
        """Send what is queued, in order, until cancelled."""
        while True:
            while not self._queue:
                self._work.clear()
                await self._work.wait()
            command = self._queue[0]
            if isinstance(command, SubmitOrder):
                await self._send(command)
                self.in_flight -= 1
                if self.in_flight == 0:
                    self._idle.set()
                    self._outbox.ready.set()  # the caller may be waiting for a quiet broker
            else:
                await self._cancel(command)
            self._queue.popleft()

    def _enqueue(self, command: SubmitOrder | CancelOrder) -> None:
        self._queue.append(command)
        self._work.set()

    async def _send(self, cmd: SubmitOrder) -> None:
        cid = cmd.client_order_id
        tracker, notice = self._tracker, self._outbox.notice
        attempt = 0
        while True:
            attempt += 1
            await self._ready.wait()
            try:
                snap = await self._watch.call(self._rest.submit_order(cmd))
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
