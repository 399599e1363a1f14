"""Benchmark: months of running. Journal size, restart time, audit time and memory over sessions.

Not a test: it prints measured figures. One run plays SESSIONS sessions of 390 minute bars for
N symbols through the production engine (`build_engine`) and the journal exactly as the live
loop feeds them (each bar journaled then shown to the engine, each close journaled before its
orders, each broker event journaled then applied; every order is accepted and filled a minute
later), rebalancing every 5 minutes. Where the code has them, the live daemon's upkeep runs as
live: a checkpoint at each clock poll (one a minute) and, at each session's close, a snapshot
and the retention (`state.retention`, default 30 sessions, archived to Parquet).

At each point (default after 10, 30 and 60 sessions) it measures:
    restart_s   open the journal (writer), read what a restart reads, rebuild the ledger
                (`Recovery.rebuild_ledger`): what a restart does before it reconciles
    audit_s     `tradingd audit STATE_DIR` in a separate process (and `--sessions 1` where the
                code has it), imports included
and per session: the journal's size (file + WAL) and the process's resident memory.

Several code trees can be compared, runs interleaved (A B A B ...) on a shared machine, medians
reported:

    python tests/bench/journal_soak.py [--sessions 60] [--symbols 20] [--points 10,30,60]
        [--runs 3] [--tree DIR ...] [--work DIR]

Each --tree is a checkout of tradingd (default: this one); the runs import it by PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_MINUTES = 390
_NS_MIN = 60 * 10**9
_NS_DAY = 86_400 * 10**9
_T0 = 1_704_205_800 * 10**9  # 2024-01-02 14:30 UTC, a session's open


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=60)
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--points", default="10,30,60")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tree", action="append", type=Path, help="a tradingd checkout")
    parser.add_argument("--work", type=Path, help="folder for the journals (default: temp)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    points = sorted({int(p) for p in args.points.split(",")} | {args.sessions})
    if args.one:
        result = soak(args.work, sessions=args.sessions, symbols=args.symbols, points=points)
        args.out.write_text(json.dumps(result))
        return
    trees = [t.resolve() for t in args.tree or [Path(__file__).resolve().parents[2]]]
    work = args.work or Path(tempfile.mkdtemp(prefix="journal-soak-"))
    results: dict[Path, list[dict[str, Any]]] = {t: [] for t in trees}
    for run in range(args.runs):
        for tree in trees:  # interleaved: the machine's load falls on every tree alike
            folder = work / f"{tree.name}-{run}"
            out = work / f"{tree.name}-{run}.json"
            env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    f"--work={folder}",
                    f"--out={out}",
                    f"--sessions={args.sessions}",
                    f"--symbols={args.symbols}",
                    f"--points={args.points}",
                ],
                check=True,
                env=env,
                cwd=tree,
            )
            results[tree].append(json.loads(out.read_text()))
            print(f"run {run + 1}/{args.runs} {tree}: done", file=sys.stderr)
    for tree in trees:
        report(tree, results[tree], symbols=args.symbols, points=points)


def report(tree: Path, runs: list[dict[str, Any]], *, symbols: int, points: list[int]) -> None:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    print(f"== {tree} ({len(runs)} runs, medians)")
    last = points[-1]
    size = med([r["journal_mb"][-1] for r in runs])
    print(f"journal after {last} sessions: {size:.1f} MB (file + WAL)")
    first_mb = [r["journal_mb"][min(9, last - 1)] for r in runs]
    per = med([r["journal_mb"][-1] / last / symbols for r in runs])
    tail = med(
        [
            (r["journal_mb"][-1] - f) / max(last - 10, 1) / symbols
            for r, f in zip(runs, first_mb, strict=True)
        ]
    )
    print(
        f"journal MB per session per symbol: {per:.4f} (whole run), {tail:.4f} (sessions 11-{last})"
    )
    print(f"WAL at the end: {med([r['wal_mb'] for r in runs]):.1f} MB")
    for point in points:
        at = [r["points"][str(point)] for r in runs]

        def both(name: str, at: list[dict[str, Any]] = at) -> str:
            if any(a.get(f"{name}_s") is None for a in at):
                return "-"
            wall = med([a[f"{name}_s"] for a in at])
            return f"{wall:.3f} s ({med([a[f'{name}_cpu_s'] for a in at]):.3f} s CPU)"

        print(
            f"after {point:>3} sessions: restart {both('restart')}, audit {both('audit')}, "
            f"audit --sessions 1 {both('audit_1')}"
        )
    slopes = [_slope(r["rss_mb"][4:]) for r in runs]
    line = (
        f"RSS: {med([r['rss_mb'][0] for r in runs]):.0f} MB after session 1, "
        f"{med([r['rss_mb'][-1] for r in runs]):.0f} MB after {last}; "
        f"slope {med(slopes) * 1000:.0f} kB per session (sessions 5-{last})"
    )
    if last >= 40:
        # After the first compaction (session 31 at the default retention): pyarrow's first
        # Parquet write is a one-time step of resident memory, not a slope.
        late = [_slope(r["rss_mb"][34:]) for r in runs]
        line += f", {med(late) * 1000:.0f} kB per session (sessions 35-{last})"
    print(line)


def _slope(values: list[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    xs = range(n)
    mx, my = (n - 1) / 2, sum(values) / n
    return sum((x - mx) * (y - my) for x, y in zip(xs, values, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def soak(work: Path, *, sessions: int, symbols: int, points: list[int]) -> dict[str, Any]:
    """One run in this process, with the code tree on sys.path; its measures."""
    import random
    from decimal import Decimal

    import yaml

    from brokers.orders import OrderAccepted, OrderFilled
    from daemon.config import load_config
    from daemon.replay.audit import TargetsListener
    from daemon.wiring import build_engine
    from feeds.bar import Bar
    from portfolio.journal import Journal, LedgerSnapshot

    work.mkdir(parents=True, exist_ok=True)
    state = work / "state"
    names = [f"S{i:03d}" for i in range(symbols)]
    tree = {
        "symbols": names,
        "data": {"path": str(work / "unused"), "timeframe": "1Min"},
        "sanity": {"session": "any"},
        "strategies": {"mom": {"type": "momentum", "params": {"lookback": 20}}},
        "composer": {
            "method": "equal",
            "max_gross": 1.0,
            "rebalance": {"every": "minutes", "minutes": 5},
        },
        "rebalance": {"min_trade_notional": 0, "no_trade_band": 0.0, "fractional": True},
        "risk": {
            "max_weight": 1.0,
            "max_gross": 1.0,
            "max_drawdown": 0.99,
            "daily_loss_limit": 0.99,
        },
        "run": {"start_cash": 1_000_000},
        "state": {"dir": str(state)},
    }
    config = work / "soak.yaml"
    config.write_text(yaml.safe_dump(tree))
    loaded = load_config([str(config)])
    listener = TargetsListener()
    engine, _ = build_engine(loaded, names, listener, trade_from_ts=2**63 - 1)
    journal = Journal(state)
    segment = journal.begin_segment(
        mode="paper",
        config_digest=loaded.digest,
        config=loaded.settings.model_dump(mode="json"),
        config_files=[str(config)],
        ledger=LedgerSnapshot.of(engine.ledger),
        ts=_T0,
    )
    upkeep = _upkeep(engine, journal, loaded)
    rng = random.Random(7)
    prices = dict.fromkeys(names, 100.0)

    def slice_of(ts: int, *, warmup: bool = False) -> None:
        for symbol in names:
            old = prices[symbol]
            new = prices[symbol] = round(old * (1 + rng.gauss(0, 0.002)), 2)
            bar = Bar(symbol, ts, old, max(old, new) + 0.01, min(old, new) - 0.01, new, 500.0, 9)
            journal.bar(bar, warmup=warmup)
            engine.on_bar(bar)
        listener.targets = None
        orders = engine.close_slice()
        journal.close_slice(ts, targets=listener.targets, orders=orders)
        fill_ts = ts + _NS_MIN
        for order in orders:
            accepted = OrderAccepted(
                client_order_id=order.client_order_id, symbol=order.symbol, ts=fill_ts
            )
            if journal.event(accepted):
                engine.on_events([accepted])
            fill = OrderFilled(
                client_order_id=order.client_order_id,
                symbol=order.symbol,
                side=order.side,
                qty=order.qty,
                price=Decimal(str(prices[order.symbol])),
                commission=Decimal(0),
                ts=fill_ts,
                execution_id=f"x-{order.client_order_id}",
            )
            if journal.event(fill):
                engine.on_events([fill])

    for m in range(30):  # the warm-up: the evening before the first session
        slice_of(_T0 - _NS_DAY + m * _NS_MIN, warmup=True)
    journal.warmup_done(_T0)
    engine.trade_from_ts = -(2**63)
    measures: dict[str, Any] = {"journal_mb": [], "rss_mb": [], "points": {}}
    day = 0
    for session in range(1, sessions + 1):
        while (_T0 + day * _NS_DAY) // _NS_DAY % 7 in (2, 3):  # 1970-01-01 was a Thursday
            day += 1  # weekends
        open_ts = _T0 + day * _NS_DAY
        day += 1
        for m in range(_MINUTES):
            slice_of(open_ts + m * _NS_MIN)
            if upkeep is not None:
                upkeep.on_clock(market_open=True, ts=open_ts + (m + 1) * _NS_MIN)
        if upkeep is not None:
            upkeep.on_clock(market_open=False, ts=open_ts + _MINUTES * _NS_MIN)
        journal.flush()
        measures["journal_mb"].append(_journal_mb(state))
        measures["rss_mb"].append(_rss_mb())
        if session in points:
            journal.close()
            measures["points"][str(session)] = _measure_point(state, loaded, names)
            journal = Journal(state)
            journal.segment = segment  # the same run goes on
            if upkeep is not None:
                upkeep.guard.journal = journal
    wal = state / "journal.sqlite3-wal"
    measures["wal_mb"] = wal.stat().st_size / 1e6 if wal.exists() else 0.0
    journal.close()
    return measures


def _journal_mb(state: Path) -> float:
    total = 0
    for name in ("journal.sqlite3", "journal.sqlite3-wal"):
        path = state / name
        if path.exists():
            total += path.stat().st_size
    return total / 1e6


def _upkeep(engine: Any, journal: Any, loaded: Any) -> Any:
    """The live daemon's upkeep where the code has it (None before it existed)."""
    try:
        from daemon.live.upkeep import Upkeep
    except ImportError:
        return None
    import io

    from daemon.live.guard import JournalGuard
    from daemon.logs import EventLog

    log = EventLog(io.StringIO())
    guard = JournalGuard(journal, log=log, on_failed=lambda: None)
    return Upkeep(engine=engine, guard=guard, retention=loaded.settings.state.retention, log=log)


def _measure_point(state: Path, loaded: Any, names: list[str]) -> dict[str, float | None]:
    """A restart's reading of the journal (in this process), then audits (in their own)."""
    import io

    from daemon.live.guard import JournalGuard
    from daemon.live.recovery import Recovery
    from daemon.logs import EventLog
    from daemon.replay.audit import TargetsListener
    from daemon.service.telemetry import Telemetry
    from daemon.wiring import build_engine
    from portfolio.journal import Journal

    engine, _ = build_engine(loaded, names, TargetsListener(), trade_from_ts=2**63 - 1)
    log = EventLog(io.StringIO())
    guard = JournalGuard(None, log=log, on_failed=lambda: None)
    telemetry = Telemetry(mode="paper", symbols=names, strategies=["mom"])
    recovery = Recovery(
        engine=engine, guard=guard, log=log, telemetry=telemetry, policy="adopt", symbols=names
    )
    started, cpu = time.perf_counter(), time.process_time()
    journal = Journal(state)
    reader = journal.reader()
    journaled = reader.restart_state() if hasattr(reader, "restart_state") else reader.state()
    recovery.rebuild_ledger(journal)
    restart_s = time.perf_counter() - started
    restart_cpu_s = time.process_time() - cpu
    journal.close()
    assert journaled.segments == 1
    audit_s, audit_cpu_s = _audit(state, [])
    ranged = _audit(state, ["--sessions", "1"]) if _has_ranges() else (None, None)
    return {
        "restart_s": restart_s,
        "restart_cpu_s": restart_cpu_s,
        "audit_s": audit_s,
        "audit_cpu_s": audit_cpu_s,
        "audit_1_s": ranged[0],
        "audit_1_cpu_s": ranged[1],
    }


def _has_ranges() -> bool:
    from daemon.replay import audit

    return "sessions" in audit.audit.__code__.co_varnames


def _audit(state: Path, extra: list[str]) -> tuple[float, float]:
    """`tradingd audit` in its own process: (wall seconds, CPU seconds of that process)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "daemon.cli", "audit", str(state), "--log-level", "error", *extra],
        check=False,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


if __name__ == "__main__":
    main()
