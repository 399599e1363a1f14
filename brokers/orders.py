"""Order commands and execution events.

Commands are imperative (`SubmitOrder`, `CancelOrder`), events past tense (`OrderFilled`).
All are frozen, slotted, keyword-only. Quantities and prices are Decimal; times are UTC ns.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeAlias


class OrderSide(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(enum.StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class TimeInForce(enum.StrEnum):
    """How long an order works, with Alpaca's values.

    ``opg`` (market-on-open) executes only in the opening auction of the next session, ``cls``
    (market-on-close) only in the closing auction of the session; what is not executed there is
    canceled.
    """

    DAY = "day"
    GTC = "gtc"
    OPG = "opg"
    CLS = "cls"


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitOrder:
    """Send one order. `client_order_id` is deterministic (at most 48 ASCII characters) and is
    the idempotency key: a broker never accepts the same id twice.

    Attributes:
        ts: when the decision was made (the close of the slice that decided it), UTC ns.
        qty: positive; the direction is `side`.
    """

    client_order_id: str
    symbol: str
    side: OrderSide
    qty: Decimal
    order_type: OrderType
    ts: int
    limit_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.DAY


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelOrder:
    client_order_id: str
    ts: int


Command: TypeAlias = SubmitOrder | CancelOrder


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderAccepted:
    client_order_id: str
    symbol: str
    ts: int
    broker_order_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderFilled:
    """The last fill of an order: nothing of it remains open.

    Attributes:
        qty: the quantity of this fill (not cumulative).
        price: this fill's price, after slippage.
        commission: charged for this fill, in account currency.
        execution_id: unique per fill at the broker; the de-duplication key for fills.
    """

    client_order_id: str
    symbol: str
    side: OrderSide
    qty: Decimal
    price: Decimal
    commission: Decimal
    ts: int
    execution_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderPartiallyFilled:
    """A fill after which `leaves_qty` of the order remains open."""

    client_order_id: str
    symbol: str
    side: OrderSide
    qty: Decimal
    price: Decimal
    commission: Decimal
    ts: int
    execution_id: str
    leaves_qty: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderCanceled:
    client_order_id: str
    symbol: str
    ts: int
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRejected:
    client_order_id: str
    symbol: str
    ts: int
    reason: str


ExecutionEvent: TypeAlias = (
    OrderAccepted | OrderFilled | OrderPartiallyFilled | OrderCanceled | OrderRejected
)
Fill: TypeAlias = OrderFilled | OrderPartiallyFilled
