"""SessionCalendar: regular sessions, holidays, early closes, DST and lazy year ranges."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from feeds.calendar import SessionCalendar, build_ahead

NY = ZoneInfo("America/New_York")


def ny_ns(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=NY).timestamp()) * 10**9


def utc_ns(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC).timestamp()) * 10**9


def test_regular_day_bounds_in_winter_and_summer() -> None:
    cal = SessionCalendar()
    assert cal.bounds(ny_ns(2024, 1, 2, 12)) == (utc_ns(2024, 1, 2, 14, 30), utc_ns(2024, 1, 2, 21))
    assert cal.bounds(ny_ns(2024, 7, 1, 12)) == (utc_ns(2024, 7, 1, 13, 30), utc_ns(2024, 7, 1, 20))


def test_holiday_and_weekend_have_no_session() -> None:
    cal = SessionCalendar()
    assert cal.bounds(ny_ns(2024, 11, 28, 10)) is None  # Thanksgiving
    assert cal.bounds(ny_ns(2024, 11, 30, 10)) is None  # Saturday
    assert not cal.is_session(dt.date(2024, 11, 28))
    assert cal.is_session(dt.date(2024, 11, 29))


def test_early_close_is_13_00_new_york() -> None:
    cal = SessionCalendar()
    assert cal.bounds(ny_ns(2024, 11, 29, 9, 30)) == (
        ny_ns(2024, 11, 29, 9, 30),
        ny_ns(2024, 11, 29, 13),
    )


def test_bounds_use_the_new_york_date_not_the_utc_date() -> None:
    cal = SessionCalendar()
    # 23:30 NY on Friday 2024-11-29 is already Saturday in UTC.
    assert cal.bounds(ny_ns(2024, 11, 29, 23, 30)) == (
        ny_ns(2024, 11, 29, 9, 30),
        ny_ns(2024, 11, 29, 13),
    )
    # 00:30 NY on Monday 2024-12-02 is still Monday; 20:00 NY Sunday is Monday in UTC.
    assert cal.bounds(ny_ns(2024, 12, 1, 20)) is None


def test_dates_back_to_1990_and_range_extension() -> None:
    cal = SessionCalendar()
    assert cal.bounds(ny_ns(2024, 1, 2, 12)) is not None
    assert cal.bounds(ny_ns(1990, 1, 2, 12)) == (ny_ns(1990, 1, 2, 9, 30), ny_ns(1990, 1, 2, 16))
    assert cal.bounds(ny_ns(1990, 1, 1, 12)) is None  # New Year's Day
    assert cal.bounds(ny_ns(2024, 11, 29, 12)) == (
        ny_ns(2024, 11, 29, 9, 30),
        ny_ns(2024, 11, 29, 13),
    )


def test_sessions_skip_holidays_and_include_early_closes() -> None:
    cal = SessionCalendar()
    got = cal.sessions(dt.date(2024, 11, 27), 3)
    assert got == [
        (ny_ns(2024, 11, 27, 9, 30), ny_ns(2024, 11, 27, 16)),
        (ny_ns(2024, 11, 29, 9, 30), ny_ns(2024, 11, 29, 13)),
        (ny_ns(2024, 12, 2, 9, 30), ny_ns(2024, 12, 2, 16)),
    ]


def test_sessions_span_years() -> None:
    cal = SessionCalendar()
    got = cal.sessions(dt.date(2023, 12, 28), 4)
    assert [dt.datetime.fromtimestamp(o / 1e9, NY).date() for o, _ in got] == [
        dt.date(2023, 12, 28),
        dt.date(2023, 12, 29),
        dt.date(2024, 1, 2),
        dt.date(2024, 1, 3),
    ]
    assert len(cal.sessions(dt.date(2020, 1, 1), 1000)) == 1000


def test_extended_bounds_are_4_to_20_on_session_days() -> None:
    cal = SessionCalendar()
    assert cal.extended_bounds(ny_ns(2024, 1, 2, 12)) == (
        ny_ns(2024, 1, 2, 4),
        ny_ns(2024, 1, 2, 20),
    )
    assert cal.extended_bounds(ny_ns(2024, 11, 28, 12)) is None


def test_unknown_calendar_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown exchange calendar"):
        SessionCalendar("NOPE")


def test_a_calendar_built_ahead_is_the_one_a_later_instance_reads() -> None:
    ts = int(dt.datetime(2031, 3, 14, 15, 0, tzinfo=dt.UTC).timestamp()) * 10**9
    build_ahead("XNYS", ts)
    first, second = SessionCalendar("XNYS"), SessionCalendar("XNYS")
    assert first.bounds(ts) == second.bounds(ts) is not None
    assert first._by_day is second._by_day  # built once, shared (never mutated)
