"""Fixtures of the broker tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sandbox import Sandbox
from tests.brokers.alpaca_kit import DATA, KEY, SECRET, BrokerFactory, Gate, broker_factory


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    sb = Sandbox(DATA, symbols=["AAA", "BBB"], key=KEY, secret=SECRET, warm_minutes=5)
    await sb.start()
    yield sb
    await sb.close()


@pytest.fixture
def gate() -> Gate:
    """The broker's injected sleep (see Gate)."""
    return Gate()


@pytest.fixture
async def make_broker(sandbox: Sandbox, gate: Gate) -> AsyncIterator[BrokerFactory]:
    async for make in broker_factory(sandbox, gate.sleep):
        yield make
