"""The whole event path end to end: determinism, quarantine, no look-ahead, the kill switch."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from daemon.config import load_config
from daemon.logs import EventLog
from daemon.replay.driver import replay
from tests.daemon.helpers import always_long_config, write_daily_csv, write_yaml


def run_replay(config: Path, out: Path, *extra: Path) -> dict[str, Any]:
    loaded = load_config([str(config), *map(str, extra)])
    with (out.parent / f"{out.name}.log").open("w") as log_stream:
        result = replay(loaded, out_dir=out, log=EventLog(log_stream))
    return result.summary


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.usefixtures("in_repo")
def test_the_replay_is_deterministic(tmp_path: Path) -> None:
    config = Path("config/base.yaml")
    overlay = Path("config/risk_balanced.yaml")
    first = run_replay(config, tmp_path / "a", overlay)
    second = run_replay(config, tmp_path / "b", overlay)
    assert first["orders"] > 10
    for name in (
        "orders.csv",
        "fills.csv",
        "equity.csv",
        "rejected_bars.csv",
        "risk_events.csv",
        "targets.csv",
    ):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    keep = {
        k: v
        for k, v in first.items()
        if k not in {"run_id", "wall_seconds", "bars_per_second", "peak_rss_mb"}
    }
    assert keep == {k: second[k] for k in keep}


def test_no_fill_uses_a_price_from_before_its_decision(tmp_path: Path) -> None:
    data = tmp_path / "data"
    closes = [100 * (1.03 ** (i % 7)) * (0.97 ** (i % 5)) for i in range(80)]
    write_daily_csv(data / "SPY.csv", closes)
    tree = always_long_config(data)
    tree["strategies"] = {"trend": {"type": "sma_cross", "params": {"fast": 2, "slow": 4}}}
    config = write_yaml(tmp_path / "c.yaml", tree)
    run_replay(config, tmp_path / "out")
    bars = {parse_time(r["date"] + "T05:00:00+00:00"): r for r in read_csv(data / "SPY.csv")}
    orders = {r["client_order_id"]: r for r in read_csv(tmp_path / "out" / "orders.csv")}
    fills = read_csv(tmp_path / "out" / "fills.csv")
    assert len(fills) > 5
    for fill in fills:
        decided = parse_time(orders[fill["client_order_id"]]["time"])
        filled = parse_time(fill["time"])
        assert filled >= decided
        # the price is the open of the bar the fill is stamped with, which starts after the
        # decision (slippage is 0 in this config)
        bar = bars[filled]
        assert Decimal(fill["price"]) == Decimal(bar["open"]).quantize(Decimal("0.01"))


def test_no_strategy_sees_a_quarantined_bar(tmp_path: Path, recorder: Any) -> None:
    data = tmp_path / "data"
    write_daily_csv(data / "AAA.csv", [50 + (i % 3) for i in range(40)])
    write_daily_csv(data / "BBB.csv", [20 + (i % 4) * 0.5 for i in range(40)])
    lines = (data / "AAA.csv").read_text().splitlines()

    def d(i: int) -> str:
        return lines[i].split(",")[0]

    lines[10] = f"{d(10)},50,51,49,-50,1000"  # non-positive price
    lines[12] = f"{d(12)},50,49,51,50,1000"  # high below low
    lines[14] = f"{d(14)},50,51,49,50,-5"  # negative volume
    lines[20] = f"{d(20)},50,5001,49,5000,1000"  # a 100x jump
    lines.insert(30, lines[29])  # a duplicate (symbol, time)
    (data / "AAA.csv").write_text("\n".join(lines) + "\n")
    tree = always_long_config(data)
    tree["sanity"] = {"jump_min_obs": 5}
    config = write_yaml(tmp_path / "c.yaml", tree)
    summary = run_replay(config, tmp_path / "out")

    rejected = read_csv(tmp_path / "out" / "rejected_bars.csv")
    reasons = sorted(r["reason"] for r in rejected)
    assert reasons == sorted(
        [
            "non_positive_price",
            "high_low_inconsistent",
            "negative_volume",
            "price_jump",
            "duplicate",
        ]
    )
    assert len(recorder.seen) == summary["bars_accepted"] == 80 + 1 - 5
    seen = {(b.symbol, b.ts) for b in recorder.seen}
    for row in rejected:
        ts = int(parse_time(row["time"]).timestamp()) * 1_000_000_000
        if row["reason"] != "duplicate":
            assert (row["symbol"], ts) not in seen
    assert all(b.close > 0 and b.close < 1000 and b.volume >= 0 for b in recorder.seen)
    assert len(seen) == len(recorder.seen)  # the duplicate never reached it


@pytest.mark.usefixtures("recorder")
def test_kill_switch_trips_at_the_drawdown_and_stops_new_exposure(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # Up for 20 days, down 3% a day for 15 days, then up again: an always-long strategy
    # wants to buy back in after the fall, and must not.
    closes = [100.0 + i for i in range(20)]
    closes += [closes[-1] * 0.97 ** (i + 1) for i in range(15)]
    closes += [closes[-1] * 1.02 ** (i + 1) for i in range(20)]
    write_daily_csv(data / "SPY.csv", closes)
    tree = always_long_config(data, max_drawdown=0.10, daily_loss_limit=0.5, on_kill="halt")
    # Half invested: as the price falls the weight drops below its target, so the strategy
    # keeps asking to buy more.
    tree["composer"]["max_gross"] = 0.5
    config = write_yaml(tmp_path / "c.yaml", tree)
    summary = run_replay(config, tmp_path / "out")
    assert summary["kill_switch"] is True
    assert summary["kill_switch_reason"] == "max_drawdown"

    equity = read_csv(tmp_path / "out" / "equity.csv")
    drawdowns = [float(r["drawdown"]) for r in equity]
    trip = next(i for i, dd in enumerate(drawdowns) if dd >= 0.10)
    assert max(drawdowns[:trip]) < 0.10
    trip_time = parse_time(equity[trip]["time"])

    events = read_csv(tmp_path / "out" / "risk_events.csv")
    assert events[0]["event"] == "kill_switch"
    orders = read_csv(tmp_path / "out" / "orders.csv")
    assert orders, "the strategy bought before the fall"
    late_buys = [
        o for o in orders if o["side"] == "buy" and parse_time(o["slice_time"]) > trip_time
    ]
    assert late_buys == []
    denied = [e for e in events if e["event"] == "denied"]
    assert denied, "the strategy kept asking to buy, and was denied"
    assert all(e["reason"] == "kill_switch" for e in denied)
    assert summary["denied_orders"] == len(denied)


@pytest.mark.usefixtures("recorder")
def test_kill_switch_can_flatten(tmp_path: Path) -> None:
    data = tmp_path / "data"
    closes = [100.0 + i for i in range(20)] + [119 * 0.95 ** (i + 1) for i in range(10)]
    write_daily_csv(data / "SPY.csv", closes)
    config = write_yaml(
        tmp_path / "c.yaml",
        always_long_config(data, max_drawdown=0.10, daily_loss_limit=0.5, on_kill="flatten"),
    )
    summary = run_replay(config, tmp_path / "out")
    assert summary["kill_switch"] is True
    assert summary["positions"] == {}
    orders = read_csv(tmp_path / "out" / "orders.csv")
    assert orders[-1]["side"] == "sell"
    assert orders[-1]["status"] == "filled"
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["positions"] == {}


def test_warm_up_fills_the_lookback_before_trading_starts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    days = write_daily_csv(data / "SPY.csv", [100.0 + i for i in range(60)])
    tree = always_long_config(data)
    tree["strategies"] = {"trend": {"type": "sma_cross", "params": {"fast": 5, "slow": 20}}}
    tree["run"]["start"] = days[30].isoformat()
    config = write_yaml(tmp_path / "c.yaml", tree)
    loaded = load_config([str(config)])

    cold = replay(loaded, out_dir=tmp_path / "cold", log=EventLog(io.StringIO()))
    warm = replay(
        loaded, out_dir=tmp_path / "warm", log=EventLog(io.StringIO()), warmup_from=days[0]
    )
    first_cold = read_csv(tmp_path / "cold" / "orders.csv")[0]["slice_time"]
    first_warm = read_csv(tmp_path / "warm" / "orders.csv")[0]["slice_time"]
    equity = read_csv(tmp_path / "warm" / "equity.csv")
    start = f"{days[30].isoformat()}T05:00:00Z"
    # warmed up, it trades on its first slice; cold, it waits for 20 bars of its own
    assert first_warm == equity[0]["time"] == start
    assert parse_time(first_cold) > parse_time(start)
    assert warm.summary["slices"] == len(equity) == 30
    assert warm.summary["warmup_slices"] == 30
    assert cold.summary["bars_in"] == 30
    assert warm.summary["bars_in"] == 60
