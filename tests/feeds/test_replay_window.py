"""ReplaySource.window: a range cut from one parse is the source that range would have read."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.bar import NS_PER_MINUTE
from feeds.errors import SourceError
from feeds.replay import ReplaySource

HEADER = "symbol,timestamp,open,high,low,close,volume\n"
T0 = 1_704_205_800 * 10**9  # 2024-01-02T14:30:00Z


def messy_folder(folder: Path, seed: int) -> Path:
    """Per-symbol files and one file with a symbol column: rows out of order, a newest-first
    stream, duplicate times, unreadable times and values, all at random positions."""
    rng = random.Random(seed)
    folder.mkdir()
    for name in ("SPY", "QQQ", "IWM"):
        times = [T0 + i * NS_PER_MINUTE for i in range(60)]
        if name == "QQQ":
            times.reverse()  # a whole stream newest-first
        else:
            for _ in range(3):  # a few rows out of place
                i, j = rng.randrange(60), rng.randrange(60)
                times[i], times[j] = times[j], times[i]
        lines = []
        for k, t in enumerate(times):
            stamp = str(t // 10**9) if rng.random() > 0.03 else "never"
            close = str(1 + k % 5) if rng.random() > 0.03 else "n/a?"
            lines.append(f"{name},{stamp},1,2,0.5,{close},{k}\n")
        (folder / f"{name}.csv").write_text(HEADER + "".join(lines))
    mixed = [
        f"{rng.choice(['SPY', 'DIA'])},{(T0 + rng.randrange(80) * NS_PER_MINUTE) // 10**9},"
        f"1,1,1,1,1\n"
        for _ in range(40)
    ]
    (folder / "extra.csv").write_text(HEADER + "".join(mixed))
    return folder


def same(a: ReplaySource, b: ReplaySource) -> None:
    assert repr(list(a)) == repr(list(b))  # repr: NaN cells compare equal
    assert a.problems == b.problems
    assert a.spacing() == b.spacing()
    assert a.symbols == b.symbols
    assert a.rows_read == b.rows_read
    assert a.timestamps().tolist() == [bar.ts for bar, _ in b]


def read_as_window_reads(
    folder: Path, whole: ReplaySource, start_ns: int | None, end_ns: int | None, **kw: Any
) -> ReplaySource | None:
    """`folder` read with the range; None when that read is refused, after checking that
    `whole.window` of the range is refused with the same message."""
    try:
        return ReplaySource(folder, start_ns=start_ns, end_ns=end_ns, **kw)
    except SourceError as e:
        refused = str(e)
    with pytest.raises(SourceError) as cut:
        whole.window(start_ns, end_ns)
    assert str(cut.value) == refused
    return None


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 5),
    start=st.none() | st.integers(-5, 85),
    end=st.none() | st.integers(-5, 85),
)
def test_a_window_is_the_source_read_with_that_range(
    tmp_path_factory: pytest.TempPathFactory, seed: int, start: int | None, end: int | None
) -> None:
    folder = messy_folder(tmp_path_factory.mktemp("w") / "data", seed)
    start_ns = None if start is None else T0 + start * NS_PER_MINUTE
    end_ns = None if end is None else T0 + end * NS_PER_MINUTE
    whole = ReplaySource(folder, reusable=True)
    reasons = {p.reason for p in whole.problems}
    assert reasons == {"unparseable_time", "unparseable_value"}  # the data has both kinds
    direct = read_as_window_reads(folder, whole, start_ns, end_ns)
    if direct is None:
        return
    same(whole.window(start_ns, end_ns), direct)
    # The whole parse still reads as a source without a range, and cuts again.
    same(whole, ReplaySource(folder))
    same(whole.window(start_ns, end_ns), direct)


def test_window_needs_a_reusable_source(tmp_path: Path) -> None:
    folder = messy_folder(tmp_path / "data", 0)
    with pytest.raises(ValueError, match="reusable=True"):
        ReplaySource(folder).window(None, None)


def test_a_window_checks_the_timeframe(tmp_path: Path) -> None:
    folder = messy_folder(tmp_path / "data", 0)
    with pytest.raises(SourceError, match="1Day"):
        ReplaySource(folder, reusable=True).window(None, None, "1Day")
