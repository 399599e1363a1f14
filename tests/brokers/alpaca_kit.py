"""What the Alpaca broker tests share: the sandbox account's keys, orders, waiting for events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

from brokers.alpaca import AlpacaBroker
from brokers.alpaca_rest import AlpacaRest
from brokers.base import LiveBroker
from brokers.orders import ExecutionEvent, OrderSide, OrderType, SubmitOrder
from sandbox import Sandbox
from tests.conftest import ROOT

DATA = ROOT / "data" / "sample" / "minute"
KEY, SECRET = "test-key", "test-secret"


def buy(cid: str, qty: int = 10, symbol: str = "AAA") -> SubmitOrder:
    return SubmitOrder(
        client_order_id=cid,
        symbol=symbol,
        side=OrderSide.BUY,
        qty=Decimal(qty),
        order_type=OrderType.MARKET,
        ts=0,
    )


async def events_until(
    broker: LiveBroker,
    done: Callable[[list[ExecutionEvent]], bool],
    seen: list[ExecutionEvent] | None = None,
) -> list[ExecutionEvent]:
    """Collect events until `done(collected)`, within 10 s."""
    collected = seen if seen is not None else []
    async with asyncio.timeout(10):
        while True:
            collected += broker.poll_events()
            if done(collected):
                return collected
            await broker.events_ready.wait()


def has(kind: type, cid: str) -> Callable[[list[ExecutionEvent]], bool]:
    return lambda events: any(isinstance(e, kind) and e.client_order_id == cid for e in events)


def sandbox_fills(sandbox: Sandbox, cid: str) -> list[dict[str, Any]]:
    return [
        m["data"]
        for m in sandbox.trade_events
        if m["data"].get("event") == "fill" and m["data"]["order"]["client_order_id"] == cid
    ]


BrokerFactory = Callable[..., Awaitable[AlpacaBroker]]


def alpaca_broker(
    sandbox: Sandbox, sleep: Callable[[float], Awaitable[None]], **kwargs: Any
) -> AlpacaBroker:
    """An Alpaca broker on `sandbox` (not started), with `sleep` for every backoff."""
    return AlpacaBroker(
        rest=AlpacaRest(key=KEY, secret=SECRET, url=sandbox.trading_url, sleep=sleep),
        stream_url=sandbox.trade_stream_url,
        key=KEY,
        secret=SECRET,
        sleep=sleep,
        now_ns=lambda: sandbox.now_ns,
        **kwargs,
    )


async def broker_factory(
    sandbox: Sandbox, sleep: Callable[[float], Awaitable[None]]
) -> AsyncIterator[BrokerFactory]:
    """Alpaca brokers on `sandbox`, started, with `sleep` for every backoff; closed after."""
    made: list[AlpacaBroker] = []

    async def make(**kwargs: Any) -> AlpacaBroker:
        broker = alpaca_broker(sandbox, sleep, **kwargs)
        made.append(broker)
        await asyncio.wait_for(broker.start(), 10)
        return broker

    yield make
    for broker in made:
        await broker.close()


class Gate:
    """The injected sleep: returns at once while open (no real backoff waits), blocks while
    closed, and records every delay asked for."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._open = asyncio.Event()
        self._open.set()

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        await self._open.wait()
        await asyncio.sleep(0)

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()
