"""The status page's server side on a real socket: its headers and files, the event stream
(history first, then snapshots that follow the feed, rate-limited), and its end when a page
closes or the server stops. The browser's view is tests/daemon/test_status_browser.py."""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from html.parser import HTMLParser
from importlib import resources
from typing import Any

import aiohttp
import orjson
import pytest

from daemon.logs import EventLog
from daemon.service.http import HttpServer
from daemon.service.status_feed import StatusFeed
from daemon.service.status_page import CSP
from daemon.service.telemetry import Telemetry
from portfolio.ledger import Ledger
from tests.daemon.test_http import TOKEN, FakeDaemon

TS = 1_700_000_000_000_000_000
DEADLINE_S = 10.0


class Server:
    def __init__(self, server: HttpServer, feed: StatusFeed, daemon: FakeDaemon) -> None:
        self.server = server
        self.feed = feed
        self.daemon = daemon
        self.http = aiohttp.ClientSession()


@pytest.fixture
async def served() -> AsyncIterator[Server]:
    daemon = FakeDaemon()
    feed = StatusFeed()
    telemetry = Telemetry(mode="paper", symbols=["SPY"], strategies=["s"])
    log = EventLog(io.StringIO(), level="debug")
    server = HttpServer(daemon, telemetry, log=log, token=TOKEN, feed=feed)
    await server.start()
    s = Server(server, feed, daemon)
    yield s
    await s.http.close()
    await server.close()


async def read_event(response: aiohttp.ClientResponse) -> tuple[str, dict[str, Any]]:
    """The next server-sent event: its name ("message" by default) and its JSON data."""
    name, data = "message", b""
    async with asyncio.timeout(DEADLINE_S):
        while line := await response.content.readline():
            line = line.rstrip(b"\n")
            if not line:
                if data:
                    return name, orjson.loads(data)
                continue
            field, _, value = line.partition(b": ")
            if field == b"event":
                name = value.decode()
            elif field == b"data":
                data += value
    raise AssertionError("the stream ended")


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        if self.tags and self.tags[-1][0] == "script" and data.strip():
            self.inline_script = True


async def test_the_page_allows_nothing_but_this_server(served: Server) -> None:
    url = served.server.url
    async with served.http.get(url + "/") as r:
        assert r.status == 200
        assert r.content_type == "text/html"
        assert r.headers["Content-Security-Policy"] == CSP
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Frame-Options"] == "DENY"
        html = await r.text()
    assert "'unsafe-inline'" not in CSP
    assert "default-src 'none'" in CSP
    tags = Tags()
    tags.feed(html)
    assert not tags.inline_script
    for tag, attrs in tags.tags:
        assert tag != "style"
        assert "style" not in attrs, tag
        assert not [a for a in attrs if a.startswith("on")], tag  # no inline handlers
        for key in ("src", "href"):
            if attrs.get(key):
                assert str(attrs[key]).startswith("/static/"), attrs
    assets = resources.files("daemon.service").joinpath("assets")
    for name in ("index.html", "status.js", "status.css"):
        text = assets.joinpath(name).read_text(encoding="utf-8")
        # The only absolute URL is SVG's namespace, a name and never fetched.
        assert set(re.findall(r"\w+://[^\s\"')]+", text)) <= {"http://www.w3.org/2000/svg"}
        assert "localStorage" not in text
        assert "document.cookie" not in text
    for name, kind in (("status.js", "text/javascript"), ("status.css", "text/css")):
        async with served.http.get(f"{url}/static/{name}") as r:
            assert r.status == 200
            assert r.content_type == kind
            assert r.headers["Content-Security-Policy"] == CSP
    for path in ("/static/nope.js", "/static/..%2Fhttp.py", "/static/index.html"):
        async with served.http.get(url + path) as r:
            assert r.status == 404, path


async def test_the_page_changes_nothing_without_the_token(served: Server) -> None:
    url = served.server.url
    for path in ("/", "/events"):
        async with served.http.post(url + path) as r:
            assert r.status == 405
    async with served.http.post(url + "/halt") as r:
        assert r.status == 401
    assert served.daemon.calls == []


async def test_events_send_the_history_then_snapshots_that_follow_the_feed(
    served: Server,
) -> None:
    feed = served.feed
    ledger = Ledger(Decimal(100_000))
    feed.on_slice(TS, ledger)
    async with served.http.get(served.server.url + "/events") as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        assert r.headers["Content-Security-Policy"] == CSP
        assert await read_event(r) == ("history", {"series": [[TS / 1e9, 100_000.0, 0.0]]})
        name, first = await read_event(r)
        assert name == "message"
        assert first["state"] == orjson.loads(orjson.dumps(served.daemon.state(), default=str))
        assert first["readiness"] == served.daemon.readiness()
        assert first["control"] is True
        assert first["point"] == [TS / 1e9, 100_000.0, 0.0]

        served.daemon.halted = True
        feed.on_slice(TS + 60 * 10**9, ledger)
        _, pushed = await read_event(r)
        assert pushed["point"] == [TS / 1e9 + 60, 100_000.0, 0.0]
        assert pushed["state"]["halted"] is True
    assert served.server.page.open_pages <= 1


async def test_pushes_are_rate_limited_and_shared(served: Server) -> None:
    page = served.server.page
    page.min_interval_s = 0.2
    url = served.server.url + "/events"
    async with served.http.get(url) as a, served.http.get(url) as b:
        for r in (a, b):
            await read_event(r)
            await read_event(r)
        start_pushes = page.pushes
        started = time.monotonic()
        # 200 changes within about a second: the page gets a handful of pushes, not 200.
        for _ in range(200):
            served.feed.touch()
            await asyncio.sleep(0.005)
        elapsed = time.monotonic() - started
        await read_event(a)
        await read_event(b)
        pushes = page.pushes - start_pushes
        assert 1 <= pushes <= elapsed / 0.2 + 2


async def test_a_closed_page_ends_its_stream(served: Server) -> None:
    page = served.server.page
    page.heartbeat_s = 0.1
    async with served.http.get(served.server.url + "/events") as r:
        await read_event(r)
        await read_event(r)
        assert page.open_pages == 1
    async with asyncio.timeout(DEADLINE_S):
        while page.open_pages:
            await asyncio.sleep(0.02)  # polled with a deadline: the next push finds it closed


async def test_the_server_stops_at_once_with_pages_open(served: Server) -> None:
    r = await served.http.get(served.server.url + "/events")
    await read_event(r)
    started = time.monotonic()
    await served.server.close()
    assert time.monotonic() - started < 2.0
    r.close()


async def test_too_many_pages_are_refused(served: Server) -> None:
    from daemon.service.status_page import MAX_PAGES

    url = served.server.url + "/events"
    opened = []
    try:
        for _ in range(MAX_PAGES):
            r = await served.http.get(url)
            await read_event(r)
            await read_event(r)
            opened.append(r)
        async with served.http.get(url) as refused:
            assert refused.status == 503
    finally:
        for r in opened:
            r.close()


async def test_without_a_feed_the_page_shows_the_state_alone() -> None:
    # `replay --serve`: no equity curve, and no market clock to age the last slice by.
    daemon = FakeDaemon()
    telemetry = Telemetry(mode="replay", symbols=["SPY"], strategies=["s"])
    server = HttpServer(daemon, telemetry, log=EventLog(io.StringIO()), token=None)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http, http.get(server.url + "/events") as r:
            assert await read_event(r) == ("history", {"series": []})
            _, first = await read_event(r)
        assert first["point"] is None
        assert first["now"] is None
        assert first["control"] is False
        assert first["info"] == {"mode": "paper"}
        assert first["state"]["positions"] == {"SPY": {"qty": "10.5"}}
    finally:
        await server.close()
