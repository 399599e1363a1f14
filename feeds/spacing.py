"""Bar timeframes, and whether a source's bars are spaced as its timeframe says.

A symbol's typical spacing is the most frequent gap between its consecutive distinct bar times:
minute data with quiet minutes, weekends and overnight gaps still has 1 minute as its most
frequent gap, daily data 1 day. Data fits a timeframe when that gap is the timeframe's interval
(within an hour for daily bars, whose gaps cross daylight-saving changes).

`check_spacing` is the one place that decides: bars of the timeframe's own spacing fit, and so
do finer bars that tile its buckets (`feeds.timeframes.spacing_problem`), which the replay
aggregates up to the timeframe (`feeds.aggregator`). Coarser bars never fit.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from feeds.bar import NS_PER_DAY, NS_PER_MINUTE
from feeds.errors import SourceError
from feeds.timeframes import TIMEFRAME_NS, Timeframe, spacing_problem
from feeds.timestamps import I64Array

__all__ = [
    "SAMPLE_GAPS",
    "TIMEFRAME_NS",
    "Timeframe",
    "check_spacing",
    "describe_ns",
    "finer",
    "fits",
    "typical_spacing",
]


_DAY_SLACK_NS = 60 * NS_PER_MINUTE  # a daylight-saving change makes a day 23 or 25 hours
SAMPLE_GAPS = 100_000  # gaps judged per symbol: a year of minute bars is about 98,000


def typical_spacing(ts: I64Array, symbols: I64Array) -> dict[int, int]:
    """The most frequent gap between consecutive distinct times of each symbol, in ns.

    Args:
        ts: bar times, grouped by symbol (each symbol's bars contiguous), in time order within
            a symbol (a row out of order only adds an odd gap or two, which does not change the
            most frequent one).
        symbols: the symbol code of each bar.

    Returns:
        symbol code -> gap (ties go to the shorter gap), judged on the symbol's first
        `SAMPLE_GAPS` gaps; symbols with fewer than two distinct times are left out.
    """
    if len(ts) < 2:
        return {}
    starts = np.flatnonzero(np.r_[True, symbols[1:] != symbols[:-1]])
    ends = np.r_[starts[1:], len(ts)]
    out: dict[int, int] = {}
    for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
        gaps = np.diff(ts[lo : min(hi, lo + SAMPLE_GAPS + 1)])
        gaps = gaps[gaps > 0]
        if len(gaps) == 0:
            continue
        values, counts = np.unique(gaps, return_counts=True)
        # argmax takes the first of the most frequent: the shortest gap (values are sorted).
        out[int(symbols[lo])] = int(values[int(np.argmax(counts))])
    return out


def fits(spacing_ns: int, timeframe: Timeframe) -> bool:
    """Whether bars `spacing_ns` apart are bars of `timeframe`."""
    bar_ns = TIMEFRAME_NS[timeframe]
    if bar_ns >= NS_PER_DAY:
        return abs(spacing_ns - bar_ns) <= _DAY_SLACK_NS
    return spacing_ns == bar_ns


def finer(spacing_ns: int, timeframe: Timeframe) -> bool:
    """Whether bars `spacing_ns` apart are finer than `timeframe` and can be aggregated to it."""
    return spacing_ns < TIMEFRAME_NS[timeframe] and spacing_problem(timeframe, spacing_ns) is None


def check_spacing(where: str, spacing: Mapping[str, int], timeframe: Timeframe) -> None:
    """Refuse data whose bars are not spaced as `timeframe` says.

    Args:
        where: the data's path, for the message.
        spacing: symbol -> typical spacing in ns (`typical_spacing`).
        timeframe: the configured ``data.timeframe``.

    Raises:
        SourceError: naming a symbol, its spacing and the timeframe.
    """
    for symbol, gap in sorted(spacing.items()):
        if not fits(gap, timeframe) and not finer(gap, timeframe):
            matching = [name for name in TIMEFRAME_NS if fits(gap, name)]
            hint = (
                f"set data.timeframe: {matching[0]}"
                if matching
                else "give data.path bars of one of the timeframes " + ", ".join(TIMEFRAME_NS)
            )
            raise SourceError(
                f"{where}: {symbol}'s bars are {describe_ns(gap)} apart, but data.timeframe is "
                f"{timeframe}; {hint}"
            )


def describe_ns(ns: int) -> str:
    """A duration for a person: ``1 minute``, ``5 minutes``, ``1 day``, ``90 seconds``."""
    for unit_ns, name in ((NS_PER_DAY, "day"), (3600 * 10**9, "hour"), (NS_PER_MINUTE, "minute")):
        if ns >= unit_ns and ns % unit_ns == 0:
            n = ns // unit_ns
            return f"{n} {name}" + ("s" if n != 1 else "")
    if ns >= NS_PER_DAY:
        return f"{ns / NS_PER_DAY:.2f} days"
    if ns % 10**9 == 0:
        return f"{ns // 10**9} seconds"
    return f"{ns / 10**9:g} seconds"
