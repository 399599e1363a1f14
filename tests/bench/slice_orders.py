"""What the per-slice order benchmarks share (`journal_orders.py`, `order_rows.py`): their
options, a slice's orders and their cancels, and how the times are reported."""

from __future__ import annotations

import argparse
import statistics
from decimal import Decimal

from brokers.orders import OrderCanceled, OrderSide, OrderType, SubmitOrder
from feeds.bar import NS_PER_MINUTE

T0 = 1_700_000_000 * 10**9 // NS_PER_MINUTE * NS_PER_MINUTE
WARM = 10  # slices left out of the figures (the files start empty)


def options(doc: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--orders", type=int, default=400, help="orders in each slice")
    parser.add_argument("--slices", type=int, default=60)
    return parser.parse_args()


def slice_orders(k: int, n: int) -> tuple[int, list[SubmitOrder], list[OrderCanceled]]:
    """Slice `k`'s close, its `n` buy orders (one a symbol), and the cancels taking them back."""
    ts = T0 + k * NS_PER_MINUTE
    orders = [
        SubmitOrder(
            client_order_id=f"tdbench0-s{k:05d}-S{s:04d}-{s}",
            symbol=f"S{s:04d}",
            side=OrderSide.BUY,
            qty=Decimal(12),
            order_type=OrderType.MARKET,
            ts=ts,
        )
        for s in range(n)
    ]
    cancels = [
        OrderCanceled(
            client_order_id=o.client_order_id, symbol=o.symbol, ts=ts + 1, reason="not sent: bench"
        )
        for o in orders
    ]
    return ts, orders, cancels


def report(name: str, times_ms: list[float]) -> None:
    """The median and min-max of `times_ms` after the first `WARM` slices."""
    kept = times_ms[WARM:] or times_ms
    print(
        f"{name}: median {statistics.median(kept):.2f} ms "
        f"(min {min(kept):.2f}, max {max(kept):.2f}) over {len(kept)} slices"
    )
