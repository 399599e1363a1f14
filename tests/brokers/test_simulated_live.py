"""SimulatedLiveBroker (the simulated broker as a LiveBroker) and ReadOnlyBroker (track mode)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from brokers.base import NOT_SENT_BEFORE_RESTART, BrokerHealth, LiveBroker, RestoredOrder
from brokers.orders import (
    CancelOrder,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
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

T0 = int(dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
M = NS_PER_MINUTE
NOW = T0 + 90 * M


def live() -> SimulatedLiveBroker:
    sim = SimulatedBroker(SimulatedBrokerSettings(slippage_bps=0), start_cash=Decimal(100_000))
    return SimulatedLiveBroker(sim, now_ns=lambda: NOW)


def bar(ts: int, price: float = 100.0, symbol: str = "SPY") -> Bar:
    return Bar(symbol=symbol, ts=ts, open=price, high=price, low=price, close=price, volume=1e6)


def order(cid: str, *, ts: int = T0 + M, limit: str | None = None) -> SubmitOrder:
    return SubmitOrder(
        client_order_id=cid,
        symbol="SPY",
        side=OrderSide.BUY,
        qty=Decimal(10),
        order_type=OrderType.MARKET if limit is None else OrderType.LIMIT,
        ts=ts,
        limit_price=None if limit is None else Decimal(limit),
        time_in_force=TimeInForce.GTC,
    )


def restored(cid: str, *, terminal: bool = False) -> RestoredOrder:
    return RestoredOrder(
        client_order_id=cid, symbol="SPY", side=OrderSide.BUY, qty=Decimal(10), terminal=terminal
    )


def test_each_adapter_is_a_live_broker() -> None:
    """Typed: mypy strict checks these assignments against the protocol."""
    simulated: LiveBroker = live()
    tracked: LiveBroker = ReadOnlyBroker(simulated)
    assert not simulated.read_only
    assert tracked.read_only


async def test_start_is_immediate_and_everything_is_healthy() -> None:
    broker = live()
    await broker.start()
    assert broker.health() == BrokerHealth(
        stream_connected=True, reconciled=True, rest_ok=True, in_flight=0
    )
    assert broker.account is None
    assert broker.positions == {}
    assert (broker.read_only, broker.shares_account, broker.fatal) == (False, False, None)
    assert await broker.drain(0)
    assert not broker.events_ready.is_set()
    assert broker.poll_events() == []


async def test_submit_wakes_and_a_bar_that_fills_wakes_again() -> None:
    broker = live()
    await broker.start()
    broker.on_bar(bar(T0))
    assert not broker.events_ready.is_set()
    broker.submit(order("a"))
    assert broker.events_ready.is_set()
    (accepted,) = broker.poll_events()
    assert isinstance(accepted, OrderAccepted)
    assert not broker.events_ready.is_set()

    broker.on_bar(bar(T0 + M, 101.0))
    assert broker.events_ready.is_set()
    (filled,) = broker.poll_events()
    assert isinstance(filled, OrderFilled)
    assert (filled.qty, filled.price) == (Decimal(10), Decimal("101.00"))
    assert broker.simulated.positions == {"SPY": Decimal(10)}


async def test_cancel_hands_over_and_wakes() -> None:
    broker = live()
    await broker.start()
    broker.on_bar(bar(T0))
    broker.submit(order("rest", limit="50"))
    broker.poll_events()
    broker.cancel(CancelOrder(client_order_id="rest", ts=T0 + M))
    assert broker.events_ready.is_set()
    (canceled,) = broker.poll_events()
    assert isinstance(canceled, OrderCanceled)
    assert canceled.reason == "canceled"


async def test_restored_open_orders_end_as_not_sent_on_the_first_poll_after_start() -> None:
    broker = live()
    broker.restore([restored("open-1"), restored("done", terminal=True), restored("open-2")])
    assert broker.poll_events() == []  # not before start
    await broker.start()
    assert broker.events_ready.is_set()
    events = broker.poll_events()
    assert events == [
        OrderCanceled(client_order_id=c, symbol="SPY", ts=NOW, reason=NOT_SENT_BEFORE_RESTART)
        for c in ("open-1", "open-2")
    ]
    assert broker.poll_events() == []


async def test_a_restored_id_is_never_sent_again() -> None:
    broker = live()
    broker.restore([restored("old", terminal=True)])
    await broker.start()
    broker.on_bar(bar(T0))
    broker.submit(order("old"))
    assert broker.poll_events() == []
    assert [n.event for n in broker.poll_notices()] == ["duplicate_submit_ignored"]


async def test_restore_after_start_or_twice_the_same_id_is_refused() -> None:
    broker = live()
    with pytest.raises(InvariantViolation, match="known already"):
        broker.restore([restored("x"), restored("x")])
    await broker.start()
    with pytest.raises(InvariantViolation, match="before start"):
        broker.restore([restored("y")])
    with pytest.raises(InvariantViolation, match="twice"):
        await broker.start()


async def test_cancel_open_cancels_only_the_orders_it_is_told_are_ours() -> None:
    broker = live()
    await broker.start()
    broker.on_bar(bar(T0))
    for cid in ("ours-1", "theirs", "ours-2"):
        broker.submit(order(cid, limit="50"))
    broker.poll_events()
    assert await broker.cancel_open(lambda cid: cid.startswith("ours-")) == ["ours-1", "ours-2"]
    events = broker.poll_events()
    assert [(type(e), e.client_order_id) for e in events] == [
        (OrderCanceled, "ours-1"),
        (OrderCanceled, "ours-2"),
    ]
    assert broker.simulated.open_order_ids() == ["theirs"]


async def test_read_only_refuses_every_send_and_delegates_the_rest() -> None:
    inner = live()
    inner.restore([restored("open")])
    broker = ReadOnlyBroker(inner)
    await broker.start()
    with pytest.raises(InvariantViolation, match="track mode never sends orders"):
        broker.submit(order("t1"))
    with pytest.raises(InvariantViolation, match="track mode never sends orders"):
        broker.cancel(CancelOrder(client_order_id="t1", ts=T0))
    with pytest.raises(InvariantViolation, match="track mode never sends orders"):
        await broker.cancel_open(lambda cid: True)
    assert inner.simulated.open_order_ids() == []
    assert (broker.read_only, broker.shares_account) == (True, False)
    assert broker.events_ready is inner.events_ready
    assert broker.events_ready.is_set()
    assert [e.client_order_id for e in broker.poll_events()] == ["open"]
    assert broker.health() == inner.health()
    assert (broker.account, broker.positions, broker.fatal) == (None, {}, None)
    assert (broker.reconciliations, broker.last_reconcile) == (0, None)
    assert await broker.drain(1)
    await broker.close()
