"""The journal's share of a slice that sends hundreds of orders: the write-ahead of a slice
with N order intents, then of the N cancels that take them back unsent (as the next slice does
when the broker's rate limit held them), on a real SQLite file in a temporary folder.

    python tests/bench/journal_orders.py [--orders 400] [--slices 60]

Prints the median and min-max of each write's wall time over the slices after the first ten
(the file growing as a live journal does).
"""

from __future__ import annotations

import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from portfolio.journal import Journal, LedgerSnapshot
from tests.bench.slice_orders import T0, options, report, slice_orders


def main() -> int:
    args = options(__doc__ or "")
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
            ts, orders, cancels = slice_orders(k, args.orders)
            started = time.perf_counter()
            journal.close_slice(ts, targets=None, orders=orders)
            close_ms.append((time.perf_counter() - started) * 1e3)
            started = time.perf_counter()
            journal.events(cancels)
            cancel_ms.append((time.perf_counter() - started) * 1e3)
    report(f"slice with {args.orders} intents", close_ms)
    report(f"{args.orders} cancels", cancel_ms)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
