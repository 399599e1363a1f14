"""Live-path latency against the sandbox: run `tradingd sandbox` and `tradingd run` (the README's
"Try it without keys": the shipped minute configuration, rebalancing every minute) for a while,
then read the daemon's own histograms off /metrics and print them.

    python tests/bench/live_latency.py [--symbols 4|50|500] [--load shipped|every-symbol]
        [--speed 60] [--seconds 60] [--scrape-every 15] [--timeframe 1Min|5Min|1Hour]
        [--log-level warning|info]

--symbols 4 plays the shipped sample (data/sample/minute); any other count plays synthetic
minute bars of that many symbols (`tradingd bars synth`, written once under --work).
--load every-symbol makes nearly every symbol trade in every slice (no-trade band 0, minimum
notional 1, a large account): the order load of issue 13's "400 orders in a slice" at 500.
The orders each slice handed over are counted from the daemon's journal after the run (the
distribution is printed): at this load the decision histogram is that of such slices. At one
market minute a second the broker's rate limit sends a few of them; the rest are superseded by
the next slice's, whose decision takes them back first (journaled), as it would live.
The sandbox and the daemon listen on free ports of 127.0.0.1 picked at start.

Once the daemon is ready, /metrics is scraped every --scrape-every seconds (15 by default), as a
Prometheus server would: at 500 symbols a scrape is ~12,000 samples.

Figures are read off the histograms: "p99 <= x" is the bucket bound the 99th percentile falls
in (0.1 ms buckets up to 5 ms for the decision latency). Each is printed for the whole run and
for the part after the daemon first answered /readyz (its start-up, the warm-up included, over).
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from portfolio.journal.schema import JOURNAL_FILE
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
# `python -m daemon.cli` from ROOT: the script of another checkout runs that checkout's code.
TRADINGD = (sys.executable, "-m", "daemon.cli")
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
HEAVY_CASH = 50_000_000


def data_for(symbols: int, work: Path) -> Path:
    """The sample for 4 symbols; else a synthetic set of `symbols` symbols, 3 sessions."""
    if symbols == 4:
        return ROOT / "data/sample/minute"
    data = work / f"live-{symbols}"
    if not data.exists():
        names = ",".join(symbol_names(symbols))
        subprocess.run(
            [
                *(*TRADINGD, "bars", "synth", "--symbols", names, "--sessions", "3"),
                *("--seed", "5", "--out", str(data), "--format", "parquet"),
                *("--log-level", "error"),
            ],
            check=True,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
    return data


def symbol_names(symbols: int) -> list[str]:
    """The synthetic set's symbols (the sample's are AAA..DDD)."""
    return ["AAA", "BBB", "CCC", "DDD"] if symbols == 4 else [f"S{i:04d}" for i in range(symbols)]


def overlay(
    tmp: Path,
    data: Path,
    symbols: int,
    load: str,
    sandbox_port: int,
    http_port: int,
    timeframe: str = "1Min",
) -> Path:
    """The bench's config on top of the shipped ones: ports, state, every-minute rebalance."""
    base = f"http://127.0.0.1:{sandbox_port}"
    text = (
        f"symbols: [{', '.join(symbol_names(symbols))}]\n"
        f"data:\n  path: {data}\n  timeframe: {timeframe}\n"
        "composer:\n  rebalance:\n    every: minutes\n    minutes: 1\n"
        f"state:\n  dir: {tmp}/state\nrun:\n  out_dir: {tmp}/out\n"
        f"http:\n  port: {http_port}\n"
        f"live:\n  trading_url: {base}\n  data_url: {base}\n"
        f"  trade_stream_url: ws://127.0.0.1:{sandbox_port}/stream\n"
        f"  data_stream_url: ws://127.0.0.1:{sandbox_port}/v2/iex\n"
    )
    if load == "every-symbol":
        text += (
            "rebalance:\n  no_trade_band: 0\n  min_trade_notional: 1\n"
            "risk:\n  max_order_notional: 10000000\n"
        )
    path = tmp / "bench.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=4, help="universe size")
    parser.add_argument("--load", choices=("shipped", "every-symbol"), default="shipped")
    parser.add_argument("--speed", type=float, default=60.0, help="sandbox minutes per minute")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the daemon runs")
    parser.add_argument("--work", type=Path, help="folder for synthetic data (default: temp)")
    parser.add_argument("--profile", type=Path, help="run the daemon under cProfile, into FILE")
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=("debug", "info", "warning", "error"),
        help="the daemon's (info: a line per order; its stderr is this script's)",
    )
    parser.add_argument(
        "--timeframe",
        default="1Min",
        help="the strategies' bar (5Min, 1Hour: the warm-up aggregates the lookback's minutes)",
    )
    parser.add_argument(
        "--scrape-every",
        type=float,
        default=15.0,
        help="scrape /metrics every S seconds once ready, as Prometheus would (0: never)",
    )
    args = parser.parse_args()
    if args.profile:
        args.profile = args.profile.resolve()
    work = args.work or Path(tempfile.mkdtemp(prefix="tradingd-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    data = data_for(args.symbols, work)
    sandbox_port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        bench = overlay(
            Path(tmp), data, args.symbols, args.load, sandbox_port, http_port, args.timeframe
        )
        env = {**os.environ, "APCA_API_KEY_ID": "bench", "APCA_API_SECRET_KEY": "bench"}
        cash = ["--cash", str(HEAVY_CASH)] if args.load == "every-symbol" else []
        sandbox = subprocess.Popen(
            [
                *(*TRADINGD, "sandbox", "--data", str(data), "--speed", str(args.speed)),
                *("--port", str(sandbox_port), *cash, "--log-level", "warning"),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert sandbox.stdout is not None
            sandbox.stdout.readline()  # it prints its addresses once it listens
            profile = (
                [sys.executable, "-m", "cProfile", "-o", str(args.profile), "-m", "daemon.cli"]
                if args.profile
                else list(TRADINGD)
            )
            daemon = subprocess.Popen(
                [
                    *(*profile, "run", "config/base.yaml", "config/risk_balanced.yaml"),
                    *("config/minute.yaml", "config/sandbox.yaml", str(bench)),
                    *("--log-level", args.log_level),
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + args.seconds  # the measurement window itself
            ready_text = wait_ready(daemon, http_port, deadline)
            url = f"http://127.0.0.1:{http_port}/metrics"
            scrapes = 0
            while True:
                left = deadline - time.monotonic()
                pause = min(left, args.scrape_every) if args.scrape_every > 0 else left
                try:
                    code = daemon.wait(max(pause, 0.0))
                except subprocess.TimeoutExpired:
                    pass  # still running, as it should
                else:
                    raise SystemExit(f"the daemon stopped early (exit {code})")
                if pause >= left:
                    break
                with urllib.request.urlopen(url) as response:
                    response.read()
                scrapes += 1
            with urllib.request.urlopen(url) as response:
                text = response.read().decode()
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(60)
            per_slice = slice_orders(Path(tmp) / "state")
        finally:
            sandbox.terminate()
            sandbox.wait(30)
    print(
        f"{args.symbols} symbols, {args.timeframe} bars, load {args.load}, speed {args.speed:g}, "
        f"{args.seconds:g} s, log level {args.log_level}, "
        f"/metrics scraped {scrapes} times after ready (every {args.scrape_every:g} s)"
    )
    report(text, ready_text)
    if per_slice:
        per_slice.sort()
        print(
            f"orders handed over per slice that sent any (journal): n={len(per_slice)} "
            f"min={per_slice[0]} median={per_slice[len(per_slice) // 2]} max={per_slice[-1]}; "
            f"slices of 400 or more: {sum(1 for n in per_slice if n >= 400)}"
        )
    print(f"daemon exit code {code}")
    return 0 if code == 0 else 1


def slice_orders(state_dir: Path) -> list[int]:
    """How many orders each decided slice handed over (their intents in the journal)."""
    db = sqlite3.connect(f"file:{state_dir / JOURNAL_FILE}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT COUNT(*) FROM orders WHERE slice_ts IS NOT NULL AND qty IS NOT NULL "
            "GROUP BY slice_ts"
        ).fetchall()
    finally:
        db.close()
    return [int(n) for (n,) in rows]


def wait_ready(daemon: subprocess.Popen[bytes], http_port: int, deadline: float) -> str | None:
    """The daemon's /metrics once its /readyz first answers 200 (None: not before `deadline`
    or its exit)."""
    while time.monotonic() < deadline and daemon.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=5):
                pass  # 200: ready (a 503 raises)
        except OSError:
            time.sleep(0.1)  # not listening yet, or not ready: ask again
            continue
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as r:
            return str(r.read().decode())
    return None


def histograms(text: str) -> dict[str, tuple[float, float, list[tuple[float, float]]]]:
    """Per histogram of HISTOGRAMS: (count, sum, [(le, cumulative count)])."""
    families = {f.name: f for f in text_string_to_metric_families(text)}
    out = {}
    for name in HISTOGRAMS:
        samples = families[name].samples
        count = next(s.value for s in samples if s.name.endswith("_count"))
        total = next(s.value for s in samples if s.name.endswith("_sum"))
        buckets = sorted(
            (float(s.labels["le"]), s.value) for s in samples if s.name.endswith("_bucket")
        )
        out[name] = (count, total, buckets)
    return out


def report(text: str, ready_text: str | None) -> None:
    """Counters, then per histogram: count, mean, and the buckets of p50, p90, p99, max; for
    the whole run, then for what followed the first ready answer."""
    families = {f.name: f for f in text_string_to_metric_families(text)}
    totals = {}
    for name in COUNTERS:
        totals[name] = sum(s.value for s in families[name].samples if s.name.endswith("_total"))
        print(f"{name}_total: {totals[name]:.0f}")
    slices = totals["tradingd_slices_decided"]
    if slices:
        print(f"orders per decided slice: {totals['tradingd_orders_submitted'] / slices:.1f}")
    whole = histograms(text)
    parts = [("", whole)]
    if ready_text is None:
        print("the daemon never answered /readyz 200: no figures after start-up")
    else:
        start = histograms(ready_text)
        after = {
            name: (
                count - start[name][0],
                total - start[name][1],
                [(le, c - c0) for (le, c), (_, c0) in zip(buckets, start[name][2], strict=True)],
            )
            for name, (count, total, buckets) in whole.items()
        }
        parts.append(("after ready: ", after))
    for prefix, figures in parts:
        for name, (count, total, buckets) in figures.items():
            print(f"{prefix}{name}: {summary(count, total, buckets)}")


def summary(count: float, total: float, buckets: list[tuple[float, float]]) -> str:
    """n, mean, and the bucket bounds of p50, p90, p99 and the largest."""

    def bound(q: float) -> float:
        return next(le for le, c in buckets if c >= q * count)

    mean = total / count * 1000 if count else float("nan")
    return (
        f"n={count:.0f} mean={mean:.2f} ms p50<={bound(0.5) * 1000:g} ms "
        f"p90<={bound(0.9) * 1000:g} ms p99<={bound(0.99) * 1000:g} ms "
        f"max<={bound(1.0) * 1000:g} ms"
    )


if __name__ == "__main__":
    raise SystemExit(main())
