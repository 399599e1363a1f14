"""The sandbox on an ephemeral port, stepped by hand, and an HTTP client with its keys."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from sandbox import Sandbox
from tests.sandbox.kit import DATA, HEADERS, KEY, SECRET


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    sb = Sandbox(DATA, symbols=["AAA", "BBB"], key=KEY, secret=SECRET, warm_minutes=3)
    await sb.start()
    yield sb
    await sb.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        yield session
