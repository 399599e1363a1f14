"""The journal's share of a slice that sends hundreds of orders: the write-ahead of a slice
with N order intents, then of the N cancels that take them back unsent (as the next slice does
when the broker's rate limit held them), on a real SQLite file in a temporary folder.

    python tests/bench/journal_orders.py [--orders 400] [--slices 60]

Prints the median and min-max of each write's wall time over the slices after the first ten
(the file growing as a live journal does).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from brokers.orders import OrderCanceled, OrderSide, OrderType, SubmitOrder
from feeds.bar import NS_PER_MINUTE
from portfolio.journal import Journal, LedgerSnapshot

T0 = 1_700_000_000 * 10**9 // NS_PER_MINUTE * NS_PER_MINUTE


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=400, help="orders in each slice")
    parser.add_argument("--slices", type=int, default=60)
    args = parser.parse_args()
    close_ms: list[float] = []
    cancel_ms: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, Journal(Path(tmp)) as journal:
        journal.begin_segment(
            mode="paper",
            config_digest="bench",
            config={},
            config_files=[],
            ledger=LedgerSnapshot(
                cash=Decimal(100_000),
                start_cash=Decimal(100_000),
                high_water=Decimal(100_000),
                realized_pnl=Decimal(0),
                positions={},
            ),
            ts=T0,
        )
        for k in range(args.slices):
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
                for s in range(args.orders)
            ]
            started = time.perf_counter()
            journal.close_slice(ts, targets=None, orders=orders)
            close_ms.append((time.perf_counter() - started) * 1e3)
            cancels = [
                OrderCanceled(
                    client_order_id=o.client_order_id, symbol=o.symbol, ts=ts + 1, reason="bench"
                )
                for o in orders
            ]
            started = time.perf_counter()
            journal.events(cancels)
            cancel_ms.append((time.perf_counter() - started) * 1e3)
    for name, times in (
        (f"slice with {args.orders} intents", close_ms),
        (f"{args.orders} cancels", cancel_ms),
    ):
        kept = times[10:] or times
        print(
            f"{name}: median {statistics.median(kept):.2f} ms "
            f"(min {min(kept):.2f}, max {max(kept):.2f}) over {len(kept)} slices"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
