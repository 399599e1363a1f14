"""A source streamed from per-symbol files, a batch at a time, is the source read whole."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.bar import NS_PER_MINUTE
from feeds.columns import Columns
from feeds.merge import merge_streams, running_max
from feeds.replay import ReplaySource
from tests.feeds.test_replay_window import HEADER, T0, read_as_window_reads, same

SYMBOLS = ("SPY", "QQQ", "IWM")


def stream_folder(folder: Path, seed: int) -> Path:
    """One file per symbol, CSV or Parquet (numbers or text): rows out of order, duplicate
    times, shared times across symbols, unreadable times and values, a second file of one
    symbol through a ``symbol`` column."""
    rng = random.Random(seed)
    folder.mkdir()
    for n, name in enumerate(SYMBOLS):
        times = [T0 + (i + rng.randrange(3)) * NS_PER_MINUTE for i in range(0, 120, 2)]
        times.sort()
        for _ in range(3):  # a few rows out of place
            i, j = rng.randrange(60), rng.randrange(60)
            times[i], times[j] = times[j], times[i]
        if n == 0:
            stamps = [str(t // 10**9) if rng.random() > 0.05 else "never" for t in times]
            closes = [str(1 + k % 5) if rng.random() > 0.05 else "n/a?" for k in range(60)]
            lines = [
                f"{name},{s},1,2,0.5,{c},{k}\n"
                for k, (s, c) in enumerate(zip(stamps, closes, strict=True))
            ]
            (folder / f"{name}.csv").write_text(HEADER + "".join(lines))
            continue
        table = pa.table(
            {
                "timestamp": pa.array(
                    [None if rng.random() < 0.05 else t for t in times], pa.timestamp("ns", "UTC")
                ),
                "open": [1.0] * 60,
                "high": [2.0] * 60,
                "low": [0.5] * 60,
                "close": [float(1 + k % 5) for k in range(60)],
                "volume": list(range(60)),
            }
        )
        if n == 2:
            table = table.set_column(4, "close", pa.array([str(1 + k % 5) for k in range(60)]))
        pq.write_table(table, folder / f"{name}.parquet")
    extra = [f"SPY,{(T0 + (200 + k) * NS_PER_MINUTE) // 10**9},1,1,1,1,1\n" for k in range(10)]
    (folder / "zz_more.csv").write_text(HEADER + "".join(extra))
    return folder


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 5),
    start=st.none() | st.integers(-5, 215),
    end=st.none() | st.integers(-5, 215),
    batch=st.sampled_from([1, 2, 7, 64, 10_000]),
)
def test_a_streamed_source_is_the_source_read_whole(
    tmp_path_factory: pytest.TempPathFactory,
    seed: int,
    start: int | None,
    end: int | None,
    batch: int,
) -> None:
    folder = stream_folder(tmp_path_factory.mktemp("s") / "data", seed)
    start_ns = None if start is None else T0 + start * NS_PER_MINUTE
    end_ns = None if end is None else T0 + end * NS_PER_MINUTE
    whole = ReplaySource(folder, reusable=True)
    assert {p.reason for p in whole.problems} == {"unparseable_time", "unparseable_value"}
    streamed = read_as_window_reads(folder, whole, start_ns, end_ns, batch_rows=batch)
    if streamed is None:
        return
    assert streamed._parts is not None  # streamed, not read whole
    assert len(streamed) == len(list(streamed))
    assert sorted(streamed.times().tolist()) == sorted(whole.window(start_ns, end_ns).times())
    same(streamed, whole.window(start_ns, end_ns))
    same(streamed.hold(), whole.window(start_ns, end_ns))
    same(streamed, whole.window(start_ns, end_ns))  # held: iterates again, the same


def test_the_sample_minute_data_streams() -> None:
    root = Path(__file__).resolve().parents[2] / "data/sample/minute"
    streamed = ReplaySource(root, batch_rows=100)
    assert streamed._parts is not None
    same(streamed, ReplaySource(root, reusable=True))


def test_several_symbols_in_one_file_are_read_whole(tmp_path: Path) -> None:
    f = tmp_path / "all.csv"
    f.write_text(HEADER + f"SPY,{T0 // 10**9},1,1,1,1,1\nQQQ,{T0 // 10**9},1,1,1,1,1\n")
    source = ReplaySource(f)
    assert source._parts is None
    assert [bar.symbol for bar, _ in source] == ["QQQ", "SPY"]


def _columns(ts: list[int], symbol: int, first: int) -> Columns:
    n = len(ts)
    values = np.zeros(n)
    return Columns(
        ts=np.array(ts, np.int64),
        symbol=np.full(n, symbol, np.int64),
        origin=np.arange(first, first + n, dtype=np.int64),
        open=values,
        high=values,
        low=values,
        close=values,
        volume=values,
        trade_count=np.zeros(n, np.int64),
        trade_count_null=np.zeros(n, np.bool_),
        vwap=values,
        vwap_null=np.zeros(n, np.bool_),
    )


@settings(max_examples=100, deadline=None)
@given(
    streams=st.lists(st.lists(st.integers(0, 30), min_size=1, max_size=40), min_size=1, max_size=4),
    batch=st.integers(1, 9),
)
def test_the_merge_orders_by_running_time_then_rank(streams: list[list[int]], batch: int) -> None:
    ranks = list(range(len(streams)))[::-1]

    def batches(ts: list[int], code: int):  # type: ignore[no-untyped-def]
        carry = None
        for lo in range(0, len(ts), batch):
            rows = _columns(ts[lo : lo + batch], code, lo)
            running = running_max(rows.ts, carry)
            carry = int(running[-1])
            yield rows, running

    merged = list(merge_streams([batches(ts, i) for i, ts in enumerate(streams)], ranks))
    got = [(int(s), int(o)) for w in merged for s, o in zip(w.symbol, w.origin, strict=True)]
    keys = []
    for i, ts in enumerate(streams):
        running = np.maximum.accumulate(np.array(ts))
        keys += [(int(r), ranks[i], k, i) for k, r in enumerate(running)]
    assert got == [(i, k) for _, _, k, i in sorted(keys)]


def test_reading_parquet_times_does_not_import_pandas() -> None:
    # pyarrow's conversions import pandas (~70 MB): a walk-forward's parent, whose pages its
    # workers share, reads the times of the data without it.
    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys; from pathlib import Path; from feeds.replay import ReplaySource\n"
        "s = ReplaySource(Path('data/sample/minute'), timeframe='1Min')\n"
        "assert len(s.times()) == len(s) > 0\n"
        "print('pandas' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"
