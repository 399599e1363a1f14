"""Exchange sessions (holidays, early closes) as UTC ns bounds.

NYSE (XNYS, the default) is read from the shipped table `feeds/xnys_sessions.txt` for the years
it covers (see `feeds.calendar_table`): no pandas, no `exchange_calendars`, a few milliseconds.
Other exchanges, and NYSE outside the table's years, come from `exchange_calendars`. The
sessions are built lazily, for whole years, and only for the years asked about; asking about a
date outside the built range rebuilds it over the union of both ranges. Lookups for one day are
cached, because consecutive bars almost always fall on the same day.
"""

from __future__ import annotations

import datetime as dt
import functools
import warnings
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from feeds import calendar_table
from feeds.bar import NS_PER_SECOND

# Years built beyond those asked for, on each side.
_MARGIN_YEARS = 5
# Extended hours (pre-market and after-hours) in exchange-local time.
_EXTENDED_OPEN = dt.time(4, 0)
_EXTENDED_CLOSE = dt.time(20, 0)


class SessionCalendar:
    """Regular sessions of one exchange, by exchange-local date.

    Args:
        name: an `exchange_calendars` code, ``XNYS`` (NYSE) by default.

    Raises:
        ValueError: the name is not a known calendar, or a date is asked for that
            exchange_calendars does not cover (XNYS starts in 1885).
    """

    def __init__(self, name: str = "XNYS") -> None:
        if name != _SHIPPED:
            # Imported here: it loads pandas (most of a second), which only a calendar other
            # than the shipped one needs, not every module that imports this one.
            import exchange_calendars as xcals

            if name not in xcals.get_calendar_names():
                raise ValueError(f"unknown exchange calendar {name!r}")
        self.name = name
        self._first_year = 0
        self._last_year = -1
        # Epoch day (exchange-local date) -> (open_ns, close_ns) of the regular session.
        self._by_day: dict[int, tuple[int, int]] = {}
        self._session_days: np.ndarray[Any, np.dtype[np.int64]] = np.empty(0, np.int64)
        self._tz: dt.tzinfo = _SHIPPED_TZ if name == _SHIPPED else dt.UTC
        # Cache of the last local day looked up: [day_start_ns, day_end_ns) and its bounds.
        self._day_lo = 0
        self._day_hi = 0
        self._day_bounds: tuple[int, int] | None = None
        self._day_ordinal = 0

    @property
    def tz(self) -> dt.tzinfo:
        """The exchange's time zone (America/New_York for XNYS)."""
        return self._tz

    def bounds(self, ts_ns: int) -> tuple[int, int] | None:
        """The regular session on the exchange-local date of `ts_ns`.

        Returns:
            (open_ns, close_ns) in UTC ns, or None if that date is not a session. Early
            closes are included (2024-11-29 closes at 13:00 New York time).
        """
        if self._day_lo <= ts_ns < self._day_hi:
            return self._day_bounds
        self._load_day(ts_ns)
        return self._day_bounds

    def extended_bounds(self, ts_ns: int) -> tuple[int, int] | None:
        """04:00-20:00 exchange-local on the date of `ts_ns` if it is a session, else None."""
        if not (self._day_lo <= ts_ns < self._day_hi):
            self._load_day(ts_ns)
        if self._day_bounds is None:
            return None
        day = dt.date.fromordinal(self._day_ordinal)
        return (
            self._local_ns(dt.datetime.combine(day, _EXTENDED_OPEN)),
            self._local_ns(dt.datetime.combine(day, _EXTENDED_CLOSE)),
        )

    def day_window(self, ts_ns: int) -> tuple[int, int]:
        """[start_ns, end_ns) of the exchange-local day containing `ts_ns` (23-25 h with DST)."""
        if not (self._day_lo <= ts_ns < self._day_hi):
            self._load_day(ts_ns)
        return self._day_lo, self._day_hi

    def is_session(self, day: dt.date) -> bool:
        """Whether `day` (exchange-local date) has a regular session."""
        self._ensure_years(day.year, day.year)
        return _epoch_day(day) in self._by_day

    def sessions(self, start: dt.date, count: int) -> list[tuple[int, int]]:
        """The next `count` sessions from `start` (inclusive), as (open_ns, close_ns) in UTC ns.

        Raises:
            ValueError: `count` is negative.
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        # ~252 sessions a year: build enough years up front, then extend if still short.
        last_year = start.year + count // 240 + 1
        while True:
            self._ensure_years(start.year, last_year)
            first = int(np.searchsorted(self._session_days, _epoch_day(start)))
            days = self._session_days[first : first + count]
            if len(days) == count:
                return [self._by_day[int(d)] for d in days]
            last_year += 1

    def _load_day(self, ts_ns: int) -> None:
        # The local date is within a day of the UTC date: build those years first (the time
        # zone is only known once the calendar is built).
        utc_day = dt.datetime.fromtimestamp(ts_ns // NS_PER_SECOND, dt.UTC).date()
        one_day = dt.timedelta(days=1)
        self._ensure_years((utc_day - one_day).year, (utc_day + one_day).year)
        local = dt.datetime.fromtimestamp(ts_ns // NS_PER_SECOND, self._tz)
        day = local.date()
        self._ensure_years(day.year, day.year)
        self._day_lo = self._local_ns(dt.datetime.combine(day, dt.time()))
        self._day_hi = self._local_ns(dt.datetime.combine(day + dt.timedelta(days=1), dt.time()))
        self._day_bounds = self._by_day.get(_epoch_day(day))
        self._day_ordinal = day.toordinal()

    def _local_ns(self, naive_local: dt.datetime) -> int:
        return int(naive_local.replace(tzinfo=self._tz).timestamp()) * NS_PER_SECOND

    def _ensure_years(self, first_year: int, last_year: int) -> None:
        if self._first_year <= first_year and last_year <= self._last_year:
            return
        if self._last_year >= self._first_year:
            first_year = min(first_year, self._first_year)
            last_year = max(last_year, self._last_year)
        built = _built(self.name, first_year, last_year)
        self._tz = built.tz
        self._session_days = built.session_days
        self._by_day = built.by_day
        self._first_year = built.first_year
        self._last_year = built.last_year
        self._day_lo = self._day_hi = 0


@dataclass(frozen=True, slots=True)
class _Built:
    """Sessions of whole years, built once per process and shared by every calendar of the
    exchange (read only): a walk-forward worker makes a calendar for each of its replays."""

    tz: dt.tzinfo
    session_days: np.ndarray[Any, np.dtype[np.int64]]
    by_day: dict[int, tuple[int, int]]
    first_year: int
    last_year: int


_BUILT: dict[str, _Built] = {}


def _built(name: str, first_year: int, last_year: int) -> _Built:
    """The sessions of `name` over at least [first_year, last_year], built if not held."""
    held = _BUILT.get(name)
    if held is not None and held.first_year <= first_year and last_year <= held.last_year:
        return held
    if name == _SHIPPED:
        table_first, table_last, _ = _shipped_table()
        if table_first <= first_year and last_year <= table_last:
            built = _from_table(
                max(first_year - _MARGIN_YEARS, table_first),
                min(last_year + _MARGIN_YEARS, table_last),
            )
            _BUILT[name] = built
            return built
    import exchange_calendars as xcals

    with warnings.catch_warnings():
        # exchange_calendars triggers pandas deprecation warnings inside its own code; they
        # are not ours to fix and would fail runs that turn warnings into errors.
        warnings.simplefilter("ignore")
        # A build costs about the same (~0.4 s) for one year or forty: build a margin of
        # years around the request, so a run crossing New Year does not build again.
        try:
            cal = xcals.get_calendar(
                name,
                start=f"{first_year - _MARGIN_YEARS}-01-01",
                end=f"{last_year + _MARGIN_YEARS}-12-31",
            )
            first_year -= _MARGIN_YEARS
            last_year += _MARGIN_YEARS
        except (ValueError, xcals.errors.CalendarError):
            try:
                cal = xcals.get_calendar(
                    name, start=f"{first_year}-01-01", end=f"{last_year}-12-31"
                )
            except (ValueError, xcals.errors.CalendarError) as e:
                raise ValueError(f"{name}: no calendar for {first_year}-{last_year}: {e}") from e
        session_days = cal.sessions.values.astype("datetime64[D]").astype(np.int64)
        opens = np.asarray(cal.opens_nanos, dtype=np.int64)
        closes = np.asarray(cal.closes_nanos, dtype=np.int64)
    built = _Built(
        tz=cal.tz,
        session_days=session_days,
        by_day={
            int(d): (int(o), int(c))
            for d, o, c in zip(session_days.tolist(), opens.tolist(), closes.tolist(), strict=True)
        },
        first_year=first_year,
        last_year=last_year,
    )
    _BUILT[name] = built
    return built


def _from_table(first_year: int, last_year: int) -> _Built:
    """NYSE's sessions of whole years from the shipped table: weekdays at regular hours but for
    the days it names."""
    _, _, (closed, special) = _shipped_table()
    shut = set(closed)
    by_day: dict[int, tuple[int, int]] = {}
    day = dt.date(first_year, 1, 1)
    one_day = dt.timedelta(days=1)
    regular = (calendar_table.REGULAR_OPEN, calendar_table.REGULAR_CLOSE)
    while day.year <= last_year:
        hours = special.get(day)
        if hours is None and day.weekday() < 5 and day not in shut:
            hours = regular
        if hours is not None:
            midnight = dt.datetime(day.year, day.month, day.day, tzinfo=_SHIPPED_TZ)
            by_day[_epoch_day(day)] = (
                _at_minute(midnight, hours[0]),
                _at_minute(midnight, hours[1]),
            )
        day += one_day
    return _Built(
        tz=_SHIPPED_TZ,
        session_days=np.fromiter(by_day, dtype=np.int64, count=len(by_day)),
        by_day=by_day,
        first_year=first_year,
        last_year=last_year,
    )


# The calendar shipped as a table (feeds/xnys_sessions.txt), and its time zone.
_SHIPPED = "XNYS"
_SHIPPED_TZ = ZoneInfo("America/New_York")


@functools.cache
def _shipped_table() -> tuple[int, int, calendar_table.Exceptions]:
    return calendar_table.read(calendar_table.TABLE_PATH.read_text(encoding="utf-8"))


def _at_minute(midnight: dt.datetime, minute: int) -> int:
    """UTC ns of `minute` minutes after local `midnight` (as a wall-clock time)."""
    local = midnight.replace(hour=minute // 60, minute=minute % 60)
    return int(local.timestamp()) * NS_PER_SECOND


def build_ahead(name: str, ts_ns: int) -> None:
    """Build calendar `name` around `ts_ns` now (on a worker thread, say), so that a
    SessionCalendar's first look at that time finds it built instead of building it."""
    SessionCalendar(name).bounds(ts_ns)


def _epoch_day(day: dt.date) -> int:
    return day.toordinal() - _EPOCH_ORDINAL


_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
