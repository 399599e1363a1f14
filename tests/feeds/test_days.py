"""Local days in UTC ns, across daylight-saving changes."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from feeds.bar import NS_PER_SECOND
from feeds.days import local_midnight_ns, next_local_midnight_ns

NY = ZoneInfo("America/New_York")


def utc_ns(year: int, month: int, day: int, hour: int, minute: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC).timestamp()) * (
        NS_PER_SECOND
    )


def test_midnight_in_winter_and_summer() -> None:
    assert local_midnight_ns(dt.date(2024, 1, 2), "America/New_York") == utc_ns(2024, 1, 2, 5)
    assert local_midnight_ns(dt.date(2024, 7, 2), NY) == utc_ns(2024, 7, 2, 4)


def test_the_next_midnight_across_the_spring_change() -> None:
    # 2024-03-09 23:30 EST; the night of the 10th has 23 hours.
    assert next_local_midnight_ns(utc_ns(2024, 3, 10, 4, 30), NY) == utc_ns(2024, 3, 10, 5)
    assert next_local_midnight_ns(utc_ns(2024, 3, 10, 5), NY) == utc_ns(2024, 3, 11, 4)
