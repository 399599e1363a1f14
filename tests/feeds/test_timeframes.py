"""Timeframes and the spacing of a source's bars: found from timestamps, named in words, and
checked against the timeframe the strategies want."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from feeds.bar import NS_PER_DAY, NS_PER_MINUTE, NS_PER_SECOND
from feeds.replay import ReplaySource
from feeds.timeframes import (
    TIMEFRAME_NS,
    Timeframe,
    bar_spacing_ns,
    describe_spacing,
    spacing_problem,
    timeframe_ns,
)
from tests.conftest import ROOT

NY = ZoneInfo("America/New_York")
M = NS_PER_MINUTE
HOUR = 60 * M


def ny(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=NY).timestamp()) * 10**9


def test_timeframe_lengths() -> None:
    assert timeframe_ns("1Min") == M
    assert timeframe_ns("1Hour") == HOUR
    assert timeframe_ns("1Day") == NS_PER_DAY
    assert list(TIMEFRAME_NS) == ["1Min", "5Min", "15Min", "30Min", "1Hour", "1Day"]


def test_spacing_of_the_shipped_sample_files() -> None:
    assert ReplaySource(ROOT / "data/sample/daily").spacing_ns() == NS_PER_DAY
    assert ReplaySource(ROOT / "data/sample/minute").spacing_ns() == M


def test_daily_bars_at_new_york_midnight_across_daylight_saving_are_one_day_apart() -> None:
    # Two weeks around the March 2024 change: Friday to Monday spans it (71 h).
    days = [ny(2024, 3, d) for d in (4, 5, 6, 7, 8, 11, 12, 13, 14, 15)]
    assert bar_spacing_ns(days) == NS_PER_DAY
    assert describe_spacing(NS_PER_DAY) == "1 day"


def test_sparse_minutes_and_a_stray_row_do_not_change_the_spacing() -> None:
    start = ny(2024, 3, 5, 9, 30)
    # A trade in about half the minutes: gaps of 1, 2, 3 ... minutes, mostly 1.
    rng = np.random.default_rng(5)
    sparse = [start + int(i) * M for i in np.flatnonzero(rng.random(390) < 0.5)]
    assert bar_spacing_ns(sparse) == M
    daily = [ny(2024, 3, d) for d in (4, 5, 6, 7, 8, 11, 12)]
    assert bar_spacing_ns([*daily, ny(2024, 3, 6, 0, 1)]) == NS_PER_DAY


def test_spacing_is_measured_per_symbol() -> None:
    # Two symbols 5 minutes apart each, interleaved 1 minute apart: 5 minutes per symbol.
    start = ny(2024, 3, 5, 9, 30)
    ts = [start + i * 5 * M for i in range(10)] + [start + M + i * 5 * M for i in range(10)]
    groups = ["AAA"] * 10 + ["BBB"] * 10
    assert bar_spacing_ns(ts) == M
    assert bar_spacing_ns(ts, groups) == 5 * M
    # In any order: rows going back in time within a symbol are sorted first.
    shuffled = np.random.default_rng(2).permutation(len(ts))
    assert bar_spacing_ns(np.array(ts)[shuffled], np.array(groups)[shuffled]) == 5 * M
    # Same timestamps for every symbol: no gap inside a symbol is 0.
    assert bar_spacing_ns([start, start, start + M, start + M], [1, 2, 1, 2]) == M


def test_no_spacing_without_two_bars_of_a_symbol() -> None:
    assert bar_spacing_ns([]) is None
    assert bar_spacing_ns([5]) is None
    assert bar_spacing_ns([5, 5]) is None
    assert bar_spacing_ns([1, 2], ["A", "B"]) is None
    with pytest.raises(ValueError, match="groups has 1 values for 2 timestamps"):
        bar_spacing_ns([1, 2], ["A"])


def test_ties_go_to_the_smaller_gap() -> None:
    assert bar_spacing_ns([0, M, 3 * M]) == M


@pytest.mark.parametrize(
    ("spacing", "words"),
    [
        (M, "1 minute"),
        (5 * M, "5 minutes"),
        (HOUR, "1 hour"),
        (2 * HOUR, "2 hours"),
        (NS_PER_DAY, "1 day"),
        (7 * NS_PER_DAY, "7 days"),
        (90 * NS_PER_SECOND, "90 seconds"),
        (NS_PER_SECOND, "1 second"),
        (1500, "1500 ns"),
    ],
)
def test_spacing_in_words(spacing: int, words: str) -> None:
    assert describe_spacing(spacing) == words


@pytest.mark.parametrize(
    ("timeframe", "spacing", "problem"),
    [
        ("1Min", M, None),
        ("1Day", NS_PER_DAY, None),
        ("1Day", M, None),
        ("1Day", 5 * M, None),
        ("1Hour", 5 * M, None),
        ("1Hour", 15 * M, None),
        ("15Min", 5 * M, None),
        ("1Min", NS_PER_DAY, "the timeframe 1Min is finer than the data, whose bars are 1 day"),
        ("1Hour", NS_PER_DAY, "the timeframe 1Hour is finer than the data, whose bars are 1 day"),
        ("15Min", HOUR, "the timeframe 15Min is finer than the data, whose bars are 1 hour apart"),
        ("1Day", HOUR, "the timeframe 1Day cannot be built from the data's bars, 1 hour apart"),
        ("1Hour", 7 * M, "the timeframe 1Hour cannot be built from the data's bars, 7 minutes"),
        ("15Min", 10 * M, "the timeframe 15Min cannot be built from the data's bars, 10 minutes"),
    ],
)
def test_spacing_problem_names_the_timeframe_and_the_spacing(
    timeframe: Timeframe, spacing: int, problem: str | None
) -> None:
    found = spacing_problem(timeframe, spacing)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(problem)


def test_spacing_problem_refuses_a_non_positive_spacing() -> None:
    with pytest.raises(ValueError, match="spacing_ns must be > 0"):
        spacing_problem("1Day", 0)


def test_replay_source_spacing_of_a_small_file(tmp_path: Path) -> None:
    f = tmp_path / "bars.csv"
    f.write_text(
        "symbol,timestamp,open,high,low,close,volume\n"
        "SPY,2024-01-02T14:30:00Z,1,1,1,1,1\n"
        "SPY,2024-01-02T15:30:00Z,1,1,1,1,1\n"
        "QQQ,2024-01-02T14:30:00Z,1,1,1,1,1\n"
    )
    assert ReplaySource(f).spacing_ns() == HOUR
    one = tmp_path / "one.csv"
    one.write_text("symbol,timestamp,open,high,low,close,volume\nSPY,2024-01-02,1,1,1,1,1\n")
    assert ReplaySource(one).spacing_ns() is None
