"""`tradingd replay --serve`: a replay paced in wall time, with the HTTP server up.

The replay runs on a worker thread (it is synchronous); the event loop serves /metrics, /healthz,
/readyz, /state and the control plane. The engine belongs to the replay thread: /state reads a
snapshot taken between slices, /metrics the exposition the replay thread publishes between
slices (a scrape never waits for the replay, however far behind schedule it runs), and controls
are queued and applied between slices. SIGINT and SIGTERM (with `install_signals`) stop the
replay at the next slice: its files are written for what was replayed.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from brokers.orders import SubmitOrder
from brokers.simulated import SimulatedBroker
from daemon.config import LoadedConfig
from daemon.engine import Engine
from daemon.live.controls import Controls
from daemon.logs import EventLog
from daemon.replay.driver import ReplayResult, replay
from daemon.service.http import CONTROL_TOKEN_ENV, HttpServer
from daemon.service.state import engine_state
from daemon.service.telemetry import Telemetry
from daemon.wiring import open_source
from feeds.bar import Bar

_ACTIONS = ("halt", "resume", "flatten", "reset_kill_switch")
# How often the replay thread renders /metrics: fresh enough for any scrape interval, and a
# render (a few ms) at most a few times a second whatever the speed.
PUBLISH_EVERY_S = 0.25


class PacedReplay:
    """A replay at `speed` slices per second, observable and controllable over HTTP.

    Args:
        speed: slices per wall second.
        env: the environment; TRADINGD_CONTROL_TOKEN enables the control plane.
        install_signals: stop on SIGINT and SIGTERM (the command line; needs the main thread).
    """

    mode = "replay"

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        log: EventLog,
        env: Mapping[str, str],
        speed: float,
        out_dir: Path | None = None,
        port: int | None = None,
        install_signals: bool = False,
    ) -> None:
        self.loaded = loaded
        self.log = log
        self.speed = speed
        self.out_dir = out_dir
        self.port = loaded.settings.http.port if port is None else port
        self.token = env.get(CONTROL_TOKEN_ENV, "").strip() or None
        self.source = open_source(loaded)
        self.symbols = list(loaded.settings.symbols or self.source.symbols)
        self.telemetry = Telemetry(
            mode=self.mode, symbols=self.symbols, strategies=list(loaded.settings.strategies)
        )
        self.http: HttpServer | None = None
        self.slices = 0
        self._pending: deque[str] = deque()
        self._lock = threading.Lock()  # the pending controls and the snapshot
        self._stop = threading.Event()
        self._stopped_by: str | None = None
        self._install_signals = install_signals
        self._published_at = 0.0
        self._controls: Controls | None = None
        self._snapshot: dict[str, Any] = {"mode": self.mode, "last_slice": None}
        self._running = False
        self._next_due = 0.0
        self._last_bar_at = time.perf_counter()

    async def run(self) -> ReplayResult:
        http = self.loaded.settings.http
        self.http = HttpServer(
            self, self.telemetry, log=self.log, host=http.host, port=self.port, token=self.token
        )
        # Before the replay thread starts, the loop may render: the first scrape has an answer.
        self.telemetry.publish()
        await self.http.start()
        self.log.info("replay_paced", speed_slices_per_s=self.speed)
        self._running = True
        self._next_due = time.monotonic()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM) if self._install_signals else ()
        for sig in signals:
            loop.add_signal_handler(sig, self.stop, sig.name)
        try:
            result = await asyncio.to_thread(self._replay)
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            self._running = False
            await self.http.close()
        if self._stopped_by is not None:
            self.log.warning(
                "replay_stopped",
                by=self._stopped_by,
                slices=self.slices,
                last_slice=result.summary["last_slice"],
                detail="stopped before the end of the data; the files cover what was replayed",
            )
        return result

    def stop(self, by: str = "stop") -> None:
        """Stop the replay at the next slice (thread-safe; a signal handler calls it)."""
        if self._stopped_by is None:
            self._stopped_by = by
        self._stop.set()

    # -- the replay thread ----------------------------------------------------------------------

    def _replay(self) -> ReplayResult:
        # The engine, its ledger and the metrics' rendering are this thread's from here on.
        try:
            return replay(
                self.loaded,
                out_dir=self.out_dir,
                log=self.log,
                source=self.source,
                listeners=[self.telemetry],
                on_bar=self._on_bar,
                between_slices=self._between,
            )
        finally:
            self.telemetry.publish()

    def _on_bar(self, bar: Bar, reason: str | None) -> None:
        self._last_bar_at = time.perf_counter()
        telemetry = self.telemetry
        telemetry.bar_received(bar.symbol)
        if reason is None:
            telemetry.bar_accepted(bar.symbol, bar.ts)
        else:
            telemetry.bar_rejected(bar.symbol, reason)

    def _between(self, engine: Engine, broker: SimulatedBroker) -> bool:
        # The replay decides a slice right after its last bar: that bar to the orders handed
        # to the broker is the decision latency.
        self.telemetry.slice_decided(time.perf_counter() - self._last_bar_at)
        self.slices += 1
        with self._lock:
            actions = list(self._pending)
            self._pending.clear()
        for action in actions:
            self._apply(action, engine, broker)
        snapshot = engine_state(engine, self.loaded.settings.risk, mode=self.mode)
        with self._lock:
            self._snapshot = snapshot
        now = time.monotonic()
        if now - self._published_at >= PUBLISH_EVERY_S:
            self._published_at = now
            self.telemetry.publish()
        # Drift-free pacing: the n-th slice is due n intervals after the start.
        self._next_due += 1.0 / self.speed
        delay = self._next_due - time.monotonic()
        if delay > 0:
            # A stop wakes the wait at once.
            self._stop.wait(delay)
        else:
            self._next_due = time.monotonic()
        return self._stop.is_set()

    def _apply(self, action: str, engine: Engine, broker: SimulatedBroker) -> None:
        if self._controls is None or self._controls.engine is not engine:

            def send(orders: list[SubmitOrder]) -> None:
                for order in orders:
                    broker.submit(order)
                engine.on_events(broker.poll_events())

            self._controls = Controls(engine, telemetry=self.telemetry, log=self.log, send=send)
        # Market time: a flatten's orders are decided at the close of the last slice.
        self._controls.apply(action, engine.last_decided_ts + engine.bar_ns)
        self.telemetry.halted(engine.halted)

    # -- service.http.DaemonControl (the event loop's thread) ----------------------------------

    def alive(self) -> bool:
        return self._running

    def readiness(self) -> dict[str, bool]:
        return {"replaying": self._running}

    def state(self) -> dict[str, Any]:
        with self._lock:
            out = dict(self._snapshot)
            out["pending_controls"] = list(self._pending)
        out["slices_replayed"] = self.slices
        return out

    def _queue(self, action: str) -> dict[str, Any]:
        assert action in _ACTIONS
        with self._lock:
            self._pending.append(action)
        return {"queued": action, "applies": "before the next slice"}

    def halt(self) -> dict[str, Any]:
        return self._queue("halt")

    def resume(self) -> dict[str, Any]:
        return self._queue("resume")

    def flatten(self) -> dict[str, Any]:
        return self._queue("flatten")

    def reset_kill_switch(self) -> dict[str, Any]:
        return self._queue("reset_kill_switch")
