"""The report's figures: matplotlib (Agg, no pyplot state) drawn to PNG and inlined as base64."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.dates import date2num
from matplotlib.figure import Figure

from daemon.research.metrics import F64, I64, TRADING_DAYS, daily_equity, drawdown_series

ROLLING_DAYS = 63


def _dt(times: I64) -> np.ndarray[Any, Any]:
    return times.astype("datetime64[ns]")


def _figure(height: float = 3.2) -> tuple[Figure, Axes]:
    # Fixed margins: the constrained layout engine costs as much as drawing.
    fig = Figure(figsize=(10, height), dpi=90)
    fig.subplots_adjust(left=0.08, right=0.98, top=1 - 0.35 / height, bottom=0.3 / height + 0.02)
    ax = fig.add_subplot()
    ax.grid(True, alpha=0.3)
    return fig, ax


def _num(ts: int) -> float:
    """Matplotlib's date number of a UTC ns time."""
    return float(date2num(np.datetime64(ts, "ns")))  # type: ignore[no-untyped-call]


def figure_html(fig: Figure) -> str:
    """An `<img>` paragraph with the figure as an inline base64 PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<p><img alt="figure" src="data:image/png;base64,{data}"></p>'


def _boundary_lines(ax: Axes, boundaries: Sequence[int]) -> None:
    for i, ts in enumerate(boundaries):
        ax.axvline(_num(ts), color="#888", lw=0.6, ls=":", label="fold start" if i == 0 else None)


def equity_figure(
    times: I64,
    equity: F64,
    bench: F64 | None,
    regimes: list[tuple[int, str]],
    boundaries: Sequence[int] = (),
) -> Figure:
    """Equity, buy and hold when given, regimes shaded, fold starts marked."""
    fig, ax = _figure(4.0)
    x = _dt(times)
    if regimes:
        labels = sorted({label for _, label in regimes})
        colors = {label: f"C{i + 2}" for i, label in enumerate(labels)}
        ends = [t for t, _ in regimes[1:]] + [int(times[-1])]
        shown: set[str] = set()
        for (start, label), end in zip(regimes, ends, strict=True):
            ax.axvspan(
                _num(start),
                _num(end),
                color=colors[label],
                alpha=0.15,
                lw=0,
                label=None if label in shown else f"regime {label}",
            )
            shown.add(label)
    ax.plot(x, equity, color="C0", lw=1.2, label="strategy")
    if bench is not None:
        ax.plot(x, bench, color="C1", lw=1.0, label="buy and hold (equal weight)")
    _boundary_lines(ax, boundaries)
    ax.set_title("Equity")
    ax.legend(loc="upper left", fontsize="small")
    return fig


def drawdown_figure(times: I64, equity: F64, boundaries: Sequence[int] = ()) -> Figure:
    """Drawdown in percent below the high water, fold starts marked."""
    fig, ax = _figure(2.5)
    dd = -100.0 * drawdown_series(equity)
    ax.fill_between(_dt(times), dd, 0.0, color="C3", alpha=0.5, lw=0)
    _boundary_lines(ax, boundaries)
    ax.set_title("Drawdown (%)")
    return fig


def exposure_figure(
    times: I64, equity: F64, gross: F64, symbol_w: tuple[I64, list[str], F64] | None
) -> Figure:
    """Realized gross exposure, and the targets' gross and net when known."""
    fig, ax = _figure(3.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        realized = np.where(equity > 0, gross / equity, 0.0)
    ax.plot(_dt(times), realized, color="C0", lw=1.0, label="realized gross")
    if symbol_w is not None:
        stamps, _, matrix = symbol_w
        ax.step(_dt(stamps), np.abs(matrix).sum(axis=1), where="post", color="C1", lw=1.0,
                label="target gross")  # fmt: skip
        ax.step(_dt(stamps), matrix.sum(axis=1), where="post", color="C2", lw=1.0, ls="--",
                label="target net")  # fmt: skip
    ax.set_title("Exposure (fraction of equity)")
    ax.legend(loc="upper left", fontsize="small")
    return fig


def weights_figure(times: I64, weights: tuple[I64, list[str], F64] | None, title: str) -> Figure:
    """One step line per name of a weight matrix (symbols or strategies)."""
    fig, ax = _figure(3.0)
    if weights is not None:
        stamps, names, matrix = weights
        for j, name in enumerate(names):
            ax.step(_dt(stamps), matrix[:, j], where="post", lw=1.0, label=name)
        ax.legend(loc="upper left", fontsize="small", ncols=min(len(names), 6))
    else:
        ax.text(0.5, 0.5, "no rows", ha="center", transform=ax.transAxes)
    ax.set_title(title)
    return fig


def rolling_sharpe_figure(times: I64, equity: F64) -> Figure:
    """Annualized Sharpe of the daily returns over `ROLLING_DAYS`."""
    fig, ax = _figure(2.8)
    day_ts, daily = daily_equity(times, equity)
    returns = daily[1:] / daily[:-1] - 1.0 if len(daily) > 1 else np.zeros(0)
    if len(returns) >= ROLLING_DAYS:
        windows = np.lib.stride_tricks.sliding_window_view(returns, ROLLING_DAYS)
        std = windows.std(axis=1, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            rolling = np.where(std > 0, windows.mean(axis=1) / std, np.nan)
        ax.plot(_dt(day_ts[ROLLING_DAYS:]), rolling * math.sqrt(TRADING_DAYS), lw=1.0)
        ax.axhline(0.0, color="#666", lw=0.8)
    else:
        ax.text(0.5, 0.5, f"fewer than {ROLLING_DAYS} daily returns", ha="center",
                transform=ax.transAxes)  # fmt: skip
    ax.set_title(f"Rolling Sharpe ({ROLLING_DAYS} trading days, annualized)")
    return fig
