"""Builders for small, exactly known data sets and configs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml


def business_days(start: date, count: int) -> list[date]:
    days: list[date] = []
    day = start
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def write_daily_csv(
    path: Path, closes: Sequence[float], *, start: date = date(2021, 1, 4), volume: int = 1000
) -> list[date]:
    """One symbol's daily bars: open = previous close, high/low around open and close."""
    days = business_days(start, len(closes))
    lines = ["date,open,high,low,close,volume"]
    previous = closes[0]
    for day, close in zip(days, closes, strict=True):
        high = max(previous, close) * 1.001
        low = min(previous, close) * 0.999
        lines.append(f"{day.isoformat()},{previous:.4f},{high:.4f},{low:.4f},{close:.4f},{volume}")
        previous = close
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return days


def write_yaml(path: Path, tree: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


def always_long_config(data: Path, **risk: Any) -> dict[str, Any]:
    """One strategy that is always fully long (the `recorder` fixture registers it)."""
    return {
        "data": {"path": str(data), "timeframe": "1Day"},
        "strategies": {"long": {"type": "recorder"}},
        "composer": {"method": "equal", "max_gross": 1.0},
        "rebalance": {"min_trade_notional": 0, "no_trade_band": 0.0, "fractional": True},
        "risk": {"max_weight": 1.0, "max_gross": 1.0, **risk},
        "broker": {"slippage_bps": 0, "account": "margin"},
        "run": {"start_cash": 100000},
    }
