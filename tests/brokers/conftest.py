"""Fixtures of the broker tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sandbox import Sandbox
from tests.brokers.alpaca_kit import DATA, KEY, SECRET


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    sb = Sandbox(DATA, symbols=["AAA", "BBB"], key=KEY, secret=SECRET, warm_minutes=5)
    await sb.start()
    yield sb
    await sb.close()
