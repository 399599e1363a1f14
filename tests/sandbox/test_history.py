"""Historical bars (reference/alpaca.md §4): only the past, paged by symbol then time."""

from __future__ import annotations

import asyncio
import datetime as dt
import warnings

import aiohttp

from sandbox import Sandbox
from tests.sandbox.kit import HEADERS, KEY, SECRET


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
        days = (await r.json())["bars"]["AAA"]
    # The day so far, from the minutes played, stamped at New York midnight.
    minutes = body["bars"]["AAA"]
    assert [d["t"] for d in days] == ["2024-11-18T05:00:00Z"]
    assert days[0]["o"] == minutes[0]["o"]
    assert days[0]["c"] == minutes[-1]["c"]
    assert days[0]["v"] == sum(m["v"] for m in minutes)
    async with http.get(
        f"{sandbox.data_url}/v2/stocks/bars", params={**params, "timeframe": "1Hour"}
    ) as r:
        assert r.status == 422
        assert "1Min and 1Day" in (await r.json())["message"]


async def test_single_symbol_descending_and_latest_bars(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    params = {"timeframe": "1Min", "start": "2024-11-18", "sort": "desc", "limit": "2"}
    async with http.get(f"{sandbox.data_url}/v2/stocks/AAA/bars", params=params) as r:
        body = await r.json()
    assert body["symbol"] == "AAA"
    assert [b["t"] for b in body["bars"]] == ["2024-11-18T14:32:00Z", "2024-11-18T14:31:00Z"]
    assert body["next_page_token"] is not None
    latest = f"{sandbox.data_url}/v2/stocks/bars/latest"
    async with http.get(latest, params={"symbols": "AAA,BBB"}) as r:
        bars = (await r.json())["bars"]
    assert {s: b["t"] for s, b in bars.items()} == {
        "AAA": "2024-11-18T14:32:00Z",
        "BBB": "2024-11-18T14:32:00Z",
    }
    async with http.get(f"{sandbox.data_url}/v2/stocks/bars", params={"page_token": "x"}) as r:
        assert r.status == 400  # symbols is required
