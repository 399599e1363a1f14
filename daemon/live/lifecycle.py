"""The live daemon's lifecycle: start, trade until stopped, stop cleanly.

Modes (`live.mode`) pick the account, the wiring picks the broker (`broker.type`):
    paper, live  an account's broker (Alpaca's paper or live API); the account's cash and
                 positions seed the ledger, and every trade-stream reconnect reconciles.
    sim          Alpaca's data into the simulated broker: nothing reaches a trading account.
    track        read-only: the broker is wrapped without a submit path, and the ledger follows
                 the account (fills, reconciliations, marks); the engine decides nothing.

One task owns the engine: every stream message, broker wake-up and backfill result goes through
one queue, so the core stays synchronous and single-threaded. The rooms beside this one hold the
rules: `slicer` (when a slice closes), `orders` (what leaves and what comes back), `recovery`
(restart and reconciliation), `market` (warm-up, stream, backfill), `controls` (the operator's).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from brokers.alpaca_rest import MarketClock
from brokers.base import NOT_SENT_STOPPED, NOT_SENT_SUPERSEDED
from daemon.config import LoadedConfig
from daemon.live import status
from daemon.live.buckets import live_buckets
from daemon.live.controls import Controls
from daemon.live.crash import CrashPoints
from daemon.live.guard import JournalGuard
from daemon.live.herald import Herald
from daemon.live.loop import EngineLoop, Fatal
from daemon.live.market import Backfilled, MarketData
from daemon.live.orders import OrderPath, SliceLog, warn_order_rate
from daemon.live.recovery import Recovery, reopen_orders, restored_orders
from daemon.live.slicer import Slicer
from daemon.live.startup import check_start, log_leaving_universe
from daemon.live.tasks import EXIT_TASK_FAILED, DaemonTasks, TaskFailures, start_unless_stopped
from daemon.live.upkeep import Upkeep
from daemon.logs import EventLog
from daemon.memory import collector_paused, freeze_heap, thaw_heap
from daemon.service.http import CONTROL_TOKEN_ENV, HttpServer
from daemon.service.systemd import Notifier
from daemon.timeutil import Clock, SystemClock, iso_utc
from daemon.wiring import build_live
from feeds.alpaca_stream import DataEvent
from feeds.bar import NS_PER_MINUTE
from feeds.errors import ConfigError, TradingdError
from portfolio.journal import Journal, JournalError
from portfolio.ledger import Ledger

_NEVER = 2**63 - 1
_ALWAYS = -(2**63)


class LiveDaemon:
    """One `tradingd run`.

    Args:
        allow_live: the command line said `--live`; mode `live` needs it, and it needs mode live.
        out_dir: where orders.csv, fills.csv, equity.csv and summary.json go.
        install_signals: stop on SIGINT/SIGTERM (the CLI); tests call `request_stop()`.
        clock: wall and monotonic time (tests may inject one).
    """

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        log: EventLog,
        env: Mapping[str, str],
        allow_live: bool = False,
        out_dir: Path | None = None,
        install_signals: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or SystemClock()
        parts = build_live(
            loaded,
            env=env,
            log=log,
            allow_live=allow_live,
            out_dir=out_dir,
            now_ns=self.clock.now_ns(),
        )
        settings = loaded.settings
        self.loaded, self.settings, self.log = loaded, settings, log
        self.mode, self.urls, self.symbols = parts.mode, parts.urls, parts.symbols
        self.run_id, self.out_dir, self.prefix = parts.run_id, parts.out_dir, parts.prefix
        self.recorder, self.telemetry = parts.recorder, parts.telemetry
        self.rest, self.broker, self.engine = parts.rest, parts.broker, parts.engine
        self.install_signals = install_signals
        self.control_token = env.get(CONTROL_TOKEN_ENV, "").strip() or None
        self.systemd = Notifier(env)
        self.http: HttpServer | None = None
        self.guard = JournalGuard(None, log=log, on_failed=self._halted_by_journal)
        self.slicer = Slicer(bar_ns=NS_PER_MINUTE, grace_s=settings.live.slice_grace_s)
        policy = settings.state.unknown_positions
        self.market = MarketData(
            settings=settings.live,
            symbols=self.symbols,
            credentials=parts.keys,
            urls=self.urls,
            rest=self.rest,
            engine=self.engine,
            guard=self.guard,
            slicer=self.slicer,
            telemetry=self.telemetry,
            log=log,
            clock=self.clock,
            post=self._post,
            spawn=self._spawn,
        )
        self.orders = OrderPath(
            engine=self.engine,
            broker=self.broker,
            guard=self.guard,
            telemetry=self.telemetry,
            log=log,
            crash=CrashPoints(env, log),
            own_prefix=self.prefix,
            policy=policy,
            max_decision_age_s=settings.live.max_decision_age_s or settings.data.bar_ns() / 2e9,
            market_now=self.market.now_ns,
            journaled=self.guard.has_order,
        )
        self._build_loop(policy)
        self.controls = Controls(
            self.engine,
            telemetry=self.telemetry,
            log=log,
            send=None if self.broker.read_only else self.orders.send,
            unsent=self.orders.unsent,
            guard=self.guard,
            on_kill_reset=self.orders.kill_reset,
            withdraw=lambda: self.orders.withdraw_unsent(NOT_SENT_SUPERSEDED),
            on_bug=lambda e: self.loop.post(Fatal(e, "control")),
        )
        self.failures = TaskFailures(log=log, telemetry=self.telemetry)
        self.tasks = DaemonTasks(self.failures, self.loop.post)
        self.herald = Herald(
            settings=settings, env=env, log=log, mode=self.mode, symbols=self.symbols,
            engine=self.engine, market=self.market, broker=self.broker, guard=self.guard,
            telemetry=self.telemetry,
        )  # fmt: skip
        self._started = False
        self._broker_started = False

    def _build_loop(self, policy: str) -> None:
        """Recovery, the strategies' buckets and the loop that owns the engine."""
        log = self.log
        self.recovery = Recovery(
            engine=self.engine,
            guard=self.guard,
            log=log,
            telemetry=self.telemetry,
            policy=policy,
            symbols=self.symbols,
        )
        self.buckets = live_buckets(self.settings)  # None for minute strategies
        self.market.buckets = self.buckets
        sanity = self.settings.sanity
        self.market.calendar = sanity.calendar if sanity.session != "any" else None
        if self.buckets is not None:
            self.orders.defer = self.buckets.deferring(self.market.now_ns)
        retention = self.settings.state.retention
        self.upkeep = Upkeep(
            engine=self.engine, guard=self.guard, retention=retention, log=log, background=True
        )
        self.loop = EngineLoop(
            engine=self.engine,
            broker=self.broker,
            market=self.market,
            orders=self.orders,
            recovery=self.recovery,
            guard=self.guard,
            telemetry=self.telemetry,
            recorder=self.recorder,
            slicer=self.slicer,
            log=log,
            clock=self.clock,
            follow_account=self.broker.read_only,
            buckets=self.buckets,
        )

    # -- the public surface -------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop taking bars and shut down (what SIGINT and SIGTERM do)."""
        if not self.loop.stopping.is_set():
            self.log.info("stop_requested", mode=self.mode)
        self.loop.stopping.set()
        self.loop.progress.set()

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> None:
        """Wait until `predicate()` holds after some step of the daemon (for tests and tools).

        Raises:
            TimeoutError: it did not hold within `timeout_s`.
        """
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await self.next_step()

    async def next_step(self) -> None:
        """Return after the daemon's next step: a message handled, a clock read, a stop."""
        self.loop.progress.clear()
        await self.loop.progress.wait()

    @property
    def ledger(self) -> Ledger:
        return self.engine.ledger

    @property
    def journal(self) -> Journal | None:
        return self.guard.journal

    @property
    def journal_failed(self) -> str | None:
        return self.guard.failed

    @property
    def feed_connected(self) -> bool:
        return self.market.connected

    @property
    def market_open(self) -> bool:
        return self.market.market_open

    @property
    def halted_symbols(self) -> set[str]:
        return self.orders.halted_symbols

    @property
    def slices(self) -> SliceLog:
        return self.orders.slices

    @property
    def warmup_bars(self) -> int:
        return self.market.warmup_bars

    # -- what /healthz, /readyz, /state and the control plane ask (service.http.DaemonControl) -

    def alive(self) -> bool:
        """Every long-running task is still running (none died)."""
        return self.tasks.alive()

    def readiness(self) -> dict[str, bool]:
        """What must hold before the daemon may trade: each name false blocks readiness."""
        return status.readiness(
            started=self._started,
            market=self.market,
            loop=self.loop,
            guard=self.guard,
            broker=self.broker,
        )

    def state(self) -> dict[str, Any]:
        return status.state(
            mode=self.mode,
            loaded=self.loaded,
            engine=self.engine,
            guard=self.guard,
            market=self.market,
            orders=self.orders,
            recovery=self.recovery,
            broker=self.broker,
        )

    def halt(self) -> dict[str, Any]:
        return self.controls.apply("halt", self.clock.now_ns())

    def resume(self) -> dict[str, Any]:
        """Trade again. Refused while the journal cannot be written (the write is the probe)."""
        return self.controls.apply("resume", self.clock.now_ns())

    def flatten(self) -> dict[str, Any]:
        """Close every position now, and halt (resume to trade again)."""
        return self.controls.apply("flatten", self.clock.now_ns())

    def reset_kill_switch(self) -> dict[str, Any]:
        return self.controls.apply("reset_kill_switch", self.clock.now_ns())

    # -- run ------------------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until stopped. Returns the exit code: 0 on a clean stop, 1 after a bug in a task.

        Raises:
            TradingdError: a fatal problem (refused keys, a feed the plan lacks, ...), after the
                shutdown ran.
        """
        loop = asyncio.get_running_loop()
        if self.install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.request_stop)
        fatal: BaseException | None = None
        try:
            if await start_unless_stopped(self._start(), self.loop.stopping):
                await self.loop.run()
            elif not self._started:
                self.log.warning("start_interrupted", mode=self.mode)
        except TradingdError as e:
            fatal = e
        except Exception as e:  # a bug, not a known condition: logged with its traceback
            self.failures.report(self._task_of(e), e, action="the daemon stops (exit 1)")
        finally:
            await self._shutdown(fatal)
            if self.install_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
        if fatal is not None:
            raise fatal
        return EXIT_TASK_FAILED if self.failures.reported else 0

    def _task_of(self, error: BaseException) -> str:
        """Which task `error` (raised out of the start, the engine loop or the stop) came from."""
        started = self.loop.failed_task if self._started else "start"
        return "broker" if error is self.broker.fatal else started

    def _post(self, item: DataEvent | Backfilled) -> None:
        self.loop.post(item)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """A task the daemon owns: awaited at the stop; a failure stops the daemon."""
        self.tasks.spawn(coro, name)

    async def _start(self) -> None:
        live = self.settings.live
        self.log.info(
            "daemon_starting",
            mode=self.mode,
            config=list(self.loaded.files),
            symbols=self.symbols,
            feed=live.feed,
            urls=self.urls,
            out=str(self.out_dir),
        )
        warn_order_rate(self.settings, self.symbols, self.mode, self.log)
        journal = self.guard.journal = Journal(Path(self.settings.state.dir))
        journaled = journal.reader().restart_state()
        await check_start(
            journal,
            fresh=journaled.segments == 0,
            account=None if self.mode == "sim" else self.rest.account,
            trading_url=self.urls["trading"],
            out_dir=self.out_dir,
            out_root=Path(self.settings.run.out_dir),
            log=self.log,
        )
        self.recorder.start(journaled_fills=journal.reader().fills)
        await self._start_http()
        self._spawn(self.telemetry.measure_loop_lag(), "loop-lag")
        if self.systemd.enabled and self.systemd.watchdog_interval_s is not None:
            self._spawn(self.systemd.watchdog(self.alive), "watchdog")
        clock = await self.rest.clock()
        self._on_clock(clock)
        broker = self.broker
        restart = journaled.segments > 0 and not broker.read_only
        last_slice = journaled.last_slice_ts
        if restart and last_slice is not None and last_slice > clock.ts:
            raise ConfigError(
                f"{journal.path}: it has decided up to {iso_utc(last_slice)}, after the "
                f"market clock ({iso_utc(clock.ts)}): it belongs to another account or sandbox "
                "session; point state.dir elsewhere (or remove it to start afresh)"
            )
        if restart:
            self.recovery.rebuild_ledger(journal)
            broker.restore(restored_orders(journaled))
            reopen_orders(self.engine, journaled.orders)
        self._broker_started = True
        await broker.start(since_ns=journaled.last_event_ts if restart else None)
        self.loop.drain_broker_notices()
        startup = broker.poll_events()
        if restart:
            # The ledger is the journal's; what the broker did meanwhile comes as events, then
            # the account is compared (and unknown positions handled by policy).
            self._begin_segment(clock.ts)
            self.orders.apply_events(startup)
            self.recovery.reconcile_start(broker, clock.ts)
        else:
            # A fresh state: the account is the start (its positions already include any fills
            # these events carry).
            policy = "adopt" if broker.read_only else self.settings.state.unknown_positions
            self.recovery.adopt_account(broker, restart=True, policy=policy)
            self._begin_segment(clock.ts)
            if startup:
                self.log.info("startup_events_skipped", events=len(startup))
        if not broker.read_only:
            log_leaving_universe(self.ledger, self.symbols, self.log)
        self.loop.reconciliations = broker.reconciliations
        last = broker.last_reconcile
        self.telemetry.reconciliation(len(last.differences) if last else 0)
        self.telemetry.broker_stream(broker.health().stream_connected)
        self._spawn(self.loop.pump_broker(), "broker-pump")
        self.orders.kill_journaled = self.recovery.restore_switches(journaled)
        with collector_paused():  # until the one collection and freeze of the start-up
            await self.market.warm_up(clock)
            resume_after = journaled.last_slice_ts if restart else None
            if resume_after is not None and resume_after > self.engine.last_decided_ts:
                # Resume after the last slice decided before the restart (backfilled from there).
                self.engine.last_decided_ts = resume_after
                self.slicer.resume_after(resume_after)
            self.guard.write(lambda j: j.warmup_done(clock.ts))
            self.engine.trade_from_ts = _ALWAYS
            self.market.open_stream()
            self._spawn(self.market.poll_clock(self._on_clock), "clock")
            freeze_heap()  # the start-up's objects: full collections skip them from here
        self._started = True
        self.orders.trading = True
        self.log.info("daemon_started", mode=self.mode, warmup_bars=self.market.warmup_bars)
        await self.herald.start(self._spawn)
        self.systemd.ready(f"{self.mode}: {len(self.symbols)} symbols")

    async def _start_http(self) -> None:
        http = self.settings.http
        if not http.enabled:
            return
        self.http = HttpServer(
            self,
            self.telemetry,
            log=self.log,
            host=http.host,
            port=http.port,
            token=self.control_token,
            feed=self.herald.feed,
        )
        await self.http.start()

    def _begin_segment(self, ts: int) -> None:
        self.guard.begin_segment(mode=self.mode, loaded=self.loaded, ledger=self.ledger, ts=ts)

    def _halted_by_journal(self) -> None:
        self.engine.halt()
        self.telemetry.halted(True)

    def _on_clock(self, clock: MarketClock) -> None:
        self.market.on_clock(clock, first=not self._started)
        if self._started:
            self.loop.check_quiet()
            self.loop.on_market_time()  # a bucket's end or an auction window, by the clock
            self.upkeep.on_clock(market_open=clock.is_open, ts=clock.ts)
        self.loop.progress.set()  # the clock task's news, for whoever waits on the daemon's state

    # -- stop -----------------------------------------------------------------------------------

    async def _shutdown(self, fatal: BaseException | None) -> None:
        thaw_heap()
        deadline = self.settings.live.stop_deadline_s
        started = self.clock.monotonic()
        self.systemd.stopping()
        if self.market.stream is not None:
            self.market.stream.stop()
        broker = self.broker
        cancelled = 0
        try:
            async with asyncio.timeout(deadline):
                if self._broker_started and not broker.read_only:
                    # What the broker has not sent yet never will be: journaled so, first.
                    self.orders.withdraw_unsent(NOT_SENT_STOPPED)
                    if not await broker.drain(max(deadline - 2.0, 0.1)):
                        self.log.warning("stop_in_flight", in_flight=broker.health().in_flight)
                    if self.settings.live.cancel_on_stop and broker.fatal is None:
                        cancelled = await self.orders.cancel_ours()
                    self.loop.on_broker()
                if self._broker_started and await self.orders.settle_at_stop():
                    self.loop.on_broker()  # what REST found is booked before the summary
        except TimeoutError:
            self.log.error("stop_deadline_passed", deadline_s=deadline)
        except TradingdError as e:
            self.log.error("stop_incomplete", error=str(e))
        except Exception as e:
            self.failures.report(self._task_of(e), e, action="found at the stop")
        if self._broker_started and not broker.read_only:
            self.log.info("orders_accounted", **self.orders.stop_accounting(cancelled))
        await self.tasks.stop()
        await broker.close()
        await self.rest.close()
        if self.recorder.started:
            self.recorder.close()
            self.recorder.write_summary(status.summary(self, cancelled=cancelled))
        await self.upkeep.stop()
        journal = self.guard.journal
        if journal is not None:
            try:
                journal.close()
            except JournalError as e:
                self.log.error("journal_close_failed", error=str(e))
        await self.herald.stop(fatal)
        if self.http is not None:
            await self.http.close()
        self.log.info(
            "daemon_stopped",
            mode=self.mode,
            cancelled_orders=cancelled,
            seconds=round(self.clock.monotonic() - started, 3),
            error=str(fatal) if fatal else None,
            failed_tasks=[task for task, _ in self.failures.reported],
        )
