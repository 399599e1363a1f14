"""`tradingd replay --serve` as a user runs it (a subprocess, its server on 127.0.0.1): SIGINT
and SIGTERM stop it within a second, and /metrics answers within 100 ms while the replay runs
behind schedule, with /healthz answering beside it."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
import yaml

from daemon.cli import main
from tests.daemon.livekit import DEADLINE_S, ROOT

STOP_WITHIN_S = 1.0
SCRAPE_WITHIN_S = 0.1


class Served:
    def __init__(self, process: asyncio.subprocess.Process, url: str) -> None:
        self.process = process
        self.url = url


async def serve(out: Path, *configs: str, speed: str) -> Served:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon.cli",
        "replay",
        *configs,
        "--serve",
        "--speed",
        speed,
        "--port",
        "0",
        "--out",
        str(out),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "TRADINGD_CONTROL_TOKEN"},
    )
    assert process.stderr is not None
    async with asyncio.timeout(DEADLINE_S):
        while True:
            line = await process.stderr.readline()
            assert line, "the replay ended before its server started"
            record = orjson.loads(line)
            if record["event"] == "http_started":
                return Served(process, record["url"])


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEADLINE_S)) as client:
        yield client


async def slices_replayed(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url + "/state") as response:
        return int((await response.json())["slices_replayed"])


async def stop_time(served: Served, sig: signal.Signals) -> float:
    """Seconds from `sig` to the process's exit; the exit code must be 0."""
    sent = time.perf_counter()
    served.process.send_signal(sig)
    async with asyncio.timeout(DEADLINE_S):
        code = await served.process.wait()
    took = time.perf_counter() - sent
    assert code == 0
    return took


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_signal_stops_a_paced_replay_within_a_second(
    tmp_path: Path, http: aiohttp.ClientSession, sig: signal.Signals
) -> None:
    out = tmp_path / "out"
    # 2,148 slices at 5 a second: seven minutes to the end of the data.
    served = await serve(out, "config/base.yaml", speed="5")
    try:
        async with asyncio.timeout(DEADLINE_S):
            while await slices_replayed(http, served.url) < 2:
                await asyncio.sleep(0.05)
        took = await stop_time(served, sig)
    finally:
        if served.process.returncode is None:
            served.process.kill()
            await served.process.wait()
    assert took < STOP_WITHIN_S
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert 2 <= summary["slices"] < 100
    assert served.process.stderr is not None
    events = [
        orjson.loads(line)["event"] for line in (await served.process.stderr.read()).splitlines()
    ]
    assert "replay_stopped" in events


async def test_metrics_answer_within_100_ms_while_the_replay_runs_behind(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    # Far beyond what the machine can do: the replay thread never sleeps.
    served = await serve(
        tmp_path / "out",
        "config/base.yaml",
        "config/risk_balanced.yaml",
        "config/minute.yaml",
        speed="1e9",
    )

    async def timed(path: str) -> float:
        started = time.perf_counter()
        async with http.get(served.url + path) as response:
            await response.read()
            assert response.status == 200
        return time.perf_counter() - started

    try:
        async with asyncio.timeout(DEADLINE_S):
            while await slices_replayed(http, served.url) < 10:
                await asyncio.sleep(0.01)
        scrapes: list[float] = []
        for _ in range(20):
            metrics, health = await asyncio.gather(timed("/metrics"), timed("/healthz"))
            scrapes.append(metrics)
            assert health < SCRAPE_WITHIN_S
        # Still replaying when the last scrape answered: each was taken behind schedule.
        assert served.process.returncode is None
        took = await stop_time(served, signal.SIGINT)
    finally:
        if served.process.returncode is None:
            served.process.kill()
            await served.process.wait()
    assert max(scrapes) < SCRAPE_WITHIN_S, scrapes
    assert took < STOP_WITHIN_S


async def test_state_and_ctl_status_show_money_to_the_cent(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    served = await serve(
        tmp_path / "out",
        "config/base.yaml",
        "config/risk_balanced.yaml",
        "config/minute.yaml",
        speed="500",
    )
    try:
        await money_is_shown_to_the_cent(http, served.url)
        assert await stop_time(served, signal.SIGTERM) < STOP_WITHIN_S
    finally:
        if served.process.returncode is None:
            served.process.kill()
            await served.process.wait()


CENTS = re.compile(r"^-?\d+\.\d{2}$")
TICKS = re.compile(r"^\d+\.\d{4}$")


async def money_is_shown_to_the_cent(http: aiohttp.ClientSession, url: str) -> None:
    """/state and `tradingd ctl status` once the replay holds positions: every amount of money
    to the cent, every price to the tick."""
    async with asyncio.timeout(DEADLINE_S):
        while True:
            async with http.get(url + "/state") as response:
                state = await response.json()
            if state.get("positions"):
                break
            await asyncio.sleep(0.01)
    account = state["account"]
    for key in ("equity", "cash", "gross_exposure", "realized_pnl", "unrealized_pnl"):
        assert CENTS.match(account[key]), (key, account[key])
    for position in state["positions"].values():
        assert CENTS.match(position["realized_pnl"]), position
        assert TICKS.match(position["avg_cost"]), position
        assert TICKS.match(position["last_price"]), position
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = await asyncio.to_thread(main, ["ctl", "status", "--url", url])
    assert code == 0
    shown = yaml.safe_load(out.getvalue())
    assert all(CENTS.match(shown["account"][k]) for k in ("equity", "cash", "realized_pnl"))
