"""What the daemon tells its owner about: the notification events and the kinds they switch by.

The daemon hands these to `Notifications.notify` as they happen. Fills, rejections and the kill
switch's trip are the types the brokers and the risk gate already emit (passed on as they are);
the rest are defined here. Each event belongs to one `EventKind`, the unit a target switches on
or off and the unit repeated events are rate-limited by.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal, TypeAlias, assert_never

from brokers.orders import OrderFilled, OrderPartiallyFilled, OrderRejected
from portfolio.events import KillSwitchTripped

Stream: TypeAlias = Literal["feed", "broker"]
"""The market-data stream, or the broker's trade-update stream."""


class EventKind(enum.StrEnum):
    """The switches of a target (`notify.targets[].events`), one per kind of event."""

    START_STOP = "start_stop"
    KILL_SWITCH = "kill_switch"
    HALT_RESUME = "halt_resume"
    STREAM = "stream"
    JOURNAL = "journal"
    RECONCILIATION = "reconciliation"
    REJECTED = "rejected"
    FILLS = "fills"
    DAY_SUMMARY = "day_summary"
    TEST = "test"


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonStarted:
    """The daemon is up and about to trade (or track).

    Attributes:
        mode: paper, live, sim or track.
        account: the broker account's number, if known.
        symbols: the universe.
    """

    mode: str
    account: str | None = None
    symbols: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonStopped:
    """The daemon is stopping. `reason`: a signal name, "error: ...", "requested"."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KillSwitchReset:
    """An operator reset the kill switch: new exposure is allowed again."""

    by: str = "operator"


@dataclass(frozen=True, slots=True, kw_only=True)
class TradingHalted:
    """New orders are stopped (the control plane's halt)."""

    by: str = "operator"


@dataclass(frozen=True, slots=True, kw_only=True)
class TradingResumed:
    """Orders flow again after a halt."""

    by: str = "operator"


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamDown:
    """A stream went down. Reported once per outage; a repeat while down changes nothing.

    Nothing is sent at once: a target tells its owner only if the stream is still down after
    its `stream_down_s` while the market is open, and then tells again when it is back.
    """

    stream: Stream
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamRestored:
    """A stream that was down is up again."""

    stream: Stream


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalFailed:
    """The journal could not be written: state may not survive a restart."""

    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconciliationDiffered:
    """A reconciliation found the broker disagreeing with the daemon (which adopted the
    broker's view). `differences`: one line each, as the broker adapter words them."""

    differences: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DaySummary:
    """The end of a trading day.

    Attributes:
        day: the session's date (exchange time).
        pnl: equity change over the day, in account currency.
        equity: equity at the close.
        orders: orders sent during the day.
        fills: fills received.
        rejected: orders the broker rejected.
        max_drawdown: the day's worst drawdown from the high-water mark, a fraction.
    """

    day: date
    pnl: Decimal
    equity: Decimal
    orders: int
    fills: int
    rejected: int
    max_drawdown: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Probe:
    """`tradingd notify test`: proves a target is reachable; never switched off."""

    text: str = "test message: notifications from this daemon reach this channel"


NotifyEvent: TypeAlias = (
    DaemonStarted
    | DaemonStopped
    | KillSwitchTripped
    | KillSwitchReset
    | TradingHalted
    | TradingResumed
    | StreamDown
    | StreamRestored
    | JournalFailed
    | ReconciliationDiffered
    | OrderRejected
    | OrderFilled
    | OrderPartiallyFilled
    | DaySummary
    | Probe
)


def kind_of(event: NotifyEvent) -> EventKind:
    """The switch an event is under."""
    match event:
        case DaemonStarted() | DaemonStopped():
            return EventKind.START_STOP
        case KillSwitchTripped() | KillSwitchReset():
            return EventKind.KILL_SWITCH
        case TradingHalted() | TradingResumed():
            return EventKind.HALT_RESUME
        case StreamDown() | StreamRestored():
            return EventKind.STREAM
        case JournalFailed():
            return EventKind.JOURNAL
        case ReconciliationDiffered():
            return EventKind.RECONCILIATION
        case OrderRejected():
            return EventKind.REJECTED
        case OrderFilled() | OrderPartiallyFilled():
            return EventKind.FILLS
        case DaySummary():
            return EventKind.DAY_SUMMARY
        case Probe():
            return EventKind.TEST
        case _:
            assert_never(event)
