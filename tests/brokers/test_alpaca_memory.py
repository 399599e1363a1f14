"""The Alpaca adapter's books stay bounded over months: ended orders that no reconciliation can
list again are forgotten (the journal keeps them); orders still open, and the ended ones a bulk
listing from an open one could return, are kept."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from brokers.alpaca_json import OrderSnapshot
from brokers.alpaca_tracker import OrderTracker
from brokers.orders import OrderSide
from brokers.outbox import Outbox
from tests.brokers.alpaca_kit import buy

HOUR = 3_600 * 10**9
T0 = 1_704_205_800 * 10**9


def snapshot(cid: str, ts: int, status: str) -> OrderSnapshot:
    filled = Decimal(10) if status == "filled" else Decimal(0)
    return OrderSnapshot(
        broker_order_id=f"b-{cid}",
        client_order_id=cid,
        symbol="AAA",
        side=OrderSide.BUY,
        qty=Decimal(10),
        filled_qty=filled,
        filled_avg_price=Decimal(100) if filled else None,
        status=status,
        order_type="market",
        limit_price=None,
        created_at_ns=ts,
        updated_at_ns=ts,
    )


def placed(tracker: OrderTracker, cid: str, ts: int, status: str) -> None:
    tracker.submitted(dataclasses.replace(buy(cid), ts=ts))
    tracker.apply(snapshot(cid, ts, status))


def test_ended_orders_older_than_every_listing_start_are_forgotten() -> None:
    tracker = OrderTracker(Outbox(), now_ns=lambda: T0)
    for i in range(50):
        placed(tracker, f"old-{i}", T0 + i * 10**9, "filled")
    placed(tracker, "recent", T0 + 5 * HOUR, "filled")

    assert tracker.prune() == 50
    assert list(tracker.orders) == ["recent"]
    # Forgotten for good: its id is free in the books (the journal still has it).
    assert tracker.submitted(buy("old-0"))


def test_an_open_order_keeps_what_a_bulk_listing_from_it_could_return() -> None:
    tracker = OrderTracker(Outbox(), now_ns=lambda: T0)
    placed(tracker, "before", T0 - 2 * HOUR, "filled")
    placed(tracker, "open", T0, "new")
    placed(tracker, "after", T0 + 10**9, "canceled")
    placed(tracker, "late", T0 + 9 * HOUR, "filled")

    assert tracker.prune() == 1
    assert sorted(tracker.orders) == ["after", "late", "open"]
