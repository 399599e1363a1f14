"""HTML reports of a replay or a walk-forward: one self-contained file, figures inlined as
base64 PNGs.

Built from the output folder only (plus, optionally, the closes of its universe for the
buy-and-hold benchmark); needs no JavaScript and no network to view.
"""

from __future__ import annotations

import base64
import io
import math
from collections import Counter
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from matplotlib.axes import Axes
from matplotlib.dates import date2num
from matplotlib.figure import Figure

from daemon.research.metrics import (
    F64,
    I64,
    METRIC_NAMES,
    TRADING_DAYS,
    Prices,
    benchmark_equity,
    compute_metrics,
    daily_equity,
    drawdown_series,
    parse_iso_ns,
    read_csv_rows,
    read_equity,
    read_summary,
    series_metrics,
)
from feeds.errors import SourceError

ROLLING_DAYS = 63
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# The metrics a bare equity curve defines (no fills or exposure: no turnover, win rate...).
_SERIES_METRICS = METRIC_NAMES[:8]
_PERCENT = {"total_return", "cagr", "volatility", "max_drawdown", "win_rate", "time_in_market"}
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2}
td.pos{color:#176317}td.neg{color:#a11}
img{max-width:100%}
"""


def write_report(out_dir: Path, *, prices: Prices | None) -> Path:
    """Write `out_dir/report.html` for the replay in `out_dir` and return its path.

    Args:
        out_dir: a finished replay's folder (`summary.json`, `equity.csv`, `orders.csv`,
            `fills.csv`, `targets.csv`).
        prices: closes per symbol (`daemon.metrics.load_closes`) for the buy-and-hold
            benchmark; None leaves the benchmark out.

    Raises:
        SourceError: a file is missing or malformed; the message names it.
    """
    summary = read_summary(out_dir)
    times, equity, gross = read_equity(out_dir)
    if len(times) == 0:
        raise SourceError(f"{out_dir / 'equity.csv'}: no rows")
    orders = read_csv_rows(out_dir / "orders.csv")
    fills = read_csv_rows(out_dir / "fills.csv")
    targets = read_csv_rows(out_dir / "targets.csv")
    metrics = compute_metrics(out_dir, prices)
    bench = benchmark_equity(prices, times, float(equity[0])) if prices else None

    symbol_w = _weights(targets, "symbol", times)
    strategy_w = _weights(targets, "strategy", times)
    regimes = _regimes(summary)

    run_id = str(summary.get("run_id", ""))
    parts = [
        *_document_head(
            f"tradingd report {run_id}",
            f"Replay {run_id}",
            f"{summary.get('first_slice')} to {summary.get('last_slice')}; symbols: "
            f"{', '.join(map(str, summary.get('symbols', [])))}; config: "
            f"{', '.join(map(str, summary.get('config', [])))}",
        ),
        "<h2>Metrics</h2>",
        _metrics_table(metrics),
        "<h2>Equity</h2>",
        _img(_equity_figure(times, equity, bench, regimes)),
        _img(_drawdown_figure(times, equity)),
        "<h2>Exposure</h2>",
        _img(_exposure_figure(times, equity, gross, symbol_w)),
        "<h2>Weights</h2>",
        _img(_weights_figure(times, symbol_w, "Target weight per symbol")),
        _img(_weights_figure(times, strategy_w, "Capital weight per strategy")),
        "<h2>Rolling Sharpe</h2>",
        _img(_rolling_sharpe_figure(times, equity)),
        "<h2>Monthly returns</h2>",
        _monthly_table(times, equity),
        "<h2>Trades</h2>",
        _trade_table(orders, fills, metrics["strategy"]),
        "<h2>Rejected bars</h2>",
        _counts_table(summary.get("bars_rejected") or {}, "reason"),
    ]
    return _write_document(out_dir / "report.html", parts)


def is_walkforward(out_dir: Path) -> bool:
    """Whether `out_dir` holds a walk-forward's output (a `folds.csv`), not a replay's."""
    return (out_dir / "folds.csv").is_file()


def walkforward_symbols(out_dir: Path) -> list[str]:
    """The universe of the walk-forward in `out_dir`: the symbols of its first test replay
    (`jobs/fold000-test/summary.json`), to load the benchmark's closes with.

    Raises:
        SourceError: that summary is missing or malformed; the message names it.
    """
    path = out_dir / "jobs" / "fold000-test"
    symbols = read_summary(path).get("symbols")
    if not isinstance(symbols, list) or not symbols:
        raise SourceError(f"{path / 'summary.json'}: no symbols")
    return [str(s) for s in symbols]


def write_walkforward_report(out_dir: Path, *, prices: Prices | None) -> Path:
    """Write `out_dir/report.html` for the walk-forward in `out_dir` and return its path.

    The report covers the joined out-of-sample curve of `equity.csv` (the test windows
    chained): equity against equal-weight buy and hold over the same slices, with the fold
    boundaries marked; drawdown; rolling Sharpe; monthly returns; the return and drawdown
    metrics of `daemon.metrics.series_metrics` on that curve (so they start from the first
    test slice, where `summary.json` starts from the start cash: tiny differences are
    expected); and one row per fold from `folds.csv`.

    Args:
        out_dir: a finished walk-forward's folder (`summary.json`, `equity.csv`, `folds.csv`).
        prices: closes per symbol (`daemon.metrics.load_closes`, e.g. of
            `walkforward_symbols(out_dir)`) for the benchmark; None leaves it out.

    Raises:
        SourceError: a file is missing or malformed; the message names it.
    """
    summary = read_summary(out_dir)
    times, folds, equity = _read_walkforward_equity(out_dir / "equity.csv")
    fold_rows = read_csv_rows(out_dir / "folds.csv")
    bench = benchmark_equity(prices, times, float(equity[0])) if prices else None
    metrics: dict[str, Any] = {
        "strategy": series_metrics(times, equity),
        "benchmark": series_metrics(times, bench) if bench is not None else None,
    }
    # A fold starts where the fold number changes along the joined curve.
    boundaries = [int(t) for t in times[1:][np.diff(folds) != 0]]
    grid = summary.get("grid_points") or 0
    parts = [
        *_document_head(
            "tradingd walk-forward report",
            "Walk-forward",
            f"out of sample {summary.get('first_test')} to {summary.get('last_test')}; "
            f"{summary.get('folds')} folds of {summary.get('train_sessions')} training + "
            f"{summary.get('test_sessions')} test sessions; "
            + (
                f"{grid} grid points ({summary.get('grid_skipped', 0)} skipped), "
                f"objective {summary.get('objective')}; "
                if grid
                else "no grid; "
            )
            + (f"symbols: {', '.join(sorted(prices))}; " if prices else "")
            + f"config: {', '.join(map(str, summary.get('config', [])))}",
        ),
        "<h2>Metrics (out of sample)</h2>",
        _metrics_table(metrics, _SERIES_METRICS),
        "<h2>Equity</h2>",
        _img(_equity_figure(times, equity, bench, [], boundaries)),
        _img(_drawdown_figure(times, equity, boundaries)),
        "<h2>Rolling Sharpe</h2>",
        _img(_rolling_sharpe_figure(times, equity)),
        "<h2>Monthly returns</h2>",
        _monthly_table(times, equity),
        "<h2>Folds</h2>",
        _folds_table(fold_rows, out_dir / "folds.csv"),
    ]
    return _write_document(out_dir / "report.html", parts)


# Document


def _document_head(title: str, heading: str, intro: str) -> list[str]:
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{escape(heading)}</h1>",
        f"<p>{escape(intro)}</p>",
    ]


def _write_document(path: Path, parts: list[str]) -> Path:
    path.write_text("\n".join([*parts, "</body></html>"]) + "\n", encoding="utf-8")
    return path


# Data shaping


def _read_walkforward_equity(path: Path) -> tuple[I64, I64, F64]:
    """(times, fold numbers, equity) of a walk-forward's joined `equity.csv`."""
    rows = read_csv_rows(path)
    try:
        times = parse_iso_ns([r["time"] for r in rows])
        folds = np.array([int(r["fold"]) for r in rows], dtype=np.int64)
        equity = np.array([float(r["equity"]) for r in rows], dtype=np.float64)
    except (KeyError, ValueError) as e:
        raise SourceError(f"{path}: bad or missing column ({e})") from e
    if len(times) == 0:
        raise SourceError(f"{path}: no rows")
    return times, folds, equity


def _dt(times: I64) -> np.ndarray[Any, Any]:
    return times.astype("datetime64[ns]")


def _weights(
    rows: list[dict[str, str]], kind: str, times: I64
) -> tuple[I64, list[str], F64] | None:
    """(change times, names, weight matrix [time, name]) of one kind of target row, each
    weight held until the next row of its name; None when there are none."""
    picked = [r for r in rows if r.get("kind") == kind]
    if not picked:
        return None
    try:
        ts = parse_iso_ns([r["time"] for r in picked])
        values = [float(r["weight"]) for r in picked]
    except (KeyError, ValueError) as e:
        raise SourceError(f"targets.csv: bad or missing column ({e})") from e
    names = list(dict.fromkeys(r["name"] for r in picked))
    column = {n: i for i, n in enumerate(names)}
    stamps = np.unique(ts)
    matrix = np.full((len(stamps), len(names)), np.nan)
    row_of = np.searchsorted(stamps, ts)
    for r, row, value in zip(picked, row_of, values, strict=True):
        matrix[row, column[r["name"]]] = value
    # Forward fill: a weight holds until its next row.
    for j in range(len(names)):
        col = matrix[:, j]
        valid = np.where(np.isnan(col), 0, np.arange(len(col)))
        col[:] = col[np.maximum.accumulate(valid)]
    matrix = np.nan_to_num(matrix, nan=0.0)
    # Extend to the last slice so the step plot runs to the end.
    if len(times) and times[-1] > stamps[-1]:
        stamps = np.append(stamps, times[-1])
        matrix = np.vstack([matrix, matrix[-1:]])
    return stamps, names, matrix


def _regimes(summary: dict[str, Any]) -> list[tuple[int, str]]:
    raw = summary.get("regimes") or []
    if not raw:
        return []
    stamps = parse_iso_ns([str(t) for t, _ in raw])
    return [(int(t), str(label)) for t, (_, label) in zip(stamps, raw, strict=True)]


# Figures


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


def _img(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<p><img alt="figure" src="data:image/png;base64,{data}"></p>'


def _boundary_lines(ax: Axes, boundaries: Sequence[int]) -> None:
    for i, ts in enumerate(boundaries):
        ax.axvline(_num(ts), color="#888", lw=0.6, ls=":", label="fold start" if i == 0 else None)


def _equity_figure(
    times: I64,
    equity: F64,
    bench: F64 | None,
    regimes: list[tuple[int, str]],
    boundaries: Sequence[int] = (),
) -> Figure:
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


def _drawdown_figure(times: I64, equity: F64, boundaries: Sequence[int] = ()) -> Figure:
    fig, ax = _figure(2.5)
    dd = -100.0 * drawdown_series(equity)
    ax.fill_between(_dt(times), dd, 0.0, color="C3", alpha=0.5, lw=0)
    _boundary_lines(ax, boundaries)
    ax.set_title("Drawdown (%)")
    return fig


def _exposure_figure(
    times: I64, equity: F64, gross: F64, symbol_w: tuple[I64, list[str], F64] | None
) -> Figure:
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


def _weights_figure(times: I64, weights: tuple[I64, list[str], F64] | None, title: str) -> Figure:
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


def _rolling_sharpe_figure(times: I64, equity: F64) -> Figure:
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


# Tables


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


def _metrics_table(metrics: dict[str, Any], names: Sequence[str] = METRIC_NAMES) -> str:
    strategy: dict[str, float] = metrics["strategy"]
    bench: dict[str, float] | None = metrics["benchmark"]
    head = "<tr><th>metric</th><th>strategy</th>" + (
        "<th>buy and hold</th></tr>" if bench is not None else "</tr>"
    )
    rows = [
        f'<tr><th>{escape(name)}</th><td class="metric" data-name="{escape(name)}">'
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


def _monthly_table(times: I64, equity: F64) -> str:
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


def _trade_table(
    orders: list[dict[str, str]], fills: list[dict[str, str]], strategy: dict[str, float]
) -> str:
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


def _folds_table(rows: list[dict[str, str]], path: Path) -> str:
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


def _counts_table(counts: dict[str, Any], key: str) -> str:
    if not counts:
        return "<p>None.</p>"
    body = "".join(
        f"<tr><td>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>"
        for k, v in sorted(counts.items())
    )
    return f'<table id="rejected"><tr><th>{escape(key)}</th><th>count</th></tr>{body}</table>'
