"""Walk-forward optimization: choose in a training window, prove it in the window after.

The trading sessions of the data are split into rolling folds, `[train | test]`, each rolled
forward by the test length, so the test windows tile the data after the first training window.
In each training window every point of a parameter grid (strategy params, composer settings: any
config key path) is replayed, and the point with the best objective (Sharpe by default, max is
better, ties to the earlier grid point) is then replayed over the test window. The test windows'
equity curves are chained into one out-of-sample curve.

Every replay is a job of plain picklable data run through `daemon.replay.driver.replay`, the same
event path as any replay: in-process (one worker), in a process pool, or on a Dask distributed
cluster. A job's result depends only on its arguments, so every mode gives the same figures.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol, TypeAlias
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import yaml

from composer.composer import Composer
from composer.registry import load_registry
from daemon.config import LoadedConfig, Loc, build_strategies, load_config
from daemon.logs import EventLog
from daemon.replay.driver import TRADING_DAYS, replay
from daemon.timeutil import NS, day_index
from daemon.wiring import DAY_TZ, open_source
from feeds.bar import NS_PER_DAY, NS_PER_MINUTE
from feeds.errors import ConfigError
from feeds.replay import ReplaySource

Mode: TypeAlias = Literal["serial", "processes", "dask"]
GridPoint: TypeAlias = dict[str, Any]  # dotted key path -> value

# Extra sessions read before the lookbacks strictly need, so that the first traded slice
# already sees fully warmed indicators (the sanity check's rolling window warms up too).
WARMUP_MARGIN_SESSIONS = 10
_SESSION_NS = 390 * NS_PER_MINUTE


@dataclass(frozen=True, slots=True, kw_only=True)
class Fold:
    """One fold's windows, as inclusive trading dates."""

    index: int
    train_start: date
    train_end: date
    test_start: date
    test_end: date


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One replay: plain data, so it pickles to a process or a Dask worker.

    Paths are absolute: a worker may run in another directory.
    """

    config_paths: tuple[str, ...]
    overrides: tuple[tuple[Loc, Any], ...]
    start: date
    end: date
    warmup_from: date
    out_dir: str
    want_equity: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class JobResult:
    summary: dict[str, Any]
    # (time ISO, equity) per recorded slice; only for test jobs (the joined curve needs it).
    equity: tuple[tuple[str, float], ...]


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


def walk_forward(
    config_paths: Sequence[str],
    *,
    train_days: int,
    test_days: int,
    grid_path: str | None = None,
    scheduler: str | None = None,
    workers: int = 1,
    overrides: Mapping[Loc, Any] | None = None,
    out_dir: Path,
    seed: int = 0,
    objective: str = "sharpe",
    warmup_days: int | None = None,
) -> WalkForwardResult:
    """Run a walk-forward optimization and write `equity.csv`, `folds.csv`, `summary.json`.

    Args:
        config_paths: YAML overlays, as for `tradingd replay`.
        train_days: trading sessions per training window.
        test_days: trading sessions per test window (also the step between folds).
        grid_path: YAML mapping of dotted key paths to lists of values; None runs the config
            as it is in every test window (a rolling out-of-sample check).
        scheduler: a Dask scheduler address; jobs then run on that cluster.
        workers: processes of the local pool (1: in this process); ignored with `scheduler`.
        overrides: command-line overrides, as `load_config` takes (symbols, run start/end).
            `run.start`/`run.end` limit the sessions that folds are made of.
        out_dir: where the outputs go; each replay writes into `out_dir/jobs/<name>`.
        seed: recorded in the summary. The event path draws no random numbers, so the results
            depend on the inputs alone; the seed is kept for reproducibility records.
        objective: a numeric key of the replay summary; higher is better.
        warmup_days: sessions read before each window to fill lookbacks; None computes it from
            the strategies' and the composer's `warmup_bars` (plus a margin).

    Raises:
        ConfigError: a bad config, grid file, objective or window length, or too few sessions
            for one fold.
    """
    started = time.perf_counter()
    if train_days < 1 or test_days < 1:
        raise ConfigError("--train and --test must be at least 1 session")
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    paths = tuple(str(Path(p).resolve()) for p in config_paths)
    base_overrides = dict(overrides or {})
    loaded = load_config(paths, base_overrides)
    # The data path is relative to where the user runs; a worker may run elsewhere.
    base_overrides[("data", "path")] = str(Path(loaded.settings.data.path).resolve())
    loaded = load_config(paths, base_overrides)

    every, sessions, universe = _sessions(loaded)
    folds = make_folds(sessions, train_days=train_days, test_days=test_days)
    if not folds:
        raise ConfigError(
            f"{len(sessions)} sessions in the data: too few for one fold of "
            f"{train_days} + {test_days}"
        )
    points = read_grid(grid_path, loaded.files, base_overrides) if grid_path else [{}]
    valid: list[tuple[int, GridPoint, int]] = []  # (grid index, point, warm sessions)
    skipped = 0
    for i, point in enumerate(points):
        try:
            warm = _warmup_sessions(_load(paths, base_overrides, point), universe)
        except (ConfigError, TypeError, AttributeError):
            skipped += 1
            continue
        valid.append((i, point, warmup_days if warmup_days is not None else warm))
    if not valid:
        raise ConfigError(f"{grid_path}: no grid point gives a valid config")

    out = Path(out_dir).resolve()
    jobs_dir = out / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    index_of = {d: n for n, d in enumerate(every)}

    def job(fold: Fold, point: GridPoint, warm: int, kind: str, name: str) -> Job:
        start, end = (
            (fold.train_start, fold.train_end)
            if kind == "train"
            else (fold.test_start, fold.test_end)
        )
        first = every[max(index_of[start] - warm, 0)]
        merged = {**base_overrides, **_point_overrides(point)}
        merged[("run", "start")] = start.isoformat()
        merged[("run", "end")] = end.isoformat()
        return Job(
            config_paths=paths,
            overrides=tuple(merged.items()),
            start=start,
            end=end,
            warmup_from=first,
            out_dir=str(jobs_dir / name),
            want_equity=kind == "test",
        )

    runner, mode, n_workers, close = _runner(scheduler, workers)
    try:
        grid_search = grid_path is not None
        train_futures = (
            {
                (f.index, gi): runner(
                    job(f, point, warm, "train", f"fold{f.index:03d}-train-g{gi:03d}")
                )
                for f in folds
                for gi, point, warm in valid
            }
            if grid_search
            else {}
        )
        test_futures: list[tuple[Fold, GridPoint, float | None, _Future]] = []
        for f in folds:
            chosen, score = valid[0], None
            if grid_search:
                for candidate in valid:
                    value = _objective(train_futures[(f.index, candidate[0])].result(), objective)
                    # Strictly better only: a tie keeps the earlier grid point.
                    if score is None or value > score:
                        chosen, score = candidate, value
            _, point, warm = chosen
            test_futures.append(
                (f, point, score, runner(job(f, point, warm, "test", f"fold{f.index:03d}-test")))
            )
        fold_results = []
        curves = []
        for f, point, score, future in test_futures:
            res = future.result()
            summary = res.summary
            fold_results.append(
                FoldResult(
                    fold=f,
                    params=point,
                    train_objective=score,
                    test_return=float(summary["total_return"]),
                    test_sharpe=float(summary["sharpe"]),
                    test_max_drawdown=float(summary["max_drawdown"]),
                    test=summary,
                )
            )
            curves.append(res.equity)
    finally:
        close()

    start_cash = float(loaded.settings.run.start_cash)
    joined = join_curves(curves, start_cash)
    overall = curve_figures(joined, start_cash)
    summary = {
        **overall,
        "folds": len(folds),
        "train_sessions": train_days,
        "test_sessions": test_days,
        "first_test": folds[0].test_start.isoformat(),
        "last_test": folds[-1].test_end.isoformat(),
        "grid_points": len(points) if grid_path else 0,
        "grid_skipped": skipped,
        "objective": objective,
        "config": list(config_paths),
        "seed": seed,
        "mode": mode,
        "workers": n_workers,
        "wall_seconds": round(time.perf_counter() - started, 3),
    }
    _write_equity(out / "equity.csv", joined, start_cash)
    _write_folds(out / "folds.csv", fold_results)
    (out / "summary.json").write_bytes(
        orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )
    return WalkForwardResult(out_dir=out, folds=tuple(fold_results), summary=summary)


def make_folds(sessions: Sequence[date], *, train_days: int, test_days: int) -> list[Fold]:
    """Rolling `[train | test]` windows over `sessions`, stepped by `test_days`.

    The last test window may be shorter (it ends with the data); no fold has an empty one.
    """
    folds = []
    k = 0
    while (lo := k * test_days) + train_days < len(sessions):
        mid = lo + train_days
        hi = min(mid + test_days, len(sessions))
        folds.append(
            Fold(
                index=k,
                train_start=sessions[lo],
                train_end=sessions[mid - 1],
                test_start=sessions[mid],
                test_end=sessions[hi - 1],
            )
        )
        k += 1
    return folds


def read_grid(
    path: str, config_paths: Sequence[str], overrides: Mapping[Loc, Any] | None = None
) -> list[GridPoint]:
    """The grid file's points: the cartesian product of its lists, in file order.

    Raises:
        ConfigError: the file is unreadable or not a mapping; a value is not a non-empty list;
            a key path is not a key of the config. Each message names the file and the key.
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the grid: {e}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: the grid must be a mapping of key paths to lists of values")
    keys = [str(k) for k in data]
    for key, values in zip(keys, data.values(), strict=True):
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: {key}: must be a non-empty list of values")
        _check_key(path, key, values[0], config_paths, overrides or {})
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*data.values())]


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
    """Total return, CAGR, Sharpe (of daily returns, rf = 0) and max drawdown of a curve that
    starts from `start_cash`."""
    if not rows:
        return {"total_return": 0.0, "cagr": 0.0, "sharpe": 0.0, "max_drawdown": 0.0, "days": 0}
    ts = np.array([_parse_ns(t) for t, _, _ in rows], dtype=np.int64)
    equity = np.array([e for _, _, e in rows], dtype=np.float64)
    days = day_index(ts, DAY_TZ)
    daily = np.concatenate(([start_cash], equity[np.flatnonzero(np.diff(days, append=-1))]))
    returns = daily[1:] / daily[:-1] - 1.0
    std = float(returns.std(ddof=1)) if len(returns) > 1 else 0.0
    sharpe = (
        float(returns.mean()) / std * math.sqrt(TRADING_DAYS)
        if std > 0 and math.isfinite(std)
        else 0.0
    )
    curve = np.concatenate(([start_cash], equity))
    drawdown = 1.0 - curve / np.maximum.accumulate(curve)
    total = float(equity[-1] / start_cash - 1.0)
    n_days = len(returns)
    cagr = (1.0 + total) ** (TRADING_DAYS / n_days) - 1.0 if total > -1.0 else -1.0
    return {
        "total_return": round(total, 6),
        "cagr": round(cagr, 6),
        "sharpe": round(sharpe, 4),
        "max_drawdown": round(float(drawdown.max()), 6),
        "final_equity": round(float(equity[-1]), 2),
        "days": n_days,
    }


def run_job(job: Job) -> JobResult:
    """Replay one window (a module-level function: process pools and Dask pickle it by name)."""
    loaded = load_config(job.config_paths, dict(job.overrides))
    out = Path(job.out_dir)
    result = replay(loaded, out_dir=out, log=EventLog(io.StringIO()), warmup_from=job.warmup_from)
    equity: tuple[tuple[str, float], ...] = ()
    if job.want_equity:
        with (out / "equity.csv").open(newline="", encoding="utf-8") as f:
            equity = tuple((r["time"], float(r["equity"])) for r in csv.DictReader(f))
    return JobResult(summary=result.summary, equity=equity)


# -- internals ---------------------------------------------------------------------------


class _Future(Protocol):
    def result(self) -> JobResult: ...


@dataclass(frozen=True, slots=True)
class _Done:
    value: JobResult

    def result(self) -> JobResult:
        return self.value


def _runner(
    scheduler: str | None, workers: int
) -> tuple[Callable[[Job], _Future], Mode, int, Callable[[], None]]:
    """(submit, mode, workers, close) for the chosen way of running jobs."""
    if scheduler is not None:
        try:
            from distributed import Client
        except ImportError:
            raise ConfigError("--scheduler needs Dask: pip install 'tradingd[dask]'") from None
        client = Client(scheduler)  # type: ignore[no-untyped-call]
        n = len(client.scheduler_info()["workers"])

        def submit_dask(job: Job) -> _Future:
            future: _Future = client.submit(run_job, job, pure=False)
            return future

        return submit_dask, "dask", n, client.close
    if workers == 1:
        return (lambda job: _Done(run_job(job))), "serial", 1, lambda: None
    pool: Executor = ProcessPoolExecutor(max_workers=workers)

    def submit_pool(job: Job) -> _Future:
        return pool.submit(run_job, job)

    return submit_pool, "processes", workers, lambda: pool.shutdown(cancel_futures=True)


def _sessions(loaded: LoadedConfig) -> tuple[list[date], list[date], list[str]]:
    """Every New York date with bars, those within run.start..run.end, and the universe.

    All dates are kept for warm-up: a window may read bars from before `run.start`.
    """
    settings = loaded.settings
    source = ReplaySource(
        Path(settings.data.path),
        symbols=settings.symbols or None,
        timezone=settings.data.timezone,
    )
    universe = list(settings.symbols or source.symbols)
    ts = np.fromiter((bar.ts for bar, _ in source), dtype=np.int64, count=len(source))
    if len(ts) == 0:
        return [], [], universe
    first = datetime.fromtimestamp(int(ts[0]) / NS, tz=ZoneInfo(DAY_TZ)).date()
    offsets = np.unique(day_index(ts, DAY_TZ)).tolist()
    every = [first + timedelta(days=int(o)) for o in offsets]
    lo, hi = settings.run.start or date.min, settings.run.end or date.max
    return every, [d for d in every if lo <= d <= hi], universe


def _warmup_sessions(loaded: LoadedConfig, universe: list[str]) -> int:
    """Sessions to read before a window: the composer's lookback in bars, as sessions."""
    strategies = build_strategies(loaded, load_registry(), universe)
    try:
        bars = Composer(loaded.settings.composer, strategies, universe).warmup_bars
    except ConfigError as e:
        raise ConfigError(f"{loaded.files[-1]}: {e}") from None
    bar_ns = loaded.settings.data.bar_ns()
    per_session = 1 if bar_ns >= NS_PER_DAY else max(_SESSION_NS // bar_ns, 1)
    return -(-bars // per_session) + WARMUP_MARGIN_SESSIONS


def _load(paths: Sequence[str], overrides: Mapping[Loc, Any], point: GridPoint) -> LoadedConfig:
    return load_config(paths, {**overrides, **_point_overrides(point)})


def _point_overrides(point: GridPoint) -> dict[Loc, Any]:
    return {tuple(key.split(".")): value for key, value in point.items()}


def _check_key(
    grid: str, key: str, value: Any, paths: Sequence[str], overrides: Mapping[Loc, Any]
) -> None:
    """A key path must name a config key: probe it with its first value and look for an
    'unknown' complaint about the path or one of its prefixes (an unknown section, strategy
    or parameter). Any other complaint is about the value, and such points are skipped."""
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"{grid}: {key}: not a dotted key path")
    try:
        loaded = _load(paths, overrides, {key: value})
        universe = list(loaded.settings.symbols or open_source(loaded).symbols)
        build_strategies(loaded, load_registry(), universe)
    except ConfigError as e:
        prefixes = {".".join(parts[:n]) for n in range(1, len(parts) + 1)}
        for line in str(e).splitlines():
            _, _, rest = line.partition(": ")
            dotted, _, message = rest.partition(": ")
            if dotted in prefixes and "unknown" in message:
                raise ConfigError(f"{grid}: {key}: not a key of the config ({message})") from None
    except (TypeError, AttributeError):
        # The path goes through a value that is not a mapping (e.g. `run.start_cash.x`).
        raise ConfigError(f"{grid}: {key}: not a key of the config") from None


def _objective(result: JobResult, name: str) -> float:
    value = result.summary.get(name)
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"objective {name!r}: not a numeric key of the replay summary")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"objective {name!r}: not a numeric key of the replay summary") from None
    # A NaN would never compare greater; rank it below every real score instead.
    return number if math.isfinite(number) else -math.inf


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


def default_workers() -> int:
    """A sensible --workers default: the CPUs this process may use."""
    return max(len(os.sched_getaffinity(0)), 1)
