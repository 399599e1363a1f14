"""The report documents: one self-contained HTML file for a replay or a walk-forward folder,
and the reading of that folder into what the figures and tables draw."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from daemon.research.metrics import (
    F64,
    I64,
    METRIC_NAMES,
    Prices,
    benchmark_equity,
    compute_metrics,
    parse_iso_ns,
    read_csv_rows,
    read_equity,
    read_summary,
    series_metrics,
)
from daemon.research.report.figures import (
    drawdown_figure,
    equity_figure,
    exposure_figure,
    figure_html,
    rolling_sharpe_figure,
    weights_figure,
)
from daemon.research.report.tables import (
    counts_table,
    folds_table,
    metrics_table,
    monthly_table,
    trade_table,
)
from daemon.timeutil import iso_utc
from feeds.errors import SourceError

# The metrics a bare equity curve defines (no fills or exposure: no turnover, win rate...).
_SERIES_METRICS = METRIC_NAMES[:8]
_RUN_KINDS = {
    "replay": "Replay",
    "sim": "Simulated live run",
    "paper": "Paper run",
    "live": "Live run",
    "track": "Tracking run",
}
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
        prices: closes per symbol (`daemon.research.metrics.load_closes`) for the buy-and-hold
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

    run_id = str(summary.get("run_id") or out_dir.name)
    kind = _RUN_KINDS.get(str(summary.get("mode", "replay")), "Run")
    # The period from the summary, or from equity.csv when the summary does not name it.
    first = summary.get("first_slice") or iso_utc(int(times[0]))
    last = summary.get("last_slice") or iso_utc(int(times[-1]))
    parts = [
        *_document_head(
            f"tradingd report {run_id}",
            f"{kind} {run_id}",
            f"{first} to {last}; symbols: "
            f"{', '.join(map(str, summary.get('symbols', [])))}; config: "
            f"{', '.join(map(str, summary.get('config', [])))}",
        ),
        "<h2>Metrics</h2>",
        metrics_table(metrics),
        "<h2>Equity</h2>",
        figure_html(equity_figure(times, equity, bench, regimes)),
        figure_html(drawdown_figure(times, equity)),
        "<h2>Exposure</h2>",
        figure_html(exposure_figure(times, equity, gross, symbol_w)),
        "<h2>Weights</h2>",
        figure_html(weights_figure(times, symbol_w, "Target weight per symbol")),
        figure_html(weights_figure(times, strategy_w, "Capital weight per strategy")),
        "<h2>Rolling Sharpe</h2>",
        figure_html(rolling_sharpe_figure(times, equity)),
        "<h2>Monthly returns</h2>",
        monthly_table(times, equity),
        "<h2>Trades</h2>",
        trade_table(orders, fills, metrics["strategy"]),
        "<h2>Rejected bars</h2>",
        counts_table(summary.get("bars_rejected") or {}, "reason"),
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
    metrics of `daemon.research.metrics.series_metrics` on that curve (so they start from the first
    test slice, where `summary.json` starts from the start cash: tiny differences are
    expected); and one row per fold from `folds.csv`.

    Args:
        out_dir: a finished walk-forward's folder (`summary.json`, `equity.csv`, `folds.csv`).
        prices: closes per symbol (`daemon.research.metrics.load_closes`, e.g. of
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
        metrics_table(metrics, _SERIES_METRICS),
        "<h2>Equity</h2>",
        figure_html(equity_figure(times, equity, bench, [], boundaries)),
        figure_html(drawdown_figure(times, equity, boundaries)),
        "<h2>Rolling Sharpe</h2>",
        figure_html(rolling_sharpe_figure(times, equity)),
        "<h2>Monthly returns</h2>",
        monthly_table(times, equity),
        "<h2>Folds</h2>",
        folds_table(fold_rows, out_dir / "folds.csv"),
    ]
    return _write_document(out_dir / "report.html", parts)


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
