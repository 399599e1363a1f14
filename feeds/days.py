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
