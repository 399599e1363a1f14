"""Benchmark: `tradingd walkforward` on the 5-year synthetic set, wall time and summed RSS.

Not a test: it prints measured figures. The workload is issue 13's: the replay benchmark's
config (`replay_throughput.py`: 3 symbols of minute bars, one `sma_cross`, rebalancing every
slice) and 4 grid points (`fast` 5 or 10 x `slow` 30 or 60), `--train 252d --test 63d
--workers 2`: 16 folds, 80 replays on 1,260 sessions. It samples the resident memory of the
walk-forward's whole process tree (the parent and its workers) every 50 ms and reports the
largest sum seen, with the wall time of the command.

`--compare DIR` runs a second source tree in the same interleaving (see replay_throughput.py).

    python tests/bench/walkforward.py [--sessions 1260] [--runs 3] [--work DIR] [--compare DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench.replay_throughput import ROOT, config, spread, synth

PAGE_KB = 4


def tree_rss_mb(root: int) -> list[float]:
    """The RSS of `root` and of every process below it (root first), in MB, from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            statm = (entry / "statm").read_text().split()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        rss[int(entry.name)] = int(statm[1])
    members, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, parent in parents.items() if parent == pid and p not in members]
        members.update(children)
        frontier.extend(children)
    order = [root, *sorted(members - {root})]
    return [rss.get(p, 0) * PAGE_KB / 1024 for p in order]


def run_walkforward(argv: list[str], cwd: Path) -> tuple[float, float, list[float]]:
    """(wall seconds, peak summed RSS MB, each process's RSS at that peak) of one
    walk-forward."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak, parts = 0.0, [0.0]
    while child.poll() is None:
        sizes = tree_rss_mb(child.pid)
        if sum(sizes) > peak:
            peak, parts = sum(sizes), sizes
        time.sleep(0.05)  # the sampling period, not a wait for an event
    wall = time.perf_counter() - started
    assert child.stderr is not None
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {child.returncode}\n{child.stderr.read()!r}")
    return wall, peak, parts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1260)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, help="folder for data and outputs (default: temp)")
    parser.add_argument("--compare", type=Path, help="another source tree to run alongside")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="tradingd-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    data = synth(work, args.sessions, args.seed)
    settings = config(work, data, "slice")
    grid = work / "grid.yaml"
    grid.write_text(
        yaml.safe_dump(
            {"strategies.trend.params.fast": [5, 10], "strategies.trend.params.slow": [30, 60]}
        ),
        encoding="utf-8",
    )
    trees = {"tradingd": ROOT}
    if args.compare:
        trees["compare"] = args.compare.resolve()
    figures: dict[str, list[tuple[float, float]]] = {}
    for repeat in range(args.runs):
        for name, tree in trees.items():
            out = work / f"wf-{name}"
            wall, rss, parts = run_walkforward(
                [
                    *(sys.executable, "-m", "daemon.cli", "walkforward", str(settings)),
                    *("--train", "252d", "--test", "63d", "--grid", str(grid)),
                    *("--workers", str(args.workers), "--out", str(out)),
                    *("--log-level", "warning"),
                ],
                tree,
            )
            summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
            figures.setdefault(name, []).append((wall, rss))
            print(
                f"run {repeat + 1} {name}: {wall:.1f} s, peak summed RSS {rss:.0f} MB "
                f"(parent {parts[0]:.0f}, others {', '.join(f'{p:.0f}' for p in parts[1:])}), "
                f"folds {summary['folds']}, workers {summary['workers']}",
                flush=True,
            )
    print(f"\nmedian (min-max) over {args.runs} interleaved runs, {args.sessions} sessions:")
    for name, rows in figures.items():
        print(
            f"  {name:9} wall {spread([r[0] for r in rows], '.1f')} s, "
            f"peak summed RSS {spread([r[1] for r in rows], '.0f')} MB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
