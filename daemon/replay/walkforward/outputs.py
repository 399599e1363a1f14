"""What a walk-forward gives: the per-fold results, the joined out-of-sample curve and its
figures, and the files `equity.csv`, `folds.csv` and `summary.json`."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from daemon.replay.driver import TRADING_DAYS
from daemon.replay.walkforward.folds import Fold, GridPoint
from daemon.research.metrics import figure, max_drawdown, sharpe
from daemon.timeutil import NS, day_index
from daemon.wiring import DAY_TZ


@dataclass(frozen=True, slots=True, kw_only=True)
class FoldResult:
    """The outcome of one fold.

    Attributes:
        params: the chosen grid point (dotted key path -> value); empty without a grid.
        train_objective: the chosen point's objective in training; None without a grid.
        test: the test replay's summary.
    """

    fold: Fold
    params: GridPoint
    train_objective: float | None
    test_return: float
    test_sharpe: float
    test_max_drawdown: float
    test: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class WalkForwardResult:
    """The per-fold results and the figures of the joined out-of-sample curve."""

    out_dir: Path
    folds: tuple[FoldResult, ...]
    summary: dict[str, Any]


def join_curves(
    curves: Sequence[Sequence[tuple[str, float]]], start_cash: float
) -> list[tuple[str, int, float]]:
    """Chain the test windows' equity curves into (time, fold, equity) rows.

    Each window's replay starts from `start_cash`; its curve is scaled so that it starts from
    the previous window's final equity instead.
    """
    rows: list[tuple[str, int, float]] = []
    level = start_cash
    for k, curve in enumerate(curves):
        ratio = level / start_cash
        rows.extend((t, k, e * ratio) for t, e in curve)
        if curve:
            level = curve[-1][1] * ratio
    return rows


def curve_figures(rows: Sequence[tuple[str, int, float]], start_cash: float) -> dict[str, Any]:
    """Total return, CAGR, Sharpe (of daily returns, rf = 0; None when undefined) and max
    drawdown of a curve that starts from `start_cash`, by `daemon.research.metrics`."""
    if not rows:
        return {"total_return": 0.0, "cagr": 0.0, "sharpe": None, "max_drawdown": 0.0, "days": 0}
    ts = np.array([_parse_ns(t) for t, _, _ in rows], dtype=np.int64)
    equity = np.array([e for _, _, e in rows], dtype=np.float64)
    days = day_index(ts, DAY_TZ)
    daily = np.concatenate(([start_cash], equity[np.flatnonzero(np.diff(days, append=-1))]))
    returns = daily[1:] / daily[:-1] - 1.0
    curve = np.concatenate(([start_cash], equity))
    total = float(equity[-1] / start_cash - 1.0)
    n_days = len(returns)
    cagr = (1.0 + total) ** (TRADING_DAYS / n_days) - 1.0 if total > -1.0 else -1.0
    return {
        "total_return": round(total, 6),
        "cagr": round(cagr, 6),
        "sharpe": figure(sharpe(returns), 4),
        "max_drawdown": round(max_drawdown(curve), 6),
        "final_equity": round(float(equity[-1]), 2),
        "days": n_days,
    }


def write_outputs(
    out: Path,
    joined: Sequence[tuple[str, int, float]],
    folds: Sequence[FoldResult],
    summary: dict[str, Any],
    start_cash: float,
) -> None:
    """Write `equity.csv` (the joined curve), `folds.csv` and `summary.json` into `out`."""
    _write_equity(out / "equity.csv", joined, start_cash)
    _write_folds(out / "folds.csv", folds)
    (out / "summary.json").write_bytes(
        orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )


def _parse_ns(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(moment.timestamp()) * NS


def _write_equity(path: Path, rows: Sequence[tuple[str, int, float]], start_cash: float) -> None:
    peak = start_cash
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["time", "fold", "equity", "drawdown"])
        for t, k, e in rows:
            peak = max(peak, e)
            writer.writerow([t, k, f"{e:.2f}", f"{1.0 - e / peak:.6f}"])


def _write_folds(path: Path, folds: Sequence[FoldResult]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "fold",
                "train_start",
                "train_end",
                "test_start",
                "test_end",
                "params",
                "train_objective",
                "test_return",
                "test_sharpe",
                "test_max_drawdown",
            ]
        )
        for r in folds:
            fold = r.fold
            writer.writerow(
                [
                    fold.index,
                    fold.train_start.isoformat(),
                    fold.train_end.isoformat(),
                    fold.test_start.isoformat(),
                    fold.test_end.isoformat(),
                    orjson.dumps(r.params).decode(),
                    "" if r.train_objective is None else r.train_objective,
                    r.test_return,
                    r.test_sharpe,
                    r.test_max_drawdown,
                ]
            )
