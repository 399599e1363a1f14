"""Faults armed on a running sandbox: lost responses, REST errors, late fills, cut sockets."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import connect

from sandbox import Sandbox
from tests.sandbox.kit import HEADERS, KEY, SECRET, data_socket, order_body, recv_json, trade_socket


async def test_lost_order_response_creates_the_order_but_the_client_sees_no_answer(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    sandbox.faults.lose_order_response()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.post(f"{sandbox.trading_url}/v2/orders", json=order_body("lost")):
            pass
    assert sandbox.orders_created["lost"] == 1
    lookup = f"{sandbox.trading_url}/v2/orders:by_client_order_id"
    async with http.get(lookup, params={"client_order_id": "lost"}) as r:
        assert r.status == 200
        assert (await r.json())["status"] == "new"
    async with http.get(lookup, params={"client_order_id": "never"}) as r:
        assert r.status == 404
        assert await r.json() == {"code": 40410000, "message": "order not found"}


async def test_fail_rest_429_carries_rate_limit_headers_then_succeeds(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    sandbox.faults.fail_rest(429, method="GET", path="/v2/account")
    async with http.get(f"{sandbox.trading_url}/v2/account") as r:
        assert r.status == 429
        assert r.headers["X-Ratelimit-Remaining"] == "0"
        assert int(r.headers["X-Ratelimit-Reset"]) > 0
    async with http.get(f"{sandbox.trading_url}/v2/account") as r:
        assert r.status == 200
    sandbox.faults.fail_rest(502)
    async with http.get(f"{sandbox.trading_url}/v2/clock") as r:
        assert r.status == 502
        assert await r.text() == "<html>502 Bad Gateway</html>"
    assert sandbox.requests[("GET", "/v2/account")] == 2


async def test_fail_rest_counts_down_and_other_statuses_are_json(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    sandbox.faults.fail_rest(500, times=2, method="get")
    statuses = []
    for _ in range(3):
        async with http.get(f"{sandbox.trading_url}/v2/clock") as r:
            statuses.append(r.status)
            if r.status == 500:
                assert await r.json() == {"code": 50010000, "message": "internal error"}
    assert statuses == [500, 500, 200]


async def test_reject_orders_refuses_the_next_submissions(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    sandbox.faults.reject_orders(403, "account is restricted")
    url = f"{sandbox.trading_url}/v2/orders"
    async with http.post(url, json=order_body("refused")) as r:
        assert r.status == 403
        assert await r.json() == {"code": 40310000, "message": "account is restricted"}
    async with http.post(url, json=order_body("accepted")) as r:
        assert r.status == 200
    assert sandbox.order_posts["refused"] == 1
    assert "refused" not in sandbox.orders_created


async def test_delay_fills_makes_fills_late(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    sandbox.faults.delay_fills(2)
    async with http.post(f"{sandbox.trading_url}/v2/orders", json=order_body("late")) as r:
        assert r.status == 200
    await sandbox.step(2)
    assert sandbox.positions == {}
    await sandbox.step()
    assert sandbox.positions == {"AAA": Decimal(3)}


async def test_unknown_event_has_an_unknown_type_and_extra_keys(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    stream = await trade_socket(sandbox)
    sandbox.faults.send_unknown_event()
    data = (await recv_json(stream))["data"]
    assert data["event"] == "sandbox_unknown_event"
    assert "sandbox_extra" in data
    assert "order" not in data  # no order yet
    await stream.close()


async def test_drop_data_socket_cuts_mid_batch_and_refuses_reconnects_for_a_while(
    sandbox: Sandbox,
) -> None:
    ws = await data_socket(sandbox, ["*"])
    sandbox.faults.drop_data_socket(after_bars=1, down_steps=2)
    await sandbox.step()
    assert [m["S"] for m in await recv_json(ws)] == ["AAA"]
    with pytest.raises(websockets.ConnectionClosedError) as closed:
        await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is None  # no close frame: an abrupt drop
    with pytest.raises(websockets.InvalidStatus) as refused:
        await connect(sandbox.data_stream_url("iex"))
    assert refused.value.response.status_code == 503
    await sandbox.step(2)
    ws = await data_socket(sandbox, ["*"])
    assert sandbox.data_connections == 2
    await ws.close()
    # The bar that was never sent is in the history.
    async with aiohttp.ClientSession(headers=HEADERS) as http:
        params = {"symbols": "BBB", "timeframe": "1Min", "start": "2024-11-18T14:33:00Z"}
        async with http.get(f"{sandbox.data_url}/v2/stocks/bars", params=params) as r:
            times = [b["t"] for b in (await r.json())["bars"]["BBB"]]
    assert times[0] == "2024-11-18T14:33:00Z"


async def test_drop_trade_socket_cuts_the_stream(sandbox: Sandbox) -> None:
    stream = await trade_socket(sandbox)
    sandbox.faults.drop_trade_socket()
    with pytest.raises(websockets.ConnectionClosedError):
        await asyncio.wait_for(stream.recv(), 10)
    stream = await trade_socket(sandbox)
    assert sandbox.trade_connections == 2
    await stream.close()


async def test_refuse_data_answers_auth_with_the_error_then_accepts(sandbox: Sandbox) -> None:
    sandbox.faults.refuse_data(406)
    async with connect(sandbox.data_stream_url("iex")) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"action": "auth", "key": KEY, "secret": SECRET}))
        assert (await recv_json(ws))[0]["code"] == 406
    ws = await data_socket(sandbox, ["AAA"])
    await ws.close()


async def test_silence_data_keeps_the_socket_open_but_sends_nothing(sandbox: Sandbox) -> None:
    silent = await data_socket(sandbox, ["AAA"], feed="sip")
    sandbox.faults.silence_data()
    fresh = await data_socket(sandbox, ["AAA"], feed="iex")
    await sandbox.step()
    assert (await recv_json(fresh))[0]["S"] == "AAA"
    # A pong comes after every frame sent before it: once it is back, no bar is queued.
    await asyncio.wait_for(await silent.ping(), 10)
    assert len(silent.recv_messages.frames) == 0
    await silent.close()
    await fresh.close()
