"""Running the live daemon beside the sandbox in a test: configs, a session driver, a log."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from daemon.config import LoadedConfig, load_config
from daemon.live.lifecycle import LiveDaemon
from daemon.logs import EventLog
from sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "sample" / "minute"
SYMBOLS = ["AAA", "BBB", "CCC", "DDD"]
ENV = {"APCA_API_KEY_ID": "test-key", "APCA_API_SECRET_KEY": "test-secret"}
CONTROL_TOKEN = "livekit-control-token"
DEADLINE_S = 20.0


def live_config(
    tmp_path: Path,
    box: Sandbox,
    *,
    mode: str = "paper",
    strategies: dict[str, Any] | None = None,
    live: dict[str, Any] | None = None,
    symbols: list[str] | None = None,
    state: dict[str, Any] | None = None,
    data: Path = DATA,
    rebalance: dict[str, Any] | None = None,
) -> LoadedConfig:
    tree: dict[str, Any] = {
        "symbols": symbols or SYMBOLS,
        "data": {"path": str(data), "timeframe": "1Min"},
        "strategies": strategies or {"hold": {"type": "recorder"}},
        "composer": {"rebalance": {"every": "slice"}},
        "risk": {"max_weight": 0.3, "max_gross": 1.0, "allow_short": False},
        "run": {"out_dir": str(tmp_path / "out")},
        "http": {"port": 0},
        "state": {"dir": str(tmp_path / "state"), **(state or {})},
        "live": {
            "mode": mode,
            "feed": "iex",
            "trading_url": box.trading_url,
            "trade_stream_url": box.trade_stream_url,
            "data_stream_url": box.data_stream_url("iex"),
            "data_url": box.data_url,
            "slice_grace_s": 5,
            "backoff_min_s": 0.02,
            "backoff_max_s": 0.2,
            "stop_deadline_s": 10,
            **(live or {}),
        },
    }
    if rebalance is not None:
        tree["rebalance"] = rebalance
    path = tmp_path / f"{mode}.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return load_config([str(path)])


class Session:
    """A daemon running as a task beside the sandbox, with the test stepping the market."""

    def __init__(self, daemon: LiveDaemon, box: Sandbox) -> None:
        self.daemon = daemon
        self.box = box
        self.task: asyncio.Task[int] = asyncio.create_task(daemon.run())

    async def started(self) -> None:
        await self.until(lambda: self.daemon.feed_connected and not self.daemon.slicer.backfilling)

    async def until(self, predicate: Any) -> None:
        waiter = asyncio.create_task(self.daemon.wait_until(predicate, DEADLINE_S))
        done, _ = await asyncio.wait({waiter, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            self.task.result()  # the daemon died: raise its error
            raise AssertionError("the daemon stopped before the condition held")
        try:
            waiter.result()
        except TimeoutError:
            raise AssertionError(
                f"timed out; the daemon's last log lines:\n{self.log_tail()}"
            ) from None

    def log_tail(self, lines: int = 40) -> str:
        stream = self.daemon.log._stream
        assert isinstance(stream, io.StringIO)
        return "\n".join(stream.getvalue().splitlines()[-lines:])

    async def step(self, minutes: int = 1) -> None:
        """Play minutes one by one; after each, wait until the daemon decided it."""
        for _ in range(minutes):
            assert await self.box.step()
            minute = self.box.last_minute_ns
            await self.until(lambda m=minute: m in self.daemon.slices.symbols)

    async def settle(self) -> None:
        """Play minutes until every order of the daemon has reached an end (at most 5)."""
        daemon = self.daemon
        for _ in range(5):
            await self.until(lambda: daemon.broker.health().in_flight == 0)
            if not daemon.engine.order_book.open_orders:
                return
            await self.step()
        raise AssertionError(f"orders still open: {list(daemon.engine.order_book.open_orders)}")

    async def stop(self) -> int:
        self.daemon.request_stop()
        return await asyncio.wait_for(self.task, DEADLINE_S)


def quiet_log() -> EventLog:
    return EventLog(io.StringIO(), level="debug")


async def start_session(
    tmp_path: Path, box: Sandbox, *, env: dict[str, str] | None = None, **config: Any
) -> Session:
    """A daemon on `live_config(tmp_path, box, **config)`, running beside `box`, its feed
    connected and its first backfill done."""
    daemon = LiveDaemon(live_config(tmp_path, box, **config), log=quiet_log(), env=env or ENV)
    session = Session(daemon, box)
    await session.started()
    return session


class DaemonProcess:
    """`tradingd run CONFIG` as a child process (what kill -9 and SIGTERM drills need), with
    its JSON log lines collected as they come."""

    def __init__(self, config: Path, out: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.out = out
        self.env = {**os.environ, **ENV, "TRADINGD_CONTROL_TOKEN": CONTROL_TOKEN, **(env or {})}
        self.events: list[dict[str, Any]] = []
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.url = ""

    async def start(self) -> None:
        self.events = []
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "daemon.cli",
            "run",
            str(self.config),
            "--out",
            str(self.out),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            cwd=ROOT,
        )
        self._reader = asyncio.create_task(self._read())
        started = await self.wait_event("http_started")
        self.url = started["url"]
        await self.wait_event("feed_connected")

    async def _read(self) -> None:
        assert self.process is not None
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            try:
                self.events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                self.events.append({"event": "unparsed", "line": line.decode(errors="replace")})
            self._changed.set()
        self._changed.set()

    async def wait_event(self, name: str, *, after: int = 0) -> dict[str, Any]:
        """The first log event `name` at index >= `after`; fails if the process ends first."""
        async with asyncio.timeout(DEADLINE_S):
            while True:
                for record in self.events[after:]:
                    if record.get("event") == name:
                        return record
                if self._reader is not None and self._reader.done():
                    tail = self.events[-5:]
                    raise AssertionError(f"the daemon ended before {name}: {tail}")
                self._changed.clear()
                await self._changed.wait()

    async def state(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http, http.get(self.url + "/state") as response:
            body: dict[str, Any] = orjson.loads(await response.read())
            return body

    async def control(self, action: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {CONTROL_TOKEN}"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.url}/{action}", headers=headers) as response,
        ):
            assert response.status == 200, await response.text()
            body: dict[str, Any] = orjson.loads(await response.read())
            return body

    async def wait_exit(self) -> int:
        assert self.process is not None
        code = await asyncio.wait_for(self.process.wait(), DEADLINE_S)
        if self._reader is not None:
            await self._reader
        return code

    async def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return await self.wait_exit()

    def tail(self, lines: int = 30) -> str:
        """The last log lines (and any traceback), for a failing assertion's message."""
        return "\n".join(str(e) for e in self.events[-lines:])

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None
