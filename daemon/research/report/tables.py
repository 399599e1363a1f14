"""The report's HTML tables: metrics, monthly returns, trades, walk-forward folds, counts."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from daemon.research.metrics import F64, I64, METRIC_NAMES
from feeds.errors import SourceError

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_PERCENT = {"total_return", "cagr", "volatility", "max_drawdown", "win_rate", "time_in_market"}
# What a reader sees for each metric key (the key stays in the cell's data-name).
METRIC_LABELS: dict[str, str] = {
    "total_return": "total return",
    "cagr": "CAGR",
    "volatility": "volatility, annualized",
    "sharpe": "Sharpe",
    "sortino": "Sortino",
    "max_drawdown": "max drawdown",
    "max_drawdown_days": "max drawdown, days",
    "calmar": "Calmar",
    "turnover": "turnover, per year",
    "win_rate": "win rate",
    "round_trips": "round trips",
    "time_in_market": "time in market",
}


def format_metric(name: str, value: float | None) -> str:
    """How the metrics table shows a value: percentages with 2 decimals, days with 1, counts
    as integers, ratios with 3 decimals, n/a when undefined."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if name in _PERCENT:
        return f"{value * 100:.2f}%"
    if name == "max_drawdown_days":
        return f"{value:.1f}"
    if name == "round_trips":
        return f"{value:.0f}"
    return f"{value:.3f}"


def metrics_table(metrics: dict[str, Any], names: Sequence[str] = METRIC_NAMES) -> str:
    """The metrics of the strategy, and of buy and hold when there is one."""
    strategy: dict[str, float] = metrics["strategy"]
    bench: dict[str, float] | None = metrics["benchmark"]
    head = "<tr><th>metric</th><th>strategy</th>" + (
        "<th>buy and hold</th></tr>" if bench is not None else "</tr>"
    )
    rows = [
        f"<tr><th>{escape(METRIC_LABELS.get(name, name.replace('_', ' ')))}</th>"
        f'<td class="metric" data-name="{escape(name)}">'
        f"{format_metric(name, strategy.get(name))}</td>"
        + (f"<td>{format_metric(name, bench.get(name))}</td>" if bench is not None else "")
        + "</tr>"
        for name in names
    ]
    return '<table id="metrics">' + head + "".join(rows) + "</table>"


def monthly_returns(times: I64, equity: F64) -> dict[tuple[int, int], float]:
    """Return of each (year, month) in UTC of the slice times: last equity of the month over
    the last of the month before (the first month: over the first equity)."""
    months = times.astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64)
    last = np.flatnonzero(np.diff(months, append=months[-1] + 1))
    previous = np.concatenate([[equity[0]], equity[last][:-1]])
    out: dict[tuple[int, int], float] = {}
    for month, end, before in zip(months[last], equity[last], previous, strict=True):
        out[(int(month) // 12 + 1970, int(month) % 12 + 1)] = float(end / before - 1.0)
    return out


def monthly_table(times: I64, equity: F64) -> str:
    """Monthly returns, a row per year with the year's compounded return."""
    returns = monthly_returns(times, equity)
    years = sorted({y for y, _ in returns})
    head = "<tr><th>year</th>" + "".join(f"<th>{m}</th>" for m in _MONTHS) + "<th>year</th></tr>"
    rows = []
    for year in years:
        cells = []
        compound = 1.0
        for month in range(1, 13):
            value = returns.get((year, month))
            if value is None:
                cells.append("<td></td>")
                continue
            compound *= 1.0 + value
            css = "pos" if value > 0 else "neg" if value < 0 else ""
            cells.append(f'<td class="{css}">{value * 100:.2f}%</td>')
        rows.append(
            f"<tr><th>{year}</th>{''.join(cells)}<td>{(compound - 1.0) * 100:.2f}%</td></tr>"
        )
    return '<table id="monthly">' + head + "".join(rows) + "</table>"


def trade_table(
    orders: list[dict[str, str]], fills: list[dict[str, str]], strategy: dict[str, float]
) -> str:
    """Order and fill counts, traded notional, commissions, round trips."""
    status = Counter(r.get("status", "") for r in orders)
    try:
        commissions = sum(float(r["commission"]) for r in fills)
        notional = sum(float(r["qty"]) * float(r["price"]) for r in fills)
    except (KeyError, ValueError) as e:
        raise SourceError(f"fills.csv: bad or missing column ({e})") from e
    items: list[tuple[str, str]] = [
        ("orders", str(len(orders))),
        *((f"orders {name}", str(count)) for name, count in sorted(status.items())),
        ("fills", str(len(fills))),
        ("buys", str(sum(1 for r in fills if r.get("side") == "buy"))),
        ("sells", str(sum(1 for r in fills if r.get("side") == "sell"))),
        ("traded notional", f"{notional:,.2f}"),
        ("commissions", f"{commissions:,.2f}"),
        ("closed round trips", format_metric("round_trips", strategy.get("round_trips"))),
        ("win rate", format_metric("win_rate", strategy.get("win_rate"))),
    ]
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in items)
    return '<table id="trades">' + body + "</table>"


def _percent_cell(text: str) -> str:
    value = float(text)
    css = "pos" if value > 0 else "neg" if value < 0 else ""
    return f'<td class="{css}">{format_metric("total_return", value)}</td>'


def folds_table(rows: list[dict[str, str]], path: Path) -> str:
    """One row per walk-forward fold (`path`: the folds.csv the rows came from)."""
    head = (
        "<tr><th>fold</th><th>train</th><th>test</th><th>params</th><th>train objective</th>"
        "<th>test return</th><th>test sharpe</th><th>test max drawdown</th></tr>"
    )
    body = []
    try:
        for r in rows:
            objective = r["train_objective"]
            body.append(
                f"<tr><th>{escape(r['fold'])}</th>"
                f"<td>{escape(r['train_start'])} to {escape(r['train_end'])}</td>"
                f"<td>{escape(r['test_start'])} to {escape(r['test_end'])}</td>"
                f'<td class="params">{escape(_params_text(r["params"]))}</td>'
                f"<td>{format_metric('sharpe', float(objective)) if objective else ''}</td>"
                + _percent_cell(r["test_return"])
                + f"<td>{format_metric('sharpe', float(r['test_sharpe']))}</td>"
                f"<td>{format_metric('max_drawdown', float(r['test_max_drawdown']))}</td></tr>"
            )
    except (KeyError, ValueError) as e:
        raise SourceError(f"{path}: bad or missing column ({e})") from e
    return '<table id="folds">' + head + "".join(body) + "</table>"


def _params_text(raw: str) -> str:
    """`key=value, ...` of a fold's chosen grid point (JSON in folds.csv); "-" without a grid."""
    try:
        params = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    if not isinstance(params, dict):
        return raw
    if not params:
        return "-"
    return ", ".join(f"{k}={orjson.dumps(v).decode()}" for k, v in params.items())


def counts_table(counts: dict[str, Any], key: str) -> str:
    """A count per key (the rejected bars per reason); a line when there are none."""
    if not counts:
        return "<p>None.</p>"
    body = "".join(
        f"<tr><td>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>"
        for k, v in sorted(counts.items())
    )
    return f'<table id="rejected"><tr><th>{escape(key)}</th><th>count</th></tr>{body}</table>'
