"""AlpacaBroker across restarts (`restore`) and outages (REST 5xx, a trade-stream drop), against
the real sandbox (daemon/sandbox.py). A "crash" is closing one broker and starting another on
the same sandbox account; the injected sleep never waits for real."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from brokers.alpaca import AlpacaBroker
from brokers.alpaca_rest import AlpacaRest
from brokers.base import NOT_SENT_BEFORE_RESTART, RestoredOrder
from brokers.orders import (
    ExecutionEvent,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderSide,
)
from feeds.errors import InvariantViolation
from sandbox import Sandbox
from tests.brokers.alpaca_kit import (
    KEY,
    SECRET,
    alpaca_broker,
    buy,
    events_until,
    has,
    sandbox_fills,
)


class Turnstile:
    """The injected sleep: returns at once while open; while closed, each sleep waits for a
    permit (`release`) or for `open`. Records every delay asked for."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.waiting = 0
        self._open = True
        self._permits = 0
        self._changed = asyncio.Condition()

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        async with self._changed:
            self.waiting += 1
            await self._changed.wait_for(lambda: self._open or self._permits > 0)
            self.waiting -= 1
            if not self._open:
                self._permits -= 1
        await asyncio.sleep(0)

    def close(self) -> None:
        self._open = False

    async def open(self) -> None:
        async with self._changed:
            self._open = True
            self._changed.notify_all()

    async def release(self, permits: int = 1) -> None:
        async with self._changed:
            self._permits += permits
            self._changed.notify_all()


@pytest.fixture
def turnstile() -> Turnstile:
    return Turnstile()


class Brokers:
    """Makes and starts brokers on one sandbox account; closes the survivors at teardown."""

    def __init__(self, sandbox: Sandbox, turnstile: Turnstile) -> None:
        self._sandbox = sandbox
        self._turnstile = turnstile
        self._running: list[AlpacaBroker] = []

    async def start(
        self, restored: Sequence[RestoredOrder] = (), *, since_ns: int | None = None
    ) -> AlpacaBroker:
        """A new broker, `restore(restored)` then `start(since_ns=...)`, within 10 s."""
        broker = alpaca_broker(self._sandbox, self._turnstile.sleep)
        self._running.append(broker)
        broker.restore(restored)
        await asyncio.wait_for(broker.start(since_ns=since_ns), 10)
        return broker

    async def crash(self, broker: AlpacaBroker) -> None:
        """Stop a broker: from then on it hears and sends nothing, like a killed daemon."""
        self._running.remove(broker)
        await broker.close()

    async def close(self) -> None:
        for broker in self._running:
            await broker.close()


@pytest.fixture
async def brokers(sandbox: Sandbox, turnstile: Turnstile) -> AsyncIterator[Brokers]:
    made = Brokers(sandbox, turnstile)
    yield made
    await made.close()


async def until(predicate: Callable[[], bool]) -> None:
    """Poll a condition with a deadline (for states that have no event of their own)."""
    async with asyncio.timeout(10):
        while not predicate():
            await asyncio.sleep(0.005)


def fills_of(events: list[ExecutionEvent], cid: str) -> list[OrderFilled | OrderPartiallyFilled]:
    return [
        e
        for e in events
        if isinstance(e, OrderFilled | OrderPartiallyFilled) and e.client_order_id == cid
    ]


def restored(cid: str, qty: int = 10, **kwargs: Any) -> RestoredOrder:
    return RestoredOrder(
        client_order_id=cid, symbol="AAA", side=OrderSide.BUY, qty=Decimal(qty), **kwargs
    )


async def filled_before_crash(
    sandbox: Sandbox, brokers: Brokers, cid: str, qty: int
) -> tuple[OrderAccepted, OrderFilled]:
    """Run one buy to its fill with a first broker, then crash that broker."""
    broker = await brokers.start()
    broker.submit(buy(cid, qty))
    events = await events_until(broker, has(OrderAccepted, cid))
    await sandbox.step()
    events = await events_until(broker, has(OrderFilled, cid), events)
    await brokers.crash(broker)
    (accepted,) = [e for e in events if isinstance(e, OrderAccepted)]
    (filled,) = [e for e in events if isinstance(e, OrderFilled)]
    return accepted, filled


# -- restore -------------------------------------------------------------------------------------


async def test_restored_partially_booked_order_reports_only_the_fill_beyond_the_journal(
    sandbox: Sandbox, brokers: Brokers
) -> None:
    accepted, filled = await filled_before_crash(sandbox, brokers, "part", 10)
    price = filled.price
    # The journal booked 4 of the 10 (e.g. a partial fill) before the daemon died.
    broker = await brokers.start(
        [
            restored(
                "part",
                broker_order_id=accepted.broker_order_id,
                filled_qty=Decimal(4),
                filled_notional=4 * price,
            )
        ]
    )
    events = broker.poll_events()

    assert [type(e) for e in events] == [OrderFilled]  # no second OrderAccepted
    (rest,) = events
    assert isinstance(rest, OrderFilled)
    assert (rest.client_order_id, rest.qty, rest.price) == ("part", Decimal(6), price)
    assert rest.execution_id == f"{accepted.broker_order_id}:10"
    assert Decimal(4) + rest.qty == sandbox.positions["AAA"]
    assert broker.last_reconcile is not None
    assert broker.last_reconcile.fills_recovered == 1
    assert sandbox.requests[("GET", "/v2/orders:by_client_order_id")] == 1  # outside `after`


async def test_restored_terminal_order_is_never_sent_nor_reported_again(
    sandbox: Sandbox, brokers: Brokers
) -> None:
    accepted, filled = await filled_before_crash(sandbox, brokers, "done", 10)
    broker = await brokers.start(
        [
            restored(
                "done",
                broker_order_id=accepted.broker_order_id,
                filled_qty=Decimal(10),
                filled_notional=10 * filled.price,
                terminal=True,
            )
        ],
        since_ns=filled.ts - 120_000_000_000,  # the order lies inside the recent window
    )
    broker.submit(buy("done"))
    assert await broker.drain(10)
    await sandbox.step()
    assert broker.poll_events() == []
    assert sandbox.order_posts["done"] == 1
    assert any(n.event == "duplicate_submit_ignored" for n in broker.poll_notices())


async def test_restored_intent_alpaca_never_saw_is_canceled_as_not_sent(
    sandbox: Sandbox, brokers: Brokers
) -> None:
    broker = await brokers.start([restored("ghost")])
    events = broker.poll_events()

    assert len(events) == 1
    (canceled,) = events
    assert isinstance(canceled, OrderCanceled)
    assert (canceled.client_order_id, canceled.reason) == ("ghost", NOT_SENT_BEFORE_RESTART)
    assert NOT_SENT_BEFORE_RESTART == "not sent before restart"
    broker.submit(buy("ghost"))  # the id counts as used: never POSTed by this adapter
    assert await broker.drain(10)
    assert sandbox.order_posts["ghost"] == 0
    assert sandbox.orders_created["ghost"] == 0
    assert broker.ready


async def test_restored_intent_whose_post_landed_is_accepted_then_filled_once(
    sandbox: Sandbox, brokers: Brokers
) -> None:
    # The dead daemon's POST reached Alpaca; its answer never reached the journal.
    person = AlpacaRest(key=KEY, secret=SECRET, url=sandbox.trading_url)
    try:
        order = await person.submit_order(buy("landed", 5))
    finally:
        await person.close()
    broker = await brokers.start([restored("landed", 5)])
    events = broker.poll_events()
    assert [type(e) for e in events] == [OrderAccepted]
    assert isinstance(events[0], OrderAccepted)
    assert events[0].broker_order_id == order.broker_order_id

    await sandbox.step()
    events = await events_until(broker, has(OrderFilled, "landed"), events)
    assert [f.qty for f in fills_of(events, "landed")] == [Decimal(5)]
    assert sandbox.orders_created["landed"] == 1
    assert sandbox.order_posts["landed"] == 1


@pytest.mark.parametrize("in_window", [False, True], ids=["looked-up", "listed"])
async def test_restored_acked_order_that_filled_while_down_is_filled_once(
    sandbox: Sandbox, brokers: Brokers, in_window: bool
) -> None:
    before = sandbox.now_ns
    first = await brokers.start()
    first.submit(buy("away", 8))
    (accepted,) = await events_until(first, has(OrderAccepted, "away"))
    assert isinstance(accepted, OrderAccepted)
    await brokers.crash(first)
    await sandbox.step()  # it fills while no daemon runs
    (wire,) = sandbox_fills(sandbox, "away")

    broker = await brokers.start(
        [restored("away", 8, broker_order_id=accepted.broker_order_id)],
        since_ns=before if in_window else None,
    )
    events = broker.poll_events()
    await sandbox.step()
    events += broker.poll_events()

    assert [type(e) for e in events] == [OrderFilled]
    (fill,) = events
    assert isinstance(fill, OrderFilled)
    assert (fill.qty, fill.price) == (Decimal(8), Decimal(wire["price"]))
    assert broker.positions["AAA"].qty == Decimal(8) == sandbox.positions["AAA"]


async def test_restore_after_start_is_refused(brokers: Brokers) -> None:
    broker = await brokers.start()
    with pytest.raises(InvariantViolation, match="before start"):
        broker.restore([restored("late")])


# -- outages -------------------------------------------------------------------------------------


async def test_rest_outage_delays_submits_without_duplicates_and_recovers(
    sandbox: Sandbox, brokers: Brokers, turnstile: Turnstile
) -> None:
    broker = await brokers.start()
    assert broker.rest_ok
    cids = ["o1", "o2", "o3"]
    turnstile.close()
    sandbox.faults.fail_rest(503, times=40)
    for cid in cids:
        broker.submit(buy(cid, 2))
    await until(lambda: turnstile.waiting == 1)  # the first submit is backing off

    # (ready, rest_ok): the trade stream is up, so there is nothing to reconcile.
    assert (broker.ready, broker.rest_ok) == (True, False)
    assert broker.poll_events() == []  # never raises to the caller
    assert broker.in_flight == 3

    await turnstile.open()

    def ended(events: list[ExecutionEvent]) -> bool:
        return all(
            any(
                isinstance(e, OrderAccepted | OrderRejected) and e.client_order_id == c
                for e in events
            )
            for c in cids
        )

    events = await events_until(broker, ended)
    assert await broker.drain(10)
    assert broker.rest_ok
    assert broker.fatal is None
    sent = {e.client_order_id for e in events if isinstance(e, OrderAccepted)}
    for e in events:
        if isinstance(e, OrderRejected):
            assert e.reason.startswith("not sent: ")
    assert sent  # 40 failures are fewer than the attempts allow
    await sandbox.step()
    events = await events_until(broker, lambda ev: all(fills_of(ev, c) for c in sent), events)
    for cid in cids:
        assert sandbox.orders_created[cid] <= 1
        assert len(fills_of(events, cid)) == (1 if cid in sent else 0)
    assert len(turnstile.delays) >= 5  # backed off between the failures
    assert max(turnstile.delays) > min(turnstile.delays)
    notices = [n.event for n in broker.poll_notices()]
    assert notices.count("rest_down") == 1
    assert notices.count("rest_up") == 1


async def test_trade_stream_drop_during_a_fill_is_reconciled_once_after_rest_recovers(
    sandbox: Sandbox, brokers: Brokers, turnstile: Turnstile
) -> None:
    broker = await brokers.start()
    broker.submit(buy("gap", 7))
    events = await events_until(broker, has(OrderAccepted, "gap"))
    turnstile.close()
    sandbox.faults.drop_trade_socket()
    await until(lambda: not broker.ready and turnstile.waiting == 1)  # reconnect on hold
    await sandbox.step()  # the fill happens unheard
    (wire,) = sandbox_fills(sandbox, "gap")
    sandbox.faults.fail_rest(503, times=2, method="GET", path="/v2/account")

    await turnstile.release()  # reconnect; the reconciliation then fails at the account
    await until(lambda: broker.stream_connected and turnstile.waiting == 1)
    assert (broker.ready, broker.rest_ok) == (False, False)  # reconciliation cannot complete

    await turnstile.open()
    await until(lambda: broker.ready)
    events += broker.poll_events()
    assert broker.rest_ok
    fills = fills_of(events, "gap")
    assert len(fills) == 1
    assert (fills[0].qty, fills[0].price) == (Decimal(7), Decimal(wire["price"]))
    assert broker.last_reconcile is not None
    assert broker.last_reconcile.fills_recovered == 1
    assert broker.last_reconcile.positions == {"AAA": Decimal(7)}
    assert broker.last_reconcile.differences == []
    assert sandbox.trade_connections == 2
    await sandbox.step()
    assert fills_of(broker.poll_events(), "gap") == []


# -- many unresolved intents ---------------------------------------------------------------------


@pytest.mark.slow
async def test_thousands_of_unresolved_intents_are_reconciled_in_bulk(
    sandbox: Sandbox, brokers: Brokers
) -> None:
    """2,000 intents the journal never saw end (sent, then canceled while the daemon was down,
    all before the recent window): one listing by time range resolves them, not 2,000 lookups
    (at 190 requests a minute those would take over ten minutes, past a 300 s start timeout)."""
    count = 2_000
    intent_ts = sandbox.now_ns
    headers = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
    gate = asyncio.Semaphore(32)
    async with aiohttp.ClientSession(headers=headers) as http:

        async def send(i: int) -> None:
            body = {
                "symbol": "AAA",
                "qty": "1",
                "side": "buy",
                "type": "limit",
                "limit_price": "1.00",
                "time_in_force": "day",
                "client_order_id": f"bulk-{i:05d}",
            }
            async with gate, http.post(f"{sandbox.trading_url}/v2/orders", json=body) as r:
                assert r.status == 200, await r.text()

        await asyncio.gather(*(send(i) for i in range(count)))
        async with http.delete(f"{sandbox.trading_url}/v2/orders") as r:
            assert r.status in (200, 207), await r.text()
    lookups = sandbox.requests[("GET", "/v2/orders:by_client_order_id")]
    listings = sandbox.requests[("GET", "/v2/orders")]

    broker = await brokers.start(
        [restored(f"bulk-{i:05d}", 1, ts=intent_ts) for i in range(count)],
        since_ns=sandbox.now_ns + 60_000_000_000,  # the orders lie before the recent window
    )
    events = broker.poll_events()

    ended = {e.client_order_id for e in events if isinstance(e, OrderCanceled)}
    assert ended == {f"bulk-{i:05d}" for i in range(count)}
    assert not any(
        isinstance(e, OrderCanceled) and e.reason == NOT_SENT_BEFORE_RESTART for e in events
    )
    assert sandbox.requests[("GET", "/v2/orders:by_client_order_id")] == lookups
    # open, recent, then the bulk listing: 500 a page.
    assert sandbox.requests[("GET", "/v2/orders")] - listings <= 2 + count // 500 + 1
