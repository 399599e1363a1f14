"""Risk events are frozen, slotted, keyword-only records."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from brokers.orders import OrderSide
from portfolio.events import KillSwitchTripped, OrderClipped, OrderDenied


def test_risk_events_are_frozen_slotted_and_keyword_only() -> None:
    denied = OrderDenied(
        client_order_id="c", symbol="SPY", side=OrderSide.BUY, qty=Decimal(1), reason="r", ts=0
    )
    clipped = OrderClipped(
        client_order_id="c",
        symbol="SPY",
        side=OrderSide.BUY,
        requested_qty=Decimal(2),
        approved_qty=Decimal(1),
        reason="max_weight",
        ts=0,
    )
    tripped = KillSwitchTripped(
        ts=0, reason="daily_loss", equity=Decimal(1), value=0.06, limit=0.05
    )
    for event in (denied, clipped, tripped):
        assert not hasattr(event, "__dict__")
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.ts = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        KillSwitchTripped(0, "daily_loss", Decimal(1), 0.06, 0.05)  # type: ignore[call-arg]
