"""`walk_forward`: in each fold, choose the best grid point in training and replay it in test."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TypeAlias

from daemon.config import LoadedConfig, Loc, load_config
from daemon.memory import release_freed_memory
from daemon.replay.walkforward.folds import (
    Fold,
    GridPoint,
    load_point,
    make_folds,
    point_overrides,
    read_grid,
    read_sessions,
    warmup_sessions,
)
from daemon.replay.walkforward.jobs import Curve, Future, Job, JobResult, runner
from daemon.replay.walkforward.outputs import (
    FoldResult,
    WalkForwardResult,
    curve_figures,
    join_curves,
    write_outputs,
)
from feeds.errors import ConfigError

# (grid index, point, warm-up sessions) of a grid point whose config is valid.
_Candidate: TypeAlias = tuple[int, GridPoint, int]


# The replay summary's figures where higher is better, which a grid search can maximize.
OBJECTIVES: tuple[str, ...] = ("sharpe", "total_return", "final_equity")


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
        objective: one of OBJECTIVES, a key of the replay summary; higher is better.
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
    if objective not in OBJECTIVES:
        raise ConfigError(
            f"command line: --objective {objective}: not a figure walk-forward can maximize; "
            f"choose one of {', '.join(OBJECTIVES)}"
        )
    paths, base_overrides, loaded = _load_base(config_paths, overrides)
    out = Path(out_dir).resolve()
    # The workers start now, while this process is small: forked later, each would share (and
    # count in its resident memory) the pages the reading of the sessions left here.
    submit, mode, n_workers, close = runner(scheduler, workers)
    try:
        every, sessions, universe = read_sessions(loaded)
        folds = make_folds(sessions, train_days=train_days, test_days=test_days)
        if not folds:
            raise ConfigError(
                f"{len(sessions)} sessions in the data: too few for one fold of "
                f"{train_days} + {test_days}"
            )
        release_freed_memory()  # the read of read_sessions is gone: return its pages
        points = (
            read_grid(grid_path, loaded.files, base_overrides, universe=universe)
            if grid_path
            else [{}]
        )
        valid, skipped = _candidates(points, paths, base_overrides, universe, warmup_days)
        if not valid:
            raise ConfigError(f"{grid_path}: no grid point gives a valid config")
        plan = _JobPlan(paths=paths, overrides=base_overrides, every=every, jobs_dir=out / "jobs")
        plan.jobs_dir.mkdir(parents=True, exist_ok=True)
        fold_results, curves = _run_folds(
            folds, valid, plan, submit, grid_search=grid_path is not None, objective=objective
        )
    finally:
        close()

    start_cash = float(loaded.settings.run.start_cash)
    # The curves as tuples only now: the workers are gone.
    joined = join_curves([c.points() for c in curves], start_cash)
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
    write_outputs(out, joined, fold_results, summary, start_cash)
    return WalkForwardResult(out_dir=out, folds=tuple(fold_results), summary=summary)


@dataclass(frozen=True, slots=True, kw_only=True)
class _JobPlan:
    """What every job of one walk-forward shares: the overlays, the overrides, the dates."""

    paths: tuple[str, ...]
    overrides: dict[Loc, Any]
    every: list[date]  # every date with bars: warm-up may start before run.start
    jobs_dir: Path
    index_of: dict[date, int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index_of", {d: n for n, d in enumerate(self.every)})

    def job(self, fold: Fold, point: GridPoint, warm: int, kind: str, name: str) -> Job:
        """The replay of `fold`'s `kind` window ("train" or "test") with `point` applied."""
        start, end = (
            (fold.train_start, fold.train_end)
            if kind == "train"
            else (fold.test_start, fold.test_end)
        )
        first = self.every[max(self.index_of[start] - warm, 0)]
        merged = {**self.overrides, **point_overrides(point)}
        merged[("run", "start")] = start.isoformat()
        merged[("run", "end")] = end.isoformat()
        return Job(
            config_paths=self.paths,
            overrides=tuple(merged.items()),
            start=start,
            end=end,
            warmup_from=first,
            out_dir=str(self.jobs_dir / name),
            want_equity=kind == "test",
        )


def _load_base(
    config_paths: Sequence[str], overrides: Mapping[Loc, Any] | None
) -> tuple[tuple[str, ...], dict[Loc, Any], LoadedConfig]:
    """(absolute overlay paths, overrides with an absolute data path, the loaded config)."""
    paths = tuple(str(Path(p).resolve()) for p in config_paths)
    base_overrides = dict(overrides or {})
    loaded = load_config(paths, base_overrides)
    # The data path is relative to where the user runs; a worker may run elsewhere.
    base_overrides[("data", "path")] = str(Path(loaded.settings.data.path).resolve())
    return paths, base_overrides, load_config(paths, base_overrides)


def _candidates(
    points: Sequence[GridPoint],
    paths: Sequence[str],
    overrides: Mapping[Loc, Any],
    universe: list[str],
    warmup_days: int | None,
) -> tuple[list[_Candidate], int]:
    """The grid points whose config is valid, with their warm-up, and how many were skipped."""
    valid: list[_Candidate] = []
    skipped = 0
    for i, point in enumerate(points):
        try:
            warm = warmup_sessions(load_point(paths, overrides, point), universe)
        except (ConfigError, TypeError, AttributeError):
            skipped += 1
            continue
        valid.append((i, point, warmup_days if warmup_days is not None else warm))
    return valid, skipped


def _run_folds(
    folds: Sequence[Fold],
    valid: Sequence[_Candidate],
    plan: _JobPlan,
    submit: Callable[[Job], Future],
    *,
    grid_search: bool,
    objective: str,
) -> tuple[list[FoldResult], list[Curve]]:
    """Every training job first (so they run in parallel), then each fold's test job with the
    point its training chose; the fold results and the test curves, in fold order."""
    train_futures = (
        {
            (f.index, gi): submit(
                plan.job(f, point, warm, "train", f"fold{f.index:03d}-train-g{gi:03d}")
            )
            for f in folds
            for gi, point, warm in valid
        }
        if grid_search
        else {}
    )
    test_futures: list[tuple[Fold, GridPoint, float | None, Future]] = []
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
            (f, point, score, submit(plan.job(f, point, warm, "test", f"fold{f.index:03d}-test")))
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
                test_sharpe=math.nan if summary["sharpe"] is None else float(summary["sharpe"]),
                test_max_drawdown=float(summary["max_drawdown"]),
                test=summary,
            )
        )
        assert res.curve is not None  # a test job's
        curves.append(res.curve)
    return fold_results, curves


def _objective(result: JobResult, name: str) -> float:
    value = result.summary.get(name)
    if value is None:
        return -math.inf  # undefined (a flat series' Sharpe): below every real score
    if isinstance(value, bool):
        raise ConfigError(f"objective {name!r}: not a numeric key of the replay summary")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"objective {name!r}: not a numeric key of the replay summary") from None
    # A NaN would never compare greater; rank it below every real score instead.
    return number if math.isfinite(number) else -math.inf
