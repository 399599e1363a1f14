"""What the status page shows beyond `/state`: the equity curve, the last fills, today's orders
and what the risk gate did with each, and a signal that something changed.

`StatusFeed` is an `EngineListener`: the engine hands it each slice, decision and execution
synchronously, and it only appends to bounded buffers and sets an event (a few microseconds; no
I/O). The HTTP server's page (`daemon.service.page`) reads it when it pushes an update.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from brokers.orders import OrderFilled, OrderPartiallyFilled, OrderRejected
from daemon.timeutil import iso_utc

if TYPE_CHECKING:
    from brokers.orders import ExecutionEvent
    from composer.targets import Targets
    from daemon.engine import Decision
    from portfolio.events import KillSwitchTripped
    from portfolio.ledger import Ledger

MAX_POINTS = 2_000  # the equity curve: older points are thinned, one in two, past this
MAX_FILLS = 50
MAX_ORDERS = 200
_NEW_YORK = ZoneInfo("America/New_York")  # "today" is the exchange's day


class StatusFeed:
    """Bounded buffers of what happened, for the status page.

    Attributes:
        info: what the driver adds to the page's header (mode, the account's masked number).
        now_ns: the market's time (UTC ns), which the age of the last slice is counted from
            (a sandbox's clock is not the wall clock).
        points: (slice time UTC ns, equity, drawdown) per slice since the session started.
        fills: the last fills, newest last.
        orders: the decisions of the current New York day, newest last, with the broker's
            outcome (filled, rejected, canceled, ...).
        changed: set whenever something here (or the engine's state) changed; the page's
            broadcaster clears it.
    """

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}
        self.now_ns: Callable[[], int] = time.time_ns
        self.points: list[tuple[int, float, float]] = []
        self.fills: deque[dict[str, Any]] = deque(maxlen=MAX_FILLS)
        self.orders: deque[dict[str, Any]] = deque(maxlen=MAX_ORDERS)
        self._orders_by_id: dict[str, dict[str, Any]] = {}
        self._day = ""
        self._slice_ts: int | None = None  # the last decision's slice, its day and its time
        self._slice_day = ""
        self._slice_time = ""
        self._changed: asyncio.Event | None = None

    @property
    def changed(self) -> asyncio.Event:
        # Made on first use: the listener is built before the event loop runs.
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def touch(self) -> None:
        """Something the page shows changed (a control, a stream): push soon."""
        if self._changed is not None:
            self._changed.set()

    def history(self, points: list[tuple[int, float, float]]) -> None:
        """Seed the curve with earlier points (a restart's journal), oldest first."""
        self.points[:0] = points
        self._thin()

    # -- EngineListener -----------------------------------------------------------------------

    def on_slice(self, ts: int, ledger: Ledger) -> None:
        point = (ts, ledger.equity_float, ledger.drawdown)
        if self.points and self.points[-1][0] == ts:
            self.points[-1] = point  # the same slice marked again (a late bar)
        else:
            self.points.append(point)
            if len(self.points) > MAX_POINTS:
                self._thin()
        self.touch()

    def on_targets(self, targets: Targets) -> None:
        pass

    def on_decision(self, decision: Decision) -> None:
        # A slice's decisions (hundreds at 500 symbols) share its day and its time: formatted
        # once per slice.
        slice_ts = decision.slice_ts
        if slice_ts != self._slice_ts:
            self._slice_ts = slice_ts
            self._slice_day = datetime.fromtimestamp(slice_ts / 1e9, _NEW_YORK).date().isoformat()
            self._slice_time = iso_utc(slice_ts)
        day = self._slice_day
        if day != self._day:
            self._day = day
            self.orders.clear()
            self._orders_by_id.clear()
        requested = decision.requested
        sent = decision.order
        reason = decision.risk_event.reason if decision.risk_event is not None else ""
        row: dict[str, Any] = {
            "time": self._slice_time,
            "client_order_id": decision.client_order_id,
            "symbol": decision.symbol,
            "side": str(requested.side),
            "requested": str(requested.qty),
            "qty": str(sent.qty) if sent is not None else "0",
            "target_weight": decision.target_weight,
            "risk": decision.risk,
            "risk_reason": str(reason),
            "status": "denied" if sent is None else "sent",
        }
        if len(self.orders) == self.orders.maxlen:
            self._orders_by_id.pop(self.orders[0]["client_order_id"], None)
        self.orders.append(row)
        self._orders_by_id[decision.client_order_id] = row
        self.touch()

    def on_kill_switch(self, event: KillSwitchTripped) -> None:
        self.touch()

    def on_execution(self, event: ExecutionEvent, applied: bool) -> None:
        row = self._orders_by_id.get(event.client_order_id)
        match event:
            case OrderFilled() | OrderPartiallyFilled():
                if not applied:
                    return
                self.fills.append(
                    {
                        "time": iso_utc(event.ts),
                        "client_order_id": event.client_order_id,
                        "symbol": event.symbol,
                        "side": str(event.side),
                        "qty": str(event.qty),
                        "price": str(event.price),
                    }
                )
                if row is not None:
                    row["status"] = "filled" if isinstance(event, OrderFilled) else "partial"
            case OrderRejected():
                if row is not None:
                    row["status"] = "rejected"
                    row["risk_reason"] = event.reason
            case _:
                if row is not None and row["status"] == "sent":
                    row["status"] = type(event).__name__.removeprefix("Order").lower()
        self.touch()

    def on_stale(self, symbol: str, ts: int, stale: bool) -> None:
        pass

    # -- what the page reads ------------------------------------------------------------------

    def series(self) -> list[list[float]]:
        """The curve as [[unix seconds, equity, drawdown], ...]."""
        return [[ts / 1e9, equity, drawdown] for ts, equity, drawdown in self.points]

    def last_point(self) -> list[float] | None:
        if not self.points:
            return None
        ts, equity, drawdown = self.points[-1]
        return [ts / 1e9, equity, drawdown]

    def _thin(self) -> None:
        while len(self.points) > MAX_POINTS:
            # Keep the last point exact; halve the rest (a curve, not a ledger).
            self.points = self.points[:-1:2] + self.points[-1:]
