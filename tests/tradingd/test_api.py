"""The public API, through `tradingd.*` only: what a notebook would do."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from pydantic import BaseModel, ConfigDict

import tradingd

ROOT = Path(__file__).resolve().parent.parent.parent
BASE = str(ROOT / "config" / "base.yaml")
BALANCED = str(ROOT / "config" / "risk_balanced.yaml")
DAILY = str(ROOT / "data" / "sample" / "daily")
FRAMES = ("equity", "orders", "fills", "targets", "risk_events", "rejected_bars")


@pytest.fixture(scope="module")
def config() -> tradingd.Config:
    return tradingd.load_config(BASE, BALANCED, data__path=DAILY)


@pytest.fixture(scope="module")
def run(config: tradingd.Config, tmp_path_factory: pytest.TempPathFactory) -> tradingd.Run:
    return tradingd.replay(config, start="2010-01-04", end="2012-12-31")


def test_a_replay_in_memory_writes_nothing(
    config: tradingd.Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    r = tradingd.replay(config, symbols=["SPX", "MSFT"], start=date(2012, 1, 3), end="2012-06-29")
    assert list(tmp_path.iterdir()) == []
    assert r.out_dir is None
    assert r.summary["symbols"] == ["SPX", "MSFT"]
    assert r.summary["slices"] == len(r.equity)


def test_the_frames_are_indexed_by_utc_time(run: tradingd.Run) -> None:
    for name in FRAMES:
        df = getattr(run, name)
        assert isinstance(df.index, pd.DatetimeIndex), name
        assert str(df.index.tz) == "UTC", name
    assert list(run.equity.columns) == ["cash", "equity", "gross_exposure", "drawdown"]
    assert run.equity["equity"].dtype == "float64"
    assert run.equity.index.is_monotonic_increasing
    assert len(run.fills) == run.summary["fills"] > 0
    assert len(run.orders) == run.summary["orders"]
    assert str(run.orders["slice_time"].dt.tz) == "UTC"
    assert run.equity["equity"].iloc[-1] == pytest.approx(float(run.summary["final_equity"]))
    assert set(run.targets["kind"]) == {"symbol", "strategy"}


def test_a_run_on_disk_reads_back_the_same(
    config: tradingd.Config, run: tradingd.Run, tmp_path: Path
) -> None:
    on_disk = tradingd.replay(config, start="2010-01-04", end="2012-12-31", out=tmp_path / "r")
    assert on_disk.out_dir == tmp_path / "r"
    assert (tmp_path / "r" / "summary.json").exists()
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(on_disk, name), getattr(run, name))
    again = tradingd.load_run(tmp_path / "r")
    pd.testing.assert_frame_equal(again.fills, run.fills)
    assert on_disk.report().name == "report.html"


def test_the_report_of_a_run_in_memory_needs_a_path(run: tradingd.Run, tmp_path: Path) -> None:
    with pytest.raises(tradingd.ConfigError, match="give a path"):
        run.report()
    path = run.report(tmp_path / "r.html")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_load_run_of_a_folder_without_a_run(tmp_path: Path) -> None:
    with pytest.raises(tradingd.SourceError, match="not a finished replay"):
        tradingd.load_run(tmp_path)


def test_config_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("risk:\n  max_gross: -1\n", encoding="utf-8")
    with pytest.raises(tradingd.ConfigError, match=r"bad\.yaml: risk\.max_gross: must be"):
        tradingd.load_config(BASE, bad)
    with pytest.raises(tradingd.ConfigError, match=r"load_config keywords: risk\.max_gross"):
        tradingd.load_config(BASE, risk__max_gross=-1)
    with pytest.raises(tradingd.ConfigError, match=r"no such file|not found|cannot"):
        tradingd.load_config(tmp_path / "missing.yaml")
    with pytest.raises(tradingd.ConfigError, match=r"replay\(\) arguments: run\.start"):
        tradingd.replay(tradingd.load_config(BASE), start="2010-13-01")
    assert issubclass(tradingd.ConfigError, tradingd.TradingdError)


def test_keyword_overrides_set_one_key_each(config: tradingd.Config) -> None:
    assert str(config.settings.data.path) == DAILY
    equal = config.with_overrides(composer__method="equal", **{"run.start_cash": 50_000})
    assert equal.settings.composer.method == "equal"
    assert str(equal.settings.run.start_cash) == "50000"
    assert config.settings.composer.method == "inverse_vol"  # unchanged: a Config is a value
    assert equal.digest != config.digest
    assert equal.to_dict()["composer"]["method"] == "equal"


class _FadeParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    min_gap: float = 0.01


@pytest.fixture
def fade() -> Iterator[str]:
    @tradingd.register
    @tradingd.strategy("test_api_fade", params=_FadeParams)
    class Fade(tradingd.Strategy[_FadeParams]):
        def __init__(self, params: _FadeParams, symbols: list[str]) -> None:
            super().__init__(params, symbols)
            self._last: dict[str, float] = {}

        @property
        def warmup_bars(self) -> int:
            return 1

        def on_bar(self, bar: tradingd.Bar) -> None:
            last = self._last.get(bar.symbol)
            if last is not None:
                gap = bar.open / last - 1
                self.signals[bar.symbol] = 1.0 if gap < -self.params.min_gap else 0.0
            self._last[bar.symbol] = bar.close

    yield "test_api_fade"
    tradingd.unregister("test_api_fade")


def test_a_strategy_registered_in_the_process_replays(fade: str) -> None:
    assert fade in tradingd.strategy_names()
    cfg = tradingd.load_config(
        BASE,
        BALANCED,
        data__path=DAILY,
        strategies={"fade": {"type": fade, "params": {"min_gap": 0.005}}},
        composer={"method": "equal"},
    )
    r = tradingd.replay(cfg, start="2011-01-03", end="2011-12-30")
    assert list(r.targets.query("kind == 'strategy'")["name"].unique()) == ["fade"]
    assert r.summary["orders"] > 0
    with pytest.raises(tradingd.ConfigError, match=r"min_gap"):
        cfg.with_overrides(strategies__fade__params={"min_gap": "wide"})
    # The failed variant left the config as it was.
    assert cfg.with_overrides().settings.strategies["fade"].params == {"min_gap": 0.005}


def test_unregistered_it_is_unknown_again(fade: str) -> None:
    tradingd.unregister(fade)
    with pytest.raises(tradingd.ConfigError, match="unknown strategy 'test_api_fade'"):
        tradingd.load_config(BASE, strategies={"fade": {"type": fade}})


def test_register_refuses_a_builtin_name_and_an_unmarked_class() -> None:
    @tradingd.strategy("sma_cross", params=_FadeParams)
    class Clash(tradingd.Strategy[_FadeParams]):
        warmup_bars = 1

        def on_bar(self, bar: tradingd.Bar) -> None:
            pass

    with pytest.raises(tradingd.ConfigError, match="built-in"):
        tradingd.register(Clash)

    class Unmarked(tradingd.Strategy[_FadeParams]):
        warmup_bars = 1

        def on_bar(self, bar: tradingd.Bar) -> None:
            pass

    with pytest.raises(tradingd.ConfigError, match="not marked"):
        tradingd.register(Unmarked)


def test_walkforward_gives_the_folds_and_the_joined_run(config: tradingd.Config) -> None:
    wf = tradingd.walkforward(
        config,
        train=126,
        test="126d",
        grid={"strategies.trend.params.fast": [10, 20]},
        start="2009-01-02",
        end="2011-12-30",
    )
    folds = wf.folds
    assert len(folds) == wf.summary["folds"] >= 2
    assert folds["params"].iloc[0] in (
        {"strategies.trend.params.fast": 10},
        {"strategies.trend.params.fast": 20},
    )
    assert folds["test_start"].iloc[0] > folds["train_end"].iloc[0]
    assert isinstance(wf.equity.index, pd.DatetimeIndex)
    assert str(wf.equity.index.tz) == "UTC"
    assert list(wf.equity.columns) == ["fold", "equity", "drawdown"]
    assert wf.equity["equity"].iloc[-1] == pytest.approx(wf.summary["final_equity"], abs=0.01)
    assert len(wf.test_runs) == len(folds)
    assert set(wf.fills["fold"]) <= set(folds.index)
    assert (wf.out_dir / "grid.yaml").exists()
    assert wf.report().exists()


def test_walkforward_refuses_a_window_that_is_not_sessions(config: tradingd.Config) -> None:
    with pytest.raises(tradingd.ConfigError, match="train: a number of sessions"):
        tradingd.walkforward(config, train="a year", test=63)


def test_the_package_is_typed() -> None:
    assert (Path(tradingd.__file__).parent / "py.typed").exists()
    assert tradingd.__version__
    assert set(tradingd.__all__) <= set(dir(tradingd))


def test_replay_takes_overlay_paths_as_well() -> None:
    r = tradingd.replay(
        [BASE, Path(BALANCED)], data=DAILY, symbols=["SPX"], start="2012-01-03", end="2012-03-30"
    )
    assert r.summary["symbols"] == ["SPX"]
    assert r.equity.index[0] >= pd.Timestamp("2012-01-03", tz="America/New_York")
    with pytest.raises(tradingd.ConfigError, match="symbols: a list of symbols"):
        tradingd.replay(BASE, symbols="SPX")
