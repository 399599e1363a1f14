"""AlpacaBroker, AlpacaRest and TradeStream against the real sandbox (daemon/sandbox.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from decimal import Decimal

import pytest

from brokers.alpaca import AlpacaBroker
from brokers.alpaca_json import parse_ts
from brokers.alpaca_rest import AlpacaRest, KeysRefused
from brokers.base import BrokerHealth, LiveBroker
from brokers.orders import (
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderSide,
    OrderType,
    SubmitOrder,
)
from brokers.read_only import ReadOnlyBroker
from brokers.ticks import round_to_tick
from feeds.errors import InvariantViolation
from sandbox import Sandbox
from tests.brokers.alpaca_kit import (
    KEY,
    SECRET,
    BrokerFactory,
    Gate,
    buy,
    events_until,
    has,
    sandbox_fills,
)


def resting(cid: str) -> SubmitOrder:
    """A buy limit far below the market: it stays open."""
    return dataclasses.replace(buy(cid), order_type=OrderType.LIMIT, limit_price=Decimal(1))


async def until(predicate: Callable[[], bool]) -> None:
    """Poll a condition with a deadline (for states that have no event of their own)."""
    async with asyncio.timeout(10):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_market_order_is_accepted_then_filled_at_the_next_bars_open(
    sandbox: Sandbox, make_broker: BrokerFactory
) -> None:
    broker = await make_broker()
    broker.submit(buy("m1", 10))
    events = await events_until(broker, has(OrderAccepted, "m1"))
    assert not any(isinstance(e, OrderFilled) for e in events)
    next_open = sandbox.market.next_bars()
    await sandbox.step()
    events = await events_until(broker, has(OrderFilled, "m1"), events)

    (accepted,) = [e for e in events if isinstance(e, OrderAccepted)]
    (filled,) = [e for e in events if isinstance(e, OrderFilled)]
    (wire,) = sandbox_fills(sandbox, "m1")
    open_price = round_to_tick(Decimal(repr(next_open["AAA"].open)))
    assert accepted.broker_order_id == wire["order"]["id"]
    assert filled.price == open_price == Decimal(wire["price"])
    assert (filled.symbol, filled.side, filled.qty, filled.commission) == (
        "AAA",
        OrderSide.BUY,
        Decimal(10),
        Decimal(0),
    )
    assert filled.execution_id == wire["execution_id"]
    assert filled.ts == parse_ts(wire["timestamp"])
    assert sandbox.cash == Decimal(100_000) - 10 * filled.price
    assert broker.positions["AAA"].qty == Decimal(10)
    assert broker.account is not None
    assert broker.account.cash == sandbox.cash


async def test_lost_order_response_is_resolved_by_client_id(
    sandbox: Sandbox, make_broker: BrokerFactory
) -> None:
    broker = await make_broker()
    sandbox.faults.lose_order_response()
    broker.submit(buy("lost"))
    events = await events_until(broker, has(OrderAccepted, "lost"))
    assert await broker.drain(10)
    await sandbox.step()
    events = await events_until(broker, has(OrderFilled, "lost"), events)
    assert sandbox.orders_created["lost"] == 1
    assert sandbox.order_posts["lost"] == 1
    assert sandbox.requests[("GET", "/v2/orders:by_client_order_id")] >= 1
    assert sum(isinstance(e, OrderAccepted) for e in events) == 1
    assert sum(isinstance(e, OrderFilled) for e in events) == 1


@pytest.mark.parametrize("status", [429, 503])
async def test_refused_post_is_retried_into_one_order(
    sandbox: Sandbox, make_broker: BrokerFactory, gate: Gate, status: int
) -> None:
    broker = await make_broker()
    sandbox.faults.fail_rest(status, times=2, method="POST", path="/v2/orders")
    broker.submit(buy("retry"))
    events = await events_until(broker, has(OrderAccepted, "retry"))
    assert sandbox.order_posts["retry"] == 3
    assert sandbox.orders_created["retry"] == 1
    assert len(gate.delays) >= 2  # backed off between the POSTs
    await sandbox.step()
    events = await events_until(broker, has(OrderFilled, "retry"), events)
    assert sum(isinstance(e, OrderAccepted) for e in events) == 1


async def test_a_post_that_never_gets_through_is_rejected_as_not_sent(
    sandbox: Sandbox, make_broker: BrokerFactory
) -> None:
    broker = await make_broker(submit_attempts=3)
    sandbox.faults.fail_rest(503, times=3, method="POST", path="/v2/orders")
    broker.submit(buy("never"))
    events = await events_until(broker, has(OrderRejected, "never"))
    (rejected,) = events
    assert isinstance(rejected, OrderRejected)
    assert rejected.reason.startswith("not sent: ")
    assert sandbox.order_posts["never"] == 3
    assert sandbox.orders_created["never"] == 0


async def test_rejected_order_carries_alpacas_message_and_is_not_retried(
    sandbox: Sandbox, make_broker: BrokerFactory
) -> None:
    broker = await make_broker()
    sandbox.faults.reject_orders(422, message="invalid qty for this asset")
    broker.submit(buy("no"))
    events = await events_until(broker, has(OrderRejected, "no"))
    assert [(type(e), getattr(e, "reason", None)) for e in events] == [
        (OrderRejected, "invalid qty for this asset")
    ]
    assert await broker.drain(10)
    assert sandbox.order_posts["no"] == 1
    assert sandbox.orders_created["no"] == 0


async def test_fill_missed_while_the_trade_stream_was_down_is_recovered_once(
    sandbox: Sandbox, make_broker: BrokerFactory, gate: Gate
) -> None:
    broker = await make_broker(poll_s=3600.0)  # no polling: the reconciliation recovers it
    broker.submit(buy("gap", 7))
    events = await events_until(broker, has(OrderAccepted, "gap"))
    gate.close()  # hold the reconnect until the fill has happened unheard
    sandbox.faults.drop_trade_socket()
    await until(lambda: not broker.ready)
    await sandbox.step()
    assert len(sandbox_fills(sandbox, "gap")) == 1
    gate.open()
    events = await events_until(broker, has(OrderFilled, "gap"), events)
    await until(lambda: broker.ready)
    events += broker.poll_events()

    fills = [e for e in events if isinstance(e, OrderFilled | OrderPartiallyFilled)]
    assert len(fills) == 1
    assert fills[0].qty == Decimal(7)
    assert fills[0].price == Decimal(sandbox_fills(sandbox, "gap")[0]["price"])
    assert broker.reconciliations == 2
    assert broker.last_reconcile is not None
    assert broker.last_reconcile.fills_recovered == 1
    assert broker.last_reconcile.differences == []
    assert broker.last_reconcile.positions == {"AAA": Decimal(7)}
    assert sandbox.trade_connections == 2


async def test_unknown_trade_event_is_tolerated_with_a_notice(
    sandbox: Sandbox, make_broker: BrokerFactory
) -> None:
    broker = await make_broker()
    broker.submit(buy("u1"))
    events = await events_until(broker, has(OrderAccepted, "u1"))
    sandbox.faults.send_unknown_event()
    await until(lambda: any(n.event == "trade_update_unknown" for n in broker.poll_notices()))
    await sandbox.step()
    events = await events_until(broker, has(OrderFilled, "u1"), events)
    assert broker.fatal is None
    assert broker.stream_connected


async def test_track_mode_submit_raises_and_sends_nothing(
    sandbox: Sandbox, make_broker: BrokerFactory
) -> None:
    inner = await make_broker()
    broker: LiveBroker = ReadOnlyBroker(inner)
    with pytest.raises(InvariantViolation, match="track mode never sends orders"):
        broker.submit(buy("t1"))
    with pytest.raises(InvariantViolation, match="track mode never sends orders"):
        await broker.cancel_open(lambda cid: True)
    assert sandbox.requests[("POST", "/v2/orders")] == 0
    assert sandbox.requests[("GET", "/v2/orders")] == 2  # the reconciliation's, no more
    assert broker.health().reconciled
    assert (broker.read_only, broker.shares_account) == (True, False)


async def test_a_persons_order_still_reports_its_fill_in_track_mode(
    sandbox: Sandbox, make_broker: BrokerFactory
) -> None:
    broker = ReadOnlyBroker(await make_broker())
    person = AlpacaRest(key=KEY, secret=SECRET, url=sandbox.trading_url)
    try:
        await person.submit_order(buy("by-hand", 3, "BBB"))
    finally:
        await person.close()
    await sandbox.step()
    events = await events_until(broker, has(OrderFilled, "by-hand"))
    assert [type(e) for e in events] == [OrderAccepted, OrderFilled]


async def test_alpaca_broker_is_a_live_broker(sandbox: Sandbox, make_broker: BrokerFactory) -> None:
    broker: LiveBroker = await make_broker()  # typed: mypy strict checks the protocol
    assert (broker.read_only, broker.shares_account) == (False, True)
    assert broker.health() == BrokerHealth(
        stream_connected=True, reconciled=True, rest_ok=True, in_flight=0
    )
    assert broker.account is not None
    assert broker.account.cash == sandbox.cash
    assert broker.account.account_id != ""
    assert broker.positions == {}


async def test_cancel_open_cancels_only_the_orders_it_is_told_are_ours(
    sandbox: Sandbox, make_broker: BrokerFactory
) -> None:
    broker = await make_broker()
    for cid, symbol in (("ours-1", "AAA"), ("ours-2", "BBB")):
        broker.submit(dataclasses.replace(resting(cid), symbol=symbol))
    person = AlpacaRest(key=KEY, secret=SECRET, url=sandbox.trading_url)
    try:
        await person.submit_order(resting("by-hand"))
        events = await events_until(broker, has(OrderAccepted, "by-hand"))
        assert await broker.drain(10)
        ids = await broker.cancel_open(lambda cid: cid.startswith("ours-"))
        assert ids == ["ours-1", "ours-2"]
        events = await events_until(broker, has(OrderCanceled, "ours-2"), events)
        canceled = [e.client_order_id for e in events if isinstance(e, OrderCanceled)]
        assert canceled == ["ours-1", "ours-2"]
        deletes = [n for (m, path), n in sandbox.requests.items() if m == "DELETE"]
        assert (sum(deletes), sandbox.requests[("DELETE", "/v2/orders")]) == (2, 0)
        assert [o.client_order_id for o in await person.orders()] == ["by-hand"]
    finally:
        await person.close()


async def test_duplicate_submit_never_reaches_alpaca(
    sandbox: Sandbox, make_broker: BrokerFactory
) -> None:
    broker = await make_broker()
    broker.submit(buy("d1"))
    broker.submit(buy("d1", 99))
    assert await broker.drain(10)
    assert sandbox.order_posts["d1"] == 1
    assert any(n.event == "duplicate_submit_ignored" for n in broker.poll_notices())


async def test_wrong_keys_stop_the_broker_at_start(sandbox: Sandbox) -> None:
    rest = AlpacaRest(key=KEY, secret="wrong", url=sandbox.trading_url)
    broker = AlpacaBroker(rest=rest, stream_url=sandbox.trade_stream_url, key=KEY, secret="x")
    try:
        with pytest.raises(Exception, match="refused the keys") as info:
            await asyncio.wait_for(broker.start(), 10)
        assert "wrong" not in str(info.value)
        assert SECRET not in str(info.value)
    finally:
        await broker.close()


async def test_rest_translates_401_into_a_fatal_error_without_the_secret(
    sandbox: Sandbox,
) -> None:
    rest = AlpacaRest(key=KEY, secret="not-the-secret", url=sandbox.trading_url)
    try:
        with pytest.raises(KeysRefused) as info:
            await rest.account()
    finally:
        await rest.close()
    assert "401" in str(info.value)
    assert "not-the-secret" not in str(info.value)


async def test_limiter_makes_the_call_past_the_budget_wait(sandbox: Sandbox) -> None:
    now = [1000.0]
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    rest = AlpacaRest(
        key=KEY,
        secret=SECRET,
        url=sandbox.trading_url,
        max_requests_per_minute=3,
        monotonic=lambda: now[0],
        sleep=fake_sleep,
    )
    try:
        for _ in range(3):
            await rest.clock()
            now[0] += 1.0
        assert waits == []
        await rest.clock()
        assert waits == [pytest.approx(57.0)]  # until the first call leaves the 60 s window
        assert rest.requests_sent == 4
    finally:
        await rest.close()
