"""The warm-up of an aggregated timeframe hands the event loop back while it aggregates."""

from __future__ import annotations

import asyncio

import pytest

from daemon.execution import ExecutionSettings
from daemon.live import market, turns
from daemon.live.buckets import LiveBuckets
from feeds.aggregator import BarAggregator
from feeds.bar import Bar
from feeds.calendar import SessionCalendar
from tests.feeds.test_aggregator import ny, session_minutes

SYMBOLS = [f"S{i:02d}" for i in range(8)]


def week_of_minutes() -> list[Bar]:
    """Five sessions of minutes for every symbol, in time order."""
    minutes: list[Bar] = []
    for day in range(4, 9):  # 2024-03-04 .. 08
        per_symbol = [
            list(session_minutes(ny(2024, 3, day, 9, 30), ny(2024, 3, day, 16), symbol=s))
            for s in SYMBOLS
        ]
        minutes.extend(bar for same_time in zip(*per_symbol, strict=True) for bar in same_time)
    return minutes


async def test_aggregating_the_lookback_yields_and_builds_what_one_loop_builds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calendar = SessionCalendar()
    minutes = week_of_minutes()
    expected: list[Bar] = []
    plain = BarAggregator("1Hour", calendar)
    for bar in minutes:
        expected.extend(plain.add(bar))

    monkeypatch.setattr(turns, "WARM_UP_S", 0.0)  # every check ends a turn: 256 minutes each
    buckets = LiveBuckets(
        timeframe="1Hour", execution=ExecutionSettings(), calendar=calendar, grace_s=2.0
    )
    passes = 0
    done = asyncio.Event()

    async def other_task() -> None:
        nonlocal passes
        while not done.is_set():
            passes += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(other_task())
    await asyncio.sleep(0)  # the other task is running
    before = passes
    completed = await market._aggregate(minutes, buckets)
    done.set()
    await ticker

    assert completed == expected
    # Seven buckets a session (the last one 15:30-16:00), each completed by a later minute:
    # the last session's last bucket waits for the clock.
    assert len(expected) == (5 * 7 - 1) * len(SYMBOLS)
    # The loop ran other tasks at each turn's end, not once the aggregation was over.
    assert passes - before >= len(minutes) // 256
