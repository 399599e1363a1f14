"""Events into words: the one line a person reads on a phone, and the data a webhook gets.

Plain text only (no Markdown or HTML): Slack, Discord and Telegram show it as it is, and a
symbol or a broker's message can never break the markup or ping a channel.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, assert_never

from brokers.orders import OrderFilled, OrderPartiallyFilled, OrderRejected
from daemon.service.notify.events import (
    DaemonStarted,
    DaemonStopped,
    DaySummary,
    EventKind,
    JournalFailed,
    KillSwitchReset,
    NotifyEvent,
    Probe,
    ReconciliationDiffered,
    StreamDown,
    StreamRestored,
    TradingHalted,
    TradingResumed,
    kind_of,
)
from portfolio.events import KillSwitchTripped

# A reconciliation can list every position; a phone needs the first few.
_MAX_DIFFERENCES = 5

NOUNS: dict[EventKind, str] = {
    EventKind.START_STOP: "start or stop notices",
    EventKind.KILL_SWITCH: "kill switch notices",
    EventKind.HALT_RESUME: "halt or resume notices",
    EventKind.STREAM: "stream notices",
    EventKind.JOURNAL: "journal failures",
    EventKind.RECONCILIATION: "reconciliations with differences",
    EventKind.REJECTED: "order rejections",
    EventKind.FILLS: "fills",
    EventKind.DAY_SUMMARY: "day summaries",
    EventKind.TEST: "test messages",
}
"""What `... and 12 more <noun> in the last 5 minutes` calls several events of a kind."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One notification, ready for any target.

    Attributes:
        kind: the switch it falls under.
        event: the event's type name ("OrderFilled"), or "Summary" for a rate limit's summary.
        text: the line a person reads (without the daemon's label).
        data: the event's fields as JSON-ready values (the generic webhook sends them).
        ts_ns: when the daemon noticed it (wall clock, UTC ns): a retried message may
            arrive minutes later.
    """

    kind: EventKind
    event: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)
    ts_ns: int = 0

    def with_prefix(self, line: str) -> Message:
        """The same message with a line in front (e.g. how many were dropped before it)."""
        return dataclasses.replace(self, text=f"{line}\n{self.text}")


def render(event: NotifyEvent, ts_ns: int = 0) -> Message:
    """The message of an event noticed at `ts_ns` (stream outages are worded by the stream
    watch instead)."""
    return Message(
        kind=kind_of(event),
        event=type(event).__name__,
        text=_text(event),
        data=_data(event),
        ts_ns=ts_ns,
    )


def duration(seconds: float) -> str:
    """`0.5 seconds`, `45 seconds`, `5 minutes`, `3.5 hours`: how long, for a person."""
    if seconds < 10 and seconds != round(seconds):
        return f"{seconds:.1f} seconds"
    if seconds < 120:
        n = round(seconds)
        return "1 second" if n == 1 else f"{n} seconds"
    if seconds < 7200:
        return f"{round(seconds / 60)} minutes"
    return f"{seconds / 3600:.1f} hours"


def _money(value: Decimal, *, signed: bool = False) -> str:
    return f"{value:+,.2f}" if signed else f"{value:,.2f}"


def _pct(fraction: float) -> str:
    return f"{fraction * 100:.1f}%"


def _text(event: NotifyEvent) -> str:
    match event:
        case DaemonStarted():
            account = f", account {event.account}" if event.account else ""
            return f"started: mode {event.mode}{account}, {len(event.symbols)} symbols"
        case DaemonStopped():
            return f"stopped: {event.reason}"
        case KillSwitchTripped():
            what = "daily loss" if event.reason == "daily_loss" else "drawdown"
            return (
                f"KILL SWITCH TRIPPED: {what} {_pct(event.value)} reached the limit "
                f"{_pct(event.limit)}; equity {_money(event.equity)}. New exposure is denied "
                "until `tradingd ctl reset`."
            )
        case KillSwitchReset():
            return f"kill switch reset (by {event.by}): new exposure is allowed again"
        case TradingHalted():
            return f"trading HALTED (by {event.by}): no new orders until resumed"
        case TradingResumed():
            return f"trading resumed (by {event.by})"
        case StreamDown():
            reason = f" ({event.reason})" if event.reason else ""
            return f"{event.stream} stream down{reason}"
        case StreamRestored():
            return f"{event.stream} stream back"
        case JournalFailed():
            return (
                f"JOURNAL FAILURE: {event.error}. State written from now on may not survive a "
                "restart."
            )
        case ReconciliationDiffered():
            shown = "; ".join(event.differences[:_MAX_DIFFERENCES])
            more = len(event.differences) - _MAX_DIFFERENCES
            tail = f"; and {more} more" if more > 0 else ""
            return (
                f"reconciliation found {len(event.differences)} differences with the broker "
                f"(adopted the broker's): {shown}{tail}"
            )
        case OrderRejected():
            return f"order rejected: {event.symbol} {event.client_order_id}: {event.reason}"
        case OrderFilled():
            return (
                f"filled: {event.side.value} {event.qty} {event.symbol} @ {event.price} "
                f"({event.client_order_id})"
            )
        case OrderPartiallyFilled():
            return (
                f"partially filled: {event.side.value} {event.qty} {event.symbol} @ "
                f"{event.price}, {event.leaves_qty} left ({event.client_order_id})"
            )
        case DaySummary():
            return (
                f"day {event.day.isoformat()}: P&L {_money(event.pnl, signed=True)}, equity "
                f"{_money(event.equity)}; {event.orders} orders, {event.fills} fills, "
                f"{event.rejected} rejected; max drawdown {_pct(event.max_drawdown)}"
            )
        case Probe():
            return event.text
        case _:
            assert_never(event)


def _data(event: NotifyEvent) -> dict[str, Any]:
    return {f.name: _plain(getattr(event, f.name)) for f in dataclasses.fields(event)}


def _plain(value: Any) -> Any:
    """JSON-ready: Decimals as strings (exact), dates in ISO, enums by value."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
