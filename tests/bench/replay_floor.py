"""Benchmark: what the per-bar path alone costs, against the whole replay and the bare loop.

Not a test: it prints measured figures. Issue 13's workload (`replay_throughput.py`'s data
sets and config) is replayed three ways, interleaved, each in its own process:

- "replay": `tradingd replay` as a user runs it;
- "per-bar path": the same replay, in-process through `daemon.replay.driver.replay`, with
  every slice a warm-up slice (`warmup_from` the data's first day, `run.start` after its
  last): each bar is parsed, merged, checked by the sanity rules, fed to the strategy and
  shown to the simulated broker, and each slice is marked and closed, but no slice is
  composed, rebalanced, ordered or recorded. It is the replay with the decisions taken out:
  a ceiling on what any decision path, however cheap, lets the whole replay reach;
- "bare loop": `tests/bench/bare_loop.py` (parse, merge, two SMAs and the cross).

Each process's bars/s counts its whole wall time, start-up and parsing included (the basis of
`replay_throughput.py`). Medians (min-max) over the runs, and each one's ratio to the bare loop.

    python tests/bench/replay_floor.py [--sessions 252,1260] [--runs 3] [--work DIR]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench.replay_throughput import ROOT, config, synth

# The per-bar-path run, in a child process: the bars/s over its whole wall time.
_CHILD = """
import json, sys, time
started = time.perf_counter()
from datetime import date
from pathlib import Path
from daemon.config import load_config
from daemon.logs import EventLog
from daemon.replay.driver import replay

loaded = load_config([sys.argv[1]], {("run", "start"): "2100-01-02"})
result = replay(
    loaded, out_dir=Path(sys.argv[2]),
    log=EventLog(level="error"), warmup_from=date(1970, 1, 2),
)
summary = result.summary
wall = time.perf_counter() - started
assert summary["slices"] == 0 and summary["orders"] == 0, summary
print(json.dumps({"bars": summary["bars_in"], "warmup_slices": summary["warmup_slices"],
                  "bars_per_second": round(summary["bars_in"] / wall)}))
"""


def run_replay(cfg: Path, out: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            *(sys.executable, "-m", "daemon.cli", "replay", str(cfg)),
            *("--out", str(out), "--log-level", "error"),
        ],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    summary = json.loads((out / "summary.json").read_text())
    return float(summary["bars_in"]) / wall


def run_child(code: str, *args: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, cwd=ROOT, capture_output=True, text=True
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def run_bare(data: Path) -> float:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "bench" / "bare_loop.py"), str(data)],
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return float(json.loads(done.stdout)["bars_per_second"])


def spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    return (
        f"{fmt.format(statistics.median(values))} "
        f"({fmt.format(min(values))}-{fmt.format(max(values))})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--sessions", default="252,1260")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--work", type=Path, help="folder for the data sets (default: temp)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="tradingd-floor-"))
    work.mkdir(parents=True, exist_ok=True)
    sets = []
    for sessions in (int(s) for s in args.sessions.split(",")):
        data = synth(work, sessions, args.seed)
        sets.append((sessions, data, config(work, data, "slice")))
    figures: dict[int, dict[str, list[float]]] = {
        s: {"replay": [], "per-bar path": [], "bare loop": []} for s, _, _ in sets
    }
    for n in range(args.runs):
        for sessions, data, cfg in sets:
            out = work / f"out-floor-{sessions}"
            row = figures[sessions]
            row["replay"].append(run_replay(cfg, out))
            row["per-bar path"].append(run_child(_CHILD, str(cfg), str(out))["bars_per_second"])
            row["bare loop"].append(run_bare(data))
            print(
                f"run {n + 1}, {sessions} sessions: "
                + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in row.items()),
                flush=True,
            )
    print()
    for sessions, _, _ in sets:
        row = figures[sessions]
        bare = row["bare loop"]
        print(f"{sessions} sessions, bars/s, median (min-max) over {args.runs} runs:")
        for name, values in row.items():
            ratio = (
                ""
                if name == "bare loop"
                else "  ratio to the bare loop "
                + spread([v / b for v, b in zip(values, bare, strict=True)], "{:.3f}")
            )
            print(f"  {name:13} {spread(values)}{ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
