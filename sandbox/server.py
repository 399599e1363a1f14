"""A local stand-in for Alpaca: trading REST, the trade-updates stream, the market-data stream
and historical bars, over a virtual market clock that plays bars from files.

One aiohttp application serves every protocol on one loopback port, as reference/alpaca.md
sections 1-4 describe them, so the Alpaca adapters (and alpaca-py's own REST clients) can be
tested end to end without the network. `Faults` arms misbehaviours: dropped sockets, refused
auth, 429/5xx answers, lost order responses, rejections, late fills.

Market time: minute i is "played" by `step()` (manual mode) or every ``60 / speed`` wall
seconds. Playing it fills the orders due at bar i's open (``fill`` events), then moves the clock
to the end of minute i and broadcasts bar i's bars as one batched array. Gaps between sessions
are skipped.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import WSMsgType, web

from feeds.bar import NS_PER_SECOND, Bar
from feeds.calendar import SessionCalendar
from feeds.days import local_midnight_ns
from sandbox.state import (
    NY,
    Account,
    Market,
    OrderError,
    SandboxOrder,
    asset_json,
    bar_json,
    local_iso,
    order_event,
    rfc3339,
)

FEEDS = ("iex", "sip", "delayed_sip", "test")
TEST_SYMBOL = "FAKEPACA"
_CHANNELS = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds")
_DATA_ERRORS = {
    400: "invalid syntax",
    401: "not authenticated",
    402: "auth failed",
    403: "already authenticated",
    404: "auth timeout",
    405: "symbol limit exceeded",
    406: "connection limit exceeded",
    407: "slow client",
    409: "insufficient subscription",
    500: "internal error",
}
_UNAUTHORIZED = {"code": 40110000, "message": "unauthorized"}
_NOT_FOUND = {"code": 40410000, "message": "order not found"}
_HTML_ERRORS = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
_QTY_STEP = Decimal("0.000000001")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _error(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status, dumps=_dumps)


def _unprocessable(message: str) -> web.Response:
    return _error(422, {"code": 42210000, "message": message})


def _parse_time(text: str, *, end: bool) -> int:
    """RFC-3339 (naive = UTC) or a New York date; an `end` date means the end of that day."""
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


def _before(ts: int, cursor_ts: int, descending: bool) -> bool:
    """Whether a bar at `ts` comes before the page cursor in the requested order."""
    return ts > cursor_ts if descending else ts < cursor_ts


# -- faults -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _RestFault:
    status: int
    times: int
    method: str | None
    path: str | None


class Faults:
    """Misbehaviours to arm; every count means "the next N times"."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self._rest: list[_RestFault] = []
        self._drop_data: tuple[int, int] | None = None
        self._refuse_data: list[int] = []
        self._lose_orders = 0
        self._reject: list[tuple[int, str]] = []

    def drop_data_socket(self, *, after_bars: int = 0, down_steps: int = 0) -> None:
        """During the next minute played, send each data socket only the first `after_bars`
        bars of its batch, then cut it without a close frame; answer new data handshakes with
        HTTP 503 until `down_steps` more minutes were played. Unsent bars stay in the history."""
        self._drop_data = (after_bars, down_steps)

    def refuse_data(self, code: int = 406, times: int = 1) -> None:
        """Answer the next `times` data-stream auth messages with error `code`, then close."""
        self._refuse_data.extend([code] * times)

    def drop_trade_socket(self) -> None:
        """Cut every trade-updates socket now, without a close frame."""
        for sock in list(self._sandbox._trade_sockets):
            sock.cut()

    def fail_rest(
        self, status: int, *, times: int = 1, method: str | None = None, path: str | None = None
    ) -> None:
        """Answer the next `times` REST requests (matching `method` and the exact `path` when
        given) with `status` before handling them: 429 carries the X-Ratelimit headers, 502-504
        an HTML body, others a JSON error."""
        self._rest.append(_RestFault(status, times, method and method.upper(), path))

    def lose_order_response(self, times: int = 1) -> None:
        """The next `times` accepted orders are created (and will fill), then the connection is
        closed without an HTTP response."""
        self._lose_orders += times

    def reject_orders(
        self, status: int = 422, message: str = "order rejected by sandbox", times: int = 1
    ) -> None:
        """Refuse the next `times` order submissions with `status` and `message`."""
        self._reject.extend([(status, message)] * times)

    def delay_fills(self, minutes: int) -> None:
        """Open and later orders fill `minutes` minutes later than they would (0 undoes it)."""
        sandbox = self._sandbox
        sandbox.account.delay_fills(minutes, sandbox.market.played)

    def send_unknown_event(self) -> None:
        """Send a trade_updates event of an unknown type with extra keys, now."""
        self._sandbox._spawn(self._sandbox._send_unknown_event())

    def silence_data(self) -> None:
        """The data sockets open now stay open but send nothing more (new ones work)."""
        for sock in self._sandbox._data_sockets:
            sock.silent = True

    # -- used by the sandbox ---------------------------------------------------------------

    def _take_rest(self, method: str, path: str) -> int | None:
        for fault in self._rest:
            if (fault.method in (None, method)) and (fault.path in (None, path)):
                fault.times -= 1
                if fault.times <= 0:
                    self._rest.remove(fault)
                return fault.status
        return None

    def _take_lost(self) -> bool:
        if self._lose_orders > 0:
            self._lose_orders -= 1
            return True
        return False


# -- sockets ----------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Socket:
    ws: web.WebSocketResponse
    transport: asyncio.BaseTransport | None
    silent: bool = False
    authenticated: bool = False

    def cut(self) -> None:
        """Close the TCP connection under the websocket: the peer sees no close frame."""
        if self.transport is not None:
            self.transport.close()


@dataclass(eq=False, slots=True)
class _DataSocket(_Socket):
    feed: str = "iex"
    subs: dict[str, dict[str, None]] = field(default_factory=dict)

    async def send(self, payload: list[dict[str, Any]]) -> None:
        if self.silent or self.ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_str(_dumps(payload))

    def subscription(self) -> dict[str, Any]:
        out: dict[str, Any] = {"T": "subscription"}
        for channel in (*_CHANNELS, "corrections", "cancelErrors"):
            out[channel] = list(self.subs.get(channel, {}))
        return out

    def wants(self, symbol: str, channel: str = "bars") -> bool:
        symbols = self.subs.get(channel, {})
        return "*" in symbols or symbol in symbols


@dataclass(eq=False, slots=True)
class _TradeSocket(_Socket):
    listening: bool = False

    async def send(self, message: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_bytes(_dumps(message).encode())


# -- the sandbox ------------------------------------------------------------------------------


class Sandbox:
    """A loopback Alpaca (paper trading, market data, historical bars) over recorded bars.

    Args:
        data: a file or folder of bars (`feeds.replay.ReplaySource`); one-minute bars.
        symbols: trade and stream only these symbols; None: every symbol in the data.
        speed: None for manual stepping with `step()`; else market minutes per wall minute.
        start_cash: the cash account's starting cash.
        key, secret: the only credentials accepted; None accepts any non-empty keys.
        start: first New York date to play; None: from the first bar.
        warm_minutes: minutes of the data already in the past at start (historical only).
        auth_timeout_s: how long a data socket may wait before authenticating (Alpaca: 10 s).

    Attributes:
        orders_created: orders created per client_order_id (2 would be a duplicate order).
        order_posts: POST /v2/orders per client_order_id, faulted and duplicates included.
        requests: (method, path) -> count of every HTTP request, websockets included.
        data_connections, trade_connections: websocket handshakes accepted.
        trade_events: every trade_updates message sent (or that would have been, unheard).
    """

    def __init__(
        self,
        data: Path,
        *,
        symbols: Sequence[str] | None = None,
        speed: float | None = None,
        start_cash: Decimal = Decimal(100_000),
        key: str | None = None,
        secret: str | None = None,
        start: dt.date | None = None,
        warm_minutes: int = 0,
        auth_timeout_s: float = 10.0,
    ) -> None:
        if speed is not None and speed <= 0:
            raise ValueError(f"speed must be > 0 market minutes per wall minute, got {speed}")
        self.calendar = SessionCalendar()
        # The calendar learns its zone only once built: the clock needs it from the start.
        self._tz: dt.tzinfo = ZoneInfo(NY)
        self.market = Market(
            data, symbols=symbols, start=start, warm_minutes=warm_minutes, calendar=self.calendar
        )
        self.account = Account(start_cash)
        self.account.created_ns = self.market.minutes[0] - 86_400 * NS_PER_SECOND
        self.speed = speed
        self._key = key
        self._secret = secret
        self._auth_timeout_s = auth_timeout_s
        self.faults = Faults(self)
        self.orders_created: Counter[str] = Counter()
        self.order_posts: Counter[str] = Counter()
        self.requests: Counter[tuple[str, str]] = Counter()
        self.data_connections = 0
        self.trade_connections = 0
        self.trade_events: list[dict[str, Any]] = []
        self._data_sockets: set[_DataSocket] = set()
        self._trade_sockets: set[_TradeSocket] = set()
        self._data_down_until = 0  # data handshakes get 503 while fewer minutes were played
        self._step_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._clock_task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- public surface --------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def trading_url(self) -> str:
        """Base URL for the trading REST API (alpaca-py's `url_override`; it appends /v2)."""
        return self.url

    @property
    def data_url(self) -> str:
        """Base URL for historical bars (``GET /v2/stocks/bars``)."""
        return self.url

    @property
    def trade_stream_url(self) -> str:
        """The trade-updates websocket."""
        return f"ws://127.0.0.1:{self.port}/stream"

    def data_stream_url(self, feed: str = "iex") -> str:
        """The market-data websocket of `feed` (iex, sip, delayed_sip, test)."""
        if feed not in FEEDS:
            raise ValueError(f"unknown feed {feed!r}: one of {', '.join(FEEDS)}")
        return f"ws://127.0.0.1:{self.port}/v2/{feed}"

    @property
    def now_ns(self) -> int:
        """Virtual market time (UTC ns): the end of the last minute played."""
        return self.market.now_ns

    @property
    def last_minute_ns(self) -> int | None:
        """Start of the last minute played (or warm), None before the first."""
        return self.market.last_minute_ns

    @property
    def cash(self) -> Decimal:
        """The account's cash."""
        return self.account.cash

    @property
    def positions(self) -> dict[str, Decimal]:
        """Shares held per symbol (flat symbols absent)."""
        return self.account.positions

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols the sandbox plays and trades."""
        return self.market.symbols

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve on `host`:`port` (0: an ephemeral port, then read `port`)."""
        app = web.Application(middlewares=[self._middleware])
        self._routes(app)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        if self.speed is not None:
            self._clock_task = asyncio.create_task(self._run_clock(), name="sandbox-clock")

    async def close(self) -> None:
        """Stop the clock, close every socket and the server. Re-raises a failed clock task."""
        failure: BaseException | None = None
        if self._clock_task is not None:
            task, self._clock_task = self._clock_task, None
            if task.done() and not task.cancelled():
                failure = task.exception()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sock in [*self._data_sockets, *self._trade_sockets]:
            sock.cut()
        for pending in list(self._tasks):
            pending.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if failure is not None:
            raise failure

    async def trading_status(
        self, symbol: str, code: str, message: str = "", reason_code: str = "", reason: str = ""
    ) -> None:
        """Send a trading-status message (T "s": "H" halt, "T" trading resumed, ...) to the data
        sockets subscribed to `statuses` for `symbol`."""
        status = {
            "T": "s",
            "S": symbol,
            "sc": code,
            "sm": message,
            "rc": reason_code,
            "rm": reason,
            "t": rfc3339(self.market.now_ns),
            "z": "C",
        }
        for sock in list(self._data_sockets):
            if sock.authenticated and sock.wants(symbol, "statuses"):
                await sock.send([status])

    async def step(self, minutes: int = 1) -> bool:
        """Play the next `minutes` minutes; False when the data ran out first."""
        for _ in range(minutes):
            if self.market.exhausted:
                return False
            await self._play_minute()
        return True

    # -- the clock ---------------------------------------------------------------------------

    async def _run_clock(self) -> None:
        assert self.speed is not None
        interval_s = 60.0 / self.speed
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while not self.market.exhausted:
            # Drift-free: the n-th minute is due n intervals after start, however long each took.
            deadline += interval_s
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            await self._play_minute()

    async def _play_minute(self) -> None:
        async with self._step_lock:
            market = self.market
            if market.exhausted:
                return
            index = market.played
            open_ns = market.minutes[index]
            fills = self.account.fill_due(index, market.next_bars(), open_ns)
            for fill in fills:
                await self._emit(order_event("fill", fill.order, fill.ts_ns, execution=fill))
            bars = market.advance()
            await self._broadcast(bars)

    async def _broadcast(self, bars: list[Bar]) -> None:
        drop, self.faults._drop_data = self.faults._drop_data, None
        for sock in list(self._data_sockets):
            if not sock.authenticated:
                continue
            batch = self._batch_for(sock, bars)
            if drop is not None:
                if drop[0] and batch:
                    await sock.send(batch[: drop[0]])
                sock.cut()
            elif batch:
                await sock.send(batch)
        if drop is not None:
            self._data_down_until = self.market.played + drop[1]

    @staticmethod
    def _batch_for(sock: _DataSocket, bars: list[Bar]) -> list[dict[str, Any]]:
        if sock.feed == "test":
            if not bars or not sock.wants(TEST_SYMBOL):
                return []
            first = min(bars, key=lambda b: b.symbol)
            return [bar_json(first._replace(symbol=TEST_SYMBOL), symbol_key=True)]
        return [bar_json(b, symbol_key=True) for b in bars if sock.wants(b.symbol)]

    # -- plumbing ------------------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _emit(self, message: dict[str, Any]) -> None:
        self.trade_events.append(message)
        for sock in list(self._trade_sockets):
            if sock.authenticated and sock.listening:
                await sock.send(message)

    async def _send_unknown_event(self) -> None:
        data: dict[str, Any] = {
            "event": "sandbox_unknown_event",
            "execution_id": "00000000-0000-4000-8000-000000000000",
            "timestamp": local_iso(self.market.now_ns, self._tz),
            "reason": "CORPORATE_ACTION",
            "sandbox_extra": {"nested": [1, 2, 3]},
        }
        orders = list(self.account.orders.values())
        if orders:
            order = orders[-1].to_json()
            order["subtag"] = "sandbox"
            data["order"] = order
        await self._emit({"stream": "trade_updates", "data": data})

    def _keys_ok(self, key: object, secret: object) -> bool:
        if not isinstance(key, str) or not isinstance(secret, str) or not key or not secret:
            return False
        if self._key is not None and key != self._key:
            return False
        return self._secret is None or secret == self._secret

    def _is_websocket_path(self, path: str) -> bool:
        return path == "/stream" or (path.startswith("/v2/") and path[4:] in FEEDS)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        method, path = request.method, request.path
        self.requests[(method, path)] += 1
        if self._is_websocket_path(path):
            return await handler(request)
        if method == "POST" and path == "/v2/orders":
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                body = json.loads(await request.read())
                if isinstance(body, dict):
                    self.order_posts[str(body.get("client_order_id"))] += 1
        status = self.faults._take_rest(method, path)
        if status is not None:
            return self._fault_response(status)
        headers = request.headers
        if not self._keys_ok(headers.get("APCA-API-KEY-ID"), headers.get("APCA-API-SECRET-KEY")):
            return _error(401, _UNAUTHORIZED)
        return await handler(request)

    @staticmethod
    def _fault_response(status: int) -> web.Response:
        if status == 429:
            return web.json_response(
                {"code": 42910000, "message": "rate limit exceeded"},
                status=429,
                headers={
                    "X-Ratelimit-Limit": "200",
                    "X-Ratelimit-Remaining": "0",
                    "X-Ratelimit-Reset": str(int(time.time())),
                },
            )
        if status in _HTML_ERRORS:
            return web.Response(
                status=status,
                text=f"<html>{status} {_HTML_ERRORS[status]}</html>",
                content_type="text/html",
            )
        return _error(status, {"code": status * 100_000 + 10_000, "message": "internal error"})

    def _routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/v2/clock", self._get_clock)
        r.add_get("/v2/calendar", self._get_calendar)
        r.add_get("/v2/account", self._get_account)
        r.add_post("/v2/orders", self._post_order)
        r.add_get("/v2/orders", self._get_orders)
        r.add_delete("/v2/orders", self._delete_orders)
        r.add_get("/v2/orders:by_client_order_id", self._get_order_by_client_id)
        r.add_get("/v2/orders/{order_id}", self._get_order)
        r.add_delete("/v2/orders/{order_id}", self._delete_order)
        r.add_get("/v2/positions", self._get_positions)
        r.add_delete("/v2/positions", self._delete_positions)
        r.add_get("/v2/positions/{symbol}", self._get_position)
        r.add_delete("/v2/positions/{symbol}", self._delete_position)
        r.add_get("/v2/assets", self._get_assets)
        r.add_get("/v2/assets/{symbol}", self._get_asset)
        r.add_get("/v2/stocks/bars", self._get_bars)
        r.add_get("/v2/stocks/bars/latest", self._get_latest_bars)
        r.add_get("/v2/stocks/{symbol}/bars", self._get_symbol_bars)
        r.add_get("/stream", self._trade_stream)
        r.add_get("/v2/{feed:" + "|".join(FEEDS) + "}", self._data_stream)

    # -- clock and calendar --------------------------------------------------------------------

    async def _get_clock(self, request: web.Request) -> web.Response:
        now = self.market.now_ns
        tz = self._tz
        day = dt.datetime.fromtimestamp(now // NS_PER_SECOND, tz).date()
        sessions = self.calendar.sessions(day - dt.timedelta(days=1), 6)
        next_open = next(o for o, _ in sessions if o > now)
        next_close = next(c for _, c in sessions if c > now)
        return web.json_response(
            {
                "timestamp": local_iso(now, tz),
                "is_open": not self.market.exhausted,
                "next_open": local_iso(next_open, tz),
                "next_close": local_iso(next_close, tz),
            }
        )

    async def _get_calendar(self, request: web.Request) -> web.Response:
        tz = self._tz
        minutes = self.market.minutes
        try:
            first = dt.date.fromisoformat(request.query["start"][:10])
        except KeyError:
            first = dt.datetime.fromtimestamp(minutes[0] // NS_PER_SECOND, tz).date()
        except ValueError:
            return _unprocessable(f"invalid start {request.query['start']!r}: want YYYY-MM-DD")
        try:
            last = dt.date.fromisoformat(request.query["end"][:10])
        except KeyError:
            last = dt.datetime.fromtimestamp(minutes[-1] // NS_PER_SECOND, tz).date()
        except ValueError:
            return _unprocessable(f"invalid end {request.query['end']!r}: want YYYY-MM-DD")
        if (last - first).days > 3660:
            return _unprocessable("calendar range longer than 10 years")
        out: list[dict[str, str]] = []
        day = first
        while day <= last:
            if self.calendar.is_session(day):
                out.append(self._calendar_day(day))
            day += dt.timedelta(days=1)
        return web.json_response(out)

    def _calendar_day(self, day: dt.date) -> dict[str, str]:
        tz = self._tz
        noon = local_midnight_ns(day, tz) + 12 * 3600 * NS_PER_SECOND
        bounds = self.calendar.bounds(noon)
        assert bounds is not None
        opened, closed = (dt.datetime.fromtimestamp(b // NS_PER_SECOND, tz) for b in bounds)
        settle = day + dt.timedelta(days=1)
        while not self.calendar.is_session(settle):
            settle += dt.timedelta(days=1)
        return {
            "date": day.isoformat(),
            "open": opened.strftime("%H:%M"),
            "close": closed.strftime("%H:%M"),
            "session_open": "0400",
            "session_close": "2000",
            "settlement_date": settle.isoformat(),
        }

    # -- historical bars -----------------------------------------------------------------------

    async def _get_bars(self, request: web.Request) -> web.Response:
        raw = request.query.get("symbols", "")
        symbols = sorted({s.strip().upper() for s in raw.split(",") if s.strip()})
        if not symbols:
            return _error(400, {"code": 40010000, "message": "symbols is required"})
        return self._bars_response(request, symbols, single=False)

    async def _get_symbol_bars(self, request: web.Request) -> web.Response:
        return self._bars_response(request, [request.match_info["symbol"].upper()], single=True)

    async def _get_latest_bars(self, request: web.Request) -> web.Response:
        raw = request.query.get("symbols", "")
        out: dict[str, Any] = {}
        for symbol in sorted({s.strip().upper() for s in raw.split(",") if s.strip()}):
            bar = self.market.last_bar(symbol)
            if bar is not None:
                out[symbol] = bar_json(bar)
        return web.json_response({"bars": out})

    def _bars_response(
        self, request: web.Request, symbols: list[str], *, single: bool
    ) -> web.Response:
        q = request.query
        timeframe = q.get("timeframe")
        if timeframe is None:
            return _unprocessable("timeframe is required")
        if timeframe not in ("1Min", "1T"):
            return _unprocessable(f"invalid timeframe {timeframe!r}: the sandbox serves only 1Min")
        tz = self._tz
        now = self.market.now_ns
        try:
            start = (
                _parse_time(q["start"], end=False)
                if "start" in q
                else local_midnight_ns(
                    dt.datetime.fromtimestamp(now // NS_PER_SECOND, tz).date(), tz
                )
            )
            end = _parse_time(q["end"], end=True) if "end" in q else now
        except ValueError as e:
            return _unprocessable(f"invalid start or end: {e}")
        try:
            limit = int(q.get("limit", "1000"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 10_000:
            return _unprocessable(f"invalid limit {q.get('limit')!r}: must be 1..10000")
        descending = q.get("sort", "asc") == "desc"
        cursor: tuple[str, int] | None = None
        if q.get("page_token"):
            try:
                sym, ts = base64.b64decode(q["page_token"], validate=True).decode().split("|")
                cursor = (sym, int(ts))
            except (ValueError, binascii.Error):
                return _unprocessable(f"invalid page_token {q['page_token']!r}")
        out: dict[str, list[dict[str, Any]]] = {}
        taken = 0
        next_token: str | None = None
        for symbol in symbols:
            if cursor is not None and symbol < cursor[0]:
                continue
            bars = self.market.history(symbol, start, end)
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
                    next_token = base64.b64encode(f"{symbol}|{bar.ts}".encode()).decode()
                    break
                out.setdefault(symbol, []).append(bar_json(bar))
                taken += 1
            if next_token is not None:
                break
        if single:
            body: dict[str, Any] = {
                "bars": out.get(symbols[0], []),
                "symbol": symbols[0],
                "next_page_token": next_token,
            }
        else:
            body = {"bars": out, "next_page_token": next_token}
        return web.json_response(body, dumps=_dumps)

    # -- market-data stream --------------------------------------------------------------------

    async def _data_stream(self, request: web.Request) -> web.StreamResponse:
        if self.market.played < self._data_down_until:
            return web.Response(status=503, text="service unavailable")
        ws = web.WebSocketResponse(timeout=1.0)
        await ws.prepare(request)
        self.data_connections += 1
        sock = _DataSocket(ws, request.transport, feed=request.match_info["feed"])
        self._data_sockets.add(sock)
        try:
            await sock.send([{"T": "success", "msg": "connected"}])
            headers = request.headers
            if "APCA-API-KEY-ID" in headers and not await self._data_auth(
                sock, headers.get("APCA-API-KEY-ID"), headers.get("APCA-API-SECRET-KEY")
            ):
                return ws
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._auth_timeout_s
            while not ws.closed:
                wait = None if sock.authenticated else max(0.0, deadline - loop.time())
                try:
                    msg = await ws.receive(timeout=wait)
                except TimeoutError:
                    await self._data_fail(sock, 404)
                    break
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                if not await self._data_message(sock, msg.data):
                    break
        finally:
            self._data_sockets.discard(sock)
        return ws

    async def _data_fail(self, sock: _DataSocket, code: int) -> None:
        await sock.send([{"T": "error", "code": code, "msg": _DATA_ERRORS.get(code, "error")}])
        await sock.ws.close()

    async def _data_auth(self, sock: _DataSocket, key: object, secret: object) -> bool:
        if sock.authenticated:
            await sock.send([{"T": "error", "code": 403, "msg": _DATA_ERRORS[403]}])
            return True
        if self.faults._refuse_data:
            await self._data_fail(sock, self.faults._refuse_data.pop(0))
            return False
        if not self._keys_ok(key, secret):
            await self._data_fail(sock, 402)
            return False
        if any(s.authenticated and s.feed == sock.feed for s in self._data_sockets):
            await self._data_fail(sock, 406)
            return False
        sock.authenticated = True
        await sock.send([{"T": "success", "msg": "authenticated"}])
        return True

    async def _data_message(self, sock: _DataSocket, raw: str | bytes) -> bool:
        """Handle one client message; False when the socket was closed."""
        try:
            message = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            message = None
        if not isinstance(message, dict):
            await sock.send([{"T": "error", "code": 400, "msg": _DATA_ERRORS[400]}])
            return True
        action = message.get("action")
        if action == "auth":
            return await self._data_auth(sock, message.get("key"), message.get("secret"))
        if action in ("subscribe", "unsubscribe"):
            if not sock.authenticated:
                await sock.send([{"T": "error", "code": 401, "msg": _DATA_ERRORS[401]}])
                return True
            for channel in _CHANNELS:
                names = message.get(channel) or []
                if not isinstance(names, list):
                    continue
                targets = [channel]
                if channel == "trades":
                    targets += ["corrections", "cancelErrors"]
                for target in targets:
                    current = sock.subs.setdefault(target, {})
                    for name in names:
                        symbol = str(name).upper()
                        if action == "subscribe":
                            current[symbol] = None
                        else:
                            current.pop(symbol, None)
            await sock.send([sock.subscription()])
            return True
        await sock.send([{"T": "error", "code": 400, "msg": _DATA_ERRORS[400]}])
        return True

    # -- trade-updates stream ------------------------------------------------------------------

    async def _trade_stream(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(timeout=1.0)
        await ws.prepare(request)
        self.trade_connections += 1
        sock = _TradeSocket(ws, request.transport)
        self._trade_sockets.add(sock)
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                try:
                    message = json.loads(msg.data)
                except (ValueError, UnicodeDecodeError):
                    message = None
                if not isinstance(message, dict):
                    continue
                data = message.get("data") if isinstance(message.get("data"), dict) else {}
                assert isinstance(data, dict)
                action = message.get("action")
                if action in ("authenticate", "auth"):
                    ok = self._keys_ok(data.get("key_id"), data.get("secret_key"))
                    sock.authenticated = ok
                    status = "authorized" if ok else "unauthorized"
                    await sock.send(
                        {
                            "stream": "authorization",
                            "data": {"status": status, "action": "authenticate"},
                        }
                    )
                    if not ok:
                        await ws.close()
                        break
                elif action == "listen":
                    if not sock.authenticated:
                        await sock.send(
                            {
                                "stream": "authorization",
                                "data": {"status": "unauthorized", "action": "listen"},
                            }
                        )
                        continue
                    streams = data.get("streams") or []
                    sock.listening = isinstance(streams, list) and "trade_updates" in streams
                    await sock.send(
                        {
                            "stream": "listening",
                            "data": {"streams": ["trade_updates"] if sock.listening else []},
                        }
                    )
        finally:
            self._trade_sockets.discard(sock)
        return ws

    # -- trading REST --------------------------------------------------------------------------

    async def _get_account(self, request: web.Request) -> web.Response:
        return web.json_response(self.account.account_json(self.market))

    async def _create_order(self, body: dict[str, Any]) -> SandboxOrder:
        order = self.account.submit(body, self.market)
        self.orders_created[order.client_order_id] += 1
        await self._emit(order_event("new", order, order.created_ns))
        return order

    async def _post_order(self, request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read(), parse_float=Decimal)
        except (ValueError, UnicodeDecodeError):
            return _error(400, {"code": 40010000, "message": "request body is not valid JSON"})
        if self.faults._reject:
            status, message = self.faults._reject.pop(0)
            return _error(status, {"code": status * 100_000 + 10_000, "message": message})
        try:
            order = await self._create_order(body)
        except OrderError as e:
            return _error(e.status, e.body)
        if self.faults._take_lost():
            # The order exists and will fill; the client never learns it.
            if request.transport is not None:
                request.transport.close()
            raise asyncio.CancelledError
        return web.json_response(order.to_json())

    def _find_order(self, order_id: str) -> SandboxOrder | None:
        return self.account.orders.get(order_id)

    async def _get_orders(self, request: web.Request) -> web.Response:
        q = request.query
        status = q.get("status", "open")
        if status not in ("open", "closed", "all"):
            return _unprocessable(f"invalid status {status!r}: open, closed or all")
        try:
            limit = int(q.get("limit", "50"))
            after = _parse_time(q["after"], end=False) if "after" in q else None
            until = _parse_time(q["until"], end=False) if "until" in q else None
        except ValueError as e:
            return _unprocessable(f"invalid query: {e}")
        if not 1 <= limit <= 500:
            return _unprocessable(f"invalid limit {limit}: must be 1..500")
        symbols = {s.strip().upper() for s in q.get("symbols", "").split(",") if s.strip()}
        side = q.get("side")
        orders = [
            o
            for o in self.account.orders.values()
            if (status == "all" or o.is_open == (status == "open"))
            and (after is None or o.created_ns > after)
            and (until is None or o.created_ns < until)
            and (not symbols or o.symbol in symbols)
            and (side is None or o.side == side)
        ]
        orders.sort(key=lambda o: o.created_ns, reverse=q.get("direction", "desc") == "desc")
        return web.json_response([o.to_json() for o in orders[:limit]])

    async def _get_order(self, request: web.Request) -> web.Response:
        order = self._find_order(request.match_info["order_id"])
        if order is None:
            return _error(404, _NOT_FOUND)
        return web.json_response(order.to_json())

    async def _get_order_by_client_id(self, request: web.Request) -> web.Response:
        order = self.account.by_client_id.get(request.query.get("client_order_id", ""))
        if order is None:
            return _error(404, _NOT_FOUND)
        return web.json_response(order.to_json())

    async def _cancel(self, order: SandboxOrder) -> None:
        self.account.cancel(order, self.market.now_ns)
        await self._emit(order_event("canceled", order, order.canceled_ns or self.now_ns))

    async def _delete_order(self, request: web.Request) -> web.Response:
        order = self._find_order(request.match_info["order_id"])
        if order is None:
            return _error(404, _NOT_FOUND)
        try:
            await self._cancel(order)
        except OrderError as e:
            return _error(e.status, e.body)
        return web.Response(status=204)

    async def _delete_orders(self, request: web.Request) -> web.Response:
        out: list[dict[str, Any]] = []
        for order in self.account.open_orders():
            await self._cancel(order)
            out.append({"id": order.id, "status": 200, "body": order.to_json()})
        return web.json_response(out, status=207)

    async def _get_positions(self, request: web.Request) -> web.Response:
        return web.json_response(
            [self.account.position_json(s, self.market) for s in sorted(self.positions)]
        )

    def _position_symbol(self, raw: str) -> str | None:
        symbol = raw.upper()
        if symbol in self.positions:
            return symbol
        for held in self.positions:
            if asset_json(held)["id"] == raw:
                return held
        return None

    async def _get_position(self, request: web.Request) -> web.Response:
        symbol = self._position_symbol(request.match_info["symbol"])
        if symbol is None:
            return _error(404, {"code": 40410000, "message": "position does not exist"})
        return web.json_response(self.account.position_json(symbol, self.market))

    async def _close_position(self, symbol: str, qty: Decimal) -> SandboxOrder:
        return await self._create_order(
            {
                "symbol": symbol,
                "side": "sell",
                "type": "market",
                "time_in_force": "day",
                "qty": str(qty),
            }
        )

    async def _delete_position(self, request: web.Request) -> web.Response:
        symbol = self._position_symbol(request.match_info["symbol"])
        if symbol is None:
            return _error(404, {"code": 40410000, "message": "position does not exist"})
        held = self.positions[symbol]
        q = request.query
        try:
            if "qty" in q and "percentage" in q:
                return _unprocessable("only one of qty or percentage")
            if "qty" in q:
                qty = Decimal(q["qty"])
            elif "percentage" in q:
                qty = (held * Decimal(q["percentage"]) / 100).quantize(_QTY_STEP, ROUND_DOWN)
            else:
                qty = held
            order = await self._close_position(symbol, qty)
        except OrderError as e:
            return _error(e.status, e.body)
        except ArithmeticError:
            return _unprocessable("invalid qty or percentage")
        return web.json_response(order.to_json())

    async def _delete_positions(self, request: web.Request) -> web.Response:
        if request.query.get("cancel_orders", "false").lower() == "true":
            for open_order in self.account.open_orders():
                await self._cancel(open_order)
        out: list[dict[str, Any]] = []
        for symbol, held in sorted(self.positions.items()):
            try:
                order = await self._close_position(symbol, held)
            except OrderError as e:
                out.append({"symbol": symbol, "status": e.status, "body": e.body})
            else:
                out.append({"symbol": symbol, "status": 200, "body": order.to_json()})
        return web.json_response(out, status=207)

    async def _get_assets(self, request: web.Request) -> web.Response:
        return web.json_response([asset_json(s) for s in self.symbols])

    async def _get_asset(self, request: web.Request) -> web.Response:
        raw = request.match_info["symbol"]
        for symbol in self.symbols:
            if raw.upper() == symbol or raw == asset_json(symbol)["id"]:
                return web.json_response(asset_json(symbol))
        return _error(404, {"code": 40410000, "message": "asset not found"})


async def serve(
    data: Path,
    *,
    port: int,
    speed: float,
    symbols: list[str] | None,
    start_cash: Decimal,
    warm_minutes: int,
    ready: Callable[[Sandbox], None] | None = None,
) -> None:
    """Run a sandbox on 127.0.0.1:`port` playing `speed` market minutes per wall minute, until
    cancelled (`tradingd sandbox`). `ready` is called once it listens.

    Raises:
        SourceError, ValueError: the data cannot be played.
    """
    sandbox = Sandbox(
        data, symbols=symbols, speed=speed, start_cash=start_cash, warm_minutes=warm_minutes
    )
    await sandbox.start(port=port)
    try:
        if ready is not None:
            ready(sandbox)
        if sandbox._clock_task is not None:
            # Surfaces a failure of the clock; after the data ran out the server stays up.
            await asyncio.shield(sandbox._clock_task)
        await asyncio.Event().wait()
    finally:
        await sandbox.close()
