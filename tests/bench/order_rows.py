"""The recorder's share of a slice that takes back hundreds of orders: N orders decided, then
their N cancels, each of which ends an order and writes its orders.csv row (into a temporary
folder, as a live run writes them).

    python tests/bench/order_rows.py [--orders 400] [--slices 60]

Prints the median and min-max of the cancels' wall time per slice (the rows written), over the
slices after the first ten.
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from daemon.engine import Decision
from daemon.logs import EventLog
from daemon.recorder import Recorder
from feeds.bar import NS_PER_MINUTE
from tests.bench.slice_orders import options, report, slice_orders


def main() -> int:
    args = options(__doc__ or "")
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        recorder = Recorder(Path(tmp), EventLog(io.StringIO(), level="warning"))
        recorder.start()
        for k in range(args.slices):
            ts, orders, cancels = slice_orders(k, args.orders)
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
            started = time.perf_counter()
            for cancel in cancels:
                recorder.on_execution(cancel, True)
            times.append((time.perf_counter() - started) * 1e3)
            recorder.flush()
        recorder.close()
    report(f"{args.orders} cancels ending their orders.csv rows", times)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
