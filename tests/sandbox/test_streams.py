"""The two websockets (reference/alpaca.md §2-3): greeting, auth, subscriptions, batched bars."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from websockets.asyncio.client import connect

from sandbox import Sandbox
from tests.sandbox.kit import DATA, KEY, SECRET, data_socket, recv_json


async def test_data_stream_greets_authenticates_subscribes_and_batches_bars(
    sandbox: Sandbox,
) -> None:
    ws = await connect(sandbox.data_stream_url("iex"))
    assert await recv_json(ws) == [{"T": "success", "msg": "connected"}]
    await ws.send(json.dumps({"action": "auth", "key": KEY, "secret": SECRET}))
    assert await recv_json(ws) == [{"T": "success", "msg": "authenticated"}]
    await ws.send(json.dumps({"action": "subscribe", "bars": ["AAA", "BBB"], "trades": ["AAA"]}))
    sub = (await recv_json(ws))[0]
    assert sub["T"] == "subscription"
    assert sub["bars"] == ["AAA", "BBB"]
    assert sub["trades"] == sub["corrections"] == sub["cancelErrors"] == ["AAA"]
    assert sub["quotes"] == sub["dailyBars"] == []

    assert await sandbox.step()
    batch = await recv_json(ws)
    assert [(m["T"], m["S"]) for m in batch] == [("b", "AAA"), ("b", "BBB")]
    assert batch[0]["t"] == "2024-11-18T14:33:00Z"
    assert set(batch[0]) == {"T", "S", "o", "h", "l", "c", "v", "t", "n", "vw"}
    assert sandbox.last_minute_ns is not None
    assert sandbox.now_ns == sandbox.last_minute_ns + 60 * 10**9
    await ws.close()


async def test_unsubscribe_removes_symbols_and_bad_messages_get_400(sandbox: Sandbox) -> None:
    ws = await data_socket(sandbox, ["AAA", "BBB"])
    await ws.send(json.dumps({"action": "unsubscribe", "bars": ["bbb"]}))
    assert (await recv_json(ws))[0]["bars"] == ["AAA"]
    await ws.send("not json")
    assert await recv_json(ws) == [{"T": "error", "code": 400, "msg": "invalid syntax"}]
    await sandbox.step()
    assert [m["S"] for m in await recv_json(ws)] == ["AAA"]
    await ws.close()


async def test_subscribing_before_auth_gets_401(sandbox: Sandbox) -> None:
    async with connect(sandbox.data_stream_url("iex")) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"action": "subscribe", "bars": ["AAA"]}))
        assert await recv_json(ws) == [{"T": "error", "code": 401, "msg": "not authenticated"}]


async def test_bad_keys_get_402_and_the_socket_closes(sandbox: Sandbox) -> None:
    async with connect(sandbox.data_stream_url("sip")) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"action": "auth", "key": KEY, "secret": "wrong"}))
        assert await recv_json(ws) == [{"T": "error", "code": 402, "msg": "auth failed"}]
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)


async def test_second_authenticated_connection_gets_406(sandbox: Sandbox) -> None:
    first = await data_socket(sandbox, ["AAA"])
    async with connect(sandbox.data_stream_url("iex")) as second:
        await recv_json(second)
        await second.send(json.dumps({"action": "auth", "key": KEY, "secret": SECRET}))
        assert await recv_json(second) == [
            {"T": "error", "code": 406, "msg": "connection limit exceeded"}
        ]
    await first.close()
    assert sandbox.data_connections == 2


async def test_no_auth_within_the_timeout_gets_404() -> None:
    sb = Sandbox(DATA, symbols=["AAA"], auth_timeout_s=0.05)
    await sb.start()
    try:
        async with connect(sb.data_stream_url("iex")) as ws:
            await recv_json(ws)
            assert await recv_json(ws) == [{"T": "error", "code": 404, "msg": "auth timeout"}]
    finally:
        await sb.close()


async def test_test_feed_plays_fakepaca(sandbox: Sandbox) -> None:
    ws = await data_socket(sandbox, ["FAKEPACA"], feed="test")
    await sandbox.step()
    batch = await recv_json(ws)
    assert [m["S"] for m in batch] == ["FAKEPACA"]
    await ws.close()


async def test_trading_status_goes_to_the_sockets_subscribed_to_statuses(
    sandbox: Sandbox,
) -> None:
    ws = await data_socket(sandbox, [])
    await ws.send(json.dumps({"action": "subscribe", "statuses": ["AAA"]}))
    assert (await recv_json(ws))[0]["statuses"] == ["AAA"]
    await sandbox.trading_status("BBB", "H")  # not subscribed: nothing comes
    await sandbox.trading_status("AAA", "H", reason_code="T12")
    status = (await recv_json(ws))[0]
    assert (status["T"], status["S"], status["sc"], status["rc"]) == ("s", "AAA", "H", "T12")
    await ws.close()


async def test_trade_stream_refuses_bad_keys(sandbox: Sandbox) -> None:
    async with connect(sandbox.trade_stream_url) as ws:
        bad = {"action": "authenticate", "data": {"key_id": KEY, "secret_key": "nope"}}
        await ws.send(json.dumps(bad))
        reply = await recv_json(ws)
        assert reply["data"] == {"status": "unauthorized", "action": "authenticate"}
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)


async def test_trade_stream_listen_before_auth_is_unauthorized(sandbox: Sandbox) -> None:
    async with connect(sandbox.trade_stream_url) as ws:
        await ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        reply = await recv_json(ws)
        assert reply == {
            "stream": "authorization",
            "data": {"status": "unauthorized", "action": "listen"},
        }
