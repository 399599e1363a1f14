"""The sandbox's historical bars: ``GET /v2/stocks/bars`` and its single-symbol and latest forms.

Only minutes already played (or warm) are history: what the data stream has not reached does not
exist yet. ``timeframe=1Day`` serves daily bars aggregated from those minutes (the session's
minutes, stamped at New York midnight, as Alpaca's; today's bar is the day so far).
Pages run by symbol, then time, as Alpaca's do (reference/alpaca.md §4); the page
token is opaque to clients and here names the first bar of the next page.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any

from aiohttp import web

from feeds.aggregator import BarAggregator
from feeds.bar import NS_PER_DAY, NS_PER_SECOND, Bar
from feeds.days import local_midnight_ns
from sandbox import wire
from sandbox.market import Market
from sandbox.rest import error_response, parse_time, unprocessable

_MAX_LIMIT = 10_000


def _symbols(raw: str) -> list[str]:
    return sorted({s.strip().upper() for s in raw.split(",") if s.strip()})


def _before(ts: int, cursor_ts: int, descending: bool) -> bool:
    """Whether a bar at `ts` comes before the page cursor in the requested order."""
    return ts > cursor_ts if descending else ts < cursor_ts


class HistoryApi:
    """The historical-bars handlers over the market's past."""

    def __init__(self, market: Market) -> None:
        self._market = market

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Register the bars endpoints on `router`."""
        router.add_get("/v2/stocks/bars", self._get_bars)
        router.add_get("/v2/stocks/bars/latest", self._get_latest_bars)
        router.add_get("/v2/stocks/{symbol}/bars", self._get_symbol_bars)

    async def _get_bars(self, request: web.Request) -> web.Response:
        symbols = _symbols(request.query.get("symbols", ""))
        if not symbols:
            return error_response(400, {"code": 40010000, "message": "symbols is required"})
        return self._bars_response(request, symbols, single=False)

    async def _get_symbol_bars(self, request: web.Request) -> web.Response:
        return self._bars_response(request, [request.match_info["symbol"].upper()], single=True)

    async def _get_latest_bars(self, request: web.Request) -> web.Response:
        out: dict[str, Any] = {}
        for symbol in _symbols(request.query.get("symbols", "")):
            bar = self._market.last_bar(symbol)
            if bar is not None:
                out[symbol] = wire.bar_json(bar)
        return web.json_response({"bars": out})

    def _bars_response(
        self, request: web.Request, symbols: list[str], *, single: bool
    ) -> web.Response:
        q = request.query
        timeframe = q.get("timeframe")
        if timeframe is None:
            return unprocessable("timeframe is required")
        if timeframe not in ("1Min", "1T", "1Day", "1D"):
            return unprocessable(
                f"invalid timeframe {timeframe!r}: the sandbox serves only 1Min and 1Day"
            )
        daily = timeframe in ("1Day", "1D")
        tz = self._market.tz
        now = self._market.now_ns
        try:
            start = (
                parse_time(q["start"], end=False)
                if "start" in q
                else local_midnight_ns(
                    dt.datetime.fromtimestamp(now // NS_PER_SECOND, tz).date(), tz
                )
            )
            end = parse_time(q["end"], end=True) if "end" in q else now
        except ValueError as e:
            return unprocessable(f"invalid start or end: {e}")
        try:
            limit = int(q.get("limit", "1000"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= _MAX_LIMIT:
            return unprocessable(f"invalid limit {q.get('limit')!r}: must be 1..10000")
        cursor: tuple[str, int] | None = None
        if q.get("page_token"):
            try:
                sym, ts = base64.b64decode(q["page_token"], validate=True).decode().split("|")
                cursor = (sym, int(ts))
            except (ValueError, binascii.Error):
                return unprocessable(f"invalid page_token {q['page_token']!r}")
        descending = q.get("sort", "asc") == "desc"
        out, next_token = self._page(
            symbols, start, end, limit, cursor, descending=descending, daily=daily
        )
        if single:
            body: dict[str, Any] = {
                "bars": out.get(symbols[0], []),
                "symbol": symbols[0],
                "next_page_token": next_token,
            }
        else:
            body = {"bars": out, "next_page_token": next_token}
        return web.json_response(body, dumps=wire.dumps)

    def _page(
        self,
        symbols: list[str],
        start: int,
        end: int,
        limit: int,
        cursor: tuple[str, int] | None,
        *,
        descending: bool,
        daily: bool = False,
    ) -> tuple[dict[str, list[dict[str, Any]]], str | None]:
        """One page from `cursor` on: the bars by symbol and the next page's token."""
        out: dict[str, list[dict[str, Any]]] = {}
        taken = 0
        for symbol in symbols:
            if cursor is not None and symbol < cursor[0]:
                continue
            bars: list[Bar] = (
                self._daily(symbol, start, end)
                if daily
                else self._market.history(symbol, start, end)
            )
            if descending:
                bars = bars[::-1]
            for bar in bars:
                if (
                    cursor is not None
                    and symbol == cursor[0]
                    and _before(bar.ts, cursor[1], descending)
                ):
                    continue
                if taken == limit:
                    return out, base64.b64encode(f"{symbol}|{bar.ts}".encode()).decode()
                out.setdefault(symbol, []).append(wire.bar_json(bar))
                taken += 1
        return out, None

    def _daily(self, symbol: str, start: int, end: int) -> list[Bar]:
        """The symbol's daily bars stamped within [start, end], from the minutes played."""
        aggregator = BarAggregator("1Day", self._market.calendar)
        # The minutes of the sessions stamped in range: from the first day's midnight to the
        # end of the last stamped day.
        minutes = self._market.history(symbol, start, end + NS_PER_DAY)
        days = [b for m in minutes for b in aggregator.add(m)]
        days += aggregator.close_through(1 << 62)
        return [b for b in days if start <= b.ts <= end]
