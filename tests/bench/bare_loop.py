"""The reference for replay throughput: a bare Python loop over the same files.

It parses every Parquet (or CSV) file of a folder, merges the bars in time order (ties by
symbol), and runs two incremental simple moving averages and their cross per symbol: the least
any replay of one `sma_cross` strategy must do. It prints one JSON line with its bar count and
the wall time of the whole process, start-up included (the same basis `replay_throughput.py`
uses for tradingd).

    python tests/bench/bare_loop.py DATA_DIR [--fast 10] [--slow 30]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

STARTED = time.perf_counter()

from pathlib import Path  # noqa: E402  (imports are part of what the figure measures)

import numpy as np  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.csv as pacsv  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402


def load(folder: Path) -> tuple[list[int], list[int], list[float], list[str]]:
    """(ns, symbol index, close) of every bar in time order, and the symbols."""
    stamps, symbol_ix, closes, symbols = [], [], [], []
    for i, path in enumerate(sorted(folder.iterdir())):
        if path.suffix == ".parquet":
            table = pq.ParquetFile(path).read(columns=["timestamp", "close"])
        elif path.suffix == ".csv":
            table = pacsv.read_csv(path).select(["timestamp", "close"])
        else:
            continue
        stamps.append(pc.cast(table["timestamp"], "int64").to_numpy())
        closes.append(table["close"].to_numpy())
        symbol_ix.append(np.full(table.num_rows, i, dtype=np.int64))
        symbols.append(path.stem.upper())
    ts, ix, close = np.concatenate(stamps), np.concatenate(symbol_ix), np.concatenate(closes)
    order = np.lexsort((ix, ts))
    return ts[order].tolist(), ix[order].tolist(), close[order].tolist(), symbols


def run(folder: Path, fast: int, slow: int) -> dict[str, object]:
    """Parse, merge and loop; the figures of one run."""
    ts, ix, close, symbols = load(folder)
    n = len(symbols)
    windows: list[list[float]] = [[] for _ in range(n)]
    fast_sum, slow_sum = [0.0] * n, [0.0] * n
    above: list[bool | None] = [None] * n
    crosses = 0
    last_ts = -1
    slices = 0
    for t, i, c in zip(ts, ix, close, strict=True):
        if t != last_ts:
            slices += 1
            last_ts = t
        w = windows[i]
        w.append(c)
        fast_sum[i] += c
        slow_sum[i] += c
        k = len(w)
        if k > fast:
            fast_sum[i] -= w[k - 1 - fast]
        if k > slow:
            slow_sum[i] -= w.pop(0)
            k -= 1
        if k >= slow:
            now = fast_sum[i] / fast > slow_sum[i] / slow
            if above[i] is not None and now != above[i]:
                crosses += 1
            above[i] = now
    wall = time.perf_counter() - STARTED
    return {
        "bars": len(ts),
        "slices": slices,
        "crosses": crosses,
        "wall_seconds": round(wall, 3),
        "bars_per_second": round(len(ts) / wall),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--fast", type=int, default=10)
    parser.add_argument("--slow", type=int, default=30)
    args = parser.parse_args()
    json.dump(run(args.data, args.fast, args.slow), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
