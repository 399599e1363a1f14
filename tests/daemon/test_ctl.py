"""`tradingd ctl` against a real HttpServer (127.0.0.1, ephemeral port) and an in-test daemon.

`ctl` is synchronous (urllib): it runs in a thread while the server runs on the test's loop.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest

from daemon.logs import EventLog
from daemon.service.ctl import ControlError, ctl
from daemon.service.http import HttpServer
from daemon.service.telemetry import Telemetry
from tests.daemon.test_http import TOKEN, WRONG, FakeDaemon
from tests.ports import free_port


async def start(token: str | None) -> tuple[FakeDaemon, HttpServer]:
    daemon = FakeDaemon()
    telemetry = Telemetry(mode="paper", symbols=["SPY"], strategies=["s"])
    server = HttpServer(daemon, telemetry, log=EventLog(io.StringIO()), token=token)
    await server.start()
    return daemon, server


@pytest.fixture
async def running() -> AsyncIterator[tuple[FakeDaemon, HttpServer]]:
    daemon, server = await start(TOKEN)
    yield daemon, server
    await server.close()


async def call(action: str, url: str, token: str | None) -> tuple[int, dict[str, Any]]:
    return await asyncio.to_thread(ctl, action, url=url, token=token, timeout_s=10.0)


async def test_each_action_reaches_its_endpoint(running: tuple[FakeDaemon, HttpServer]) -> None:
    daemon, server = running
    assert await call("halt", server.url, TOKEN) == (200, {"halted": True})
    assert await call("resume", server.url, TOKEN) == (200, {"halted": False})
    assert await call("flatten", server.url, TOKEN) == (200, {"orders": ["c-1"]})
    assert await call("reset", server.url + "/", TOKEN) == (200, {"kill_switch": False})
    assert daemon.calls == ["halt", "resume", "flatten", "reset_kill_switch"]


async def test_status_returns_the_state_and_readiness(
    running: tuple[FakeDaemon, HttpServer],
) -> None:
    daemon, server = running
    status, body = await call("status", server.url, None)  # reading needs no token
    assert status == 200
    assert body["mode"] == "paper"
    assert body["positions"] == {"SPY": {"qty": "10.5"}}
    assert body["readyz"]["ready"] is True
    daemon.checks["broker_stream"] = False
    _, body = await call("status", server.url, None)
    assert body["readyz"]["ready"] is False
    assert body["readyz"]["not_ready"] == ["broker_stream"]
    assert daemon.calls == []


async def test_a_wrong_or_missing_token_is_a_clear_error(
    running: tuple[FakeDaemon, HttpServer],
) -> None:
    daemon, server = running
    with pytest.raises(ControlError, match="401 unauthorized: the token does not match") as e:
        await call("halt", server.url, WRONG)
    assert server.url + "/halt" in str(e.value)
    assert WRONG not in str(e.value)
    with pytest.raises(ControlError, match="401 unauthorized: no token given"):
        await call("flatten", server.url, None)
    assert daemon.calls == []


async def test_a_disabled_control_plane_is_a_clear_error() -> None:
    daemon, server = await start(None)
    try:
        with pytest.raises(ControlError, match="403 control plane disabled") as e:
            await call("halt", server.url, TOKEN)
        assert server.url + "/halt" in str(e.value)
    finally:
        await server.close()
    assert daemon.calls == []


async def test_a_failed_action_is_an_error_with_the_daemons_message(
    running: tuple[FakeDaemon, HttpServer],
) -> None:
    daemon, server = running
    daemon.fail_flatten = True
    with pytest.raises(ControlError, match="HTTP 409: mode track cannot flatten"):
        await call("flatten", server.url, TOKEN)


async def test_an_unreachable_daemon_is_a_clear_error() -> None:
    # A port that was just free and has nobody listening: the connection is refused.
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ControlError, match=f"cannot reach tradingd at {url}/state"):
        await call("status", url, None)


def test_unknown_action_and_bad_url() -> None:
    with pytest.raises(ControlError, match="unknown action 'stop'"):
        ctl("stop", url="http://127.0.0.1:9108", token=None)
    with pytest.raises(ControlError, match="must start with http://"):
        ctl("status", url="127.0.0.1:9108", token=None)
