"""The Broker protocol contract, run against every adapter that can submit.

Each test takes the `broker` fixture and the `venue` fixture that drives that broker's market
(bars for the simulated brokers; the sandbox, stepped by hand, for the Alpaca adapter). The
live adapters are also checked wrapped in ReadOnlyBroker: it refuses every send.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Collection
from decimal import Decimal
from typing import Protocol

import pytest

from brokers.alpaca import AlpacaBroker
from brokers.alpaca_rest import AlpacaRest
from brokers.base import Broker, LiveBroker
from brokers.orders import (
    CancelOrder,
    ExecutionEvent,
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
from brokers.read_only import ReadOnlyBroker
from brokers.settings import SimulatedBrokerSettings
from brokers.simulated import SimulatedBroker
from brokers.simulated_live import SimulatedLiveBroker
from feeds.bar import NS_PER_MINUTE, Bar
from feeds.errors import InvariantViolation
from sandbox import Sandbox
from tests.conftest import ROOT

T0 = int(dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
M = NS_PER_MINUTE
TERMINAL = (OrderFilled, OrderCanceled, OrderRejected)
SAMPLE = ROOT / "data" / "sample" / "minute"


class Venue(Protocol):
    """What a contract test needs besides the Broker protocol: a market and the events."""

    symbols: tuple[str, str]  # two tradable symbols, priced well above $10
    partial_fills: bool  # whether the session below produces partial fills

    @property
    def broker(self) -> Broker:
        """The broker under test."""

    @property
    def now_ns(self) -> int:
        """The decision time for orders submitted now (the start of the next minute)."""

    async def minute(self) -> None:
        """Let the market print one more minute of every symbol."""

    async def settle(self, cids: Collection[str]) -> list[ExecutionEvent]:
        """All events not yet drained, once every order of `cids` has its terminal event."""


async def wait_for_terminal(
    broker: LiveBroker, events: list[ExecutionEvent], cids: Collection[str]
) -> None:
    """Poll `broker` into `events`, woken by `events_ready`, until every order of `cids` has
    its terminal event (within 10 s)."""
    async with asyncio.timeout(10):
        while True:
            events += broker.poll_events()
            if {e.client_order_id for e in events if isinstance(e, TERMINAL)} >= set(cids):
                return
            await broker.events_ready.wait()


class SimulatedVenue:
    symbols = ("SPY", "QQQ")
    partial_fills = True

    def __init__(self, broker: SimulatedBroker | SimulatedLiveBroker) -> None:
        self.broker = broker
        self._minute = 0
        self._prices = {"SPY": 100.0, "QQQ": 50.0}

    @property
    def now_ns(self) -> int:
        return T0 + self._minute * M

    async def minute(self) -> None:
        for symbol, base in self._prices.items():
            price = base + (self._minute if symbol == "SPY" and 0 < self._minute < 6 else 0)
            self.broker.on_bar(
                Bar(
                    symbol=symbol,
                    ts=self.now_ns,
                    open=price,
                    high=price * 1.01,
                    low=price * 0.99,
                    close=price,
                    volume=40,
                )
            )
        self._minute += 1

    async def settle(self, cids: Collection[str]) -> list[ExecutionEvent]:
        return self.broker.poll_events()


class SimulatedLiveVenue(SimulatedVenue):
    """The simulated broker behind the LiveBroker protocol: woken by `events_ready`."""

    def __init__(self, broker: SimulatedLiveBroker) -> None:
        super().__init__(broker)
        self.live = broker

    async def settle(self, cids: Collection[str]) -> list[ExecutionEvent]:
        events: list[ExecutionEvent] = []
        await wait_for_terminal(self.live, events, cids)
        return events


class AlpacaVenue:
    """The Alpaca adapter against the sandbox, stepped by hand."""

    symbols = ("AAA", "BBB")
    partial_fills = False

    def __init__(self, broker: AlpacaBroker, sandbox: Sandbox) -> None:
        self.broker = broker
        self.sandbox = sandbox
        self._events: list[ExecutionEvent] = []

    @property
    def now_ns(self) -> int:
        return self.sandbox.now_ns

    async def minute(self) -> None:
        # Every submit handed over so far reaches the sandbox before the minute plays.
        assert await self.broker.drain(10)
        await self.sandbox.step()

    async def settle(self, cids: Collection[str]) -> list[ExecutionEvent]:
        await wait_for_terminal(self.broker, self._events, cids)
        events, self._events = self._events, []
        return events


async def _fast_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


def simulated() -> SimulatedBroker:
    return SimulatedBroker(
        SimulatedBrokerSettings(max_volume_participation=0.5), start_cash=Decimal(100_000)
    )


@contextlib.asynccontextmanager
async def alpaca_venue() -> AsyncIterator[AlpacaVenue]:
    sandbox = Sandbox(SAMPLE, symbols=["AAA", "BBB"], key="k", secret="s", warm_minutes=1)
    await sandbox.start()
    rest = AlpacaRest(key="k", secret="s", url=sandbox.trading_url, sleep=_fast_sleep)
    broker = AlpacaBroker(
        rest=rest,
        stream_url=sandbox.trade_stream_url,
        key="k",
        secret="s",
        sleep=_fast_sleep,
        now_ns=lambda: sandbox.now_ns,
    )
    try:
        await asyncio.wait_for(broker.start(), 10)
        yield AlpacaVenue(broker, sandbox)
    finally:
        await broker.close()
        await sandbox.close()


@pytest.fixture(params=["simulated", "simulated_live", "alpaca"])
async def venue(request: pytest.FixtureRequest) -> AsyncIterator[Venue]:
    if request.param == "simulated":
        yield SimulatedVenue(simulated())
    elif request.param == "simulated_live":
        live = SimulatedLiveBroker(simulated())
        await live.start()
        yield SimulatedLiveVenue(live)
        await live.close()
    else:
        async with alpaca_venue() as venue:
            yield venue


@pytest.fixture(params=["simulated_live", "alpaca"])
async def live_broker(request: pytest.FixtureRequest) -> AsyncIterator[LiveBroker]:
    if request.param == "simulated_live":
        yield SimulatedLiveBroker(simulated())
        return
    async with alpaca_venue() as venue:
        yield venue.broker


@pytest.fixture
def broker(venue: Venue) -> Broker:
    return venue.broker


def submit(
    cid: str,
    side: OrderSide,
    qty: int,
    ts: int,
    *,
    symbol: str,
    limit: str | None = None,
) -> SubmitOrder:
    return SubmitOrder(
        client_order_id=cid,
        symbol=symbol,
        side=side,
        qty=Decimal(qty),
        order_type=OrderType.MARKET if limit is None else OrderType.LIMIT,
        ts=ts,
        limit_price=None if limit is None else Decimal(limit),
        time_in_force=TimeInForce.GTC,
    )


async def run_session(broker: Broker, venue: Venue) -> tuple[list[str], list[ExecutionEvent]]:
    """A mixed session: fills, partial fills, a resting limit canceled, rejections."""
    a, b = venue.symbols
    await venue.minute()
    now = venue.now_ns
    orders = [
        submit("buy", OrderSide.BUY, 30, now, symbol=a),  # partially filled over bars
        submit("rest", OrderSide.BUY, 5, now, symbol=a, limit="10"),  # never fills: canceled
        submit("short", OrderSide.SELL, 5, now, symbol=b),
        submit("noprice", OrderSide.BUY, 5, now, symbol="NOPE"),
        submit("huge", OrderSide.BUY, 10_000, now, symbol=a),  # beyond buying power
    ]
    for command in orders:
        broker.submit(command)
    for _ in range(5):
        await venue.minute()
    broker.submit(submit("sell", OrderSide.SELL, 30, venue.now_ns, symbol=a))
    for _ in range(3):
        await venue.minute()
    broker.cancel(CancelOrder(client_order_id="rest", ts=venue.now_ns))
    cids = [*(o.client_order_id for o in orders), "sell"]
    return cids, await venue.settle(cids)


async def test_every_order_ends_in_exactly_one_terminal_event(broker: Broker, venue: Venue) -> None:
    cids, events = await run_session(broker, venue)
    for cid in cids:
        mine = [e for e in events if e.client_order_id == cid]
        terminal = [i for i, e in enumerate(mine) if isinstance(e, TERMINAL)]
        assert len(terminal) == 1, (cid, mine)
        assert terminal[0] == len(mine) - 1, f"{cid}: events after its terminal event"


async def test_duplicate_ids_never_make_a_second_order(broker: Broker, venue: Venue) -> None:
    a = venue.symbols[0]
    await venue.minute()
    broker.submit(submit("dup", OrderSide.BUY, 3, venue.now_ns, symbol=a))
    broker.submit(submit("dup", OrderSide.BUY, 3, venue.now_ns, symbol=a))
    await venue.minute()
    broker.submit(submit("dup", OrderSide.BUY, 7, venue.now_ns, symbol=a))  # after it filled
    await venue.minute()
    events = await venue.settle(["dup"])
    assert sum(isinstance(e, OrderAccepted) for e in events) == 1
    filled = [e for e in events if isinstance(e, OrderFilled | OrderPartiallyFilled)]
    assert sum(e.qty for e in filled) == Decimal(3)


async def test_execution_ids_are_unique(broker: Broker, venue: Venue) -> None:
    _, events = await run_session(broker, venue)
    ids = [e.execution_id for e in events if isinstance(e, OrderFilled | OrderPartiallyFilled)]
    assert len(ids) >= (4 if venue.partial_fills else 2)
    assert len(ids) == len(set(ids))


async def test_fills_never_exceed_the_order(broker: Broker, venue: Venue) -> None:
    _, events = await run_session(broker, venue)
    filled: dict[str, Decimal] = {}
    for e in events:
        if isinstance(e, OrderFilled | OrderPartiallyFilled):
            filled[e.client_order_id] = filled.get(e.client_order_id, Decimal(0)) + e.qty
    assert filled == {"buy": Decimal(30), "sell": Decimal(30)}


async def test_read_only_refuses_every_send(live_broker: LiveBroker) -> None:
    tracked: LiveBroker = ReadOnlyBroker(live_broker)
    order = submit("never", OrderSide.BUY, 1, 0, symbol="AAA")
    with pytest.raises(InvariantViolation, match="track mode never sends orders"):
        tracked.submit(order)
    with pytest.raises(InvariantViolation, match="track mode never sends orders"):
        tracked.cancel(CancelOrder(client_order_id="never", ts=0))
    with pytest.raises(InvariantViolation, match="track mode never sends orders"):
        await tracked.cancel_open(lambda cid: True)
    assert await live_broker.drain(1)
    assert live_broker.poll_events() == []
    assert live_broker.health().in_flight == 0
