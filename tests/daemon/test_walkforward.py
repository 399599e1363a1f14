"""Walk-forward optimization: fold layout, grid parsing, chaining, and the same results in
every execution mode (serial, process pool, Dask LocalCluster)."""

from __future__ import annotations

import csv
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon.replay.walkforward.driver import walk_forward
from daemon.replay.walkforward.folds import make_folds, read_grid
from daemon.replay.walkforward.outputs import WalkForwardResult, curve_figures, join_curves
from feeds.errors import ConfigError

CONFIGS = ["config/base.yaml", "config/risk_balanced.yaml"]
# Two symbols over about two years: a handful of folds of 120 + 60 sessions.
OVERRIDES: dict[tuple[str | int, ...], Any] = {
    ("symbols",): ["SPX", "GOOG"],
    ("run", "start"): "2009-01-02",
    ("run", "end"): "2010-12-31",
}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_grid(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def run(tmp_path: Path, name: str, **kwargs: Any) -> WalkForwardResult:
    grid = write_grid(tmp_path / "grid.yaml", "strategies.trend.params.fast: [10, 40]\n")
    args: dict[str, Any] = {
        "train_days": 120,
        "test_days": 60,
        "grid_path": grid,
        "overrides": OVERRIDES,
        "out_dir": tmp_path / name,
    }
    args.update(kwargs)
    return walk_forward(CONFIGS, **args)


def comparable(result: WalkForwardResult) -> tuple[Any, ...]:
    drop = {"wall_seconds", "mode", "workers"}
    summary = {k: v for k, v in result.summary.items() if k not in drop}
    folds = [
        (f.fold, f.params, f.train_objective, f.test_return, f.test_sharpe) for f in result.folds
    ]
    return (
        summary,
        folds,
        (result.out_dir / "equity.csv").read_bytes(),
        (result.out_dir / "folds.csv").read_bytes(),
    )


def test_folds_roll_by_the_test_length_and_the_last_test_window_is_cut_at_the_data_end() -> None:
    days = [date(2020, 1, 1) + timedelta(days=i) for i in range(10)]
    folds = make_folds(days, train_days=4, test_days=3)
    assert [
        (f.train_start.day, f.train_end.day, f.test_start.day, f.test_end.day) for f in folds
    ] == [
        (1, 4, 5, 7),
        (4, 7, 8, 10),
    ]
    assert make_folds(days, train_days=10, test_days=3) == []


def test_joined_curve_starts_each_window_from_the_previous_final_equity() -> None:
    curves = [
        [("2020-01-02T05:00:00Z", 110.0), ("2020-01-03T05:00:00Z", 120.0)],
        [("2020-01-06T05:00:00Z", 90.0), ("2020-01-07T05:00:00Z", 150.0)],
    ]
    rows = join_curves(curves, 100.0)
    assert [e for _, _, e in rows] == pytest.approx([110.0, 120.0, 108.0, 180.0])
    assert [k for _, k, _ in rows] == [0, 0, 1, 1]
    figures = curve_figures(rows, 100.0)
    assert figures["total_return"] == pytest.approx(0.8)
    # peak 120, trough 108
    assert figures["max_drawdown"] == pytest.approx(0.1)
    returns = [0.1, 120 / 110 - 1, 108 / 120 - 1, 180 / 108 - 1]
    mean = sum(returns) / 4
    std = (sum((r - mean) ** 2 for r in returns) / 3) ** 0.5
    assert figures["sharpe"] == pytest.approx(mean / std * 252**0.5, abs=1e-4)
    assert figures["cagr"] == pytest.approx(1.8 ** (252 / 4) - 1, rel=1e-5)


@pytest.mark.usefixtures("in_repo")
def test_the_grid_is_the_cartesian_product_in_file_order(tmp_path: Path) -> None:
    grid = write_grid(
        tmp_path / "g.yaml",
        "strategies.trend.params.fast: [10, 20]\ncomposer.method: [equal, inverse_vol]\n",
    )
    assert read_grid(grid, CONFIGS) == [
        {"strategies.trend.params.fast": 10, "composer.method": "equal"},
        {"strategies.trend.params.fast": 10, "composer.method": "inverse_vol"},
        {"strategies.trend.params.fast": 20, "composer.method": "equal"},
        {"strategies.trend.params.fast": 20, "composer.method": "inverse_vol"},
    ]


@pytest.mark.usefixtures("in_repo")
@pytest.mark.parametrize(
    "key",
    [
        "strategies.trend.params.fastt",
        "composer.methd",
        "nosuchsection.x",
        "strategies.nope.params.a",
    ],
)
def test_an_unknown_grid_key_names_the_grid_file_and_the_key(tmp_path: Path, key: str) -> None:
    grid = write_grid(tmp_path / "g.yaml", f"{key}: [1, 2]\n")
    with pytest.raises(ConfigError) as info:
        read_grid(grid, CONFIGS)
    assert str(info.value).startswith(f"{grid}: {key}: ")


@pytest.mark.usefixtures("in_repo")
@pytest.mark.parametrize("value", ["5", "[]", "{a: 1}"])
def test_a_grid_value_that_is_not_a_list_is_refused(tmp_path: Path, value: str) -> None:
    grid = write_grid(tmp_path / "g.yaml", f"strategies.trend.params.fast: {value}\n")
    with pytest.raises(ConfigError, match=r"g\.yaml: strategies\.trend\.params\.fast: must be"):
        read_grid(grid, CONFIGS)


@pytest.mark.usefixtures("in_repo")
def test_a_grid_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    grid = write_grid(tmp_path / "g.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        read_grid(grid, CONFIGS)


@pytest.mark.usefixtures("in_repo")
def test_invalid_grid_points_are_skipped_and_counted(tmp_path: Path) -> None:
    # slow is 100 in base.yaml: fast 150 fails validation (fast must be below slow).
    grid = write_grid(tmp_path / "g.yaml", "strategies.trend.params.fast: [150, 10]\n")
    result = run(tmp_path, "out", grid_path=grid)
    assert result.summary["grid_points"] == 2
    assert result.summary["grid_skipped"] == 1
    assert {json.dumps(f.params) for f in result.folds} == {
        json.dumps({"strategies.trend.params.fast": 10})
    }


@pytest.mark.usefixtures("in_repo")
def test_each_fold_picks_the_best_training_point_and_chains_its_test_curve(
    tmp_path: Path,
) -> None:
    result = run(tmp_path, "serial")
    out = result.out_dir
    assert result.summary["mode"] == "serial"
    assert len(result.folds) == result.summary["folds"] >= 3
    jobs = out / "jobs"
    level = 100_000.0
    joined = read_csv(out / "equity.csv")
    at = 0
    for fold in result.folds:
        k = fold.fold.index
        scores = [
            json.loads((jobs / f"fold{k:03d}-train-g{g:03d}" / "summary.json").read_text())[
                "sharpe"
            ]
            for g in (0, 1)
        ]
        best = 0 if scores[0] >= scores[1] else 1
        assert fold.params == {"strategies.trend.params.fast": [10, 40][best]}
        assert fold.train_objective == scores[best]
        # The training replays trade only inside their window.
        train = json.loads((jobs / f"fold{k:03d}-train-g000" / "summary.json").read_text())
        assert train["first_slice"].startswith(fold.fold.train_start.isoformat())
        # The test curve, scaled to start where the previous fold ended.
        raw = read_csv(jobs / f"fold{k:03d}-test" / "equity.csv")
        assert raw[0]["time"].startswith(fold.fold.test_start.isoformat())
        assert raw[-1]["time"].startswith(fold.fold.test_end.isoformat())
        for row in raw:
            assert joined[at]["time"] == row["time"]
            assert float(joined[at]["equity"]) == pytest.approx(
                float(row["equity"]) * level / 100_000, abs=0.006
            )
            at += 1
        level *= float(raw[-1]["equity"]) / 100_000
    assert at == len(joined)
    assert result.summary["final_equity"] == pytest.approx(level, abs=0.01)
    assert result.summary["total_return"] == pytest.approx(level / 100_000 - 1, abs=1e-6)
    rows = read_csv(out / "folds.csv")
    assert [int(r["fold"]) for r in rows] == list(range(len(result.folds)))
    assert json.loads((out / "summary.json").read_text())["folds"] == len(result.folds)
    # Test windows tile the sessions after the first training window.
    for a, b in zip(result.folds, result.folds[1:], strict=False):
        assert a.fold.test_end < b.fold.test_start
        assert b.fold.train_start > a.fold.train_start


@pytest.mark.usefixtures("in_repo")
def test_without_a_grid_each_fold_runs_the_config_out_of_sample(tmp_path: Path) -> None:
    result = run(tmp_path, "plain", grid_path=None)
    assert result.summary["grid_points"] == 0
    assert all(f.params == {} and f.train_objective is None for f in result.folds)
    assert not list((result.out_dir / "jobs").glob("*train*"))


@pytest.mark.usefixtures("in_repo")
def test_serial_processes_and_dask_give_the_same_results(tmp_path: Path) -> None:
    from distributed import LocalCluster

    serial = run(tmp_path, "serial")
    pooled = run(tmp_path, "pool", workers=2)
    assert pooled.summary["mode"] == "processes"
    with LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        dask = run(tmp_path, "dask", scheduler=cluster.scheduler_address)
    assert dask.summary["mode"] == "dask"
    assert dask.summary["workers"] == 2
    assert comparable(serial) == comparable(pooled) == comparable(dask)


@pytest.mark.usefixtures("in_repo")
def test_too_few_sessions_for_one_fold_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="too few for one fold"):
        run(tmp_path, "x", train_days=5000)
