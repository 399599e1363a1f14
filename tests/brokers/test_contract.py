"""The Broker protocol contract, run against every broker implementation.

Each test takes the `broker` fixture and the `venue` fixture that drives that broker's market
(bars for the simulated broker; a stand-in server for the live adapters when they join).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Protocol

import pytest

from brokers.base import Broker
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
from brokers.simulated import SimulatedBroker, SimulatedBrokerSettings
from feeds.bar import NS_PER_MINUTE, Bar

T0 = int(dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
M = NS_PER_MINUTE
TERMINAL = (OrderFilled, OrderCanceled, OrderRejected)


class Venue(Protocol):
    """What a contract test needs besides the Broker protocol: a market and the events."""

    def trade(self, symbol: str, ts: int, price: float, volume: float) -> None:
        """Let the market print one minute of `symbol` at `price` starting at `ts`."""

    def drain(self) -> list[ExecutionEvent]:
        """All events the broker has produced so far and not yet drained."""


class SimulatedVenue:
    def __init__(self, broker: SimulatedBroker) -> None:
        self.broker = broker

    def trade(self, symbol: str, ts: int, price: float, volume: float) -> None:
        self.broker.on_bar(
            Bar(
                symbol=symbol,
                ts=ts,
                open=price,
                high=price * 1.01,
                low=price * 0.99,
                close=price,
                volume=volume,
            )
        )

    def drain(self) -> list[ExecutionEvent]:
        return self.broker.poll_events()


@pytest.fixture(params=["simulated"])
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    if request.param == "simulated":
        yield SimulatedBroker(
            SimulatedBrokerSettings(max_volume_participation=0.5), start_cash=Decimal(100_000)
        )
    else:  # pragma: no cover - the live adapters join here
        raise NotImplementedError(request.param)


@pytest.fixture
def venue(broker: Broker) -> Venue:
    if isinstance(broker, SimulatedBroker):
        return SimulatedVenue(broker)
    raise NotImplementedError(type(broker))  # pragma: no cover


def submit(
    cid: str,
    side: OrderSide,
    qty: int,
    ts: int,
    *,
    symbol: str = "SPY",
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


def run_session(broker: Broker, venue: Venue) -> tuple[list[str], list[ExecutionEvent]]:
    """A mixed session: fills, partial fills, a resting limit canceled, rejections."""
    venue.trade("SPY", T0, 100.0, 40)
    venue.trade("QQQ", T0, 50.0, 40)
    orders = [
        submit("buy", OrderSide.BUY, 30, T0 + M),  # partially filled over bars
        submit("rest", OrderSide.BUY, 5, T0 + M, limit="10"),  # never fills: canceled below
        submit("short", OrderSide.SELL, 5, T0 + M, symbol="QQQ"),
        submit("noprice", OrderSide.BUY, 5, T0 + M, symbol="NOPE"),
        submit("huge", OrderSide.BUY, 10_000, T0 + M),  # beyond buying power
    ]
    for command in orders:
        broker.submit(command)
    for i in range(1, 6):
        venue.trade("SPY", T0 + i * M, 100.0 + i, 40)
        venue.trade("QQQ", T0 + i * M, 50.0, 40)
    broker.submit(submit("sell", OrderSide.SELL, 30, T0 + 6 * M))
    for i in range(6, 9):
        venue.trade("SPY", T0 + i * M, 100.0, 40)
    broker.cancel(CancelOrder(client_order_id="rest", ts=T0 + 9 * M))
    return [*(o.client_order_id for o in orders), "sell"], venue.drain()


def test_every_order_ends_in_exactly_one_terminal_event(broker: Broker, venue: Venue) -> None:
    cids, events = run_session(broker, venue)
    for cid in cids:
        mine = [e for e in events if e.client_order_id == cid]
        terminal = [i for i, e in enumerate(mine) if isinstance(e, TERMINAL)]
        assert len(terminal) == 1, (cid, mine)
        assert terminal[0] == len(mine) - 1, f"{cid}: events after its terminal event"


def test_duplicate_ids_never_make_a_second_order(broker: Broker, venue: Venue) -> None:
    venue.trade("SPY", T0, 100.0, 1_000)
    broker.submit(submit("dup", OrderSide.BUY, 3, T0 + M))
    broker.submit(submit("dup", OrderSide.BUY, 3, T0 + M))
    venue.trade("SPY", T0 + M, 100.0, 1_000)
    broker.submit(submit("dup", OrderSide.BUY, 7, T0 + 2 * M))  # after it filled, too
    venue.trade("SPY", T0 + 2 * M, 100.0, 1_000)
    events = venue.drain()
    assert sum(isinstance(e, OrderAccepted) for e in events) == 1
    filled = [e for e in events if isinstance(e, OrderFilled | OrderPartiallyFilled)]
    assert sum(e.qty for e in filled) == Decimal(3)


def test_execution_ids_are_unique(broker: Broker, venue: Venue) -> None:
    _, events = run_session(broker, venue)
    ids = [e.execution_id for e in events if isinstance(e, OrderFilled | OrderPartiallyFilled)]
    assert len(ids) >= 4  # the session has partial fills
    assert len(ids) == len(set(ids))


def test_fills_never_exceed_the_order(broker: Broker, venue: Venue) -> None:
    _, events = run_session(broker, venue)
    filled: dict[str, Decimal] = {}
    for e in events:
        if isinstance(e, OrderFilled | OrderPartiallyFilled):
            filled[e.client_order_id] = filled.get(e.client_order_id, Decimal(0)) + e.qty
    assert filled == {"buy": Decimal(30), "sell": Decimal(30)}
