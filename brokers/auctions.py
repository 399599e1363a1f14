"""When Alpaca takes auction orders: `opg` (market-on-open) and `cls` (market-on-close).

Alpaca's documented windows (New York time; the sandbox enforces the same, and the daemon holds
its orders until they are open):

    opg  taken from 19:00 until 09:28 of the next session (for that session's opening auction);
         between 09:28 and 19:00 rejected.
    cls  taken until 15:50 of the session (for its closing auction); between 15:50 and 19:00
         rejected; from 19:00 on, queued for the next session's close.

Pure: times in, answers out.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from feeds.bar import NS_PER_SECOND

NEW_YORK = ZoneInfo("America/New_York")
OPG_WINDOW_OPENS = dt.time(19, 0)
OPG_CUTOFF = dt.time(9, 28)
CLS_CUTOFF = dt.time(15, 50)
SESSION_OPEN = dt.time(9, 30)
SESSION_CLOSE = dt.time(16, 0)


def local_time(ts_ns: int) -> dt.time:
    """The New York wall time at `ts_ns` (UTC ns)."""
    return dt.datetime.fromtimestamp(ts_ns / NS_PER_SECOND, NEW_YORK).time()


def in_opg_window(at: dt.time) -> bool:
    """Whether Alpaca takes an `opg` order at New York time `at`."""
    return at >= OPG_WINDOW_OPENS or at < OPG_CUTOFF


def in_cls_window(at: dt.time) -> bool:
    """Whether Alpaca takes a `cls` order at New York time `at` (for a closing auction)."""
    return at < CLS_CUTOFF or at >= OPG_WINDOW_OPENS


def auction_refusal(time_in_force: str, ts_ns: int) -> str | None:
    """Why Alpaca would reject an auction order submitted at `ts_ns`, or None if it takes it."""
    at = local_time(ts_ns)
    if time_in_force == "opg" and not in_opg_window(at):
        return (
            f"opg orders are taken from 19:00 to 09:28 New York; it is {at:%H:%M} "
            "(the opening auction's cut-off has passed)"
        )
    if time_in_force == "cls" and not in_cls_window(at):
        return f"cls orders are taken until 15:50 New York; it is {at:%H:%M}"
    return None


def next_opg_window_ns(ts_ns: int) -> int:
    """The first instant at or after `ts_ns` when `opg` orders are taken."""
    moment = dt.datetime.fromtimestamp(ts_ns / NS_PER_SECOND, NEW_YORK)
    if in_opg_window(moment.time()):
        return ts_ns
    opens = dt.datetime.combine(moment.date(), OPG_WINDOW_OPENS, NEW_YORK)
    return int(opens.timestamp()) * NS_PER_SECOND
