"""The trading REST API (reference/alpaca.md §1): clock, calendar, orders, positions, errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import warnings
from decimal import Decimal

import aiohttp

from sandbox import Sandbox
from tests.sandbox.kit import DATA, KEY, SECRET, order_body, recv_json, trade_socket


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
    async with http.post(url, data=b"{not json") as r:
        assert r.status == 400
    assert sum(sandbox.orders_created.values()) == 0


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
    async with http.get(f"{url}/{second['id']}") as r:
        assert (await r.json())["status"] == "filled"
    async with http.get(f"{url}/no-such-order") as r:
        assert r.status == 404
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


async def test_assets_by_symbol_or_id(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{sandbox.trading_url}/v2/assets") as r:
        assets = await r.json()
    assert [a["symbol"] for a in assets] == ["AAA", "BBB"]
    async with http.get(f"{sandbox.trading_url}/v2/assets/{assets[1]['id']}") as r:
        assert (await r.json())["symbol"] == "BBB"
    async with http.get(f"{sandbox.trading_url}/v2/assets/ZZZ") as r:
        assert r.status == 404
