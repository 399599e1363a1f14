"""The shipped NYSE session table agrees with exchange_calendars, and spares a run pandas."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import warnings
from pathlib import Path

import exchange_calendars as xcals
import pytest

from feeds import calendar_table
from feeds.calendar import SessionCalendar

ROOT = Path(__file__).resolve().parents[2]
NY_NOON = dt.time(12)


def xcals_bounds(first_year: int, last_year: int) -> dict[dt.date, tuple[int, int]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cal = xcals.get_calendar("XNYS", start=f"{first_year}-01-01", end=f"{last_year}-12-31")
        return {
            ts.date(): (int(o), int(c))
            for ts, o, c in zip(cal.sessions, cal.opens_nanos, cal.closes_nanos, strict=True)
        }


def test_every_day_of_the_table_matches_exchange_calendars() -> None:
    first, last, _ = calendar_table.read(calendar_table.TABLE_PATH.read_text(encoding="utf-8"))
    expected = xcals_bounds(first, last)
    cal = SessionCalendar("XNYS")
    tz = cal.tz
    day, checked = dt.date(first, 1, 1), 0
    while day.year <= last:
        noon = int(dt.datetime.combine(day, NY_NOON, tz).timestamp()) * 10**9
        assert cal.bounds(noon) == expected.get(day), day
        assert cal.is_session(day) == (day in expected), day
        day += dt.timedelta(days=1)
        checked += 1
    assert checked > 25_000
    assert cal.sessions(dt.date(2024, 11, 27), 2) == [
        expected[dt.date(2024, 11, 27)],
        expected[dt.date(2024, 11, 29)],
    ]


def test_the_shipped_table_is_what_the_generator_writes() -> None:
    shipped = calendar_table.TABLE_PATH.read_text(encoding="utf-8")
    first, last, _ = calendar_table.read(shipped)
    made = calendar_table.render(
        first, last, calendar_table.from_exchange_calendars(first, last), "x"
    )

    def rows(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("#")]

    assert rows(made) == rows(shipped), "regenerate: python -m feeds.calendar_table"


def test_years_outside_the_table_come_from_exchange_calendars() -> None:
    cal = SessionCalendar("XNYS")
    expected = xcals_bounds(1965, 1965)
    day = dt.date(1965, 3, 1)
    noon = int(dt.datetime.combine(day, NY_NOON, cal.tz).timestamp()) * 10**9
    assert cal.bounds(noon) == expected[day]
    # And back inside: still right (the built range is now the union of both).
    assert (
        cal.bounds(int(dt.datetime(2024, 11, 29, 12, tzinfo=cal.tz).timestamp()) * 10**9)
        == (expected_2024 := xcals_bounds(2024, 2024))[dt.date(2024, 11, 29)]
    )
    assert len(expected_2024) == 252


def test_a_table_with_a_gap_in_its_years_is_refused() -> None:
    with pytest.raises(ValueError, match="without a gap"):
        calendar_table.read("2020: 01-01 |\n2022: 01-01 |\n")


def test_a_replay_on_nyse_loads_neither_pandas_nor_exchange_calendars(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from daemon.cli import main\n"
        f"code = main(['replay', 'config/base.yaml', '--out', {str(tmp_path)!r},"
        " '--log-level', 'error'])\n"
        "print(code, 'pandas' in sys.modules, 'exchange_calendars' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines()[-1] == "0 False False"
