"""The live driver: Alpaca's streams through the engine, orders out through a broker.

Modes (`live.mode`):
    paper, live  the Alpaca broker (paper or live API); the account's cash and positions seed
                 the ledger, and every trade-stream reconnect reconciles before new orders.
    sim          Alpaca's data into the simulated broker: nothing reaches a trading account.
    track        read-only: the ledger follows the account (fills, reconciliations, marks); this
                 driver holds no submit path at all in this mode.

One task owns the engine: every stream message, broker wake-up and backfill result goes through
one queue, so the core stays synchronous and single-threaded.

A minute's slice closes when every symbol has reported, when a bar of a later minute arrives, or
`slice_grace_s` after its first bar arrived, but never while the data stream is down or a backfill
is running: after a reconnect the missed minutes are fetched from the historical endpoint and
fed in order before the slices close, so no slice is decided on missing bars.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from brokers.alpaca import AlpacaBroker
from brokers.alpaca_rest import AlpacaRest, MarketClock
from brokers.base import NOT_SENT_BEFORE_RESTART, PositionSnapshot, RestoredOrder
from brokers.orders import (
    ExecutionEvent,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    SubmitOrder,
)
from brokers.simulated import SimulatedBroker
from daemon.config import LoadedConfig
from daemon.engine import Engine, ListenerFanout
from daemon.logs import EventLog
from daemon.recorder import Recorder
from daemon.service.http import CONTROL_TOKEN_ENV, HttpServer
from daemon.service.state import engine_state
from daemon.service.systemd import Notifier
from daemon.service.telemetry import Telemetry
from daemon.timeutil import iso_utc
from daemon.wiring import build_engine
from feeds.alpaca_history import HistoricalBars
from feeds.alpaca_stream import (
    AlpacaDataStream,
    DataEvent,
    StreamBar,
    StreamConnected,
    StreamDisconnected,
    StreamNotice,
    TradingStatus,
)
from feeds.bar import NS_PER_MINUTE, Bar
from feeds.errors import ConfigError, TradingdError
from portfolio.journal import (
    Journal,
    JournalError,
    JournalState,
    LedgerSnapshot,
    positions_from_json,
    positions_to_json,
)
from portfolio.ledger import Ledger

# Fault injection for the restart drills: "POINT[:N]" kills the process (SIGKILL, as `kill -9`)
# the N-th time it reaches POINT (after_intent, after_send, after_fill, mid_slice).
CRASH_ENV = "TRADINGD_CRASH_AT"
CRASH_POINTS = frozenset({"after_intent", "after_send", "after_fill", "mid_slice"})
KEY_ENV = "APCA_API_KEY_ID"
SECRET_ENV = "APCA_API_SECRET_KEY"  # noqa: S105 - the variable's name, not a secret
MINUTES_PER_SESSION = 390
_NEVER = 2**63 - 1
# Tasks that end by design; any other that ends means the daemon is not healthy.
_ONE_SHOT_TASKS = frozenset({"backfill"})
_KEEP_DIFFERENCES = 50
_ALWAYS = -(2**63)


@dataclass(frozen=True, slots=True)
class _BrokerWake:
    pass


@dataclass(frozen=True, slots=True)
class _Backfilled:
    bars: list[Bar]
    error: str | None


@dataclass(frozen=True, slots=True)
class _Fatal:
    error: BaseException


@dataclass(slots=True)
class LiveCounters:
    backfills: int = 0
    backfilled_bars: int = 0
    halted_orders: int = 0
    reconnects: int = 0


@dataclass(slots=True)
class _SliceLog:
    """What the latest decided slices held: the evidence that no slice closed early.

    Bounded: a daemon runs for months; the journal keeps every slice.
    """

    decided: list[int] = field(default_factory=list)
    symbols: dict[int, int] = field(default_factory=dict)
    keep: int = 20_000

    def add(self, slice_ts: int, n_symbols: int) -> None:
        self.decided.append(slice_ts)
        self.symbols[slice_ts] = n_symbols
        if len(self.decided) > self.keep:
            dropped = self.decided[: self.keep // 2]
            del self.decided[: self.keep // 2]
            for ts in dropped:
                self.symbols.pop(ts, None)


def credentials(env: Mapping[str, str]) -> tuple[str, str]:
    """The Alpaca keys from the environment (never from files).

    Raises:
        ConfigError: one of them is missing, naming which.
    """
    key = env.get(KEY_ENV, "").strip()
    secret = env.get(SECRET_ENV, "").strip()
    missing = [name for name, value in ((KEY_ENV, key), (SECRET_ENV, secret)) if not value]
    if missing:
        raise ConfigError(
            f"{' and '.join(missing)} not set: export your Alpaca API key id and secret key "
            "(paper keys for mode paper; for `tradingd sandbox`, any non-empty values)"
        )
    return key, secret


class LiveDaemon:
    """One `tradingd run`: start, trade until stopped, stop cleanly.

    Args:
        allow_live: the command line said `--live`; mode `live` needs it, and it needs mode live.
        out_dir: where orders.csv, fills.csv, equity.csv and summary.json go.
        install_signals: stop on SIGINT/SIGTERM (the CLI); tests call `request_stop()`.
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
    ) -> None:
        settings = loaded.settings
        live = settings.live
        if live.mode == "live" and not allow_live:
            raise ConfigError(
                f"{loaded.origin(('live', 'mode'))}: live.mode is live, which trades real money: "
                "add --live to the command line to confirm"
            )
        if allow_live and live.mode != "live":
            raise ConfigError(f"--live given, but live.mode is {live.mode}: set live.mode: live")
        if settings.data.bar_ns() != NS_PER_MINUTE:
            raise ConfigError(
                f"{loaded.origin(('data', 'timeframe'))}: data.timeframe: live trading runs on "
                f"Alpaca's 1-minute bars; set 1Min (it is {settings.data.timeframe})"
            )
        if not settings.symbols:
            raise ConfigError(f"{loaded.files[-1]}: symbols: list the symbols to trade")
        self.loaded = loaded
        self.settings = settings
        self.mode: str = live.mode
        self.log = log
        self.key, self.secret = credentials(env)
        self.urls = live.urls()
        self.symbols = list(settings.symbols)
        self.install_signals = install_signals
        run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{self.mode}-{loaded.digest}"
        self.out_dir = out_dir if out_dir is not None else Path(settings.run.out_dir) / run_id
        self.recorder = Recorder(self.out_dir, log, streaming=True)
        self.telemetry = Telemetry(
            mode=self.mode, symbols=self.symbols, strategies=list(settings.strategies)
        )
        self.engine: Engine
        self.sim: SimulatedBroker
        self.engine, self.sim = build_engine(
            loaded,
            self.symbols,
            ListenerFanout(self.recorder, self.telemetry),
            trade_from_ts=_NEVER,
        )
        self.telemetry.attach(ledger=self.engine.ledger, risk=self.engine.risk)
        self.control_token = env.get(CONTROL_TOKEN_ENV, "").strip() or None
        self.notifier = Notifier(env)
        self.http: HttpServer | None = None
        self.journal: Journal | None = None
        self.journal_failed: str | None = None
        self._kill_journaled = False
        self._crash = _crash_point(env.get(CRASH_ENV, ""))
        self.differences: list[dict[str, Any]] = []
        self._own_prefix = self.engine.rebalancer.id_prefix + "-"
        self.rest: AlpacaRest | None = None
        self.broker: AlpacaBroker | None = None
        self.history = HistoricalBars(
            key=self.key,
            secret=self.secret,
            url=self.urls["data"],
            feed=live.feed,
            timeout_s=max(live.request_timeout_s, 30.0),
        )
        self.stream: AlpacaDataStream | None = None
        self.counters = LiveCounters()
        self.slices = _SliceLog()
        self.halted_symbols: set[str] = set()
        self.feed_connected = False
        self.market_open = True
        self.warmup_bars = 0
        self._queue: asyncio.Queue[DataEvent | _BrokerWake | _Backfilled | _Fatal] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._progress = asyncio.Event()
        self._backfilling = False
        self._buffer: list[Bar] = []
        self._next_ts: int | None = None  # the first minute not yet seen by the engine
        self._grace_at: float | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._submit: Callable[[SubmitOrder], None] | None = None
        self._started = False
        self._reconciliations = 0

    # -- the public surface -------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop taking bars and shut down (what SIGINT and SIGTERM do)."""
        if not self._stopping.is_set():
            self.log.info("stop_requested", mode=self.mode)
        self._stopping.set()
        self._progress.set()

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
        self._progress.clear()
        await self._progress.wait()

    @property
    def ledger(self) -> Ledger:
        return self.engine.ledger

    # -- what /healthz, /readyz, /state and the control plane ask (daemon.http.DaemonControl) --

    def alive(self) -> bool:
        """Every long-running task is still running (none died)."""
        return not any(
            task.done() for task in self._tasks if task.get_name() not in _ONE_SHOT_TASKS
        )

    def readiness(self) -> dict[str, bool]:
        """What must hold before the daemon may trade: each name false blocks readiness."""
        broker = self.broker
        fresh = self.feed_connected and (
            not self.market_open or self._seconds_since_message() < self.settings.live.silence_s
        )
        checks = {
            "started": self._started,
            "feed": fresh,
            "backfilled": not self._backfilling,
            "journal": self.journal_failed is None,
        }
        if broker is not None:
            checks["broker_stream"] = broker.stream_connected
            checks["reconciled"] = broker.ready
            checks["broker_rest"] = broker.rest_ok
        return checks

    def state(self) -> dict[str, Any]:
        out = engine_state(self.engine, self.settings.risk, mode=self.mode)
        broker = self.broker
        out["market_open"] = self.market_open
        out["journal"] = {
            "path": str(self.journal.path) if self.journal is not None else None,
            "failed": self.journal_failed,
        }
        out["halted_symbols"] = sorted(self.halted_symbols)
        out["reconciliation_differences"] = list(self.differences)
        out["feed"] = {
            "connected": self.feed_connected,
            "reconnects": self.counters.reconnects,
            "backfills": self.counters.backfills,
            "seconds_since_message": self._seconds_since_message(),
        }
        if broker is not None:
            out["broker"] = {
                "stream_connected": broker.stream_connected,
                "ready": broker.ready,
                "in_flight": broker.in_flight,
                "reconciliations": broker.reconciliations,
                "rest_ok": broker.rest_ok,
            }
        return out

    def halt(self) -> dict[str, Any]:
        ts = time.time_ns()
        self.engine.halt()
        self.telemetry.halted(True)

        def write(journal: Journal) -> None:
            journal.control("halt", ts)
            journal.set_halted(True, "control", ts)

        self._journal(write)
        self.log.warning("halted", by="control")
        return {"halted": True}

    def resume(self) -> dict[str, Any]:
        """Trade again. Refused while the journal cannot be written (the write is the probe)."""
        ts = time.time_ns()
        journal = self.journal
        if journal is not None:
            try:
                journal.control("resume", ts)
                journal.set_halted(False, None, ts)
            except JournalError as e:
                self._journal_broken(str(e))
                raise TradingdError(f"not resumed: the journal cannot be written: {e}") from None
        if self.journal_failed is not None:
            self.log.info("journal_recovered", was=self.journal_failed)
            self.journal_failed = None
        self.engine.resume()
        self.telemetry.halted(False)
        self.log.info("resumed", by="control")
        return {"halted": False}

    def flatten(self) -> dict[str, Any]:
        """Close every position now, and halt (resume to trade again)."""
        if self._submit is None:
            raise TradingdError(f"mode {self.mode} sends no orders: nothing to flatten with")
        ts = time.time_ns()
        orders = self.engine.flatten(ts)
        self.telemetry.halted(True)
        self.log.warning("flatten", by="control", orders=len(orders))
        stamp = orders[0].ts if orders else ts

        def write(journal: Journal) -> None:
            journal.control("flatten", stamp, orders=orders)  # write-ahead: the intents
            journal.set_halted(True, "flatten", stamp)

        if self._journal(write):
            self._send(orders)
        else:
            self._unsent(orders, "journal unavailable: not sent")
        return {"halted": True, "orders": [o.client_order_id for o in orders]}

    def reset_kill_switch(self) -> dict[str, Any]:
        ts = time.time_ns()
        was = self.engine.risk.kill_reason
        self.engine.reset_kill_switch()  # the kill-switch gauge reads the risk gate itself

        def write(journal: Journal) -> None:
            journal.control("reset", ts)
            journal.set_kill_switch(False, None, ts)

        if self._journal(write):
            self._kill_journaled = False
        self.log.warning("kill_switch_reset", by="control", was=was)
        return {"kill_switch": False, "was": was}

    def _seconds_since_message(self) -> float:
        stream = self.stream
        last = stream.last_message_monotonic if stream is not None else None
        return time.monotonic() - last if last is not None else math.inf

    async def run(self) -> int:
        """Run until stopped. Returns the exit code (0 on a clean stop).

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
            await self._start()
            if not self._stopping.is_set():
                await self._loop()
        except TradingdError as e:
            fatal = e
        finally:
            await self._shutdown(fatal)
            if self.install_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
        if fatal is not None:
            raise fatal
        return 0

    # -- start --------------------------------------------------------------------------------

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
        self.rest = AlpacaRest(
            key=self.key,
            secret=self.secret,
            url=self.urls["trading"],
            timeout_s=live.request_timeout_s,
            max_requests_per_minute=live.max_requests_per_minute,
        )
        self.journal = Journal(Path(self.settings.state.dir))
        journaled = self.journal.reader().state()
        self.recorder.start()
        await self._start_http()
        self._tasks.append(asyncio.create_task(self.telemetry.measure_loop_lag(), name="loop-lag"))
        if self.notifier.enabled and self.notifier.watchdog_interval_s is not None:
            self._tasks.append(
                asyncio.create_task(self.notifier.watchdog(self.alive), name="watchdog")
            )
        clock = await self.rest.clock()
        self._on_clock(clock)
        restart = journaled.segments > 0 and self.mode != "track"
        last_slice = journaled.last_slice_ts
        if restart and last_slice is not None and last_slice > clock.ts:
            raise ConfigError(
                f"{self.journal.path}: it has decided up to {iso_utc(last_slice)}, after the "
                f"market clock ({iso_utc(clock.ts)}): it belongs to another account or sandbox "
                "session; point state.dir elsewhere (or remove it to start afresh)"
            )
        if restart:
            self._rebuild_ledger()
        if self.mode == "sim":
            self._submit = self._submit_sim
            self._begin_segment(clock.ts)
            if restart:
                # The simulated broker's open orders died with the last process.
                self._apply_events(
                    [
                        OrderCanceled(
                            client_order_id=o.client_order_id,
                            symbol=o.symbol,
                            ts=clock.ts,
                            reason=NOT_SENT_BEFORE_RESTART,
                        )
                        for o in journaled.orders
                        if not o.terminal
                    ]
                )
        else:
            self.broker = AlpacaBroker(
                rest=self.rest,
                stream_url=self.urls["trade_stream"],
                key=self.key,
                secret=self.secret,
                read_only=self.mode == "track",
                backoff_min_s=live.backoff_min_s,
                backoff_max_s=live.backoff_max_s,
            )
            if restart:
                self.broker.restore(_restored(journaled))
                self._reopen_orders(journaled)
            await self.broker.start(since_ns=journaled.last_event_ts if restart else None)
            self._drain_broker_notices()
            startup = self.broker.poll_events()
            if restart:
                # The ledger is the journal's; what the broker did meanwhile comes as events,
                # then the account is compared (and unknown positions handled by policy).
                self._begin_segment(clock.ts)
                self._apply_events(startup)
                self._reconcile_start(clock.ts)
            else:
                # A fresh state: the account is the start (its positions already include any
                # fills these events carry).
                self._adopt_account(restart=True)
                self._begin_segment(clock.ts)
                if startup:
                    self.log.info("startup_events_skipped", events=len(startup))
            self._reconciliations = self.broker.reconciliations
            last = self.broker.last_reconcile
            self.telemetry.reconciliation(len(last.differences) if last else 0)
            self.telemetry.broker_stream(self.broker.stream_connected)
            self._tasks.append(asyncio.create_task(self._pump_broker(), name="broker-pump"))
            if self.mode in ("paper", "live"):
                self._submit = self.broker.submit
            # track: no submit path exists; _decide refuses to run one.
        self._restore_switches(journaled)
        await self._warm_up(clock)
        resume_after = journaled.last_slice_ts if restart else None
        if resume_after is not None and resume_after > self.engine.last_decided_ts:
            # Resume after the last slice decided before the restart (backfilled from there).
            self.engine.last_decided_ts = resume_after
            self._next_ts = resume_after + NS_PER_MINUTE
        self._journal(lambda j: j.warmup_done(clock.ts))
        if self.mode != "track":
            self.engine.trade_from_ts = _ALWAYS
        self.stream = AlpacaDataStream(
            url=self.urls["data_stream"],
            feed=live.feed,
            symbols=["FAKEPACA"] if live.feed == "test" else self.symbols,
            key=self.key,
            secret=self.secret,
            sink=self._queue.put_nowait,
            market_open=lambda: self.market_open,
            silence_s=live.silence_s,
            backoff_min_s=live.backoff_min_s,
            backoff_max_s=live.backoff_max_s,
        )
        self._tasks.append(asyncio.create_task(self._run_stream(), name="data-stream"))
        self._tasks.append(asyncio.create_task(self._poll_clock(), name="clock"))
        self._started = True
        self.log.info("daemon_started", mode=self.mode, warmup_bars=self.warmup_bars)
        self.notifier.ready(f"{self.mode}: {len(self.symbols)} symbols")

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
        )
        await self.http.start()

    # -- the journal ------------------------------------------------------------------------

    def _journal(self, write: Callable[[Journal], Any]) -> bool:
        """Run one journal write; on failure stop trading (never without a journal)."""
        journal = self.journal
        if journal is None:
            return True
        try:
            write(journal)
        except JournalError as e:
            self._journal_broken(str(e))
            return False
        return True

    def _journal_broken(self, error: str) -> None:
        if self.journal_failed is None:
            self.log.error(
                "journal_failed",
                error=error,
                action="no orders are sent until the journal can be written and trading is "
                "resumed (tradingd ctl resume) or the daemon restarted",
            )
        self.journal_failed = error
        self.engine.halt()
        self.telemetry.halted(True)

    def _rebuild_ledger(self) -> None:
        """The ledger as the journal knows it: the last run's starting snapshot, then every
        fill and adoption journaled since."""
        assert self.journal is not None
        segment = self.journal.reader().segments()[-1]
        ledger = self.ledger
        segment.ledger.restore_into(ledger)
        fills = 0
        for item in self.journal.reader().inputs(segment.id):
            match item.payload:
                case OrderFilled() | OrderPartiallyFilled() as fill:
                    fills += ledger.apply_fill(fill)
                case {"action": "adopt", "cash": cash, "positions": positions}:
                    ledger.adopt(Decimal(cash), positions_from_json(positions))
        self.log.info(
            "ledger_restored",
            segment=segment.id,
            fills=fills,
            cash=str(ledger.cash),
            positions={s: str(p.qty) for s, p in sorted(ledger.positions.items())},
        )

    def _begin_segment(self, ts: int) -> None:
        assert self.journal is not None
        snapshot = LedgerSnapshot.of(self.ledger)
        segment = self.journal.begin_segment(
            mode=self.mode,
            config_digest=self.loaded.digest,
            config=self.settings.model_dump(mode="json"),
            config_files=list(self.loaded.files),
            ledger=snapshot,
            ts=ts,
        )
        self.log.info("journal_segment", segment=segment, path=str(self.journal.path))

    def _reopen_orders(self, journaled: JournalState) -> None:
        """The journal's open orders back in the order book: the rebalancer counts them as
        pending until their events (replayed by the broker's reconciliation) close them."""
        for record in journaled.orders:
            remaining = record.remaining()
            if remaining is not None:
                self.engine.order_book.on_submit(remaining)

    def _restore_switches(self, journaled: JournalState) -> None:
        on, reason = journaled.kill_switch
        if on:
            self.engine.risk.latch(reason or "restored")
            self._kill_journaled = True
            self.log.warning("kill_switch_restored", reason=reason)
        on, reason = journaled.halted
        if on:
            self.engine.halt()
            self.telemetry.halted(True)
            self.log.warning("halt_restored", reason=reason)

    def _apply_events(self, events: list[ExecutionEvent]) -> None:
        """Journal each event, then apply it (write-ahead); a fill journaled before is skipped."""
        engine = self.engine
        for event in events:
            if self._foreign(event) and not self._take_foreign(event):
                continue
            if isinstance(event, OrderAccepted):
                self._maybe_crash("after_send")
            elif isinstance(event, OrderFilled | OrderPartiallyFilled):
                self._maybe_crash("after_fill")
            new = True
            if self.journal is not None and self.journal_failed is None:
                try:
                    new = self.journal.event(event)
                except JournalError as e:
                    self._journal_broken(str(e))  # the broker's truth is still applied
            if new:
                engine.on_events([event])

    def _foreign(self, event: ExecutionEvent) -> bool:
        """An order this daemon did not place (a person's, another program's) on its account."""
        return self.mode in ("paper", "live") and not event.client_order_id.startswith(
            self._own_prefix
        )

    def _take_foreign(self, event: ExecutionEvent) -> bool:
        """Whether the ledger books a foreign event: its fills only, under "adopt"."""
        if not isinstance(event, OrderFilled | OrderPartiallyFilled):
            return False
        policy = self.settings.state.unknown_positions
        fields = {
            "client_order_id": event.client_order_id,
            "symbol": event.symbol,
            "side": str(event.side),
            "qty": str(event.qty),
            "policy": policy,
        }
        if policy == "adopt":
            self.log.warning("foreign_fill_adopted", **fields)
            return True
        if policy == "ignore":
            self.log.warning("foreign_fill_ignored", **fields)
        elif self._started:
            self.log.error("foreign_fill_refused", action="halted: no new orders", **fields)
            self.engine.halt()
            self.telemetry.halted(True)
        return False

    def _reconcile_start(self, ts: int) -> None:
        """After a restart: compare the journal's ledger with the broker's account; record each
        difference; positions this daemon did not open are adopted, ignored or refused."""
        broker = self.broker
        assert broker is not None
        assert broker.account is not None
        theirs = {p.symbol: p for p in broker.positions.values() if p.qty}
        mine = positions_of(self.ledger)
        policy = self.settings.state.unknown_positions
        differences: list[dict[str, Any]] = []
        for symbol in sorted(set(theirs) | set(mine)):
            broker_qty = theirs[symbol].qty if symbol in theirs else Decimal(0)
            if mine.get(symbol, Decimal(0)) != broker_qty:
                differences.append(
                    {
                        "symbol": symbol,
                        "ledger": str(mine.get(symbol, 0)),
                        "broker": str(broker_qty),
                    }
                )
        if broker.account.cash != self.ledger.cash:
            differences.append(
                {"cash": True, "ledger": str(self.ledger.cash), "broker": str(broker.account.cash)}
            )
        for difference in differences:

            def record(journal: Journal, d: dict[str, Any] = difference) -> None:
                journal.difference("restart", d, ts)

            self._journal(record)
            self.log.warning("reconcile_difference", **difference)
            self._note_difference("restart", difference)
        self.telemetry.reconciliation(len(differences))
        unknown = sorted(set(theirs) - set(mine))
        if unknown and policy == "refuse":
            raise ConfigError(
                f"the account holds positions this daemon did not open ({', '.join(unknown)}) "
                "and state.unknown_positions is refuse: close them, or set adopt or ignore"
            )
        if differences:
            # The broker is the truth for cash and for what this daemon holds; positions it
            # did not open come in only under "adopt" ("ignore" leaves them out of the ledger).
            keep = theirs if policy == "adopt" else {s: p for s, p in theirs.items() if s in mine}
            positions = _holdings(keep.values())
            cash = broker.account.cash
            held = positions_to_json(positions)
            self._journal(lambda j: j.control("adopt", ts, cash=str(cash), positions=held))
            self.ledger.adopt(cash, positions)
            self.log.warning(
                "account_adopted",
                cash=str(cash),
                positions=sorted(positions),
                ignored=[s for s in unknown if s not in positions],
            )

    def _maybe_crash(self, point: str) -> None:
        crash = self._crash
        if crash is None or crash[0] != point:
            return
        crash[1] -= 1
        if crash[1] <= 0:
            self.log.warning("crash_injected", point=point)
            os.kill(os.getpid(), signal.SIGKILL)

    def _adopt_account(self, *, restart: bool) -> None:
        """Take the broker's account into the ledger: at a first start (restart=True: the
        session starts here), under `state.unknown_positions`; in track mode, every time."""
        broker = self.broker
        if broker is None or broker.account is None:
            return
        positions = _holdings(broker.positions.values())
        policy = self.settings.state.unknown_positions if self.mode != "track" else "adopt"
        if positions and policy == "refuse":
            raise ConfigError(
                f"the account holds positions this daemon did not open ({', '.join(positions)}) "
                "and state.unknown_positions is refuse: close them, or set adopt or ignore"
            )
        ignored = sorted(positions) if policy == "ignore" else []
        if ignored:
            positions = {}
        differences = self.ledger.adopt(broker.account.cash, positions, restart=restart)
        self.log.info(
            "account_adopted",
            cash=str(broker.account.cash),
            equity=str(broker.account.equity),
            positions={s: str(q) for s, (q, _, _) in sorted(positions.items())},
            ignored=ignored,
            outside_universe=sorted(set(positions) - set(self.symbols)),
            differences=differences if not restart else [],
        )

    async def _warm_up(self, clock: MarketClock) -> None:
        """Fill every strategy's lookback with recent bars, through the core, without trading."""
        need = self.engine.composer.warmup_bars
        if not self.settings.live.warmup or need <= 0:
            self._next_ts = None
            return
        assert self.rest is not None
        sessions_back = math.ceil(need / MINUTES_PER_SESSION) + 1
        now_day = datetime.fromtimestamp(clock.ts / 1e9, UTC).date()
        sessions = await self.rest.calendar(
            now_day - timedelta(days=7 * sessions_back + 7), now_day
        )
        past = [s for s in sessions if s.open_ns < clock.ts]
        if not past:
            return
        start_ns = past[max(len(past) - sessions_back, 0)].open_ns
        bars = await self._fetch(start_ns, clock.ts)
        engine = self.engine
        journal = self.journal
        for bar in bars:
            if engine.slice_ts is not None and bar.ts > engine.slice_ts:
                self._close_warm_slice()
            if journal is not None:
                journal.bar(bar, warmup=True)
            engine.on_bar(bar)
        if engine.slice_ts is not None:
            self._close_warm_slice()
        self.warmup_bars = len(bars)
        if bars:
            self._next_ts = bars[-1].ts + NS_PER_MINUTE
        self.log.info(
            "warmup_done",
            bars=len(bars),
            slices=engine.counters.warmup_slices,
            lookback_bars=need,
            first=iso_utc(bars[0].ts) if bars else None,
            last=iso_utc(bars[-1].ts) if bars else None,
        )

    def _close_warm_slice(self) -> None:
        slice_ts = self.engine.slice_ts
        assert slice_ts is not None
        self.engine.close_slice()  # warming up: decides nothing
        self._journal(lambda j: j.close_slice(slice_ts, targets=None, orders=()))

    async def _fetch(self, start_ns: int, end_ns: int | None) -> list[Bar]:
        return await asyncio.to_thread(self.history.fetch, self.symbols, start_ns, end_ns)

    # -- the loop -----------------------------------------------------------------------------

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        stop = asyncio.ensure_future(self._stopping.wait())
        get: asyncio.Future[Any] = asyncio.ensure_future(queue.get())
        try:
            while not self._stopping.is_set():
                timeout = None
                if self._grace_at is not None and self._can_close():
                    timeout = max(self._grace_at - loop.time(), 0.0)
                done, _ = await asyncio.wait(
                    {get, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if get in done:
                    item = get.result()
                    get = asyncio.ensure_future(queue.get())
                    self._handle(item)
                    # Take what is already queued before deciding on the clock.
                    while not queue.empty() and not self._stopping.is_set():
                        self._handle(queue.get_nowait())
                if (
                    self._grace_at is not None
                    and self._can_close()
                    and loop.time() >= self._grace_at
                ):
                    self._decide()
                self._progress.set()
        finally:
            get.cancel()
            stop.cancel()

    def _can_close(self) -> bool:
        return self.feed_connected and not self._backfilling

    def _handle(self, item: DataEvent | _BrokerWake | _Backfilled | _Fatal) -> None:
        match item:
            case StreamBar(bar=bar, updated=False):
                if self._backfilling:
                    self._buffer.append(bar)
                else:
                    self._on_bar(bar)
            case StreamBar(bar=bar, updated=True):
                if self.journal is not None:
                    self.journal.updated_bar(bar)
                if self.engine.on_updated_bar(bar):  # counted by the engine when late
                    self.telemetry.bar_updated(bar.symbol)
            case _BrokerWake():
                self._on_broker()
            case _Backfilled():
                self._on_backfilled(item)
            case TradingStatus():
                self._on_status(item)
            case StreamConnected():
                self._on_connected(item)
            case StreamDisconnected():
                self.feed_connected = False
                self.telemetry.feed_connected(False)
                self.log.warning(
                    "feed_disconnected", reason=item.reason, retry_in_s=round(item.retry_in_s, 3)
                )
            case StreamNotice():
                self.log.log(item.level, item.event, **item.fields)
            case _Fatal():
                raise item.error

    def _on_bar(self, bar: Bar) -> None:
        engine = self.engine
        telemetry = self.telemetry
        symbol = bar.symbol
        telemetry.bar_received(symbol)
        open_ts = engine.slice_ts
        if open_ts is not None and bar.ts > open_ts:
            self._decide()
        if self.journal is not None:
            self.journal.bar(bar)  # buffered; written with the slice's close (the audit's input)
        late = engine.counters.bars_late
        reason = engine.on_bar(bar)
        if reason is not None:
            telemetry.bar_rejected(symbol, reason)
            self.recorder.rejected_bar("stream", 0, symbol, iso_utc(bar.ts), reason)
            return
        telemetry.bar_accepted(symbol, bar.ts)
        if engine.counters.bars_late != late:
            telemetry.bar_late(symbol)
            return
        if self._next_ts is None or bar.ts >= self._next_ts:
            self._next_ts = bar.ts + NS_PER_MINUTE
        if self.mode == "sim" and engine.slice_ts == bar.ts:
            self.sim.on_bar(bar)
        if engine.slice_complete:
            if self._can_close():
                self._decide()
        elif self._grace_at is None and engine.slice_ts is not None:
            self._grace_at = asyncio.get_running_loop().time() + self.settings.live.slice_grace_s

    def _decide(self) -> None:
        """Close the open slice and hand its orders to the broker."""
        engine = self.engine
        slice_ts = engine.slice_ts
        self._grace_at = None
        if slice_ts is None:
            return
        started = time.perf_counter()
        n_symbols = len(engine.slice_symbols)
        if self.mode == "sim":
            self._apply_events(self.sim.poll_events())
        orders = engine.close_slice()
        self.slices.add(slice_ts, n_symbols)
        if self.mode == "track":
            # The engine never trades here; the equity series still follows the account.
            self.recorder.on_slice(slice_ts, engine.ledger)
        targets = engine.last_targets
        decided = targets if targets is not None and targets.ts == slice_ts else None
        # Write-ahead: the slice, its decision and the intents are on disk before any order
        # leaves; without a journal nothing leaves.
        if self.journal_failed is not None or not self._journal(
            lambda j: j.close_slice(slice_ts, targets=decided, orders=orders)
        ):
            self._unsent(orders, "journal unavailable: not sent")
            orders = []
        elif orders:
            self._maybe_crash("after_intent")
        self._persist_kill_switch(slice_ts)
        self._send(orders)
        self.telemetry.slice_decided(time.perf_counter() - started)

    def _send(self, orders: list[SubmitOrder]) -> None:
        """Hand orders to the broker (halted symbols' orders become rejections here)."""
        if not orders:
            return
        submit = self._submit
        if submit is None:
            raise TradingdError(f"mode {self.mode} decided {len(orders)} orders: it must not")
        halted = [o for o in orders if o.symbol in self.halted_symbols]
        for n, order in enumerate(o for o in orders if o.symbol not in self.halted_symbols):
            if n == 1:
                self._maybe_crash("mid_slice")
            self.telemetry.order_submitted(order.symbol, order.client_order_id)
            submit(order)
        if halted:
            self.counters.halted_orders += len(halted)
            self._unsent(halted, "trading halted: not sent")
        if self.mode == "sim":
            self._apply_events(self.sim.poll_events())

    def _unsent(self, orders: list[SubmitOrder], reason: str) -> None:
        """Orders decided but not sent end as rejections (the order book closes them)."""
        self._apply_events(
            [
                OrderRejected(
                    client_order_id=o.client_order_id, symbol=o.symbol, ts=o.ts, reason=reason
                )
                for o in orders
            ]
        )

    def _persist_kill_switch(self, ts: int) -> None:
        risk = self.engine.risk
        if risk.kill_switch != self._kill_journaled and self._journal(
            lambda j: j.set_kill_switch(risk.kill_switch, risk.kill_reason, ts)
        ):
            self._kill_journaled = risk.kill_switch

    def _submit_sim(self, order: SubmitOrder) -> None:
        self.sim.submit(order)

    def _on_broker(self) -> None:
        broker = self.broker
        if broker is None:
            return
        self._drain_broker_notices()
        events = broker.poll_events()  # raises the adapter's fatal error once drained
        if events:
            self._apply_events(events)
        if broker.reconciliations != self._reconciliations:
            self._reconciliations = broker.reconciliations
            last = broker.last_reconcile
            self.telemetry.reconciliation(len(last.differences) if last else 0)
            if self.mode == "track":
                # Read-only: the account is the truth, whatever the stream missed.
                self._adopt_account(restart=False)
            else:
                self._check_positions()

    def _check_positions(self) -> None:
        """After a reconciliation (its missed fills applied): the ledger should hold what the
        broker holds. A difference is logged, not papered over."""
        broker = self.broker
        if broker is None:
            return
        theirs = {p.symbol: p.qty for p in broker.positions.values() if p.qty}
        mine = positions_of(self.ledger)
        if theirs != mine:
            difference = {
                "ledger": {s: str(q) for s, q in sorted(mine.items())},
                "broker": {s: str(q) for s, q in sorted(theirs.items())},
            }
            self.log.warning("position_difference", **difference)
            self._note_difference("reconciliation", difference)
            ts = time.time_ns()
            self._journal(lambda j: j.difference("reconciliation", difference, ts))

    def _note_difference(self, kind: str, detail: dict[str, Any]) -> None:
        """Keep the latest differences for /state (the journal keeps them all)."""
        self.differences.append({"kind": kind, "time": iso_utc(time.time_ns()), **detail})
        del self.differences[:-_KEEP_DIFFERENCES]

    def _drain_broker_notices(self) -> None:
        if self.broker is None:
            return
        for notice in self.broker.poll_notices():
            self.log.log(notice.level, notice.event, **notice.fields)
            if notice.event in ("trade_stream_up", "trade_stream_down"):
                self.telemetry.broker_stream(notice.event == "trade_stream_up")

    def _on_status(self, status: TradingStatus) -> None:
        if status.halted and status.symbol not in self.halted_symbols:
            self.halted_symbols.add(status.symbol)
            self.log.warning(
                "trading_halted", symbol=status.symbol, code=status.code, reason=status.reason
            )
        elif not status.halted and status.symbol in self.halted_symbols:
            self.halted_symbols.discard(status.symbol)
            self.log.info("trading_resumed", symbol=status.symbol, code=status.code)

    def _on_connected(self, event: StreamConnected) -> None:
        self.feed_connected = True
        self.telemetry.feed_connected(True)
        if event.reconnect:
            self.counters.reconnects += 1
            self.telemetry.feed_reconnected()
        self.log.info(
            "feed_connected",
            reconnect=event.reconnect,
            attempt=event.attempt,
            bars=event.subscription.get("bars", []),
        )
        # Whatever the stream missed (before this connect, or while it was down) comes from
        # the historical endpoint before any slice after the gap closes.
        start = self.engine.slice_ts if self.engine.slice_ts is not None else self._next_ts
        if start is None or self._backfilling:
            return
        self._backfilling = True
        self._buffer = []
        self._tasks.append(asyncio.create_task(self._backfill(start), name="backfill"))

    async def _backfill(self, start_ns: int) -> None:
        error: str | None = None
        bars: list[Bar] = []
        for attempt in range(4):
            try:
                bars = await self._fetch(start_ns, None)
                error = None
                break
            except TradingdError as e:
                error = str(e)
                await asyncio.sleep(min(0.5 * 2**attempt, 5.0))
        self._queue.put_nowait(_Backfilled(bars=bars, error=error))

    def _on_backfilled(self, result: _Backfilled) -> None:
        engine = self.engine
        buffered = self._buffer
        self._buffer = []
        self._backfilling = False
        if result.error is not None:
            self.log.error("backfill_failed", error=result.error)
        open_ts = engine.slice_ts
        seen: set[tuple[str, int]] = (
            {(s, open_ts) for s in engine.slice_symbols} if open_ts is not None else set()
        )
        floor = open_ts if open_ts is not None else (self._next_ts or _ALWAYS)
        added = 0
        merged: list[Bar] = []
        for bar in result.bars:
            key = (bar.symbol, bar.ts)
            if bar.ts >= floor and key not in seen:
                seen.add(key)
                merged.append(bar)
                added += 1
        for bar in buffered:
            key = (bar.symbol, bar.ts)
            if key not in seen:
                seen.add(key)
                merged.append(bar)
        merged.sort(key=lambda b: (b.ts, b.symbol))
        self.counters.backfills += 1
        self.counters.backfilled_bars += added
        self.log.info(
            "backfilled",
            bars=added,
            buffered=len(buffered),
            first=iso_utc(merged[0].ts) if merged else None,
            last=iso_utc(merged[-1].ts) if merged else None,
        )
        for bar in merged:
            self._on_bar(bar)

    async def _run_stream(self) -> None:
        assert self.stream is not None
        try:
            await self.stream.run()
        except TradingdError as e:
            self._queue.put_nowait(_Fatal(e))

    async def _pump_broker(self) -> None:
        broker = self.broker
        assert broker is not None
        while True:
            await broker.events_ready.wait()
            broker.events_ready.clear()
            self._queue.put_nowait(_BrokerWake())

    async def _poll_clock(self) -> None:
        """Follow the market clock: open/closed for the silence check, without busy-looping."""
        assert self.rest is not None
        poll = self.settings.live.clock_poll_s
        while True:
            await asyncio.sleep(poll)
            try:
                clock = await self.rest.clock()
            except TradingdError as e:
                self.log.warning("clock_unavailable", error=str(e))
                continue
            self._on_clock(clock)

    def _on_clock(self, clock: MarketClock) -> None:
        if clock.is_open != self.market_open or not self._started:
            self.log.info(
                "market_open" if clock.is_open else "market_closed",
                market_time=iso_utc(clock.ts),
                next_open=iso_utc(clock.next_open),
                next_close=iso_utc(clock.next_close),
            )
        self.market_open = clock.is_open
        self.telemetry.market_open(clock.is_open)
        self._progress.set()  # the clock task's news, for whoever waits on the daemon's state

    # -- stop ---------------------------------------------------------------------------------

    async def _shutdown(self, fatal: BaseException | None) -> None:
        deadline = self.settings.live.stop_deadline_s
        started = time.monotonic()
        self.notifier.stopping()
        if self.stream is not None:
            self.stream.stop()
        broker = self.broker
        cancelled = 0
        try:
            async with asyncio.timeout(deadline):
                if broker is not None and self.mode in ("paper", "live"):
                    resolved = await broker.drain(max(deadline - 2.0, 0.1))
                    if not resolved:
                        self.log.warning("stop_in_flight", in_flight=broker.in_flight)
                    if self.settings.live.cancel_on_stop and broker.fatal is None:
                        cancelled = await self._cancel_own_orders()
                    self._on_broker()
        except TimeoutError:
            self.log.error("stop_deadline_passed", deadline_s=deadline)
        except TradingdError as e:
            self.log.error("stop_incomplete", error=str(e))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if broker is not None:
            await broker.close()  # and its REST client
        elif self.rest is not None:
            await self.rest.close()
        if self.recorder.started:
            self.recorder.close()
            self._write_summary(cancelled)
        if self.journal is not None:
            with contextlib.suppress(JournalError):
                self.journal.close()
        if self.http is not None:
            await self.http.close()
        self.log.info(
            "daemon_stopped",
            mode=self.mode,
            cancelled_orders=cancelled,
            seconds=round(time.monotonic() - started, 3),
            error=str(fatal) if fatal else None,
        )

    async def _cancel_own_orders(self) -> int:
        """Cancel the open orders this config placed (its client order id prefix), no others."""
        assert self.rest is not None
        prefix = self.engine.rebalancer.id_prefix + "-"
        cancelled = 0
        for order in await self.rest.orders(status="open"):
            if order.client_order_id.startswith(prefix):
                await self.rest.cancel_order(order.broker_order_id)
                cancelled += 1
                self.log.info(
                    "order_cancelled_on_stop",
                    client_order_id=order.client_order_id,
                    symbol=order.symbol,
                )
        return cancelled

    def _write_summary(self, cancelled: int) -> None:
        engine = self.engine
        counters = engine.counters
        summary = {
            "mode": self.mode,
            "config": list(self.loaded.files),
            "symbols": self.symbols,
            "slices": counters.slices - counters.warmup_slices,
            "warmup_slices": counters.warmup_slices,
            "warmup_bars": self.warmup_bars,
            "bars_accepted": counters.bars_accepted,
            "bars_rejected": {str(k): v for k, v in sorted(engine.rejected.items())},
            "bars_late": counters.bars_late,
            "bars_updated": counters.bars_updated,
            "backfills": self.counters.backfills,
            "backfilled_bars": self.counters.backfilled_bars,
            "feed_reconnects": self.counters.reconnects,
            "orders": counters.orders,
            "fills": counters.fills,
            "rejected_orders": counters.rejected_orders,
            "halted_orders": self.counters.halted_orders,
            "cancelled_on_stop": cancelled,
            "kill_switch": engine.risk.kill_switch,
            "ledger": engine.ledger.snapshot(),
        }
        (self.out_dir / "summary.json").write_bytes(
            orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        )


def positions_of(ledger: Ledger) -> dict[str, Decimal]:
    """The ledger's positions as symbol -> signed quantity (to compare with a broker's)."""
    return {symbol: pos.qty for symbol, pos in ledger.positions.items() if pos.qty}


def _crash_point(text: str) -> list[Any] | None:
    """`POINT[:N]` from $TRADINGD_CRASH_AT as a mutable [point, hits left]; None when unset."""
    if not text:
        return None
    point, _, count = text.partition(":")
    if point not in CRASH_POINTS or (count and not count.isdigit()):
        raise ConfigError(f"{CRASH_ENV}={text!r}: expected one of {sorted(CRASH_POINTS)}[:N]")
    return [point, int(count or 1)]


def _restored(journaled: JournalState) -> list[RestoredOrder]:
    """Every order the journal knows, as the broker adapter restores it."""
    return [
        RestoredOrder(
            client_order_id=o.client_order_id,
            symbol=o.symbol,
            side=o.side,
            qty=o.qty,
            broker_order_id=o.broker_order_id,
            filled_qty=o.filled_qty,
            filled_notional=o.filled_notional,
            terminal=o.terminal,
        )
        for o in journaled.orders
        if o.side is not None and o.qty is not None
    ]


def _holdings(
    positions: Iterable[PositionSnapshot],
) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
    """The broker's positions as the ledger holds them: (qty, average cost, last price)."""
    return {
        p.symbol: (p.qty, p.avg_entry_price, p.current_price or p.avg_entry_price)
        for p in positions
        if p.qty
    }
