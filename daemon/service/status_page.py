"""The status page at `/` and its live updates at `/events` (server-sent events).

    GET /                 the page (HTML; its script and style are files beside it)
    GET /static/{name}    status.js, status.css, icon.svg (daemon/service/assets/)
    GET /events           text/event-stream: one `history` event (the equity curve so far),
                          then a snapshot whenever something changed, at most one per
                          `min_interval_s`, and at least one per `heartbeat_s`

The page is read-only: its controls POST to the token-guarded endpoints of `HttpServer` with
the token the user types, sent as the bearer header. It requests nothing from any other host;
the Content-Security-Policy allows nothing but this server, and no inline script or style.

One broadcaster task builds each snapshot once (the daemon's `/state`, readiness, and the
status feed) and hands the same bytes to every open page; a page that reads slowly only ever
holds the latest snapshot, and a closed one ends at the next push.
"""

from __future__ import annotations

import asyncio
import contextlib
from importlib import resources
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from daemon.logs import EventLog
from daemon.service.status_feed import StatusFeed

if TYPE_CHECKING:
    from daemon.service.http import DaemonControl

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_ASSETS = {
    "status.js": "text/javascript",
    "status.css": "text/css",
    "icon.svg": "image/svg+xml",
}
MAX_PAGES = 32  # open pages at once; more are refused (503), each costs a write per push


def _asset(name: str) -> bytes:
    return resources.files("daemon.service").joinpath("assets", name).read_bytes()


class StatusPage:
    """The page's routes and the broadcaster of its updates.

    Args:
        control: the daemon whose state the page shows.
        feed: the equity curve, fills and orders (None: the page shows `/state` only).
        control_enabled: the daemon has a control token (the page enables its buttons).
        min_interval_s: at most one push per this many seconds.
        heartbeat_s: at least one push per this many seconds (health, the market clock; the
            page ticks the last slice's age itself between pushes).
    """

    def __init__(
        self,
        control: DaemonControl,
        feed: StatusFeed | None,
        *,
        log: EventLog,
        control_enabled: bool,
        min_interval_s: float = 0.25,
        heartbeat_s: float = 5.0,
    ) -> None:
        self.control = control
        self.feed = feed
        self.log = log
        self.control_enabled = control_enabled
        self.min_interval_s = min_interval_s
        self.heartbeat_s = heartbeat_s
        self.pushes = 0
        self._pages: set[asyncio.Queue[bytes | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._assets = {name: _asset(name) for name in (*_ASSETS, "index.html")}

    @property
    def open_pages(self) -> int:
        return len(self._pages)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/events", self._events)

    async def close(self) -> None:
        """End every open stream (their handlers return) and the broadcaster."""
        for queue in self._pages:
            _latest(queue, None)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- what a push holds ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The daemon's state and the feed's news, as the page reads them."""
        feed = self.feed
        return {
            # The market's time, for the age of the last slice (none for a replay: its slices
            # are history).
            "now": feed.now_ns() / 1e9 if feed is not None else None,
            "alive": self.control.alive(),
            "readiness": self.control.readiness(),
            "state": self.control.state(),
            "info": dict(feed.info) if feed is not None else {"mode": self.control.mode},
            "point": feed.last_point() if feed is not None else None,
            "fills": list(feed.fills) if feed is not None else [],
            "orders": list(feed.orders) if feed is not None else [],
            "control": self.control_enabled,
        }

    def message(self) -> bytes:
        """One server-sent event with the snapshot."""
        body = orjson.dumps(self.snapshot(), default=str, option=orjson.OPT_NON_STR_KEYS)
        return b"data: " + body + b"\n\n"

    # -- handlers -------------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._assets["index.html"],
            content_type="text/html",
            charset="utf-8",
            headers=SECURITY_HEADERS,
        )

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        content_type = _ASSETS.get(name)
        if content_type is None:
            raise web.HTTPNotFound
        return web.Response(
            body=self._assets[name], content_type=content_type, headers=SECURITY_HEADERS
        )

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if len(self._pages) >= MAX_PAGES:
            return web.json_response({"error": "too many open status pages"}, status=503)
        response = web.StreamResponse(
            headers={
                **SECURITY_HEADERS,
                "Content-Type": "text/event-stream",
                "X-Accel-Buffering": "no",  # a proxy in front must not hold the stream back
            }
        )
        await response.prepare(request)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1)
        try:
            series = self.feed.series() if self.feed is not None else []
            history = orjson.dumps({"series": series})
            await response.write(b"retry: 2000\nevent: history\ndata: " + history + b"\n\n")
            await response.write(self.message())
            self._pages.add(queue)
            self._ensure_broadcaster()
            while (item := await queue.get()) is not None:
                await response.write(item)
        except (ConnectionResetError, ConnectionError):
            pass  # the page closed: nothing to tell it
        finally:
            self._pages.discard(queue)
        return response

    # -- the broadcaster ------------------------------------------------------------------------

    def _ensure_broadcaster(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._broadcast(), name="status-page")
            self._task.add_done_callback(self._reap)

    async def _broadcast(self) -> None:
        """Push while any page is open; return when the last one closed."""
        loop = asyncio.get_running_loop()
        while self._pages:
            changed = self.feed.changed if self.feed is not None else None
            if changed is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), self.heartbeat_s)
                changed.clear()
            else:
                await asyncio.sleep(self.heartbeat_s)
            started = loop.time()
            item = self.message()
            for queue in self._pages:
                _latest(queue, item)
            self.pushes += 1
            # The rate limit: what changes meanwhile is pushed together, next time.
            await asyncio.sleep(max(self.min_interval_s - (loop.time() - started), 0.0))

    def _reap(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # The page stops updating; the daemon trades on. Loud in the log.
            self.log.error("status_page_failed", error=repr(task.exception()))
            for queue in self._pages:
                _latest(queue, None)


def _latest(queue: asyncio.Queue[bytes | None], item: bytes | None) -> None:
    """Replace what a slow page has not read yet: it only ever needs the newest snapshot."""
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)
