"""The HTTP server on a real socket (127.0.0.1, ephemeral port) with a small in-test daemon."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.logs import EventLog
from daemon.service.http import HttpServer, is_loopback
from daemon.service.telemetry import Telemetry
from feeds.errors import TradingdError

TOKEN = "s3cret-token-0123456789"
WRONG = "wrong-token-9876543210"


class FakeDaemon:
    """A DaemonControl: records the control calls, answers what the test sets."""

    mode = "paper"

    def __init__(self) -> None:
        self.is_alive = True
        self.checks = {"feed": True, "broker_stream": True, "reconciled": True}
        self.calls: list[str] = []
        self.halted = False
        self.fail_flatten = False

    def alive(self) -> bool:
        return self.is_alive

    def readiness(self) -> dict[str, bool]:
        return dict(self.checks)

    def state(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "halted": self.halted,
            "positions": {"SPY": {"qty": Decimal("10.5")}},
        }

    def halt(self) -> dict[str, Any]:
        self.calls.append("halt")
        self.halted = True
        return {"halted": True}

    def resume(self) -> dict[str, Any]:
        self.calls.append("resume")
        self.halted = False
        return {"halted": False}

    def flatten(self) -> dict[str, Any]:
        self.calls.append("flatten")
        if self.fail_flatten:
            raise TradingdError("mode track cannot flatten: it holds no submit path")
        return {"orders": ["c-1"]}

    def reset_kill_switch(self) -> dict[str, Any]:
        self.calls.append("reset_kill_switch")
        return {"kill_switch": False}


class Served:
    def __init__(self, daemon: FakeDaemon, server: HttpServer, log: io.StringIO) -> None:
        self.daemon = daemon
        self.server = server
        self.log = log
        self.session = aiohttp.ClientSession()

    async def request(
        self, method: str, path: str, token: str | None = None
    ) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        async with self.session.request(method, self.server.url + path, headers=headers) as r:
            raw = await r.read()
            body = orjson.loads(raw) if r.content_type == "application/json" else {}
            return r.status, body, r

    def events(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.log.getvalue().splitlines()]


async def serve(token: str | None) -> Served:
    stream = io.StringIO()
    daemon = FakeDaemon()
    telemetry = Telemetry(mode="paper", symbols=["SPY"], strategies=["s"])
    server = HttpServer(daemon, telemetry, log=EventLog(stream, level="debug"), token=token)
    await server.start()
    return Served(daemon, server, stream)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    s = await serve(TOKEN)
    yield s
    await s.session.close()
    await s.server.close()


@pytest.fixture
async def served_without_token() -> AsyncIterator[Served]:
    s = await serve(None)
    yield s
    await s.session.close()
    await s.server.close()


async def test_server_binds_an_ephemeral_loopback_port(served: Served) -> None:
    assert served.server.port > 0
    assert served.server.url == f"http://127.0.0.1:{served.server.port}"
    started = [e for e in served.events() if e["event"] == "http_started"]
    assert started[0]["url"] == served.server.url
    assert not [e for e in served.events() if e["event"] == "http_exposed"]


async def test_metrics_serves_the_text_exposition(served: Served) -> None:
    status, _, response = await served.request("GET", "/metrics")
    assert status == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    async with served.session.get(served.server.url + "/metrics") as r:
        text = await r.text()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"tradingd_bars_received", "tradingd_equity", "process_cpu_seconds"} <= names
    assert "tradingd_ready 1.0" in text
    served.daemon.checks["feed"] = False
    async with served.session.get(served.server.url + "/metrics") as r:
        assert "tradingd_ready 0.0" in await r.text()


async def test_healthz_follows_alive(served: Served) -> None:
    status, body, _ = await served.request("GET", "/healthz")
    assert (status, body) == (200, {"status": "alive"})
    served.daemon.is_alive = False
    status, _, _ = await served.request("GET", "/healthz")
    assert status == 503


async def test_readyz_names_what_is_not_ready(served: Served) -> None:
    status, body, _ = await served.request("GET", "/readyz")
    assert status == 200
    assert body["ready"] is True
    served.daemon.checks["feed"] = False
    served.daemon.checks["reconciled"] = False
    status, body, _ = await served.request("GET", "/readyz")
    assert status == 503
    assert body == {
        "ready": False,
        "not_ready": ["feed", "reconciled"],
        "checks": {"feed": False, "broker_stream": True, "reconciled": False},
    }


async def test_state_is_json(served: Served) -> None:
    status, body, _ = await served.request("GET", "/state")
    assert status == 200
    assert body == {"mode": "paper", "halted": False, "positions": {"SPY": {"qty": "10.5"}}}


async def test_control_needs_the_right_token(served: Served) -> None:
    status, body, _ = await served.request("POST", "/halt")
    assert (status, body) == (401, {"error": "unauthorized"})
    status, body, _ = await served.request("POST", "/halt", token=WRONG)
    assert (status, body) == (401, {"error": "unauthorized"})
    async with served.session.post(
        served.server.url + "/halt", headers={"Authorization": f"Basic {TOKEN}"}
    ) as r:
        assert r.status == 401
    assert served.daemon.calls == []
    status, body, _ = await served.request("POST", "/halt", token=TOKEN)
    assert (status, body) == (200, {"halted": True})
    assert served.daemon.calls == ["halt"]
    refused = [e for e in served.events() if e["event"] == "control_unauthorized"]
    assert len(refused) == 3
    assert all(e["path"] == "/halt" and e["peer"] == "127.0.0.1" for e in refused)
    assert [e["level"] for e in refused] == ["warning"] * 3
    control = [e for e in served.events() if e["event"] == "control"]
    assert control[0]["action"] == "halt"
    assert control[0]["level"] == "info"
    # Neither the right token nor a wrong one is ever written to the log.
    assert TOKEN not in served.log.getvalue()
    assert WRONG not in served.log.getvalue()


async def test_each_control_endpoint_calls_its_action(served: Served) -> None:
    for path, expected in (
        ("/halt", {"halted": True}),
        ("/resume", {"halted": False}),
        ("/flatten", {"orders": ["c-1"]}),
        ("/kill-switch/reset", {"kill_switch": False}),
    ):
        status, body, _ = await served.request("POST", path, token=TOKEN)
        assert (status, body) == (200, expected)
    assert served.daemon.calls == ["halt", "resume", "flatten", "reset_kill_switch"]


async def test_a_failed_action_answers_409_with_its_message(served: Served) -> None:
    served.daemon.fail_flatten = True
    status, body, _ = await served.request("POST", "/flatten", token=TOKEN)
    assert status == 409
    assert "cannot flatten" in body["error"]


async def test_control_is_disabled_without_a_token(served_without_token: Served) -> None:
    s = served_without_token
    for token in (None, TOKEN, ""):
        status, body, _ = await s.request("POST", "/halt", token=token)
        assert status == 403
        assert body == {"error": "control plane disabled: set TRADINGD_CONTROL_TOKEN"}
    assert s.daemon.calls == []
    status, _, _ = await s.request("GET", "/state")  # reading stays open
    assert status == 200


async def test_unknown_path_and_wrong_method(served: Served) -> None:
    status, body, _ = await served.request("GET", "/nope")
    assert status == 404
    assert body["error"] == "not found"
    status, body, response = await served.request("GET", "/halt", token=TOKEN)
    assert status == 405
    assert body["allowed"] == ["POST"]
    assert response.headers["Allow"] == "POST"
    status, _, _ = await served.request("POST", "/metrics", token=TOKEN)
    assert status == 405
    assert served.daemon.calls == []


async def test_a_taken_port_is_a_clear_error(served: Served) -> None:
    telemetry = Telemetry(mode="paper", symbols=["SPY"], strategies=["s"])
    other = HttpServer(
        FakeDaemon(), telemetry, log=EventLog(io.StringIO()), port=served.server.port
    )
    with pytest.raises(TradingdError, match=f"127.0.0.1:{served.server.port}"):
        await other.start()


def test_loopback_hosts() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("localhost")
    assert is_loopback("::1")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("::")
    assert not is_loopback("10.1.2.3")
    assert not is_loopback("tradingd.example.com")


@pytest.mark.parametrize(
    "value",
    [b"Bearer \xc3\xa9t\xc3\xa9", b"Bearer \xe9\xff\xfe", "Bearer s3cret-\u00e9".encode("latin-1")],
    ids=["utf8", "raw-bytes", "latin1"],
)
async def test_a_non_ascii_authorization_header_is_401_not_500(
    served: Served, value: bytes
) -> None:
    # aiohttp's client refuses such headers: the request goes over a plain socket.
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", served.server.port)
    writer.write(
        b"POST /halt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n"
        b"Connection: close\r\nAuthorization: " + value + b"\r\n\r\n"
    )
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    status_line = response.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 401"), response
    assert served.daemon.calls == []
    assert not [e for e in served.events() if e["event"] == "http_error"]
