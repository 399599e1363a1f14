"""The Broker protocols, and the types every adapter reports in.

`Broker` is what the core's drivers need to hand orders over and collect executions; the replay
drives the simulated broker through it. `LiveBroker` adds what a long-running daemon needs: a
lifecycle (restore, start, drain, close), health, the account as the broker sees it, and a wake-up
when events wait. The live daemon takes any `LiveBroker`; which one is configuration (the wiring's
registry), never a branch on a mode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Protocol, TypeAlias

from brokers.orders import CancelOrder, ExecutionEvent, OrderSide, SubmitOrder
from feeds.bar import Bar

NOT_SENT_BEFORE_RESTART = "not sent before restart"
# Why an order handed to an adapter never left it (the reason of its OrderCanceled). The
# engine owes a rebalance after the first two: a later decision takes their place.
NOT_SENT_SUPERSEDED = "not sent: superseded by a later decision"
NOT_SENT_STALE = "not sent: decided too long before it could be sent"
NOT_SENT_STOPPED = "not sent: the daemon stopped"
NOT_SENT_REASONS = (NOT_SENT_SUPERSEDED, NOT_SENT_STALE, NOT_SENT_STOPPED)

NoticeLevel: TypeAlias = Literal["debug", "info", "warning", "error"]
_ZERO = Decimal(0)


class Broker(Protocol):
    """Where the core's order commands go and execution events come back from.

    Both calls are non-blocking hand-overs: their outcome arrives later as execution events,
    collected by `poll_events`. A live adapter does its I/O on its own tasks; the simulated
    broker fills against the market data the replay driver shows it.

    Contract:
        - `submit` with a `client_order_id` already seen never creates a second order.
        - Every submitted order ends in exactly one of OrderFilled, OrderCanceled or
          OrderRejected; fills carry a broker-unique `execution_id`.
    """

    def submit(self, command: SubmitOrder) -> None: ...

    def cancel(self, command: CancelOrder) -> None: ...

    def poll_events(self) -> list[ExecutionEvent]:
        """Events since the last call, in the order they happened."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountSnapshot:
    """The account as the broker reports it.

    Attributes:
        account_id, account_number: the broker's identity of the account ("" when it has none).
    """

    cash: Decimal
    equity: Decimal
    buying_power: Decimal
    status: str
    trading_blocked: bool
    account_id: str = ""
    account_number: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionSnapshot:
    """One open position; `qty` is negative for a short."""

    symbol: str
    qty: Decimal
    avg_entry_price: Decimal
    market_value: Decimal | None
    current_price: Decimal | None


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerNotice:
    """Something the daemon should log (at `level`) or count (by `event`)."""

    level: NoticeLevel
    event: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconciliation:
    """What one reconciliation found.

    Attributes:
        ts: when it finished (the adapter's clock), UTC ns.
        open_orders: orders open at the broker.
        fills_recovered: fill events emitted from REST (the stream had missed them).
        positions: symbol -> signed quantity at the broker.
        cash: the account's cash at the broker.
        differences: where the broker disagreed with the state kept from fills since the
            previous reconciliation (empty on the first one).
    """

    ts: int
    open_orders: int
    fills_recovered: int
    positions: dict[str, Decimal]
    cash: Decimal
    differences: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoredOrder:
    """One order as a journal left it, handed to `LiveBroker.restore` before `start`.

    Attributes:
        client_order_id: the idempotency key the intent was journaled with.
        qty: the order's quantity (positive; the direction is `side`).
        broker_order_id: the broker's id, or None if the journal never saw an acknowledgement
            (the send may or may not have landed: reconciliation asks the broker).
        filled_qty: the cumulative quantity the journal booked fills for.
        filled_notional: the sum of qty * price of those booked fills.
        terminal: the journal saw the order end (filled, canceled, rejected, expired).
        ts: when its intent was journaled (UTC ns; before it was sent): reconciliation lists
            the broker's orders from the oldest such time in bulk instead of asking for each.
    """

    client_order_id: str
    symbol: str
    side: OrderSide
    qty: Decimal
    broker_order_id: str | None = None
    filled_qty: Decimal = _ZERO
    filled_notional: Decimal = _ZERO
    terminal: bool = False
    ts: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerHealth:
    """What readiness asks of a broker.

    Attributes:
        stream_connected: its event stream is up (True for a broker without one).
        reconciled: reconciled since the stream's last connect: orders may be sent.
        rest_ok: its last request was answered (no transient failure since).
        in_flight: submits handed over whose outcome is not known yet.
        sent: submits that reached the broker (POSTed at least once), since start.
        unsent: submits handed over and not sent yet (waiting for the broker or the limiter).
    """

    stream_connected: bool
    reconciled: bool
    rest_ok: bool
    in_flight: int
    sent: int = 0
    unsent: int = 0


class LiveBroker(Broker, Protocol):
    """A broker the live daemon drives for months.

    Lifecycle: `restore` (the journal's orders, after a restart) -> `start` (returns once
    reconciled) -> submit/cancel/poll_events, woken by `events_ready` -> `drain` -> `close`.
    A fatal failure is raised by `start` and by `poll_events` once the events before it were
    handed out.
    """

    @property
    def events_ready(self) -> asyncio.Event:
        """Set when events or notices wait to be polled, or the last in-flight submit ended."""
        ...

    @property
    def reconciliations(self) -> int:
        """Reconciliations finished so far."""
        ...

    @property
    def last_reconcile(self) -> Reconciliation | None:
        """What the last reconciliation found."""
        ...

    @property
    def read_only(self) -> bool:
        """No submit path: `submit` and `cancel` raise (tracking an account)."""
        ...

    @property
    def shares_account(self) -> bool:
        """Orders this daemon did not place can show up (a person's, another program's)."""
        ...

    @property
    def account(self) -> AccountSnapshot | None:
        """The account at the last reconciliation; None for a broker with no account of its own
        (the ledger's start cash is then the start)."""
        ...

    @property
    def positions(self) -> dict[str, PositionSnapshot]:
        """Positions at the last reconciliation, by symbol."""
        ...

    @property
    def fatal(self) -> BaseException | None:
        """The error that stopped the adapter, if one did."""
        ...

    def health(self) -> BrokerHealth: ...

    def restore(self, orders: Sequence[RestoredOrder]) -> None:
        """Take over the orders a journal knows of; call before `start`. Their ids count as
        submitted (never sent again); fills are reported only beyond their `filled_qty`."""
        ...

    async def start(self, *, since_ns: int | None = None) -> None:
        """Connect and reconcile; returns once orders may be sent.

        Args:
            since_ns: also recover fills of orders submitted after this time.
        """
        ...

    def on_bar(self, bar: Bar) -> None:
        """A bar of the open slice, accepted by the core (a simulated broker fills against it;
        a real one ignores it)."""
        ...

    def poll_notices(self) -> list[BrokerNotice]:
        """Notices since the last call, in order."""
        ...

    async def drain(self, timeout_s: float) -> bool:
        """Wait until no submit is in flight; False if `timeout_s` passed first."""
        ...

    async def cancel_open(self, ours: Callable[[str], bool]) -> list[str]:
        """Cancel now every open order whose client order id `ours` accepts; the ids cancelled.
        Their OrderCanceled events follow through `poll_events`."""
        ...

    def limit_age(self, max_age_s: float, market_now: Callable[[], int]) -> None:
        """Never send an order decided more than `max_age_s` before `market_now()` (its
        `ts` is the decision's market time): drop it, as OrderCanceled(NOT_SENT_STALE)."""
        ...

    def withdraw_unsent(self, reason: str) -> int:
        """Take back every handed-over order not sent yet: each ends as OrderCanceled(`reason`)
        in `poll_events` (queued now), and is never sent. Returns how many."""
        ...

    async def settle(self) -> bool:
        """Bring fills up to date through REST when the event stream is down (a stop that must
        report the account as it is); True if it read the broker."""
        ...

    async def close(self) -> None:
        """Stop the adapter's tasks and release its connections."""
        ...


async def wait_first(*events: asyncio.Event) -> None:
    """Return once any of `events` is set (at once if one is already)."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
