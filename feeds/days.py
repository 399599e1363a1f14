"""Local calendar days as UTC nanoseconds: where a trading day starts in an exchange's zone."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from feeds.bar import NS_PER_SECOND


def local_midnight_ns(day: dt.date, tz: str | dt.tzinfo) -> int:
    """UTC ns of 00:00 on `day` in zone `tz` (an IANA name or a tzinfo)."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    return int(dt.datetime.combine(day, dt.time(0), tzinfo=zone).timestamp()) * NS_PER_SECOND


def next_local_midnight_ns(ts: int, tz: dt.tzinfo) -> int:
    """The first instant of the local date after the one `ts` falls on, in UTC ns."""
    local = dt.datetime.fromtimestamp(ts // NS_PER_SECOND, tz)
    return local_midnight_ns(local.date() + dt.timedelta(days=1), tz)


RANGE_TZ = "America/New_York"
"""The zone of the days a run's range is given in (`run.start`, `run.end`, `--start`)."""


def describe_range(start_ns: int | None, end_ns: int | None) -> str:
    """A time range [start_ns, end_ns) for a person: New York dates where the bounds are New
    York midnights (the end shown inclusive, as `run.end` is), ISO UTC times otherwise."""
    first = "the first bar" if start_ns is None else _moment(start_ns, end=False)
    last = "the last bar" if end_ns is None else _moment(end_ns, end=True)
    return f"{first} .. {last}"


def describe_span(span: tuple[int, int] | None) -> str:
    """What the data covers, from its first to its last bar time (inclusive), in New York
    dates; the sentence after "the data"."""
    if span is None:
        return "has no bar with a readable time"
    first, last = (_local(ts).date().isoformat() for ts in span)
    return f"covers {first} .. {last}"


def _moment(ts: int, *, end: bool) -> str:
    local = _local(ts)
    if local.time() == dt.time(0) and ts % NS_PER_SECOND == 0:
        day = local.date() - dt.timedelta(days=1) if end else local.date()
        return day.isoformat()
    utc = dt.datetime.fromtimestamp(ts // NS_PER_SECOND, dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ") + (" (excluded)" if end else "")


def _local(ts: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts // NS_PER_SECOND, ZoneInfo(RANGE_TZ))
