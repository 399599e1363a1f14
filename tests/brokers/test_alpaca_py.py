"""The alpaca-py internals tradingd overwrites are still there, and still in effect.

alpaca-py's REST clients retry blindly (429/504, POST included) and send requests without a
timeout. tradingd switches both off by overwriting two private attributes of each client it
builds: `_retry` (set to 0) and `_session` (a `requests.Session` with a timeout, and for bars its
own retries). A release that renames either would make those assignments silent no-ops, so
these tests fail loudly, naming the attribute, and pyproject.toml pins the tested range.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import inspect
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from brokers.alpaca_rest import AlpacaRest, TransientRestError
from sandbox import Sandbox
from tests.brokers.alpaca_kit import KEY, SECRET

VERSION = importlib.metadata.version("alpaca-py")
# attribute -> what tradingd does with it
PRIVATE = {
    "_retry": "set to 0: retrying is tradingd's decision (a POST is resent only after a lookup)",
    "_session": "replaced by a requests.Session that gives every request a timeout",
}
# (module, class) -> the tradingd module that overwrites the attributes of its instances
CLIENTS = {
    ("alpaca.trading.client", "TradingClient"): "brokers/alpaca_rest.py",
    ("alpaca.data.historical.stock", "StockHistoricalDataClient"): "feeds/alpaca_history.py",
}


def alpaca(module: str) -> Any:
    with warnings.catch_warnings():
        # alpaca-py's package imports its streams, built on websockets' legacy API.
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module(module)


@pytest.mark.parametrize("attribute", sorted(PRIVATE))
@pytest.mark.parametrize(("module", "name"), sorted(CLIENTS))
def test_each_overwritten_private_attribute_exists(module: str, name: str, attribute: str) -> None:
    cls = getattr(alpaca(module), name)
    client = cls("key", "secret", raw_data=True, url_override="http://127.0.0.1:9")
    if not hasattr(client, attribute):
        pytest.fail(
            f"alpaca-py {VERSION}: {name} has no attribute {attribute!r} any more; "
            f"{CLIENTS[module, name]} overwrites it ({PRIVATE[attribute]}), which now does "
            "nothing. Adapt that module to this alpaca-py, or keep the version pinned in "
            "pyproject.toml."
        )


@pytest.mark.parametrize(
    ("method", "reads"),
    [("_request", "self._retry"), ("_one_request", "self._session.request")],
)
def test_the_request_path_still_reads_them(method: str, reads: str) -> None:
    rest_client = alpaca("alpaca.common.rest").RESTClient
    source = inspect.getsource(getattr(rest_client, method))
    attribute = reads.split(".")[1]
    if reads not in source:
        pytest.fail(
            f"alpaca-py {VERSION}: RESTClient.{method} no longer reads {reads}, so overwriting "
            f"{attribute!r} ({PRIVATE[attribute]}) has no effect"
        )


async def test_a_429_reaches_the_adapter_after_one_request(sandbox: Sandbox) -> None:
    """`_retry = 0` in effect: alpaca-py would otherwise wait 3 s and resend."""
    sandbox.faults.fail_rest(429, method="GET", path="/v2/clock")
    rest = AlpacaRest(key=KEY, secret=SECRET, url=sandbox.trading_url)
    try:
        with pytest.raises(TransientRestError) as info:
            await asyncio.wait_for(rest.clock(), 2)
    finally:
        await rest.close()
    assert info.value.status == 429
    assert sandbox.requests[("GET", "/v2/clock")] == 1


@pytest.fixture
async def silent_server() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """A trading API on 127.0.0.1 that answers nothing until the event is set."""
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hang)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), release
    finally:
        release.set()
        await server.close()


async def test_a_request_without_an_answer_times_out(
    silent_server: tuple[str, asyncio.Event],
) -> None:
    """The replaced `_session` in effect: alpaca-py's own would wait forever."""
    url, _ = silent_server
    rest = AlpacaRest(key=KEY, secret=SECRET, url=url, timeout_s=0.2)
    try:
        with pytest.raises(TransientRestError, match=r"no answer within 0\.2 s"):
            await asyncio.wait_for(rest.clock(), 5)
    finally:
        await rest.close()
