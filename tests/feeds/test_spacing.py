"""The typical spacing of bars, and data that does not fit `data.timeframe`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from feeds.bar import NS_PER_DAY, NS_PER_MINUTE
from feeds.errors import SourceError
from feeds.replay import ReplaySource
from feeds.spacing import TIMEFRAME_NS, check_spacing, describe_ns, fits, typical_spacing

ROOT = Path(__file__).resolve().parent.parent.parent
T0 = 1_704_205_800 * 10**9  # 2024-01-02 14:30 UTC


def spacing(ts: list[int], symbols: list[int]) -> dict[int, int]:
    return typical_spacing(np.array(ts, dtype=np.int64), np.array(symbols, dtype=np.int64))


def test_the_most_frequent_gap_per_symbol() -> None:
    m = NS_PER_MINUTE
    # Symbol 0: quiet minutes and a long gap do not hide its 1-minute bars.
    ts0 = [T0, T0 + m, T0 + 2 * m, T0 + 5 * m, T0 + 6 * m, T0 + 1000 * m]
    # Symbol 1: 5-minute bars, one duplicate time (a zero gap does not count).
    ts1 = [T0, T0 + 5 * m, T0 + 5 * m, T0 + 10 * m]
    ts = ts0 + ts1
    symbols = [0] * len(ts0) + [1] * len(ts1)
    assert spacing(ts, symbols) == {0: m, 1: 5 * m}
    # A row out of order adds odd gaps, which do not outnumber the usual one.
    ts0[3], ts0[4] = ts0[4], ts0[3]
    assert spacing(ts0, [0] * len(ts0)) == {0: m}


def test_ties_go_to_the_shorter_gap_and_lone_bars_are_left_out() -> None:
    m = NS_PER_MINUTE
    assert spacing([T0, T0 + m, T0 + 3 * m, T0 + 10 * m], [0, 0, 0, 1]) == {0: m}
    assert spacing([], []) == {}
    assert spacing([T0, T0], [0, 0]) == {}


def test_what_fits_a_timeframe() -> None:
    assert fits(NS_PER_MINUTE, "1Min")
    assert not fits(NS_PER_MINUTE, "5Min")
    assert not fits(NS_PER_DAY, "1Min")
    # Daily bars across a daylight-saving change are 23 or 25 hours apart.
    assert fits(NS_PER_DAY - 3600 * 10**9, "1Day")
    assert not fits(NS_PER_MINUTE, "1Day")
    assert not fits(7 * NS_PER_DAY, "1Day")
    assert all(fits(ns, tf) for tf, ns in TIMEFRAME_NS.items())


def test_check_spacing_names_the_symbol_both_spacings_and_a_fix() -> None:
    check_spacing("d", {"SPY": NS_PER_DAY}, "1Day")
    # Finer bars that tile the timeframe's buckets are aggregated up to it.
    check_spacing("d", {"SPY": NS_PER_DAY, "AAA": NS_PER_MINUTE}, "1Day")
    with pytest.raises(SourceError) as e:
        check_spacing("d", {"SPY": 5 * NS_PER_MINUTE, "AAA": NS_PER_DAY}, "5Min")
    assert str(e.value) == (
        "d: AAA's bars are 1 day apart, but data.timeframe is 5Min; set data.timeframe: 1Day"
    )
    with pytest.raises(SourceError, match="7 minutes apart"):
        check_spacing("d", {"SPY": 7 * NS_PER_MINUTE}, "1Hour")
    with pytest.raises(SourceError, match=r"bars are 7 days apart, .* give data.path bars of one"):
        check_spacing("d", {"SPY": 7 * NS_PER_DAY}, "1Day")


def test_describe_ns() -> None:
    assert describe_ns(NS_PER_MINUTE) == "1 minute"
    assert describe_ns(30 * NS_PER_MINUTE) == "30 minutes"
    assert describe_ns(2 * 3600 * 10**9) == "2 hours"
    assert describe_ns(NS_PER_DAY) == "1 day"
    assert describe_ns(NS_PER_DAY + 3600 * 10**9) == "25 hours"
    assert describe_ns(90 * 10**9) == "90 seconds"
    assert describe_ns(1_500_000_000) == "1.5 seconds"


@pytest.mark.parametrize(
    ("data", "timeframe", "message"),
    [
        ("daily", "1Min", "GOOG's bars are 1 day apart, but data.timeframe is 1Min"),
        ("daily", "1Hour", "GOOG's bars are 1 day apart, but data.timeframe is 1Hour"),
    ],
)
def test_the_samples_under_the_wrong_timeframe(data: str, timeframe: str, message: str) -> None:
    path = ROOT / "data" / "sample" / data
    with pytest.raises(SourceError, match=rf"^{path}: {message}"):
        ReplaySource(path, timeframe=timeframe)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeframe", ["5Min", "1Hour", "1Day"])
def test_minutes_may_be_aggregated_to_a_coarser_timeframe(timeframe: str) -> None:
    source = ReplaySource(ROOT / "data" / "sample" / "minute", timeframe=timeframe)  # type: ignore[arg-type]
    assert set(source.spacing().values()) == {NS_PER_MINUTE}


@pytest.mark.parametrize(("data", "timeframe"), [("minute", "1Min"), ("daily", "1Day")])
def test_the_samples_fit_their_timeframe(data: str, timeframe: str) -> None:
    source = ReplaySource(ROOT / "data" / "sample" / data, timeframe=timeframe)  # type: ignore[arg-type]
    gaps = set(source.spacing().values())
    assert gaps == {TIMEFRAME_NS[timeframe]}  # type: ignore[index]


def test_a_source_with_one_bar_per_symbol_passes(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("symbol,timestamp,open,high,low,close,volume\nSPY,2024-01-02,1,1,1,1,1\n")
    # One bar: no spacing to judge, under any timeframe.
    assert len(ReplaySource(f, timeframe="1Min")) == 1
