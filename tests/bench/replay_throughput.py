"""Benchmark: `tradingd replay` throughput and peak memory on synthetic minute bars.

Not a test: it prints measured figures. It writes a deterministic synthetic set (by default
3 symbols x 252 NYSE sessions, about 295,000 minute bars) with `tradingd bars synth`, then runs
`tradingd replay` on it as a user would (a separate process) with one `sma_cross` strategy, and
reports the replay's own `bars_per_second`, its wall time, and the peak resident memory of the
replay process.

    python tests/bench/replay_throughput.py [--sessions 252] [--symbols AAA,BBB,CCC]
        [--rebalance slice|30] [--runs 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", default="AAA,BBB,CCC")
    parser.add_argument("--sessions", type=int, default=252)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--rebalance",
        default="slice",
        help="'slice' (decide at every slice) or a number of minutes between rebalances",
    )
    parser.add_argument("--work", type=Path, help="folder for data and outputs (default: temp)")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="tradingd-bench-"))
    data = work / f"synth-{args.symbols.replace(',', '_')}-{args.sessions}-{args.seed}"
    tradingd = [sys.executable, "-m", "daemon.cli"]
    if not data.exists():
        started = time.perf_counter()
        subprocess.run(
            [
                *tradingd,
                "bars",
                "synth",
                "--symbols",
                args.symbols,
                "--sessions",
                str(args.sessions),
                "--seed",
                str(args.seed),
                "--out",
                str(data),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"synth: {time.perf_counter() - started:.1f} s -> {data}")

    rebalance: dict[str, object] = (
        {"every": "slice"}
        if args.rebalance == "slice"
        else {"every": "minutes", "minutes": int(args.rebalance)}
    )
    config = {
        "data": {"path": str(data), "timeframe": "1Min"},
        "strategies": {"trend": {"type": "sma_cross", "params": {"fast": 20, "slow": 60}}},
        "composer": {"method": "equal", "rebalance": rebalance},
        "rebalance": {"min_trade_notional": 100, "no_trade_band": 0.02},
        # Loose enough that the kill switch stays off: this measures trading, not denials.
        "risk": {"max_weight": 0.4, "max_gross": 1.0, "max_drawdown": 0.9, "daily_loss_limit": 0.5},
        "run": {"start_cash": 1_000_000},
    }
    config_path = work / "bench.yaml"
    config_path.write_text(yaml.safe_dump(config))

    rates, walls, rss = [], [], []
    for i in range(args.runs):
        out = work / f"out-{i}"
        started = time.perf_counter()
        subprocess.run(
            [*tradingd, "replay", str(config_path), "--out", str(out), "--log-level", "warning"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        walls.append(time.perf_counter() - started)
        summary = json.loads((out / "summary.json").read_text())
        rates.append(summary["bars_per_second"])
        # The replay's own peak RSS (ru_maxrss of its process, read at its end).
        rss.append(summary["peak_rss_mb"])
    print(
        f"bars: {summary['bars_in']:,} ({args.symbols}, {args.sessions} sessions), "
        f"slices {summary['slices']:,}, orders {summary['orders']:,}, rebalance {args.rebalance}"
    )
    print(
        f"bars_per_second (replay loop, from summary.json): median {statistics.median(rates):,.0f}"
        f"  (runs: {', '.join(f'{r:,}' for r in rates)})"
    )
    print(
        f"process wall time incl. start-up and file parsing: median "
        f"{statistics.median(walls):.2f} s"
    )
    print(f"peak RSS of the replay process: {max(rss):.0f} MB")


if __name__ == "__main__":
    main()
