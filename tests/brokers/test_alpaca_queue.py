"""The Alpaca adapter's queue of orders it cannot send yet, its REST polling while the trade
stream is down, and its REST reconcile on demand (`settle`), against the sandbox."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from decimal import Decimal

from brokers.alpaca import AlpacaBroker
from brokers.base import NOT_SENT_STALE, NOT_SENT_SUPERSEDED
from brokers.orders import (
    ExecutionEvent,
    OrderCanceled,
    OrderFilled,
    OrderSide,
    SubmitOrder,
)
from sandbox import Sandbox
from tests.brokers.alpaca_kit import (
    BrokerFactory,
    Gate,
    buy,
    events_until,
    has,
)


async def until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not predicate():
            await asyncio.sleep(0.005)


async def stream_down(broker: AlpacaBroker, sandbox: Sandbox, gate: Gate) -> None:
    """Cut the trade stream and hold its reconnect: orders cannot be sent meanwhile."""
    gate.close()
    sandbox.faults.drop_trade_socket()
    await until(lambda: not broker.ready)


def order(cid: str, symbol: str, side: OrderSide, qty: int, ts: int) -> SubmitOrder:
    return dataclasses.replace(buy(cid, qty, symbol), side=side, ts=ts)


def canceled(events: list[ExecutionEvent]) -> dict[str, str]:
    return {e.client_order_id: e.reason for e in events if isinstance(e, OrderCanceled)}


async def test_a_later_decision_supersedes_an_unsent_order_of_its_symbol(
    sandbox: Sandbox, make_broker: BrokerFactory, gate: Gate
) -> None:
    broker = await make_broker()
    await stream_down(broker, sandbox, gate)
    now = sandbox.now_ns
    broker.submit(order("first", "AAA", OrderSide.BUY, 10, now))
    broker.submit(order("same-slice", "BBB", OrderSide.BUY, 3, now))
    broker.submit(order("later", "AAA", OrderSide.BUY, 12, now + 60_000_000_000))
    events = await events_until(broker, has(OrderCanceled, "first"))
    assert canceled(events) == {"first": NOT_SENT_SUPERSEDED}
    assert broker.health().unsent == 2
    gate.open()
    assert await broker.drain(10)
    assert "first" not in sandbox.order_posts
    assert set(sandbox.order_posts) == {"same-slice", "later"}
    assert broker.health().sent == 2


async def test_reductions_go_before_increases_then_the_larger_first(
    sandbox: Sandbox, make_broker: BrokerFactory, gate: Gate
) -> None:
    broker = await make_broker()
    broker.submit(buy("own", 20, "AAA"))
    assert await broker.drain(10)
    await sandbox.step()  # fills at the next open
    await events_until(broker, has(OrderFilled, "own"))
    await stream_down(broker, sandbox, gate)
    ts = sandbox.now_ns
    broker.submit(order("small-buy", "BBB", OrderSide.BUY, 1, ts))
    broker.submit(order("big-buy", "AAA", OrderSide.BUY, 5, ts))
    broker.submit(order("reduce", "AAA", OrderSide.SELL, 2, ts))
    gate.open()
    assert await broker.drain(10)
    posted = [cid for cid in sandbox.order_posts if cid != "own"]
    # 2 AAA sold reduce the long; then 5 AAA (~ $1,000) before 1 BBB (~ $5).
    assert posted == ["reduce", "big-buy", "small-buy"]


async def test_an_order_older_than_the_limit_when_it_could_go_is_dropped_unsent(
    sandbox: Sandbox, make_broker: BrokerFactory, gate: Gate
) -> None:
    broker = await make_broker()
    broker.limit_age(30.0, lambda: sandbox.now_ns)
    await stream_down(broker, sandbox, gate)
    broker.submit(order("old", "AAA", OrderSide.BUY, 1, sandbox.now_ns))
    await sandbox.step()  # a market minute passes while the broker cannot take it
    gate.open()
    events = await events_until(broker, has(OrderCanceled, "old"))
    assert canceled(events) == {"old": NOT_SENT_STALE}
    assert "old" not in sandbox.order_posts
    dropped = [n for n in broker.poll_notices() if n.event == "order_dropped_stale"]
    assert [(n.fields["client_order_id"], n.fields["age_s"]) for n in dropped] == [("old", 60.0)]
    broker.submit(order("fresh", "AAA", OrderSide.BUY, 1, sandbox.now_ns))
    assert await broker.drain(10)
    assert "fresh" in sandbox.order_posts


async def test_withdraw_takes_back_every_unsent_order_and_drain_returns_at_once(
    sandbox: Sandbox, make_broker: BrokerFactory, gate: Gate
) -> None:
    broker = await make_broker()
    await stream_down(broker, sandbox, gate)
    for cid, symbol in (("a", "AAA"), ("b", "BBB")):
        broker.submit(order(cid, symbol, OrderSide.BUY, 1, sandbox.now_ns))
    assert broker.health().in_flight == 2
    assert broker.withdraw_unsent("stopping") == 2
    assert await broker.drain(0.5)
    assert canceled(broker.poll_events()) == {"a": "stopping", "b": "stopping"}
    gate.open()
    await until(lambda: broker.ready)
    assert not sandbox.order_posts


async def test_fills_are_polled_through_rest_while_the_trade_stream_stays_down(
    sandbox: Sandbox, make_broker: BrokerFactory, gate: Gate
) -> None:
    broker = await make_broker(poll_s=0.05)
    broker.submit(buy("polled", 4))
    assert await broker.drain(10)
    await stream_down(broker, sandbox, gate)
    await sandbox.step()  # it fills, unheard
    events = await events_until(broker, has(OrderFilled, "polled"))
    assert not broker.ready  # the stream is still down: REST found the fill
    assert [e.qty for e in events if isinstance(e, OrderFilled)] == [Decimal(4)]
    assert any(n.event == "fills_polled" for n in broker.poll_notices())
    gate.open()
    await until(lambda: broker.ready)
    assert not [e for e in broker.poll_events() if isinstance(e, OrderFilled)]  # once


async def test_settle_reconciles_through_rest_while_the_trade_stream_is_down(
    sandbox: Sandbox, make_broker: BrokerFactory, gate: Gate
) -> None:
    broker = await make_broker(poll_s=3600.0)
    broker.submit(buy("at-stop", 3))
    assert await broker.drain(10)
    await stream_down(broker, sandbox, gate)
    await sandbox.step()
    assert not [e for e in broker.poll_events() if isinstance(e, OrderFilled)]
    assert await broker.settle()
    fills = [e for e in broker.poll_events() if isinstance(e, OrderFilled)]
    assert [(f.client_order_id, f.qty) for f in fills] == [("at-stop", Decimal(3))]
    assert broker.positions["AAA"].qty == Decimal(3)
    assert broker.account is not None
    assert broker.account.cash == sandbox.cash
    gate.open()
