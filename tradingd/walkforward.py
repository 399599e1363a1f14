"""Walk-forward optimization from Python: `walkforward(config, train=252, test=63)`."""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import yaml

from daemon.replay.walkforward.driver import walk_forward
from daemon.research.report.folder import write_folder_report
from feeds.errors import ConfigError
from tradingd.config import Config, with_arguments
from tradingd.frames import frame
from tradingd.run import (
    ConfigLike,
    LogLevel,
    Run,
    _copy,
    _log,
    _run_overrides,
    as_config,
    load_run,
)


class WalkForward:
    """A finished walk-forward: its folds, and the out-of-sample run they join into.

    Attributes:
        summary: what its `summary.json` holds: the joined curve's total_return, cagr, sharpe,
            max_drawdown, final_equity; folds, grid_points, grid_skipped, objective, mode,
            workers, wall_seconds.
        out_dir: the folder with `equity.csv`, `folds.csv`, `summary.json` and `jobs/` (every
            replay). With `out=None` it is a temporary folder, removed with this object.
    """

    def __init__(self, out_dir: Path, summary: dict[str, Any], *, temporary: bool) -> None:
        self.out_dir = out_dir
        self.summary = summary
        if temporary:
            # A temporary folder lives as long as this object (the report and the runs read it).
            weakref.finalize(self, shutil.rmtree, out_dir, ignore_errors=True)

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"<WalkForward {s['folds']} folds, out of sample {s['first_test']} .. "
            f"{s['last_test']}: return {s['total_return']:+.2%}, sharpe {s['sharpe']:.2f}, "
            f"max drawdown {s['max_drawdown']:.2%}>"
        )

    @cached_property
    def folds(self) -> pd.DataFrame:
        """One row per fold, indexed by fold number: train_start, train_end, test_start,
        test_end (dates), params (the chosen grid point, a dict), train_objective, test_return,
        test_sharpe, test_max_drawdown."""
        df = pd.read_csv(self.out_dir / "folds.csv", keep_default_na=False, dtype=str)
        for column in ("train_start", "train_end", "test_start", "test_end"):
            df[column] = pd.to_datetime(df[column]).dt.date
        df["params"] = [orjson.loads(p) for p in df["params"]]
        for column in ("train_objective", "test_return", "test_sharpe", "test_max_drawdown"):
            df[column] = pd.to_numeric(df[column].replace("", None), errors="coerce")
        return df.set_index(df["fold"].astype(int).rename("fold")).drop(columns="fold")

    @cached_property
    def equity(self) -> pd.DataFrame:
        """The joined out-of-sample curve: fold, equity, drawdown per slice (UTC index); each
        test window starts from the previous one's final equity."""
        return frame(
            "walkforward-equity.csv", (self.out_dir / "equity.csv").read_text(encoding="utf-8")
        )

    @cached_property
    def test_runs(self) -> tuple[Run, ...]:
        """Each fold's test replay, in fold order (its own equity starts at `run.start_cash`)."""
        jobs = self.out_dir / "jobs"
        return tuple(load_run(jobs / f"fold{k:03d}-test") for k in range(self.summary["folds"]))

    @cached_property
    def fills(self) -> pd.DataFrame:
        """Every out-of-sample fill, with its `fold`."""
        return pd.concat([r.fills.assign(fold=k) for k, r in enumerate(self.test_runs)])

    @cached_property
    def orders(self) -> pd.DataFrame:
        """Every out-of-sample order, with its `fold`."""
        return pd.concat([r.orders.assign(fold=k) for k, r in enumerate(self.test_runs)])

    def report(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the walk-forward's HTML report (as `tradingd report` does); return its path.

        Args:
            path: where the HTML goes (its folder is created); by default `report.html` in
                `out_dir`.
        """
        written = write_folder_report(self.out_dir, _log("warning"))
        if path is None:
            return written
        return _copy(written, Path(path))


def walkforward(
    config: ConfigLike,
    *,
    train: int | str,
    test: int | str,
    grid: Mapping[str, Sequence[Any]] | str | os.PathLike[str] | None = None,
    objective: str = "sharpe",
    workers: int = 1,
    scheduler: str | None = None,
    data: str | os.PathLike[str] | None = None,
    symbols: Sequence[str] | None = None,
    start: date | str | None = None,
    end: date | str | None = None,
    out: str | os.PathLike[str] | None = None,
    log_level: LogLevel = "warning",
) -> WalkForward:
    """Walk-forward optimization, as `tradingd walkforward`.

    The data's sessions are cut into rolling windows: `train` sessions to choose in, then the
    next `test` sessions to trade out of sample, stepped by `test`. In each training window
    every point of the grid is replayed and the best by `objective` is replayed on the test
    window; the test windows join into one curve.

    Args:
        config: a [`Config`][tradingd.Config] (its overlays and overrides are what every job
            loads), or YAML overlay paths.
        train: sessions per training window (`252` or `"252d"`).
        test: sessions per test window, and the step between folds.
        grid: dotted key path -> values to try (`{"composer.method": ["equal",
            "inverse_vol"]}`), or a grid YAML file; None replays the config as it is in each
            test window.
        objective: a numeric figure of the replay summary to maximize (ties: the earlier point).
        workers: processes (1: in this process). A strategy [`register`][tradingd.register]ed
            in this process reaches the workers only where they are forked (Linux).
        scheduler: a Dask scheduler address (`tcp://host:8786`); needs `tradingd[dask]`.
        data: overrides `data.path`.
        symbols: overrides `symbols`.
        start: limits the sessions folds are made of (overrides `run.start`).
        end: likewise (`run.end`).
        out: the output folder; None: a temporary folder removed with the result.
        log_level: the least level of the text log lines on stderr.

    Raises:
        ConfigError: a bad config, grid, objective or window, or too few sessions for a fold.
    """
    cfg: Config = with_arguments(
        as_config(config), _run_overrides(data, symbols, start, end), "walkforward() arguments"
    )
    train_days, test_days = _sessions(train, "train"), _sessions(test, "test")
    temporary = out is None
    folder = Path(tempfile.mkdtemp(prefix="tradingd-walkforward-") if out is None else out)
    folder.mkdir(parents=True, exist_ok=True)
    _log(log_level).info("walkforward_started", out=str(folder))
    try:
        result = walk_forward(
            cfg.overlays,
            train_days=train_days,
            test_days=test_days,
            grid_path=_grid_file(grid, folder),
            scheduler=scheduler,
            workers=workers,
            overrides=cfg.overrides,
            out_dir=folder,
            objective=objective,
        )
    except BaseException:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return WalkForward(result.out_dir, result.summary, temporary=temporary)


def _sessions(value: int | str, name: str) -> int:
    text = str(value).strip().removesuffix("d")
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise ConfigError(f"walkforward() arguments: {name}: a number of sessions, got {value!r}")
    return int(text)


def _grid_file(
    grid: Mapping[str, Sequence[Any]] | str | os.PathLike[str] | None, folder: Path
) -> str | None:
    """The grid as a file: a mapping is written to `grid.yaml` in the output folder, where
    messages name it and it stays as the record of what was searched."""
    if grid is None:
        return None
    if isinstance(grid, str | os.PathLike):
        return os.fspath(grid)
    path = folder / "grid.yaml"
    path.write_text(
        yaml.safe_dump({str(k): list(v) for k, v in grid.items()}, sort_keys=False),
        encoding="utf-8",
    )
    return str(path)
