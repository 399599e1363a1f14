"""Strategies at a coarser timeframe than the data: daily and hourly decisions from minute files,
parity with daily files, and the execution styles' settings."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from daemon.config import load_config
from daemon.logs import EventLog
from daemon.replay.driver import replay
from feeds.aggregator import BarAggregator
from feeds.calendar import SessionCalendar
from feeds.errors import TradingdError
from feeds.replay import ReplaySource

ROOT = Path(__file__).resolve().parents[2]
MINUTES = ROOT / "data" / "sample" / "minute"


def config(tmp_path: Path, name: str, **sections: Any) -> Path:
    tree: dict[str, Any] = {
        "symbols": ["AAA", "BBB", "CCC", "DDD"],
        "data": {"path": str(MINUTES), "timeframe": "1Day"},
        "strategies": {"trend": {"type": "sma_cross", "params": {"fast": 2, "slow": 4}}},
        "composer": {"method": "equal", "rebalance": {"every": "slice"}},
        "rebalance": {"min_trade_notional": 100, "no_trade_band": 0.0, "fractional": False},
        "risk": {"max_weight": 0.5, "max_gross": 1.0},
        "sanity": {"jump_sigmas": 50},
        "run": {"order_id_prefix": "tf"},
    }
    for key, value in sections.items():
        tree[key] = {**tree.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


def run(path: Path, out: Path) -> dict[str, Any]:
    return replay(load_config([str(path)]), out_dir=out, log=EventLog(io.StringIO())).summary


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def prices(path: Path) -> list[tuple[str, str, str]]:
    return [(r["client_order_id"], r["price"], r["qty"]) for r in rows(path)]


def daily_files(tmp_path: Path) -> Path:
    """The minute sample aggregated to daily bars, one parquet file per symbol."""
    agg = BarAggregator("1Day", SessionCalendar())
    bars = [bar for bar, _ in ReplaySource(MINUTES)]
    daily = [b for bar in bars for b in agg.add(bar)] + agg.close_through(1 << 62)
    folder = tmp_path / "daily"
    folder.mkdir()
    for symbol in sorted({b.symbol for b in daily}):
        mine = [b for b in daily if b.symbol == symbol]
        table = pa.table(
            {
                "timestamp": pa.array([b.ts for b in mine], pa.timestamp("ns", "UTC")),
                "open": [b.open for b in mine],
                "high": [b.high for b in mine],
                "low": [b.low for b in mine],
                "close": [b.close for b in mine],
                "volume": [b.volume for b in mine],
            }
        )
        pq.write_table(table, folder / f"{symbol}.parquet")
    return folder


@pytest.mark.parametrize("style", ["bar_close", "next_open"])
def test_a_minute_file_decides_as_its_daily_bars(tmp_path: Path, style: str) -> None:
    execution = {"style": style}
    minute = run(config(tmp_path, "m", execution=execution), tmp_path / "m")
    daily_path = daily_files(tmp_path)
    daily = run(
        config(tmp_path, "d", execution=execution, data={"path": str(daily_path)}),
        tmp_path / "d",
    )
    assert minute["slices"] == daily["slices"] == 15
    assert minute["orders"] == daily["orders"] > 0
    # The same decisions (ids, quantities, times) and the same fill prices: a daily bar's open
    # is its session's first minute's open.
    strip = ("status", "filled_qty", "avg_price", "fill_ts", "time_filled")
    m_orders = [
        {k: v for k, v in r.items() if k not in strip} for r in rows(tmp_path / "m" / "orders.csv")
    ]
    d_orders = [
        {k: v for k, v in r.items() if k not in strip} for r in rows(tmp_path / "d" / "orders.csv")
    ]
    assert m_orders == d_orders
    assert prices(tmp_path / "m" / "fills.csv") == prices(tmp_path / "d" / "fills.csv")
    assert (tmp_path / "m" / "targets.csv").read_bytes() == (
        tmp_path / "d" / "targets.csv"
    ).read_bytes()


def test_before_close_decides_on_the_partial_bar_with_cls_orders(tmp_path: Path) -> None:
    path = config(tmp_path, "c", execution={"style": "before_close", "decide_at": "15:45"})
    summary = run(path, tmp_path / "c")
    assert summary["slices"] == 15
    orders = rows(tmp_path / "c" / "orders.csv")
    fills = rows(tmp_path / "c" / "fills.csv")
    assert orders
    assert fills
    # Decided at 15:45 New York (20:45 UTC in November), filled in that session's closing
    # auction: at the close of its last minute (15:59), reported when the session is over.
    # 2024-11-29 closed at 13:00, before decide_at: it decides on its whole bar at its end.
    early = [r for r in orders if r["slice_time"].startswith("2024-11-29")]
    assert {r["time"] for r in early} == {"2024-11-30T05:00:00Z"}
    assert {r["time"][11:] for r in orders if r not in early} == {"20:45:00Z"}
    assert {r["time"][:10] for r in fills} <= {r["time"][:10] for r in orders}


def test_an_hourly_strategy_decides_per_bucket(tmp_path: Path) -> None:
    path = config(tmp_path, "h", data={"timeframe": "1Hour"})
    summary = run(path, tmp_path / "h")
    # 7 hourly buckets per session (the last 15:30-15:59), 4 on 2024-11-29 (closed at 13:00).
    assert summary["slices"] == 14 * 7 + 4
    assert summary["bars_rejected"] == {}


@pytest.mark.parametrize(
    ("sections", "key", "words"),
    [
        ({"data": {"timeframe": "1Min", "path": "DAILY"}}, None, "1 day apart"),
        (
            {"execution": {"style": "before_close", "decide_at": "17:00"}},
            "execution",
            "outside the session",
        ),
        ({"execution": {"style": "before_close", "decide_at": "15:55"}}, "execution", "cut-off"),
        (
            {"execution": {"style": "next_open", "opg_submit_at": "12:00"}},
            "opg_submit_at",
            "window",
        ),
        (
            {"execution": {"style": "next_open"}, "data": {"timeframe": "1Hour"}},
            "execution.style",
            "1Day",
        ),
    ],
)
def test_bad_timeframe_and_execution_settings_are_one_message(
    tmp_path: Path, sections: dict[str, Any], key: str | None, words: str
) -> None:
    if sections.get("data", {}).get("path") == "DAILY":
        sections["data"]["path"] = str(daily_files(tmp_path))
    path = config(tmp_path, "bad", **sections)
    with pytest.raises(TradingdError) as caught:
        run(path, tmp_path / "out")
    message = str(caught.value)
    assert "\n" not in message
    assert words in message, message
    if key is not None:
        assert key in message, message
