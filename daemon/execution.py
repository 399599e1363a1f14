"""The `execution:` section: when the strategies decide, and how their orders trade.

`data.timeframe` is the bar the strategies see. Whatever the data (or Alpaca's minute stream)
delivers, finer bars are aggregated up to it (`feeds.aggregator`). The style says when a
decision is made and what kind of order carries it:

    bar_close     decide at the close of each bar, trade with day market orders: what minute and
                  intraday strategies do, and what a daily replay with `broker.fill_at` does.
    next_open     (1Day) decide on the completed daily bar after the close, and trade in the next
                  session's opening auction with `opg` market orders. Live, the orders are held
                  until Alpaca takes them (`opg_submit_at`, inside 19:00 to 09:28 New York); the
                  simulated broker fills them at the next session's open.
    before_close  (1Day) decide at `decide_at` on the daily bar built so far, and trade with
                  `cls` orders (the closing auction; Alpaca takes them until 15:50) or day
                  market orders (`order: market`).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from brokers.auctions import (
    CLS_CUTOFF,
    NEW_YORK,
    OPG_CUTOFF,
    OPG_WINDOW_OPENS,
    SESSION_CLOSE,
    SESSION_OPEN,
    in_opg_window,
)
from brokers.orders import TimeInForce
from feeds.aggregator import Alignment
from feeds.bar import NS_PER_SECOND
from feeds.calendar import SessionCalendar
from feeds.errors import ConfigError
from feeds.timeframes import Timeframe

Style: TypeAlias = Literal["bar_close", "next_open", "before_close"]


class ExecutionSettings(BaseModel):
    """The `execution:` section (see the module docstring).

    Attributes:
        style: bar_close, next_open or before_close.
        decide_at: before_close: the New York time of the daily decision (quote it: "15:45").
        order: before_close: `cls` (closing auction) or `market` (day market orders).
        opg_submit_at: next_open: the New York time from which the held `opg` orders are sent
            (Alpaca takes them from 19:00 until 09:28); a decision made inside the window
            sends at once.
        align: intraday buckets (5Min ... 1Hour) start at the 09:30 open (`session`) or on the
            clock like Alpaca's own bars (`clock`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    style: Style = "bar_close"
    decide_at: dt.time | None = None
    order: Literal["cls", "market"] = "cls"
    opg_submit_at: dt.time = OPG_WINDOW_OPENS
    align: Alignment = "session"

    @field_validator("decide_at", "opg_submit_at", mode="before")
    @classmethod
    def _time_not_a_number(cls, value: object) -> object:
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(
                f"got the number {value}; write the time as a quoted string, e.g. '15:45' "
                "(unquoted, YAML reads 15:45 as the number 945)"
            )
        return value

    @field_validator("opg_submit_at")
    @classmethod
    def _opg_window(cls, value: dt.time) -> dt.time:
        if not in_opg_window(value):
            raise ValueError(
                f"{value:%H:%M} is outside Alpaca's window for opg orders "
                f"({OPG_WINDOW_OPENS:%H:%M} to {OPG_CUTOFF:%H:%M} New York)"
            )
        return value

    @model_validator(mode="after")
    def _decision_time(self) -> ExecutionSettings:
        at = self.decide_at
        if self.style != "before_close":
            if at is not None:
                raise ValueError(
                    f"decide_at: only used with style before_close (it is {self.style})"
                )
            return self
        if at is None:
            raise ValueError("decide_at: required with style before_close, e.g. '15:45'")
        if not SESSION_OPEN < at < SESSION_CLOSE:
            raise ValueError(
                f"decide_at: {at:%H:%M} is outside the session ({SESSION_OPEN:%H:%M} to "
                f"{SESSION_CLOSE:%H:%M} New York)"
            )
        if self.order == "cls" and at >= CLS_CUTOFF:
            raise ValueError(
                f"decide_at: {at:%H:%M} is after Alpaca's cut-off for cls orders "
                f"({CLS_CUTOFF:%H:%M} New York); decide earlier or set order: market"
            )
        return self

    def time_in_force(self) -> TimeInForce:
        """The time in force of the orders the rebalancer makes."""
        if self.style == "next_open":
            return TimeInForce.OPG
        if self.style == "before_close" and self.order == "cls":
            return TimeInForce.CLS
        return TimeInForce.DAY

    def describe(self, timeframe: Timeframe) -> str:
        """One line for `check-config`: the timeframe and when and how it trades."""
        if self.style == "next_open":
            how = (
                "decide after the close on the daily bar, trade at the next open (opg orders, "
                f"sent from {self.opg_submit_at:%H:%M} New York)"
            )
        elif self.style == "before_close":
            assert self.decide_at is not None
            kind = "cls orders" if self.order == "cls" else "day market orders"
            how = f"decide at {self.decide_at:%H:%M} New York on the partial daily bar ({kind})"
        else:
            how = "decide at each bar's close (day market orders)"
        align = f", buckets aligned to the {self.align}" if timeframe in _INTRADAY else ""
        return f"timeframe {timeframe}{align}; execution {self.style}: {how}"


_INTRADAY = ("5Min", "15Min", "30Min", "1Hour")


def decided_at(
    execution: ExecutionSettings, timeframe: Timeframe, slice_ts: int, calendar: SessionCalendar
) -> int | None:
    """When the slice stamped `slice_ts` was decided, if not at its bar's end: a daily bar
    decided before the close (`before_close`) on a session still open at `decide_at`. The audit
    replays a journal's daily slices with it, as the daemon and the replay decided them."""
    at = execution.decide_at
    if execution.style != "before_close" or timeframe != "1Day" or at is None:
        return None
    day = dt.datetime.fromtimestamp(slice_ts / NS_PER_SECOND, NEW_YORK).date()
    when = int(dt.datetime.combine(day, at, NEW_YORK).timestamp()) * NS_PER_SECOND
    bounds = calendar.bounds(when)
    return when if bounds is not None and bounds[0] <= when < bounds[1] else None


def check_execution(execution: ExecutionSettings, timeframe: Timeframe, where: str) -> None:
    """The style against the timeframe: next_open and before_close are daily styles.

    Args:
        where: the file that set `execution.style`, for the message.

    Raises:
        ConfigError: naming the key.
    """
    if execution.style != "bar_close" and timeframe != "1Day":
        raise ConfigError(
            f"{where}: execution.style: {execution.style} decides once a day and needs "
            f"data.timeframe: 1Day (it is {timeframe}); use bar_close for {timeframe} bars"
        )
