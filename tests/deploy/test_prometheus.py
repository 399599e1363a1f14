"""A real Prometheus scrapes a real tradingd HTTP server, evaluates the shipped alert rules, and
answers queries with what the daemon exposes."""

from __future__ import annotations

import asyncio
import io
import shutil
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from daemon.logs import EventLog
from daemon.service.http import HttpServer
from daemon.service.telemetry import Telemetry
from portfolio.events import KillSwitchTripped
from portfolio.ledger import Ledger
from tests.ports import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DEADLINE_S = 60.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(PROMETHEUS).exists(),
        reason="prometheus not installed (Debian: apt-get install prometheus)",
    ),
]


class Daemon:
    """The smallest DaemonControl: alive, ready, a fixed state."""

    mode = "paper"

    def alive(self) -> bool:
        return True

    def readiness(self) -> dict[str, bool]:
        return {"feed": True, "broker_stream": True, "reconciled": True}

    def state(self) -> dict[str, Any]:
        return {"mode": self.mode}

    def halt(self) -> dict[str, Any]:
        return {"halted": True}

    def resume(self) -> dict[str, Any]:
        return {"halted": False}

    def flatten(self) -> dict[str, Any]:
        return {"orders": []}

    def reset_kill_switch(self) -> dict[str, Any]:
        return {"kill_switch": False}


@asynccontextmanager
async def _daemon(telemetry: Telemetry) -> AsyncIterator[HttpServer]:
    server = HttpServer(Daemon(), telemetry, log=EventLog(io.StringIO()), port=0)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@asynccontextmanager
async def _prometheus(tmp_path: Path, target_port: int) -> AsyncIterator[str]:
    """Prometheus scraping 127.0.0.1:`target_port` every second with the shipped rules; yields
    its base URL once it is ready, and stops it on the way out."""
    shutil.copy(DEPLOY / "tradingd_alerts.yml", tmp_path / "tradingd_alerts.yml")
    (tmp_path / "prometheus.yml").write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  evaluation_interval: 1s\n"
        "rule_files: [tradingd_alerts.yml]\n"
        "scrape_configs:\n"
        "  - job_name: tradingd\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n"
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        PROMETHEUS,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                if process.returncode is not None:
                    raise AssertionError(f"prometheus exited {process.returncode}")
                try:
                    async with http.get(url + "/-/ready") as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await _until(ready, "Prometheus ready", tmp_path)
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()


async def _until(check: Callable[[], Awaitable[bool]], what: str, tmp_path: Path) -> None:
    """Poll `check` until it holds; fail with Prometheus's log after the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while not await check():
        if time.monotonic() > deadline:
            tail = (tmp_path / "prometheus.log").read_text(errors="replace")[-3000:]
            pytest.fail(f"{what}: not within {DEADLINE_S:.0f} s\n{tail}")
        await asyncio.sleep(0.2)  # the poll interval; the deadline bounds the wait


async def _get(http: aiohttp.ClientSession, url: str, **params: str) -> Any:
    async with http.get(url, params=params) as response:
        assert response.status == 200, await response.text()
        body: Any = await response.json()
        assert body["status"] == "success", body
        return body["data"]


async def test_prometheus_scrapes_the_daemon_and_returns_its_equity(tmp_path: Path) -> None:
    telemetry = Telemetry(mode="paper", symbols=["SPY", "QQQ"], strategies=["trend"])
    telemetry.attach(ledger=Ledger(Decimal("123456.78")))
    for _ in range(3):
        telemetry.bar_accepted("SPY", 1_700_000_000_000_000_000)

    async with (
        _daemon(telemetry) as server,
        _prometheus(tmp_path, server.port) as prometheus,
        aiohttp.ClientSession() as http,
    ):
        query = prometheus + "/api/v1/query"
        equity: list[Any] = []

        async def scraped() -> bool:
            equity[:] = (await _get(http, query, query="tradingd_equity"))["result"]
            return bool(equity)

        await _until(scraped, "tradingd_equity in Prometheus", tmp_path)
        [series] = equity
        assert series["metric"]["job"] == "tradingd"
        assert series["metric"]["instance"] == f"127.0.0.1:{server.port}"
        assert float(series["value"][1]) == 123456.78

        accepted = await _get(http, query, query='tradingd_bars_accepted_total{symbol="SPY"}')
        assert [float(s["value"][1]) for s in accepted["result"]] == [3.0]
        up = await _get(http, query, query='up{job="tradingd"}')
        assert [float(s["value"][1]) for s in up["result"]] == [1.0]


async def test_prometheus_loads_the_alert_rules_and_fires_the_kill_switch_alert(
    tmp_path: Path,
) -> None:
    telemetry = Telemetry(mode="paper", symbols=["SPY"], strategies=["trend"])
    telemetry.attach(ledger=Ledger(Decimal(100_000)))
    telemetry.on_kill_switch(
        KillSwitchTripped(
            ts=1_700_000_000_000_000_000,
            reason="max_drawdown",
            equity=Decimal(80_000),
            value=0.2,
            limit=0.2,
        )
    )

    async with (
        _daemon(telemetry) as server,
        _prometheus(tmp_path, server.port) as prometheus,
        aiohttp.ClientSession() as http,
    ):
        groups = (await _get(http, prometheus + "/api/v1/rules"))["groups"]
        rules = {rule["name"] for group in groups for rule in group["rules"]}
        assert len(rules) == 8
        assert {"TradingdDown", "TradingdKillSwitchTripped", "TradingdFeedStale"} <= rules
        assert all(rule["health"] != "err" for g in groups for rule in g["rules"])

        firing: list[dict[str, Any]] = []

        async def fired() -> bool:
            alerts = (await _get(http, prometheus + "/api/v1/alerts"))["alerts"]
            firing[:] = [a for a in alerts if a["state"] == "firing"]
            return bool(firing)

        await _until(fired, "an alert firing", tmp_path)
        [alert] = firing
        assert alert["labels"]["alertname"] == "TradingdKillSwitchTripped"
        assert alert["labels"]["severity"] == "critical"
        assert alert["annotations"]["summary"] == (
            f"tradingd on 127.0.0.1:{server.port}: kill switch tripped"
        )


async def test_prometheus_scrapes_a_running_tradingd_and_reads_its_metrics_back(
    tmp_path: Path,
) -> None:
    """The real thing end to end: `tradingd replay --serve` (a process) scraped by Prometheus."""
    port = free_port()
    replay = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon.cli",
        "replay",
        "config/base.yaml",
        "config/risk_balanced.yaml",
        "--serve",
        "--speed",
        "50",
        "--port",
        str(port),
        "--out",
        str(tmp_path / "out"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=DEPLOY.parent,
    )
    try:
        async with (
            _prometheus(tmp_path, port) as prometheus,
            aiohttp.ClientSession() as http,
        ):
            query = prometheus + "/api/v1/query"
            received: list[float] = []

            async def scraped_twice() -> bool:
                # Two scrapes that saw the replay move: the counter grew between them.
                data = await _get(
                    http, query, query="sum(increase(tradingd_bars_received_total[1m]))"
                )
                received[:] = [float(s["value"][1]) for s in data["result"]]
                return bool(received) and received[0] > 0

            await _until(scraped_twice, "tradingd_bars_received_total growing", tmp_path)
            info = await _get(http, query, query="tradingd_info")
            assert [s["metric"]["mode"] for s in info["result"]] == ["replay"]
            up = await _get(http, query, query='up{job="tradingd"}')
            assert [float(s["value"][1]) for s in up["result"]] == [1.0]
    finally:
        replay.terminate()
        await replay.wait()
