"""The recorder's share of a slice that takes back hundreds of orders: N orders decided, then
their N cancels, each of which ends an order and writes its orders.csv row (into a temporary
folder, as a live run writes them).

    python tests/bench/order_rows.py [--orders 400] [--slices 60]

Prints the median and min-max of the cancels' wall time per slice (the rows written), over the
slices after the first ten.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from brokers.orders import OrderCanceled, OrderSide, OrderType, SubmitOrder
from daemon.engine import Decision
from daemon.logs import EventLog
from daemon.recorder import Recorder
from feeds.bar import NS_PER_MINUTE

T0 = 1_700_000_000 * 10**9 // NS_PER_MINUTE * NS_PER_MINUTE


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=400, help="orders in each slice")
    parser.add_argument("--slices", type=int, default=60)
    args = parser.parse_args()
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        recorder = Recorder(Path(tmp), EventLog(io.StringIO(), level="warning"))
        recorder.start()
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
            for order in orders:
                recorder.on_decision(
                    Decision(
                        slice_ts=ts - NS_PER_MINUTE,
                        symbol=order.symbol,
                        client_order_id=order.client_order_id,
                        signals={"trend": 1.0},
                        target_weight=0.002,
                        current_weight=0.0,
                        requested=order,
                        risk="approved",
                        risk_event=None,
                        order=order,
                    )
                )
            cancels = [
                OrderCanceled(
                    client_order_id=o.client_order_id,
                    symbol=o.symbol,
                    ts=ts + 1,
                    reason="not sent: superseded",
                )
                for o in orders
            ]
            started = time.perf_counter()
            for cancel in cancels:
                recorder.on_execution(cancel, True)
            times.append((time.perf_counter() - started) * 1e3)
            recorder.flush()
        recorder.close()
    kept = times[10:] or times
    print(
        f"{args.orders} cancels ending their orders.csv rows: median "
        f"{statistics.median(kept):.2f} ms (min {min(kept):.2f}, max {max(kept):.2f}) "
        f"over {len(kept)} slices"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
