"""The daemon's HTTP surface while it runs: live against the sandbox, and a paced replay.

Each endpoint is read from the real server on an ephemeral port, and each metric family is seen
moving as the session goes on; the control plane acts on the running daemon.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sandbox import Sandbox
from tests.daemon.livekit import (
    DEADLINE_S,
    ENV,
    ROOT,
    SYMBOLS,
    start_session,
)

TOKEN = "test-control-token-5f2a"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition: (name, sorted labels) -> value."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def total(scrape: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(v for (n, _), v in scrape.items() if n == name)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEADLINE_S)) as client:
        yield client


async def get(client: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with client.get(url) as response:
        body = await response.read()
        if response.content_type == "application/json":
            return response.status, orjson.loads(body)
        return response.status, body.decode()


async def post(client: aiohttp.ClientSession, url: str, token: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with client.post(url, headers=headers) as response:
        return response.status, orjson.loads(await response.read())


async def test_live_endpoints_and_metrics_move_with_the_session(
    tmp_path: Path, sandbox: Sandbox, recorder: Any, http: aiohttp.ClientSession
) -> None:
    session = await start_session(tmp_path, sandbox)
    daemon = session.daemon
    assert daemon.http is not None
    url = daemon.http.url

    status, _ = await get(http, url + "/healthz")
    assert status == 200
    status, ready = await get(http, url + "/readyz")
    assert status == 200, ready
    status, text = await get(http, url + "/metrics")
    assert status == 200
    before = samples(text)
    assert total(before, "tradingd_feed_connected") == 1
    assert total(before, "tradingd_broker_stream_up") == 1
    assert total(before, "tradingd_reconciliations_total") >= 1

    await session.step(3)
    await session.settle()
    status, text = await get(http, url + "/metrics")
    after = samples(text)
    moved = [
        "tradingd_bars_received_total",
        "tradingd_bars_accepted_total",
        "tradingd_slices_decided_total",
        "tradingd_orders_submitted_total",
        "tradingd_orders_filled_total",
        "tradingd_order_ack_seconds_count",
        "tradingd_order_fill_seconds_count",
        "tradingd_decision_latency_seconds_count",
    ]
    for name in moved:
        assert total(after, name) > total(before, name), name
    # The loop-lag probe ticks every 0.5 s of wall time: wait for its next observation.
    lag = "tradingd_event_loop_lag_seconds_count"
    async with asyncio.timeout(DEADLINE_S):
        while total(samples((await get(http, url + "/metrics"))[1]), lag) <= total(before, lag):
            await asyncio.sleep(0.1)
    assert total(after, "tradingd_equity") > 0
    assert total(after, "tradingd_position_quantity") > 0
    assert total(after, "tradingd_position_value") > 0
    assert total(after, "tradingd_gross_exposure") > 0
    assert after[("tradingd_target_weight", (("symbol", "AAA"),))] > 0
    assert after[("tradingd_strategy_weight", (("strategy", "hold"),))] == 1.0
    assert after[("tradingd_kill_switch", ())] == 0
    assert total(after, "process_resident_memory_bytes") > 0

    status, state = await get(http, url + "/state")
    assert status == 200
    assert state["mode"] == "paper"
    assert set(state["positions"]) == set(SYMBOLS)
    assert state["targets"]["composed"]["AAA"] > 0
    assert state["risk"]["max_gross"]["limit"] == 1.0
    assert 0 < state["risk"]["max_gross"]["used"] <= 1.0
    assert state["kill_switch"] == {"tripped": False, "reason": None}
    assert state["last_slice"] is not None
    assert state["open_orders"] == []

    # Without TRADINGD_CONTROL_TOKEN the control plane is off.
    status, _ = await post(http, url + "/halt", TOKEN)
    assert status == 403
    assert await session.stop() == 0


async def test_readyz_names_the_feed_while_the_data_socket_is_down(
    tmp_path: Path, sandbox: Sandbox, recorder: Any, http: aiohttp.ClientSession
) -> None:
    session = await start_session(tmp_path, sandbox)
    daemon = session.daemon
    assert daemon.http is not None
    sandbox.faults.drop_data_socket(down_steps=2)
    await sandbox.step()
    await session.until(lambda: not daemon.feed_connected)
    status, body = await get(http, daemon.http.url + "/readyz")
    assert status == 503
    assert "feed" in body["not_ready"]
    await sandbox.step(2)
    await session.until(lambda: daemon.feed_connected and not daemon.slicer.backfilling)
    status, body = await get(http, daemon.http.url + "/readyz")
    assert status == 200, body
    assert await session.stop() == 0


async def test_control_plane_halts_flattens_resumes_and_resets(
    tmp_path: Path, sandbox: Sandbox, recorder: Any, http: aiohttp.ClientSession
) -> None:
    env = {**ENV, "TRADINGD_CONTROL_TOKEN": TOKEN}
    session = await start_session(tmp_path, sandbox, env=env)
    daemon = session.daemon
    assert daemon.http is not None
    url = daemon.http.url
    await session.step(1)
    await session.settle()
    assert daemon.ledger.positions

    assert (await post(http, url + "/halt", None))[0] == 401
    assert (await post(http, url + "/halt", "wrong-token"))[0] == 401
    status, body = await post(http, url + "/halt", TOKEN)
    assert status == 200
    assert body["halted"] is True
    orders = daemon.engine.counters.orders
    await session.step(2)
    assert daemon.engine.counters.orders == orders  # halted: decided, nothing sent

    status, body = await post(http, url + "/flatten", TOKEN)
    assert status == 200
    assert len(body["orders"]) == len(SYMBOLS)
    await session.settle()
    assert daemon.ledger.positions == {}
    assert not any(sandbox.positions.values())

    status, body = await post(http, url + "/resume", TOKEN)
    assert status == 200
    assert body["halted"] is False
    await session.step(1)
    await session.settle()
    assert daemon.ledger.positions  # trading again

    daemon.engine.risk.latch("max_drawdown")
    _, state = await get(http, url + "/state")
    assert state["kill_switch"]["tripped"] is True
    status, body = await post(http, url + "/kill-switch/reset", TOKEN)
    assert status == 200
    _, state = await get(http, url + "/state")
    assert state["kill_switch"] == {"tripped": False, "reason": None}
    _, text = await get(http, url + "/metrics")
    assert samples(text)[("tradingd_kill_switch", ())] == 0
    assert await session.stop() == 0
    logged = session.log_tail(10_000)
    assert "control_unauthorized" in logged
    assert TOKEN not in logged
    assert "wrong-token" not in logged


async def test_paced_replay_serves_state_and_metrics_that_promtool_accepts(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon.cli",
        "replay",
        "config/base.yaml",
        "config/risk_balanced.yaml",
        "--serve",
        "--speed",
        "400",
        "--port",
        "0",
        "--out",
        str(tmp_path / "out"),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "TRADINGD_CONTROL_TOKEN": TOKEN},
    )
    assert process.stderr is not None
    url = ""
    try:
        async with asyncio.timeout(DEADLINE_S):
            while not url:
                record = orjson.loads(await process.stderr.readline())
                if record["event"] == "http_started":
                    url = record["url"]
        assert (await get(http, url + "/healthz"))[0] == 200
        assert (await get(http, url + "/readyz"))[0] == 200
        _, first = await get(http, url + "/metrics")
        _, state = await get(http, url + "/state")
        assert state["mode"] == "replay"
        status, body = await post(http, url + "/halt", TOKEN)
        assert status == 200
        assert body["queued"] == "halt"

        async def bars() -> float:
            _, text = await get(http, url + "/metrics")
            return total(samples(text), "tradingd_bars_received_total")

        seen = await bars()
        async with asyncio.timeout(DEADLINE_S):
            while await bars() <= seen:
                await asyncio.sleep(0.05)
        async with asyncio.timeout(DEADLINE_S):
            while not (await get(http, url + "/state"))[1]["halted"]:
                await asyncio.sleep(0.05)
        # /metrics is the replay's published snapshot (every 0.25 s), /state is read live: the
        # halt shows there by the next snapshot.
        async with asyncio.timeout(DEADLINE_S):
            while True:
                _, text = await get(http, url + "/metrics")
                if total(samples(text), "tradingd_halted") == 1:
                    break
                await asyncio.sleep(0.05)
        promtool = shutil.which("promtool")
        if promtool is not None:
            lint = subprocess.run(
                [promtool, "check", "metrics"],
                input=text.encode(),
                capture_output=True,
                check=False,
            )
            assert lint.returncode == 0, lint.stdout + lint.stderr
        assert "tradingd_bars_received_total" in first
    finally:
        process.terminate()
        await process.wait()
