"""A year of synthetic minute bars through the whole path, as the benchmark runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.cli import main
from tests.daemon.helpers import write_yaml


@pytest.mark.slow
def test_a_year_of_minute_bars(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    assert (
        main(
            [
                "bars",
                "synth",
                "--symbols",
                "AAA,BBB,CCC",
                "--sessions",
                "252",
                "--seed",
                "1",
                "--out",
                str(data),
                "--log-level",
                "warning",
            ]
        )
        == 0
    )
    config = write_yaml(
        tmp_path / "c.yaml",
        {
            "data": {"path": str(data), "timeframe": "1Min"},
            "strategies": {"trend": {"type": "sma_cross", "params": {"fast": 20, "slow": 60}}},
            "composer": {"method": "equal", "rebalance": {"every": "minutes", "minutes": 30}},
            "risk": {"max_weight": 0.4, "max_drawdown": 0.5, "daily_loss_limit": 0.2},
            "run": {"start_cash": 1_000_000},
        },
    )
    out = tmp_path / "out"
    assert main(["replay", str(config), "--out", str(out), "--log-level", "warning"]) == 0
    capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    # 252 sessions of 390 minutes, less the 3 early closes of 2024 (210 minutes each)
    assert summary["bars_in"] == 3 * (252 * 390 - 3 * 180)
    assert summary["bars_rejected"] == {}
    assert summary["slices"] == summary["bars_in"] // 3
    assert summary["orders"] > 100
    assert summary["fills"] + summary["rejected_orders"] <= summary["orders"]
    assert summary["rejected_orders"] == 0
    assert summary["first_slice"] == "2024-01-02T14:30:00Z"
    assert summary["last_slice"] == "2024-12-31T20:59:00Z"
