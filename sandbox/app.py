"""The sandbox: a local stand-in for Alpaca over a virtual market clock that plays bars from files.

One aiohttp application serves every protocol on one loopback port (reference/alpaca.md
sections 1-4): trading REST (`sandbox.rest`), historical bars (`sandbox.history`), and both
websockets (`sandbox.streams`), so the Alpaca adapters (and alpaca-py's own REST clients) can be
tested end to end without the network. `Faults` arms misbehaviours.

Market time: minute i is "played" by `step()` (manual mode) or every ``60 / speed`` wall
seconds. Playing it fills the orders due at bar i's open (``fill`` events), then moves the clock
to the end of minute i and broadcasts bar i's bars as one batched array. Gaps between sessions
are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web

from feeds.bar import NS_PER_MINUTE, NS_PER_SECOND
from feeds.calendar import SessionCalendar
from feeds.errors import ConfigError
from sandbox import wire
from sandbox.account import Account
from sandbox.auth import Keys
from sandbox.faults import FaultPlan, Faults, fault_response
from sandbox.history import HistoryApi
from sandbox.market import Market
from sandbox.rest import TradingApi, error_response
from sandbox.streams import FEEDS, DataStream, TradeStream

_UNAUTHORIZED = {"code": 40110000, "message": "unauthorized"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Sandbox:
    """A loopback Alpaca (paper trading, market data, historical bars) over recorded bars.

    Each Sandbox is a new account: its own id and number (`Account`), its own orders.

    Args:
        data: a file or folder of bars (`feeds.replay.ReplaySource`); one-minute bars.
        symbols: trade and stream only these symbols; None: every symbol in the data.
        speed: None for manual stepping with `step()`; else market minutes per wall minute.
        start_cash: the cash account's starting cash.
        key, secret: the only credentials accepted; None accepts any non-empty keys.
        start: first New York date to play; None: from the first bar.
        warm_minutes: minutes of the data already in the past at start (historical only).
        auth_timeout_s: how long a data socket may wait before authenticating (Alpaca: 10 s).

    Raises:
        SourceError: the data cannot be read.
        ConfigError: the data are not minute bars, or fewer minutes than `warm_minutes`.
        ValueError: `speed` is not positive.

    Attributes:
        order_posts: POST /v2/orders per client_order_id, faulted and duplicates included.
        requests: (method, path) -> count of every HTTP request, websockets included.
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
        self.market = Market(
            data, symbols=symbols, start=start, warm_minutes=warm_minutes, calendar=self.calendar
        )
        self.account = Account(start_cash)
        self.account.created_ns = self.market.minutes[0] - 86_400 * NS_PER_SECOND
        self.speed = speed
        self._keys = Keys(key, secret)
        plan = FaultPlan()
        self._plan = plan
        self._trades = TradeStream(self._keys)
        self._data = DataStream(self.market, self._keys, plan, auth_timeout_s=auth_timeout_s)
        self._trading = TradingApi(self.account, self.market, self._trades, plan)
        self._history = HistoryApi(self.market)
        self.faults = Faults(
            plan,
            account=self.account,
            market=self.market,
            trades=self._trades,
            data=self._data,
            spawn=self._spawn,
        )
        self.order_posts: Counter[str] = Counter()
        self.requests: Counter[tuple[str, str]] = Counter()
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

    @property
    def orders_created(self) -> Counter[str]:
        """Orders created per client_order_id (2 would be a duplicate order)."""
        return self._trading.orders_created

    @property
    def data_connections(self) -> int:
        """Market-data websocket handshakes accepted."""
        return self._data.connections

    @property
    def trade_connections(self) -> int:
        """Trade-updates websocket handshakes accepted."""
        return self._trades.connections

    @property
    def trade_events(self) -> list[dict[str, Any]]:
        """Every trade_updates message sent (or that would have been, unheard)."""
        return self._trades.events

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve on `host`:`port` (0: an ephemeral port, then read `port`).

        Raises:
            ConfigError: the port is taken or cannot be listened on.
        """
        app = web.Application(middlewares=[self._middleware])
        self._trading.add_routes(app.router)
        self._history.add_routes(app.router)
        app.router.add_get("/stream", self._trades.handle)
        app.router.add_get("/v2/{feed:" + "|".join(FEEDS) + "}", self._data.handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError as e:
            await self._runner.cleanup()
            self._runner = None
            if e.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {port}: something else listens on {host}:{port}; "
                    "stop it or choose another port"
                ) from None
            raise ConfigError(f"port {port}: cannot listen on {host}:{port}: {e}") from None
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
        self._data.cut_all()
        self._trades.cut_all()
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
        await self._data.trading_status(
            {
                "T": "s",
                "S": symbol,
                "sc": code,
                "sm": message,
                "rc": reason_code,
                "rm": reason,
                "t": wire.rfc3339(self.market.now_ns),
                "z": "C",
            }
        )

    async def pass_time(self, until_ns: int) -> None:
        """Move the clock on to `until_ns` without playing a minute (the evening after a close,
        say), never past the next minute to play."""
        async with self._step_lock:
            market = self.market
            limit = market.minutes[market.played] if not market.exhausted else until_ns
            market.now_ns = max(market.now_ns, min(until_ns, limit))

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
            bounds = self.calendar.bounds(open_ns)
            last = bounds is not None and open_ns + NS_PER_MINUTE >= bounds[1]
            fills = self.account.fill_due(index, market.next_bars(), open_ns, closes_session=last)
            for fill in fills:
                event = wire.order_event("fill", fill.order, fill.ts_ns, execution=fill)
                await self._trades.emit(event)
            bars = market.advance()
            await self._data.broadcast(bars)

    # -- plumbing ------------------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _is_websocket_path(path: str) -> bool:
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
        status = self._plan.take_rest(method, path)
        if status is not None:
            return fault_response(status)
        headers = request.headers
        if not self._keys.accept(
            headers.get("APCA-API-KEY-ID"), headers.get("APCA-API-SECRET-KEY")
        ):
            return error_response(401, _UNAUTHORIZED)
        return await handler(request)


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
        SourceError, ConfigError: the data cannot be played, or the port cannot be listened on.
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
