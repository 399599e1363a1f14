"""Bar timeframes, and the spacing of the bars a source actually holds.

A timeframe is the interval of the bars the strategies see (``data.timeframe``). A replay source
may hold bars of another spacing: finer bars can be aggregated up to the timeframe
(`feeds.aggregator`), coarser ones cannot be split. `bar_spacing_ns` finds the spacing of a
source's bars from their timestamps, and `spacing_problem` says, in words naming both, when a
timeframe cannot be built from bars of that spacing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeAlias

import numpy as np

from feeds.bar import NS_PER_DAY, NS_PER_MINUTE, NS_PER_SECOND

Timeframe: TypeAlias = Literal["1Min", "5Min", "15Min", "30Min", "1Hour", "1Day"]

TIMEFRAME_NS: Mapping[Timeframe, int] = {
    "1Min": NS_PER_MINUTE,
    "5Min": 5 * NS_PER_MINUTE,
    "15Min": 15 * NS_PER_MINUTE,
    "30Min": 30 * NS_PER_MINUTE,
    "1Hour": 60 * NS_PER_MINUTE,
    "1Day": NS_PER_DAY,
}
"""The nominal length of each timeframe's bar in ns (a daily bar covers one session)."""

# Intraday buckets start at the 09:30 open (or on the clock): bars finer than the timeframe
# fill its buckets exactly only if they also tile the half hour.
_HALF_HOUR_NS = 30 * NS_PER_MINUTE
_UNITS = ((NS_PER_DAY, "day"), (3_600 * NS_PER_SECOND, "hour"), (NS_PER_MINUTE, "minute"))


def timeframe_ns(timeframe: Timeframe) -> int:
    """The nominal length of a `timeframe` bar in ns."""
    return TIMEFRAME_NS[timeframe]


def bar_spacing_ns(ts_ns: Any, groups: Any = None) -> int | None:
    """The spacing of bars: the most common positive gap between consecutive bars of a symbol.

    The most common gap, not the smallest: sparse minute data (a minute with no trade has no
    bar) still has mostly 1-minute gaps, weekends and holidays are rare gaps of daily data, and
    one stray row does not change the answer. Daily bars stamped at New York midnight are 24 h
    apart between weekdays (daylight saving changes on a Sunday). Ties go to the smaller gap.

    Args:
        ts_ns: bar start times, UTC ns (a sequence or a numpy array of int64), in any order.
        groups: the symbol (or a code for it) of each bar, same length; None: one symbol.

    Returns:
        The spacing in ns, or None if no symbol has two bars at distinct times.
    """
    ts = np.asarray(ts_ns, dtype=np.int64)
    if groups is None:
        ts = np.sort(ts)
        gaps = np.diff(ts)
    else:
        keys = np.asarray(groups)
        if keys.shape != ts.shape:
            raise ValueError(f"groups has {keys.size} values for {ts.size} timestamps")
        # A source's rows are in time order within each symbol: a stable sort by symbol keeps
        # that order and is much cheaper than sorting by (symbol, time).
        order = np.argsort(keys, kind="stable")
        same = keys[order][1:] == keys[order][:-1]
        gaps = np.diff(ts[order])[same]
        if (gaps < 0).any():
            order = np.lexsort((ts, keys))
            gaps = np.diff(ts[order])[same]
    gaps = gaps[gaps > 0]
    if gaps.size == 0:
        return None
    values, counts = np.unique(gaps, return_counts=True)
    # np.unique sorts the values: argmax takes the first (smallest) of equally common gaps.
    return int(values[int(np.argmax(counts))])


def describe_spacing(spacing_ns: int) -> str:
    """A spacing in words: ``1 minute``, ``5 minutes``, ``1 hour``, ``1 day``, ``90 seconds``."""
    for unit_ns, name in _UNITS:
        if spacing_ns >= unit_ns and spacing_ns % unit_ns == 0:
            count = spacing_ns // unit_ns
            return f"{count} {name}" if count == 1 else f"{count} {name}s"
    if spacing_ns % NS_PER_SECOND == 0:
        count = spacing_ns // NS_PER_SECOND
        return f"{count} second" if count == 1 else f"{count} seconds"
    return f"{spacing_ns} ns"


def spacing_problem(timeframe: Timeframe, spacing_ns: int) -> str | None:
    """Why bars of `timeframe` cannot be built from bars `spacing_ns` apart, or None if they can.

    They can when the spacing is the timeframe's own, or when finer bars tile the timeframe's
    buckets: the spacing divides half an hour (buckets start at 09:30 New York) and the
    timeframe's length. A daily timeframe takes daily bars or such intraday bars.

    Returns:
        A sentence naming both, e.g. ``the timeframe 1Min is finer than the data, whose bars
        are 1 day apart``; None when the timeframe can be built.
    """
    if spacing_ns <= 0:
        raise ValueError(f"spacing_ns must be > 0, got {spacing_ns}")
    wanted = TIMEFRAME_NS[timeframe]
    spacing = describe_spacing(spacing_ns)
    if spacing_ns == wanted:
        return None
    if spacing_ns > wanted:
        return f"the timeframe {timeframe} is finer than the data, whose bars are {spacing} apart"
    if _HALF_HOUR_NS % spacing_ns or (timeframe != "1Day" and wanted % spacing_ns):
        return (
            f"the timeframe {timeframe} cannot be built from the data's bars, {spacing} apart: "
            "they do not tile its buckets"
        )
    return None
