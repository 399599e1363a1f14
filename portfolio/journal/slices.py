"""A slice's records: its close, its decision and its order intents (inside the writer's
transaction), and a slice closed behind, waiting for the next transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from brokers.orders import SubmitOrder
from composer.targets import Targets
from portfolio.journal.codec import dumps, encode_event, encode_targets, intent_row

INSERT_BAR = (
    "INSERT INTO input (segment, kind, ts, symbol, open, high, low, close, volume, "
    "trade_count, vwap) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_INPUT = "INSERT INTO input (segment, kind, ts, payload) VALUES (?, ?, ?, ?)"
SET_STATE = "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)"
_INSERT_INTENT = (
    "INSERT OR IGNORE INTO orders (segment, slice_ts, client_order_id, symbol, side, qty, "
    "order_type, limit_price, time_in_force, ts, status) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'intent')"
)


@dataclass(frozen=True, slots=True)
class BehindClose:
    """A slice closed behind (it sent nothing): its records, and the bars buffered before its
    close, to be written first by the next transaction."""

    segment: int
    slice_ts: int
    targets: Targets | None
    held: str | None
    bars: list[tuple[Any, ...]]

    def write(self, db: sqlite3.Connection) -> None:
        db.executemany(INSERT_BAR, self.bars)
        write_close(
            db,
            segment=self.segment,
            slice_ts=self.slice_ts,
            targets=self.targets,
            orders=(),
            held=self.held,
        )


def write_close(
    db: sqlite3.Connection,
    *,
    segment: int,
    slice_ts: int,
    targets: Targets | None,
    orders: Sequence[SubmitOrder],
    held: str | None,
) -> None:
    """The `close` input, the decision (when it decided anything) and last_slice_ts."""
    payload = (
        f'{{"slice_ts":{slice_ts}}}'
        if held is None
        else f'{{"slice_ts":{slice_ts},"held":"{held}"}}'
    )
    db.execute(INSERT_INPUT, (segment, "close", slice_ts, payload))
    if targets is not None or orders:
        write_decision(
            db, segment=segment, slice_ts=slice_ts, kind="close", targets=targets, orders=orders
        )
    db.execute(SET_STATE, ("last_slice_ts", str(slice_ts)))


def write_decision(
    db: sqlite3.Connection,
    *,
    segment: int,
    slice_ts: int,
    kind: str,
    targets: Targets | None,
    orders: Sequence[SubmitOrder],
) -> None:
    """A decision (targets, orders) and an intent row per order."""
    db.execute(
        "INSERT OR REPLACE INTO decision (segment, slice_ts, kind, targets, orders) "
        "VALUES (?, ?, ?, ?, ?)",
        (
            segment,
            slice_ts,
            kind,
            None if targets is None else dumps(encode_targets(targets)),
            dumps([encode_event(o) for o in orders]),
        ),
    )
    if orders:
        db.executemany(_INSERT_INTENT, [(segment, slice_ts, *intent_row(o)) for o in orders])
