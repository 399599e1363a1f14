"""The replay driver: historical bars from files through the engine and the simulated broker.

A slice closes when a bar with a later timestamp arrives. Before the engine decides a slice, the
simulated broker has filled against the bars of that slice (orders decided at the previous
slice's close fill at this slice's open), and those fills are in the ledger.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from brokers.simulated import SimulatedBroker
from daemon.config import LoadedConfig
from daemon.engine import Engine, EngineListener, ListenerFanout
from daemon.logs import EventLog
from daemon.memory import release_freed_memory
from daemon.recorder import Opener, Recorder
from daemon.replay.buckets import BucketFeed, feed_buckets
from daemon.research.metrics import figure
from daemon.timeutil import iso_utc
from daemon.wiring import build_engine, day_start_ns, open_source
from feeds.bar import Bar
from feeds.calendar import SessionCalendar
from feeds.replay import ReplaySource
from feeds.spacing import finer
from feeds.timeframes import Timeframe

TRADING_DAYS = 252


@dataclass(frozen=True, slots=True)
class ReplayResult:
    out_dir: Path
    summary: dict[str, Any]


def replay(
    loaded: LoadedConfig,
    *,
    out_dir: Path | None,
    log: EventLog,
    progress: Callable[[int, int], None] | None = None,
    warmup_from: date | None = None,
    source: ReplaySource | None = None,
    listeners: Sequence[EngineListener] = (),
    on_bar: Callable[[Bar, str | None], None] | None = None,
    between_slices: Callable[[Engine, SimulatedBroker], bool] | None = None,
    opener: Opener | None = None,
) -> ReplayResult:
    """Run one replay and write its files.

    Args:
        warmup_from: read bars from this date on, but trade (and record) only from
            `run.start`: the bars before it fill the strategies' lookbacks. Needs `run.start`.
        source: the bars, if already opened (`open_source`).
        listeners: more engine listeners beside the recorder (metrics, say).
        on_bar: called with each bar and its quarantine reason (None when accepted).
        between_slices: called after each slice was decided and its orders handed over: a
            paced replay sleeps there and applies an operator's controls. True from it stops
            the replay there (the files cover the slices decided).
        opener: where the files go instead of the output folder (see `Recorder`); the folder
            is then not created and `out_dir` only names the run.

    Raises:
        ConfigError, SourceError: before anything is written.
    """
    started = time.perf_counter()
    settings = loaded.settings
    if source is None:
        source = open_source(loaded, warmup_from=warmup_from)
        release_freed_memory()  # the parse freed most of what it took; glibc would keep it
    universe = list(settings.symbols or source.symbols)
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{loaded.digest}"
    target = out_dir if out_dir is not None else Path(settings.run.out_dir) / run_id
    recorder = Recorder(target, log, quiet=True, opener=opener)
    trade_from = day_start_ns(settings.run.start) if warmup_from and settings.run.start else None
    listener: EngineListener = ListenerFanout(recorder, *listeners) if listeners else recorder
    finer_ns = finer_spacing(source, settings.data.timeframe)
    engine, broker = build_engine(
        loaded, universe, listener, trade_from_ts=trade_from, broker_bar_ns=finer_ns
    )
    recorder.start()  # only now, the config and the data validated, is the folder made
    log.info(
        "replay_started",
        run_id=run_id,
        config=list(loaded.files),
        data=str(settings.data.path),
        symbols=universe,
        out=str(target),
        rows=source.rows_read,
    )
    for p in source.problems:
        recorder.rejected_bar(p.file, p.row, p.symbol, p.time, p.reason)
    if finer_ns is None:
        _feed(
            source,
            engine,
            broker,
            recorder,
            on_bar=on_bar,
            between_slices=between_slices,
            progress=progress,
        )
    else:
        # Bars finer than the strategies' timeframe: aggregated up to it, as live.
        feed = BucketFeed(
            timeframe=settings.data.timeframe,
            execution=settings.execution,
            calendar=SessionCalendar(settings.sanity.calendar),
            engine=engine,
            broker=broker,
            recorder=recorder,
            decide=_decide,
        )
        feed_buckets(source, feed, between_slices=between_slices, progress=progress)
    recorder.close()
    summary = _summary(
        loaded=loaded,
        engine=engine,
        recorder=recorder,
        source=source,
        universe=universe,
        run_id=run_id,
        wall=time.perf_counter() - started,
    )
    recorder.write_summary(summary)
    log.info(
        "replay_finished",
        run_id=run_id,
        out=str(target),
        **{
            k: summary[k]
            for k in ("bars_in", "slices", "orders", "fills", "final_equity", "bars_per_second")
        },
    )
    return ReplayResult(out_dir=target, summary=summary)


def _feed(
    source: ReplaySource,
    engine: Engine,
    broker: SimulatedBroker,
    recorder: Recorder,
    *,
    on_bar: Callable[[Bar, str | None], None] | None,
    between_slices: Callable[[Engine, SimulatedBroker], bool] | None,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Every bar of the source through the engine and the simulated broker, in time order:
    the per-bar loop (its callables bound once)."""
    engine_on_bar = engine.on_bar
    broker_on_bar = broker.on_bar
    rejected_bar = recorder.rejected_bar
    describe = source.describe
    slice_ts = -1
    total = len(source)
    step = max(total // 100, 1)
    for n, (bar, origin) in enumerate(source, 1):
        ts = bar[1]  # Bar is a NamedTuple: indexing beats the attribute on this path
        if ts > slice_ts:
            if engine.slice_ts is not None:
                _decide(engine, broker)
                if between_slices is not None and between_slices(engine, broker):
                    break
            slice_ts = ts
        reason = engine_on_bar(bar)
        if on_bar is not None:
            on_bar(bar, reason)
        if reason is None:
            broker_on_bar(bar)
        else:
            file, row = describe(origin)
            rejected_bar(file, row, bar.symbol, iso_utc(ts), reason)
        if progress is not None and n % step == 0:
            progress(n, total)
    if engine.slice_ts is not None:
        _decide(engine, broker)
    engine.on_events(broker.poll_events())
    if progress is not None:
        progress(total, total)


def finer_spacing(source: ReplaySource, timeframe: Timeframe) -> int | None:
    """The spacing of the source's bars when they are finer than `timeframe` (to aggregate),
    else None."""
    gaps = list(source.spacing().values())
    if not gaps:
        return None
    gap = min(gaps)
    return gap if finer(gap, timeframe) else None


def _decide(engine: Engine, broker: SimulatedBroker, decided_at: int | None = None) -> None:
    # Fills at this slice's bars first, so the decision sees them in the ledger.
    events = broker.poll_events()
    if events:
        engine.on_events(events)
    orders = engine.close_slice(decided_at=decided_at)
    if orders:
        for order in orders:
            broker.submit(order)
        # Acceptances, rejections, and with fill_at "close" the fills themselves.
        engine.on_events(broker.poll_events())


def _summary(
    *,
    loaded: LoadedConfig,
    engine: Engine,
    recorder: Recorder,
    source: ReplaySource,
    universe: list[str],
    run_id: str,
    wall: float,
) -> dict[str, Any]:
    counters = engine.counters
    figures = recorder.figures
    start_equity = loaded.settings.run.start_cash
    ledger = engine.ledger
    final_equity = ledger.equity
    rejected = {str(k): v for k, v in sorted(engine.rejected.items())}
    for problem in source.problems:
        rejected[problem.reason] = rejected.get(problem.reason, 0) + 1
    bars_in = engine.bars_in + len(source.problems)
    return {
        "run_id": run_id,
        "config": list(loaded.files),
        "symbols": universe,
        "data": str(loaded.settings.data.path),
        "data_timezone": loaded.settings.data.timezone,
        "first_slice": iso_utc(figures.first_ts) if figures.first_ts is not None else None,
        "last_slice": iso_utc(figures.last_ts) if figures.last_ts is not None else None,
        "bars_in": bars_in,
        "bars_accepted": counters.bars_accepted,
        "bars_rejected": rejected,
        "bars_late": counters.bars_late,
        "jumps_flagged": engine.sanity.flagged,
        "slices": counters.slices - counters.warmup_slices,
        "warmup_slices": counters.warmup_slices,
        "rebalances": counters.rebalances,
        "orders": counters.orders,
        "fills": counters.fills,
        "denied_orders": counters.denied_orders,
        "clipped_orders": counters.clipped_orders,
        "rejected_orders": counters.rejected_orders,
        "kill_switch": engine.risk.kill_switch,
        "kill_switch_reason": engine.risk.kill_reason,
        "stale_symbols": sorted(engine.stale_symbols),
        "regime": engine.composer.regime,
        "regimes": [[iso_utc(ts), label] for ts, label in engine.composer.regime_history],
        "start_equity": str(start_equity),
        "final_equity": str(final_equity.quantize(Decimal("0.01"))),
        "total_return": round(float(final_equity / start_equity - 1), 6),
        "max_drawdown": round(figures.max_drawdown, 6),
        "sharpe": figure(figures.sharpe(), 4),
        "positions": {
            sym: str(pos.qty) for sym, pos in sorted(ledger.positions.items()) if pos.qty != 0
        },
        "cash": str(ledger.cash.quantize(Decimal("0.01"))),
        "commissions": str(ledger.commissions.quantize(Decimal("0.01"))),
        "wall_seconds": round(wall, 3),
        "bars_per_second": round(bars_in / wall) if wall > 0 else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def progress_bar(stream: Any = None) -> Callable[[int, int], None] | None:
    """A progress bar on stderr, only when stderr is a terminal."""
    out = stream if stream is not None else sys.stderr
    if not out.isatty():
        return None

    def show(done: int, total: int) -> None:
        pct = min(done / total, 1.0) if total else 1.0
        width = 30
        filled = int(pct * width)
        out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {pct:6.1%} {done:,} bars")
        if done >= total:
            out.write("\n")
        out.flush()

    return show
