"""Alpaca's JSON shapes: times, numbers, orders and events as the sandbox writes them."""

from __future__ import annotations

from decimal import Decimal

from sandbox.orders import Fill, SandboxOrder
from sandbox.wire import dec, order_event, order_json, rfc3339, unknown_event

TS = 1_731_940_380 * 10**9  # 2024-11-18T14:33:00Z


def order() -> SandboxOrder:
    return SandboxOrder(
        id="o-1",
        client_order_id="c-1",
        symbol="AAA",
        side="buy",
        type="market",
        time_in_force="day",
        qty=Decimal("1.50"),
        notional=None,
        limit_price=None,
        extended_hours=False,
        created_ns=TS,
        fill_from=0,
    )


def test_times_and_numbers() -> None:
    assert rfc3339(TS) == "2024-11-18T14:33:00Z"
    assert rfc3339(TS + 5) == "2024-11-18T14:33:00.000000005Z"
    assert dec(Decimal("1.500")) == "1.5"
    assert dec(Decimal("1E+2")) == "100"
    assert dec(Decimal("0.00")) == "0"


def test_an_order_and_its_fill_event() -> None:
    o = order()
    body = order_json(o)
    assert (body["qty"], body["notional"], body["filled_qty"]) == ("1.5", None, "0")
    assert body["created_at"] == body["updated_at"] == "2024-11-18T14:33:00Z"
    assert body["position_intent"] == "buy_to_open"
    fill = Fill(
        order=o, price=Decimal("10.25"), qty=Decimal("1.5"), position_qty=Decimal(2), ts_ns=TS
    )
    event = order_event("fill", o, TS, execution=fill)
    assert event["stream"] == "trade_updates"
    data = event["data"]
    assert (data["event"], data["price"], data["qty"], data["position_qty"]) == (
        "fill",
        "10.25",
        "1.5",
        "2",
    )


def test_the_unknown_event_carries_the_last_order_tagged() -> None:
    data = unknown_event(order(), "2024-11-18T09:33:00-05:00")["data"]
    assert data["event"] == "sandbox_unknown_event"
    assert data["order"]["subtag"] == "sandbox"
