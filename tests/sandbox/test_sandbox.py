"""The sandbox speaks Alpaca's protocols (reference/alpaca.md §1-4) and misbehaves on demand."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import warnings
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import connect

from sandbox import Sandbox

DATA = Path(__file__).resolve().parents[2] / "data" / "sample" / "minute"
KEY, SECRET = "sandbox-key", "sandbox-secret"
HEADERS = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}


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


async def recv_json(ws: Any) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


async def data_socket(sb: Sandbox, bars: list[str], feed: str = "iex") -> Any:
    ws = await connect(sb.data_stream_url(feed))
    assert await recv_json(ws) == [{"T": "success", "msg": "connected"}]
    await ws.send(json.dumps({"action": "auth", "key": KEY, "secret": SECRET}))
    assert await recv_json(ws) == [{"T": "success", "msg": "authenticated"}]
    await ws.send(json.dumps({"action": "subscribe", "bars": bars}))
    reply = await recv_json(ws)
    assert reply[0]["T"] == "subscription"
    return ws


async def trade_socket(sb: Sandbox) -> Any:
    ws = await connect(sb.trade_stream_url)
    auth = {"action": "authenticate", "data": {"key_id": KEY, "secret_key": SECRET}}
    await ws.send(json.dumps(auth))
    frame = await asyncio.wait_for(ws.recv(), 10)
    assert isinstance(frame, bytes)  # the trade stream sends binary frames
    assert json.loads(frame)["data"]["status"] == "authorized"
    await ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
    assert (await recv_json(ws))["stream"] == "listening"
    return ws


def order_body(client_order_id: str, qty: str = "3", side: str = "buy") -> dict[str, Any]:
    return {
        "symbol": "AAA",
        "qty": qty,
        "side": side,
        "type": "market",
        "time_in_force": "day",
        "client_order_id": client_order_id,
    }


# -- market data -------------------------------------------------------------------------------


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


async def test_no_auth_within_the_timeout_gets_404(tmp_path: Path) -> None:
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


async def test_historical_pagination_returns_every_past_bar_once(sandbox: Sandbox) -> None:
    await sandbox.step(7)  # 3 warm + 7 played minutes are history
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from alpaca.data.historical.stock import StockHistoricalDataClient
        from alpaca.data.requests import StockBarsRequest
        from alpaca.data.timeframe import TimeFrame
    client = StockHistoricalDataClient(KEY, SECRET, raw_data=True, url_override=sandbox.data_url)
    request = StockBarsRequest(
        symbol_or_symbols=["BBB", "AAA"],
        timeframe=TimeFrame.Minute,
        start=dt.datetime(2024, 11, 18, 14, 0, tzinfo=dt.UTC),
    )
    raw = await asyncio.to_thread(client.get_stock_bars, request)
    assert isinstance(raw, dict)
    assert {s: len(v) for s, v in raw.items()} == {"AAA": 10, "BBB": 10}

    seen: list[tuple[str, str]] = []
    token: str | None = None
    pages = 0
    async with aiohttp.ClientSession(headers=HEADERS) as http:
        while True:
            params = {
                "symbols": "AAA,BBB",
                "timeframe": "1Min",
                "start": "2024-11-18",
                "limit": "3",
            }
            if token:
                params["page_token"] = token
            async with http.get(f"{sandbox.data_url}/v2/stocks/bars", params=params) as r:
                assert r.status == 200
                body = await r.json()
            pages += 1
            seen += [(s, b["t"]) for s, bars in body["bars"].items() for b in bars]
            token = body["next_page_token"]
            if token is None:
                break
    assert pages == 7
    assert len(seen) == len(set(seen)) == 20
    assert seen == sorted(seen)  # by symbol, then time


async def test_historical_bars_end_at_the_last_minute_played(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    params = {"symbols": "AAA", "timeframe": "1Min", "start": "2024-11-18", "end": "2024-11-19"}
    async with http.get(f"{sandbox.data_url}/v2/stocks/bars", params=params) as r:
        body = await r.json()
    assert [b["t"] for b in body["bars"]["AAA"]][-1] == "2024-11-18T14:32:00Z"  # 3 warm minutes
    async with http.get(
        f"{sandbox.data_url}/v2/stocks/bars", params={**params, "timeframe": "1Day"}
    ) as r:
        assert r.status == 422
        assert "1Min" in (await r.json())["message"]


async def test_clock_is_new_york_time_and_closes_when_the_data_ends(
    http: aiohttp.ClientSession,
) -> None:
    sb = Sandbox(DATA, symbols=["AAA"], start=dt.date(2024, 12, 9), warm_minutes=385)
    await sb.start()
    try:
        async with http.get(f"{sb.trading_url}/v2/clock") as r:
            clock = await r.json()
        assert clock == {
            "timestamp": "2024-12-09T15:55:00-05:00",
            "is_open": True,
            "next_open": "2024-12-10T09:30:00-05:00",
            "next_close": "2024-12-09T16:00:00-05:00",
        }
        assert await sb.step(5)
        assert not await sb.step()
        async with http.get(f"{sb.trading_url}/v2/clock") as r:
            clock = await r.json()
        assert clock["is_open"] is False
        assert clock["next_open"] == "2024-12-10T09:30:00-05:00"
    finally:
        await sb.close()


async def test_calendar_lists_sessions_with_early_closes(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    params = {"start": "2024-11-27", "end": "2024-12-02"}
    async with http.get(f"{sandbox.trading_url}/v2/calendar", params=params) as r:
        days = await r.json()
    assert [(d["date"], d["close"]) for d in days] == [
        ("2024-11-27", "16:00"),
        ("2024-11-29", "13:00"),
        ("2024-12-02", "16:00"),
    ]
    assert days[0]["settlement_date"] == "2024-11-29"


# -- trading -------------------------------------------------------------------------------------


async def test_rest_without_keys_is_401(sandbox: Sandbox) -> None:
    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.get(f"{sandbox.trading_url}/v2/account") as r,
    ):
        assert r.status == 401
        assert await r.json() == {"code": 40110000, "message": "unauthorized"}


async def test_market_order_fills_at_the_next_open_with_exact_cash(sandbox: Sandbox) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from alpaca.trading.client import TradingClient
        from alpaca.trading.enums import OrderSide, TimeInForce
        from alpaca.trading.requests import MarketOrderRequest
    client = TradingClient(KEY, SECRET, paper=True, raw_data=True, url_override=sandbox.trading_url)
    stream = await trade_socket(sandbox)
    request = MarketOrderRequest(
        symbol="AAA",
        qty=1.5,
        side=OrderSide.BUY,
        time_in_force=TimeInForce.DAY,
        client_order_id="t-1",
    )
    order = await asyncio.to_thread(client.submit_order, request)
    assert isinstance(order, dict)
    assert order["status"] == "new"
    assert order["client_order_id"] == "t-1"
    new = await recv_json(stream)
    assert (new["stream"], new["data"]["event"]) == ("trade_updates", "new")

    next_open = Decimal(repr(sandbox.market.next_bars()["AAA"].open))
    await sandbox.step()
    fill = (await recv_json(stream))["data"]
    assert fill["event"] == "fill"
    assert (fill["price"], fill["qty"], fill["position_qty"]) == (str(next_open), "1.5", "1.5")
    assert fill["order"]["filled_qty"] == "1.5"
    assert fill["order"]["filled_avg_price"] == str(next_open)
    assert fill["order"]["status"] == "filled"
    assert sandbox.positions == {"AAA": Decimal("1.5")}
    assert sandbox.cash == Decimal(100_000) - Decimal("1.5") * next_open
    account = await asyncio.to_thread(client.get_account)
    assert isinstance(account, dict)
    assert Decimal(account["cash"]) == sandbox.cash
    position = await asyncio.to_thread(client.get_open_position, "AAA")
    assert isinstance(position, dict)
    assert position["qty"] == "1.5"
    assert position["avg_entry_price"] == str(next_open)
    await stream.close()


async def test_duplicate_client_order_id_is_rejected_and_not_created(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    url = f"{sandbox.trading_url}/v2/orders"
    async with http.post(url, json=order_body("dup")) as r:
        assert r.status == 200
    async with http.post(url, json=order_body("dup")) as r:
        assert r.status == 422
        assert await r.json() == {"code": 40010001, "message": "client_order_id must be unique"}
    assert sandbox.orders_created["dup"] == 1
    assert sandbox.order_posts["dup"] == 2


async def test_order_validation_answers_like_alpaca(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    url = f"{sandbox.trading_url}/v2/orders"
    limit = {**order_body("sub"), "type": "limit", "limit_price": 290.123}
    async with http.post(url, json=limit) as r:
        assert r.status == 422
        assert await r.json() == {
            "code": 42210000,
            "message": "invalid limit_price 290.123. sub-penny increment does not fulfill "
            "minimum pricing criteria",
        }
    async with http.post(url, json=order_body("big", qty="1000")) as r:
        assert r.status == 403
        body = await r.json()
        assert body["message"] == "insufficient buying power"
        assert body["buying_power"] == "100000"
    async with http.post(url, json=order_body("short", side="sell")) as r:
        assert r.status == 403
        assert (await r.json())["message"] == (
            "insufficient qty available for order (requested: 3, available: 0)"
        )
    async with http.post(url, json={**order_body("tiny"), "qty": "0.001"}) as r:
        assert r.status == 422
    assert sum(sandbox.orders_created.values()) == 0


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


async def test_cancel_sends_canceled_and_a_filled_order_is_not_cancelable(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    stream = await trade_socket(sandbox)
    url = f"{sandbox.trading_url}/v2/orders"
    async with http.post(url, json=order_body("c1")) as r:
        first = await r.json()
    async with http.post(url, json=order_body("c2")) as r:
        second = await r.json()
    async with http.delete(f"{url}/{first['id']}") as r:
        assert r.status == 204
    events = [(await recv_json(stream))["data"]["event"] for _ in range(3)]
    assert events == ["new", "new", "canceled"]
    await sandbox.step()
    assert (await recv_json(stream))["data"]["order"]["id"] == second["id"]
    async with http.delete(f"{url}/{second['id']}") as r:
        assert r.status == 422
    async with http.get(url, params={"status": "closed"}) as r:
        assert [o["status"] for o in await r.json()] == ["filled", "canceled"]
    await stream.close()


async def test_limit_buy_fills_only_when_the_low_reaches_it(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    bar = sandbox.market.next_bars()["AAA"]
    url = f"{sandbox.trading_url}/v2/orders"
    below = Decimal(repr(bar.low)) - Decimal("0.01")
    above = Decimal(repr(bar.open)) + Decimal(1)
    for cid, price in (("below", below), ("above", above)):
        body = {**order_body(cid), "type": "limit", "limit_price": str(price)}
        async with http.post(url, json=body) as r:
            assert r.status == 200
    await sandbox.step()
    orders = {o.client_order_id: o for o in sandbox.account.orders.values()}
    assert orders["below"].status == "new"
    assert orders["above"].status == "filled"
    assert orders["above"].filled_avg_price == Decimal(repr(bar.open))


async def test_delay_fills_makes_fills_late(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    sandbox.faults.delay_fills(2)
    async with http.post(f"{sandbox.trading_url}/v2/orders", json=order_body("late")) as r:
        assert r.status == 200
    await sandbox.step(2)
    assert sandbox.positions == {}
    await sandbox.step()
    assert sandbox.positions == {"AAA": Decimal(3)}


async def test_close_position_sells_everything_at_the_next_open(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{sandbox.trading_url}/v2/orders", json=order_body("open")) as r:
        assert r.status == 200
    await sandbox.step()
    async with http.delete(f"{sandbox.trading_url}/v2/positions/AAA") as r:
        assert r.status == 200
        assert (await r.json())["side"] == "sell"
    await sandbox.step()
    assert sandbox.positions == {}
    async with http.get(f"{sandbox.trading_url}/v2/positions/AAA") as r:
        assert r.status == 404


async def test_trade_stream_refuses_bad_keys(sandbox: Sandbox) -> None:
    async with connect(sandbox.trade_stream_url) as ws:
        bad = {"action": "authenticate", "data": {"key_id": KEY, "secret_key": "nope"}}
        await ws.send(json.dumps(bad))
        reply = await recv_json(ws)
        assert reply["data"] == {"status": "unauthorized", "action": "authenticate"}
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)


async def test_unknown_event_has_an_unknown_type_and_extra_keys(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    stream = await trade_socket(sandbox)
    sandbox.faults.send_unknown_event()
    data = (await recv_json(stream))["data"]
    assert data["event"] == "sandbox_unknown_event"
    assert "sandbox_extra" in data
    await stream.close()


# -- dropped sockets -------------------------------------------------------------------------


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


async def test_speed_mode_plays_minutes_by_itself() -> None:
    sb = Sandbox(DATA, symbols=["AAA"], speed=60 * 200)  # 200 minutes a second
    await sb.start()
    try:
        ws = await data_socket(sb, ["AAA"])
        batch = await recv_json(ws)
        assert batch[0]["S"] == "AAA"
        await ws.close()
    finally:
        await sb.close()


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
