"""The order and fill books: what one broker event changes in them (inside the writer's
transaction that journals the event)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from decimal import Decimal

from brokers.orders import (
    ExecutionEvent,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
)
from portfolio.journal.codec import dumps, encode_event

_INSERT_EVENT = "INSERT INTO input (segment, kind, ts, payload) VALUES (?, 'event', ?, ?)"
_INSERT_ORDER = (
    "INSERT OR IGNORE INTO orders (client_order_id, segment, symbol, ts, status) "
    "VALUES (?, ?, ?, ?, 'intent')"
)
_CLOSE_ORDER = (
    "UPDATE orders SET status = CASE WHEN status = 'filled' THEN status "
    "ELSE ? END, terminal = 1 WHERE client_order_id = ?"
)

# An order's end by a cancel or rejection: its row made if the event is its first news (as
# `_INSERT_ORDER` then `_CLOSE_ORDER` would, in one statement); a fill's status is kept.
_END_ORDER = (
    "INSERT INTO orders (client_order_id, segment, symbol, ts, status, terminal) "
    "VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (client_order_id) DO UPDATE SET "
    "status = CASE WHEN status = 'filled' THEN status ELSE excluded.status END, terminal = 1"
)


def fresh_events(
    events: Sequence[ExecutionEvent], has_fill: Callable[[str], bool]
) -> tuple[list[bool], list[ExecutionEvent]]:
    """Which of `events` to journal: per event, False for a fill whose execution id
    `has_fill` (journaled already) or that comes earlier in `events`; and those to write."""
    fresh: list[bool] = []
    new: list[ExecutionEvent] = []
    seen: set[str] = set()
    for event in events:
        if isinstance(event, OrderFilled | OrderPartiallyFilled):
            execution_id = event.execution_id
            if execution_id in seen or has_fill(execution_id):
                fresh.append(False)
                continue
            seen.add(execution_id)
        fresh.append(True)
        new.append(event)
    return fresh, new


def book_events(db: sqlite3.Connection, events: Sequence[ExecutionEvent], *, segment: int) -> None:
    """Inside the writer's transaction: each event as an input, then its books; the last
    one's time as `last_event_ts`."""
    i, n = 0, len(events)
    while i < n:
        event = events[i]
        if isinstance(event, OrderCanceled | OrderRejected):
            end = i + 1
            while end < n and isinstance(events[end], OrderCanceled | OrderRejected):
                end += 1
            _book_closed(db, events[i:end], segment=segment)
            i = end
            continue
        payload = dumps(encode_event(event))
        cur = db.execute(_INSERT_EVENT, (segment, event.ts, payload))
        book_event(db, event, segment=segment, seq=cur.lastrowid, payload=payload)
        i += 1
    db.execute(
        "INSERT OR REPLACE INTO state (key, value) VALUES ('last_event_ts', ?)",
        (str(events[-1].ts),),
    )


def _book_closed(db: sqlite3.Connection, events: Sequence[ExecutionEvent], *, segment: int) -> None:
    """A run of cancels and rejections (a slice's orders taken back unsent: hundreds), each
    statement once for the run. The rows are those of one event at a time: these events touch
    no fill, and each statement meets an order's events in their order."""
    db.executemany(_INSERT_EVENT, [(segment, e.ts, dumps(encode_event(e))) for e in events])
    db.executemany(
        _END_ORDER,
        [
            (
                e.client_order_id,
                segment,
                e.symbol,
                e.ts,
                "canceled" if isinstance(e, OrderCanceled) else "rejected",
            )
            for e in events
        ],
    )


def book_event(
    db: sqlite3.Connection, event: ExecutionEvent, *, segment: int, seq: int | None, payload: str
) -> None:
    """Update the order row of `event` (created if the event is the first news of it) and, for
    a fill, add its row to the fill book (`seq`: the event's input)."""
    cid = event.client_order_id
    db.execute(_INSERT_ORDER, (cid, segment, event.symbol, event.ts))
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
            db.execute(_CLOSE_ORDER, (status, cid))
