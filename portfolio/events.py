"""Risk events: what the risk gate did to an order, and when the kill switch tripped.

Risk denials are events, not exceptions: the engine logs and journals them and goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, TypeAlias

from brokers.orders import OrderSide


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderDenied:
    """The risk gate refused an order; nothing is sent.

    Attributes:
        reason: the rule that denied it: ``kill_switch``, ``no_short``, ``no_price``, or the
            limit (``max_order_notional``, ``max_weight``, ``max_gross``, ``no_equity``) that
            clipped it to nothing (below one share when not fractional).
        ts: the order's decision time, UTC ns.
    """

    client_order_id: str
    symbol: str
    side: OrderSide
    qty: Decimal
    reason: str
    ts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderClipped:
    """The risk gate reduced an order's quantity; the order keeps its client_order_id.

    Attributes:
        reason: the rules that clipped it, in the order applied, joined by ``,``.
    """

    client_order_id: str
    symbol: str
    side: OrderSide
    requested_qty: Decimal
    approved_qty: Decimal
    reason: str
    ts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class KillSwitchTripped:
    """The kill switch latched: new exposure is denied until an operator resets it.

    Attributes:
        reason: ``daily_loss`` or ``max_drawdown``.
        equity: the ledger's equity when it tripped.
        value: the measured loss or drawdown, as a fraction (0.06 = 6%).
        limit: the configured limit it reached.
    """

    ts: int
    reason: Literal["daily_loss", "max_drawdown"]
    equity: Decimal
    value: float
    limit: float


RiskEvent: TypeAlias = OrderDenied | OrderClipped | KillSwitchTripped
