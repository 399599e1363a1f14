"""Live-path latency against the sandbox: run `tradingd sandbox` and `tradingd run` (the README's
"Try it without keys", rebalancing every minute) for a while, then read the daemon's own
histograms off /metrics and print them.

    python tests/bench/live_latency.py [--speed 600] [--seconds 40]

Figures are histogram buckets: "p99 <= x" means the bucket bound the 99th percentile falls in.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
TRADINGD = str(Path(sys.executable).parent / "tradingd")
HISTOGRAMS = (
    "tradingd_decision_latency_seconds",
    "tradingd_order_ack_seconds",
    "tradingd_order_fill_seconds",
    "tradingd_event_loop_lag_seconds",
)
COUNTERS = (
    "tradingd_bars_accepted",
    "tradingd_slices_decided",
    "tradingd_orders_submitted",
    "tradingd_orders_filled",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", type=float, default=600.0, help="sandbox minutes per minute")
    parser.add_argument("--seconds", type=float, default=40.0, help="how long the daemon runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        overlay = Path(tmp) / "bench.yaml"
        overlay.write_text(
            "composer:\n  rebalance:\n    every: minutes\n    minutes: 1\n"
            f"state:\n  dir: {tmp}/state\nrun:\n  out_dir: {tmp}/out\n",
            encoding="utf-8",
        )
        env = {**os.environ, "APCA_API_KEY_ID": "bench", "APCA_API_SECRET_KEY": "bench"}
        sandbox = subprocess.Popen(
            [TRADINGD, "sandbox", "--data", "data/sample/minute", "--speed", str(args.speed)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert sandbox.stdout is not None
            sandbox.stdout.readline()  # it prints its addresses once it listens
            daemon = subprocess.Popen(
                [
                    TRADINGD,
                    "run",
                    "config/base.yaml",
                    "config/risk_balanced.yaml",
                    "config/minute.yaml",
                    "config/sandbox.yaml",
                    str(overlay),
                    "--log-level",
                    "warning",
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
            )
            time.sleep(args.seconds)  # the measurement window itself
            with urllib.request.urlopen("http://127.0.0.1:9108/metrics") as response:
                text = response.read().decode()
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(30)
        finally:
            sandbox.terminate()
            sandbox.wait(30)
    report(text)
    print(f"daemon exit code {code}")
    return 0 if code == 0 else 1


def report(text: str) -> None:
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in COUNTERS:
        total = sum(s.value for s in families[name].samples if s.name.endswith("_total"))
        print(f"{name}_total: {total:.0f}")
    for name in HISTOGRAMS:
        samples = families[name].samples
        count = next(s.value for s in samples if s.name.endswith("_count"))
        total = next(s.value for s in samples if s.name.endswith("_sum"))
        buckets = sorted(
            (float(s.labels["le"]), s.value) for s in samples if s.name.endswith("_bucket")
        )

        def bound(
            q: float, buckets: list[tuple[float, float]] = buckets, n: float = count
        ) -> float:
            return next(le for le, c in buckets if c >= q * n)

        mean = total / count * 1000 if count else float("nan")
        print(
            f"{name}: n={count:.0f} mean={mean:.2f} ms "
            f"p50<={bound(0.5) * 1000:g} ms p99<={bound(0.99) * 1000:g} ms"
        )


if __name__ == "__main__":
    raise SystemExit(main())
