"""The daily decision of 50 symbols against the sandbox: its latency, and the warm-up's requests.

First write the data (50 symbols, 30 sessions of synthetic minutes):
    tradingd bars synth --symbols S00,S01,...,S49 --sessions 30 --start 2024-09-03 \\
        --out /tmp/tf-bench/data --format parquet
then:
    python tests/bench/daily_decision.py [--data /tmp/tf-bench/data]

The sandbox holds 29 sessions as history and the 30th up to 15:58; the daemon (next_open, the
four built-in strategy types with lookbacks up to 20 days) warms up, the 15:59 minute is played,
the clock is moved past the close, and the daemon's own step that completes the day and decides
it (`EngineLoop.on_market_time`: 50 daily bars, strategies, composer, rebalance, risk, journal)
is timed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from daemon.config import load_config
from daemon.live.lifecycle import LiveDaemon
from daemon.logs import EventLog
from feeds.bar import NS_PER_SECOND
from sandbox import Sandbox

SYMBOLS = [f"S{i:02d}" for i in range(50)]
ENV = {"APCA_API_KEY_ID": "k", "APCA_API_SECRET_KEY": "s"}


def config(box: Sandbox, data: Path, tmp: Path) -> Path:
    tree: dict[str, Any] = {
        "symbols": SYMBOLS,
        "data": {"path": str(data), "timeframe": "1Day"},
        "execution": {"style": "next_open"},
        "strategies": {
            "trend": {"type": "sma_cross", "params": {"fast": 5, "slow": 20}},
            "momentum": {"params": {"lookback": 10}},
            "reversion": {
                "type": "mean_reversion",
                "params": {"window": 10, "entry_z": 1.0, "exit_z": 0.5},
            },
            "breakout": {"params": {"entry": 10, "exit": 5}},
        },
        "composer": {"method": "inverse_vol", "vol_lookback": 10},
        "rebalance": {"fractional": False, "min_trade_notional": 100, "no_trade_band": 0.0},
        "risk": {"max_weight": 0.1, "max_gross": 1.0},
        "run": {"out_dir": str(tmp / "out")},
        "http": {"enabled": False},
        "state": {"dir": str(tmp / "state")},
        "live": {
            "mode": "paper",
            "trading_url": box.trading_url,
            "trade_stream_url": box.trade_stream_url,
            "data_stream_url": box.data_stream_url("iex"),
            "data_url": box.data_url,
            "slice_grace_s": 0.5,
            "clock_poll_s": 3600,  # the clock is read by hand below: nothing else decides
            "cancel_on_stop": False,
        },
    }
    path = tmp / "daily.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


def bar_requests(box: Sandbox) -> int:
    return sum(n for (_, path), n in box.requests.items() if "/bars" in path)


async def main(data: Path) -> None:
    box = Sandbox(data, speed=None, warm_minutes=29 * 390 - 1, key="k", secret="s")
    await box.start()
    tmp = Path(tempfile.mkdtemp(prefix="daily-bench-"))
    try:
        loaded = load_config([str(config(box, data, tmp))])
        daemon = LiveDaemon(loaded, log=EventLog(io.StringIO()), env=ENV)
        task = asyncio.create_task(daemon.run())
        started = time.perf_counter()
        await daemon.wait_until(
            lambda: daemon.feed_connected and not daemon.slicer.backfilling, 120
        )
        print(
            f"start-up with warm-up: {time.perf_counter() - started:.2f} s; "
            f"GET .../bars: {bar_requests(box)}; daily bars warmed: {daemon.warmup_bars}; "
            f"lookback: {daemon.engine.composer.warmup_bars} bars"
        )
        assert await box.step()  # 15:59
        await daemon.wait_until(lambda: daemon.slicer.next_ts == box.now_ns, 30)
        await box.pass_time(box.now_ns + NS_PER_SECOND)
        daemon.market.on_clock(await daemon.rest.clock(), first=False)
        slices = daemon.engine.counters.slices
        t = time.perf_counter()
        daemon.loop.on_market_time()
        elapsed = time.perf_counter() - t
        assert daemon.engine.counters.slices == slices + 1
        held = len(daemon.buckets.held) if daemon.buckets is not None else 0
        print(f"daily decision of {len(SYMBOLS)} symbols: {elapsed * 1e3:.1f} ms; {held} opg held")
        daemon.request_stop()
        await task
    finally:
        await box.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/tf-bench/data"))
    asyncio.run(main(parser.parse_args().data))
