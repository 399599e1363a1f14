"""The order and fill books: what one broker event changes in them (inside the writer's
transaction that journals the event)."""

from __future__ import annotations

import sqlite3
from decimal import Decimal

from brokers.orders import (
    ExecutionEvent,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
)


def book_event(
    db: sqlite3.Connection, event: ExecutionEvent, *, segment: int, seq: int | None, payload: str
) -> None:
    """Update the order row of `event` (created if the event is the first news of it) and, for
    a fill, add its row to the fill book (`seq`: the event's input)."""
    cid = event.client_order_id
    db.execute(
        "INSERT OR IGNORE INTO orders (client_order_id, segment, symbol, ts, status) "
        "VALUES (?, ?, ?, ?, 'intent')",
        (cid, segment, event.symbol, event.ts),
    )
    match event:
        case OrderAccepted():
            db.execute(
                "UPDATE orders SET status = CASE WHEN status = 'intent' THEN 'accepted' "
                "ELSE status END, broker_order_id = COALESCE(NULLIF(?, ''), "
                "broker_order_id) WHERE client_order_id = ?",
                (event.broker_order_id, cid),
            )
        case OrderFilled() | OrderPartiallyFilled():
            db.execute(
                "INSERT INTO fill (execution_id, seq, client_order_id, payload) "
                "VALUES (?, ?, ?, ?)",
                (event.execution_id, seq, cid, payload),
            )
            row = db.execute(
                "SELECT filled_qty, filled_notional, side FROM orders WHERE client_order_id = ?",
                (cid,),
            ).fetchone()
            done = isinstance(event, OrderFilled)
            db.execute(
                # A terminal status sticks: events may arrive out of order (a
                # reconciliation's fill after the stream's cancel).
                "UPDATE orders SET filled_qty = ?, filled_notional = ?, "
                "status = CASE WHEN terminal = 1 THEN status ELSE ? END, "
                "terminal = MAX(terminal, ?), side = COALESCE(side, ?) "
                "WHERE client_order_id = ?",
                (
                    str(Decimal(row[0]) + event.qty),
                    str(Decimal(row[1]) + event.qty * event.price),
                    "filled" if done else "partially_filled",
                    int(done),
                    event.side.value,
                    cid,
                ),
            )
        case OrderCanceled() | OrderRejected():
            status = "canceled" if isinstance(event, OrderCanceled) else "rejected"
            db.execute(
                "UPDATE orders SET status = CASE WHEN status = 'filled' THEN status "
                "ELSE ? END, terminal = 1 WHERE client_order_id = ?",
                (status, cid),
            )
