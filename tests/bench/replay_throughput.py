"""Benchmark: `tradingd replay` against a bare Python loop, on 1 and 5 years of minute bars.

Not a test: it prints measured figures. The workload is issue 13's: 3 symbols of synthetic
minute bars (`tradingd bars synth --seed 5`, Parquet), one `sma_cross` 10/30, static weights
(0.30 a symbol), no-trade band 0, rebalancing every slice, next-open fills, no costs. For each
repeat it runs, interleaved, every data set through `tradingd replay` (a separate process, as a
user would) and through `tests/bench/bare_loop.py`, and reports per set the medians (min-max)
of:

- bars/s over the whole process (start-up, parsing and writing included), the same basis for
  both, and their ratio (median of the per-repeat ratios);
- bars/s of the replay loop as tradingd's summary.json reports it;
- peak RSS of the process (ru_maxrss from wait4), and the 5-year / 1-year ratio (flatness).

`--compare DIR` runs a second source tree (say `git archive OLD | tar -x -C DIR`) in the same
interleaving, with this checkout's interpreter: an old-versus-new comparison under the same load.

    python tests/bench/replay_throughput.py [--sessions 252,1260] [--runs 3] [--work DIR]
        [--compare DIR] [--rebalance slice|MINUTES]
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

import yaml

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = "AAA,BBB,CCC"


def synth(work: Path, sessions: int, seed: int) -> Path:
    """The data set of `sessions` NYSE sessions (written once, reused)."""
    data = work / f"synth-{sessions}-{seed}"
    if not data.exists():
        subprocess.run(
            [
                *(sys.executable, "-m", "daemon.cli", "bars", "synth", "--symbols", SYMBOLS),
                *("--sessions", str(sessions), "--seed", str(seed), "--out", str(data)),
                *("--format", "parquet", "--log-level", "error"),
            ],
            check=True,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
    return data


def config(work: Path, data: Path, rebalance: str) -> Path:
    """The replay config of the workload, for one data set."""
    schedule: dict[str, object] = (
        {"every": "slice"}
        if rebalance == "slice"
        else {"every": "minutes", "minutes": int(rebalance)}
    )
    settings = {
        "symbols": [],
        "data": {"path": str(data), "timeframe": "1Min"},
        "strategies": {"trend": {"type": "sma_cross", "params": {"fast": 10, "slow": 30}}},
        # One strategy with capital weight 0.9 spread over 3 symbols: 0.30 a symbol.
        "composer": {"method": "static", "strategy_weights": {"trend": 0.9}, "rebalance": schedule},
        "rebalance": {"no_trade_band": 0},
        # Loose enough that the kill switch stays off: this measures trading, not denials.
        "risk": {
            "max_weight": 0.4,
            "max_gross": 1.0,
            "max_drawdown": 0.99,
            "daily_loss_limit": 0.99,
        },
        "broker": {
            "fill_at": "next_open",
            "slippage_bps": 0,
            "commission_per_share": 0,
            "commission_min": 0,
        },
    }
    path = work / f"bench-{data.name}-{rebalance}.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def run_child(argv: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one child process, its output discarded."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert child.stderr is not None
    err = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {child.returncode}\n{err.decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def spread(values: list[float], fmt: str) -> str:
    """'median (min-max)'."""
    return (
        f"{format(statistics.median(values), fmt)} "
        f"({format(min(values), fmt)}-{format(max(values), fmt)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="252,1260", help="comma-separated set sizes")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rebalance", default="slice", help="'slice' or minutes between")
    parser.add_argument("--work", type=Path, help="folder for data and outputs (default: temp)")
    parser.add_argument("--compare", type=Path, help="another source tree to run alongside")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare loop")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="tradingd-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sessions.split(",")]
    sets = {n: synth(work, n, args.seed) for n in sizes}
    configs = {n: config(work, sets[n], args.rebalance) for n in sizes}
    trees = {"tradingd": ROOT}
    if args.compare:
        trees["compare"] = args.compare.resolve()
    # figures[(variant, sessions)] -> list of (process bars/s, loop bars/s, rss MB, wall s)
    figures: dict[tuple[str, int], list[tuple[float, float, float, float]]] = {}
    bars: dict[int, int] = {}
    for repeat in range(args.runs):
        for n in sizes:
            for name, tree in trees.items():
                out = work / f"out-{name}-{n}"
                wall, rss = run_child(
                    [
                        *(sys.executable, "-m", "daemon.cli", "replay", str(configs[n])),
                        *("--out", str(out), "--log-level", "warning"),
                    ],
                    tree,
                )
                summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
                bars[n] = summary["bars_in"]
                figures.setdefault((name, n), []).append(
                    (bars[n] / wall, summary["bars_per_second"], rss, wall)
                )
                print(
                    f"run {repeat + 1} {name} {n} sessions: {bars[n] / wall:,.0f} bars/s "
                    f"(loop {summary['bars_per_second']:,}), {rss:.0f} MB, {wall:.1f} s, "
                    f"orders {summary['orders']:,}",
                    flush=True,
                )
            if not args.no_bare:
                wall, rss = run_child(
                    [sys.executable, str(ROOT / "tests/bench/bare_loop.py"), str(sets[n])], ROOT
                )
                figures.setdefault(("bare", n), []).append((bars[n] / wall, 0.0, rss, wall))
                print(
                    f"run {repeat + 1} bare {n} sessions: {bars[n] / wall:,.0f} bars/s, "
                    f"{rss:.0f} MB",
                    flush=True,
                )
    report(figures, bars, sizes, list(trees), args)
    return 0


def report(
    figures: dict[tuple[str, int], list[tuple[float, float, float, float]]],
    bars: dict[int, int],
    sizes: list[int],
    variants: list[str],
    args: argparse.Namespace,
) -> None:
    """Print the medians (min-max) over the repeats."""
    print(f"\nmedian (min-max) over {args.runs} interleaved runs, rebalance {args.rebalance}")
    for n in sizes:
        print(f"{n} sessions, {bars[n]:,} bars:")
        for name in [*variants, *([] if args.no_bare else ["bare"])]:
            rows = figures[(name, n)]
            line = (
                f"  {name:9} process {spread([r[0] for r in rows], ',.0f')} bars/s, "
                f"peak RSS {spread([r[2] for r in rows], '.0f')} MB, "
                f"wall {spread([r[3] for r in rows], '.1f')} s"
            )
            if name != "bare":
                line += f", loop {spread([r[1] for r in rows], ',.0f')} bars/s"
                if not args.no_bare:
                    ratios = [r[0] / b[0] for r, b in zip(rows, figures[("bare", n)], strict=True)]
                    line += f", ratio to bare {spread(ratios, '.3f')}"
            print(line)
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        for name in variants:
            growth = [
                b[2] / a[2]
                for a, b in zip(figures[(name, small)], figures[(name, large)], strict=True)
            ]
            print(f"peak RSS {large}/{small} sessions, {name}: {spread(growth, '.2f')}")


if __name__ == "__main__":
    raise SystemExit(main())
