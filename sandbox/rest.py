"""The sandbox's trading REST API: clock, calendar, account, orders, positions, assets.

Handlers answer as reference/alpaca.md §1 describes, errors included; the middleware in
`sandbox.app` has checked the keys and applied REST faults before any of them runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections import Counter
from decimal import ROUND_DOWN, Decimal
from typing import Any

from aiohttp import web

from feeds.bar import NS_PER_SECOND
from feeds.days import local_midnight_ns
from sandbox import wire
from sandbox.account import QTY_STEP, Account
from sandbox.faults import FaultPlan
from sandbox.market import NY, Market
from sandbox.orders import OrderError, SandboxOrder
from sandbox.streams import TradeStream

_ORDER_NOT_FOUND = {"code": 40410000, "message": "order not found"}
_NO_POSITION = {"code": 40410000, "message": "position does not exist"}


def error_response(status: int, body: dict[str, Any]) -> web.Response:
    """An Alpaca JSON error (compact, as Alpaca sends it)."""
    return web.json_response(body, status=status, dumps=wire.dumps)


def unprocessable(message: str) -> web.Response:
    """A 422 for a request Alpaca would refuse."""
    return error_response(422, {"code": 42210000, "message": message})


def parse_time(text: str, *, end: bool) -> int:
    """RFC-3339 (naive = UTC) or a New York date; an `end` date means the end of that day.

    Raises:
        ValueError: neither.
    """
    text = text.strip()
    if len(text) == 10:
        day = dt.date.fromisoformat(text)
        if end:
            return local_midnight_ns(day + dt.timedelta(days=1), NY) - 1
        return local_midnight_ns(day, NY)
    parsed = dt.datetime.fromisoformat(text.replace("z", "Z"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    seconds = int(parsed.timestamp())
    return seconds * NS_PER_SECOND + parsed.microsecond * 1000


class TradingApi:
    """The trading REST handlers over one account and market.

    Args:
        account, market: what the API trades and reads.
        trades: where order events go.
        plan: the armed faults (rejected orders, lost responses).

    Attributes:
        orders_created: orders created per client_order_id (2 would be a duplicate order).
    """

    def __init__(
        self, account: Account, market: Market, trades: TradeStream, plan: FaultPlan
    ) -> None:
        self._account = account
        self._market = market
        self._trades = trades
        self._plan = plan
        self.orders_created: Counter[str] = Counter()

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Register every trading endpoint on `router`."""
        router.add_get("/v2/clock", self._get_clock)
        router.add_get("/v2/calendar", self._get_calendar)
        router.add_get("/v2/account", self._get_account)
        router.add_post("/v2/orders", self._post_order)
        router.add_get("/v2/orders", self._get_orders)
        router.add_delete("/v2/orders", self._delete_orders)
        router.add_get("/v2/orders:by_client_order_id", self._get_order_by_client_id)
        router.add_get("/v2/orders/{order_id}", self._get_order)
        router.add_delete("/v2/orders/{order_id}", self._delete_order)
        router.add_get("/v2/positions", self._get_positions)
        router.add_delete("/v2/positions", self._delete_positions)
        router.add_get("/v2/positions/{symbol}", self._get_position)
        router.add_delete("/v2/positions/{symbol}", self._delete_position)
        router.add_get("/v2/assets", self._get_assets)
        router.add_get("/v2/assets/{symbol}", self._get_asset)

    # -- clock and calendar --------------------------------------------------------------------

    async def _get_clock(self, request: web.Request) -> web.Response:
        now = self._market.now_ns
        tz = self._market.tz
        day = dt.datetime.fromtimestamp(now // NS_PER_SECOND, tz).date()
        sessions = self._market.calendar.sessions(day - dt.timedelta(days=1), 6)
        next_open = next(o for o, _ in sessions if o > now)
        next_close = next(c for _, c in sessions if c > now)
        return web.json_response(
            {
                "timestamp": wire.local_iso(now, tz),
                "is_open": not self._market.exhausted,
                "next_open": wire.local_iso(next_open, tz),
                "next_close": wire.local_iso(next_close, tz),
            }
        )

    async def _get_calendar(self, request: web.Request) -> web.Response:
        tz = self._market.tz
        minutes = self._market.minutes
        try:
            first = dt.date.fromisoformat(request.query["start"][:10])
        except KeyError:
            first = dt.datetime.fromtimestamp(minutes[0] // NS_PER_SECOND, tz).date()
        except ValueError:
            return unprocessable(f"invalid start {request.query['start']!r}: want YYYY-MM-DD")
        try:
            last = dt.date.fromisoformat(request.query["end"][:10])
        except KeyError:
            last = dt.datetime.fromtimestamp(minutes[-1] // NS_PER_SECOND, tz).date()
        except ValueError:
            return unprocessable(f"invalid end {request.query['end']!r}: want YYYY-MM-DD")
        if (last - first).days > 3660:
            return unprocessable("calendar range longer than 10 years")
        out: list[dict[str, str]] = []
        day = first
        while day <= last:
            if self._market.calendar.is_session(day):
                out.append(self._calendar_day(day))
            day += dt.timedelta(days=1)
        return web.json_response(out)

    def _calendar_day(self, day: dt.date) -> dict[str, str]:
        tz = self._market.tz
        calendar = self._market.calendar
        noon = local_midnight_ns(day, tz) + 12 * 3600 * NS_PER_SECOND
        bounds = calendar.bounds(noon)
        assert bounds is not None
        opened, closed = (dt.datetime.fromtimestamp(b // NS_PER_SECOND, tz) for b in bounds)
        settle = day + dt.timedelta(days=1)
        while not calendar.is_session(settle):
            settle += dt.timedelta(days=1)
        return {
            "date": day.isoformat(),
            "open": opened.strftime("%H:%M"),
            "close": closed.strftime("%H:%M"),
            "session_open": "0400",
            "session_close": "2000",
            "settlement_date": settle.isoformat(),
        }

    # -- account and orders --------------------------------------------------------------------

    async def _get_account(self, request: web.Request) -> web.Response:
        return web.json_response(self._account.account_json(self._market))

    async def _create_order(self, body: object) -> SandboxOrder:
        order = self._account.submit(body, self._market)
        self.orders_created[order.client_order_id] += 1
        await self._trades.emit(wire.order_event("new", order, order.created_ns))
        return order

    async def _post_order(self, request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read(), parse_float=Decimal)
        except (ValueError, UnicodeDecodeError):
            return error_response(
                400, {"code": 40010000, "message": "request body is not valid JSON"}
            )
        rejection = self._plan.take_rejection()
        if rejection is not None:
            status, message = rejection
            return error_response(status, {"code": status * 100_000 + 10_000, "message": message})
        try:
            order = await self._create_order(body)
        except OrderError as e:
            return error_response(e.status, e.body)
        if self._plan.take_lost_order():
            # The order exists and will fill; the client never learns it.
            if request.transport is not None:
                request.transport.close()
            raise asyncio.CancelledError
        return web.json_response(wire.order_json(order))

    async def _get_orders(self, request: web.Request) -> web.Response:
        q = request.query
        status = q.get("status", "open")
        if status not in ("open", "closed", "all"):
            return unprocessable(f"invalid status {status!r}: open, closed or all")
        try:
            limit = int(q.get("limit", "50"))
            after = parse_time(q["after"], end=False) if "after" in q else None
            until = parse_time(q["until"], end=False) if "until" in q else None
        except ValueError as e:
            return unprocessable(f"invalid query: {e}")
        if not 1 <= limit <= 500:
            return unprocessable(f"invalid limit {limit}: must be 1..500")
        symbols = {s.strip().upper() for s in q.get("symbols", "").split(",") if s.strip()}
        side = q.get("side")
        orders = [
            o
            for o in self._account.orders.values()
            if (status == "all" or o.is_open == (status == "open"))
            and (after is None or o.created_ns > after)
            and (until is None or o.created_ns < until)
            and (not symbols or o.symbol in symbols)
            and (side is None or o.side == side)
        ]
        orders.sort(key=lambda o: o.created_ns, reverse=q.get("direction", "desc") == "desc")
        return web.json_response([wire.order_json(o) for o in orders[:limit]])

    async def _get_order(self, request: web.Request) -> web.Response:
        order = self._account.orders.get(request.match_info["order_id"])
        if order is None:
            return error_response(404, _ORDER_NOT_FOUND)
        return web.json_response(wire.order_json(order))

    async def _get_order_by_client_id(self, request: web.Request) -> web.Response:
        order = self._account.by_client_id.get(request.query.get("client_order_id", ""))
        if order is None:
            return error_response(404, _ORDER_NOT_FOUND)
        return web.json_response(wire.order_json(order))

    async def _cancel(self, order: SandboxOrder) -> None:
        self._account.cancel(order, self._market.now_ns)
        ts = order.canceled_ns or self._market.now_ns
        await self._trades.emit(wire.order_event("canceled", order, ts))

    async def _delete_order(self, request: web.Request) -> web.Response:
        order = self._account.orders.get(request.match_info["order_id"])
        if order is None:
            return error_response(404, _ORDER_NOT_FOUND)
        try:
            await self._cancel(order)
        except OrderError as e:
            return error_response(e.status, e.body)
        return web.Response(status=204)

    async def _delete_orders(self, request: web.Request) -> web.Response:
        out: list[dict[str, Any]] = []
        for order in self._account.open_orders():
            await self._cancel(order)
            out.append({"id": order.id, "status": 200, "body": wire.order_json(order)})
        return web.json_response(out, status=207)

    # -- positions and assets ------------------------------------------------------------------

    async def _get_positions(self, request: web.Request) -> web.Response:
        account = self._account
        return web.json_response(
            [account.position_json(s, self._market) for s in sorted(account.positions)]
        )

    def _position_symbol(self, raw: str) -> str | None:
        held = self._account.positions
        symbol = raw.upper()
        if symbol in held:
            return symbol
        return next((s for s in held if wire.asset_id(s) == raw), None)

    async def _get_position(self, request: web.Request) -> web.Response:
        symbol = self._position_symbol(request.match_info["symbol"])
        if symbol is None:
            return error_response(404, _NO_POSITION)
        return web.json_response(self._account.position_json(symbol, self._market))

    async def _close_position(self, symbol: str, qty: Decimal) -> SandboxOrder:
        body = {
            "symbol": symbol,
            "side": "sell",
            "type": "market",
            "time_in_force": "day",
            "qty": str(qty),
        }
        return await self._create_order(body)

    async def _delete_position(self, request: web.Request) -> web.Response:
        symbol = self._position_symbol(request.match_info["symbol"])
        if symbol is None:
            return error_response(404, _NO_POSITION)
        held = self._account.positions[symbol]
        q = request.query
        try:
            if "qty" in q and "percentage" in q:
                return unprocessable("only one of qty or percentage")
            if "qty" in q:
                qty = Decimal(q["qty"])
            elif "percentage" in q:
                qty = (held * Decimal(q["percentage"]) / 100).quantize(QTY_STEP, ROUND_DOWN)
            else:
                qty = held
            order = await self._close_position(symbol, qty)
        except OrderError as e:
            return error_response(e.status, e.body)
        except ArithmeticError:
            return unprocessable("invalid qty or percentage")
        return web.json_response(wire.order_json(order))

    async def _delete_positions(self, request: web.Request) -> web.Response:
        if request.query.get("cancel_orders", "false").lower() == "true":
            for open_order in self._account.open_orders():
                await self._cancel(open_order)
        out: list[dict[str, Any]] = []
        for symbol, held in sorted(self._account.positions.items()):
            try:
                order = await self._close_position(symbol, held)
            except OrderError as e:
                out.append({"symbol": symbol, "status": e.status, "body": e.body})
            else:
                out.append({"symbol": symbol, "status": 200, "body": wire.order_json(order)})
        return web.json_response(out, status=207)

    async def _get_assets(self, request: web.Request) -> web.Response:
        return web.json_response([wire.asset_json(s) for s in self._market.symbols])

    async def _get_asset(self, request: web.Request) -> web.Response:
        raw = request.match_info["symbol"]
        for symbol in self._market.symbols:
            if raw.upper() == symbol or raw == wire.asset_id(symbol):
                return web.json_response(wire.asset_json(symbol))
        return error_response(404, {"code": 40410000, "message": "asset not found"})
