"""The composer's config models: defaults, constraints and cross-field messages."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from composer.settings import ComposerSettings, RebalanceSchedule, StrategySpec


def test_defaults_are_valid() -> None:
    s = ComposerSettings()
    assert s.method == "equal"
    assert s.max_gross == 1.0
    assert s.rebalance == RebalanceSchedule(every="slice")
    assert StrategySpec() == StrategySpec(type=None, params={}, symbols=None)


def test_daily_at_from_quoted_yaml() -> None:
    raw = yaml.safe_load("every: daily\nat: '15:50'\ntimezone: Europe/London\n")
    schedule = RebalanceSchedule.model_validate(raw)
    assert schedule.at == datetime.time(15, 50)


def test_unquoted_yaml_time_is_refused_not_read_as_seconds() -> None:
    raw = yaml.safe_load("every: daily\nat: 15:50\n")
    assert raw["at"] == 950  # YAML 1.1 sexagesimal: the trap this guards against
    with pytest.raises(ValidationError, match="write the time as a quoted string"):
        RebalanceSchedule.model_validate(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"every": "minutes"}, "minutes: required when every is 'minutes'"),
        ({"every": "daily"}, "at: required when every is 'daily'"),
        ({"every": "slice", "minutes": 5}, "minutes: only used when every is 'minutes'"),
        ({"every": "minutes", "minutes": 5, "at": "10:00"}, "at: only used when every is 'daily'"),
        ({"every": "minutes", "minutes": 0}, "greater than 0"),
        ({"every": "daily", "at": "15:50", "timezone": "America/NewYork"}, "unknown time zone"),
        ({"every": "daily", "at": "15:50+01:00"}, "without an offset"),
        ({"every": "hourly"}, "'slice', 'minutes' or 'daily'"),
        ({"every": "slice", "when": 1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_schedules_say_which_field(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RebalanceSchedule.model_validate(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"method": "static"}, "strategy_weights: required for method 'static'"),
        (
            {"method": "static", "strategy_weights": {"a": 0.0}},
            "strategy_weights: at least one weight must be > 0",
        ),
        (
            {"method": "equal", "strategy_weights": {"a": 1.0}},
            "strategy_weights: only used by method 'static'",
        ),
        ({"method": "static", "strategy_weights": {"a": -1.0}}, "greater than or equal to 0"),
        ({"max_gross": 0}, "greater than 0"),
        ({"vol_lookback": 1}, "greater than or equal to 2"),
        (
            {"method": "hrp"},
            "'equal', 'static', 'inverse_vol', 'risk_parity', 'performance' or 'regime'",
        ),
        ({"rebalance": {"every": "daily"}}, "at: required"),
    ],
)
def test_bad_composer_settings_say_which_field(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ComposerSettings.model_validate(raw)


def test_static_weights_need_not_sum_to_one() -> None:
    s = ComposerSettings(method="static", strategy_weights={"a": 2.0, "b": 0.0})
    assert s.strategy_weights == {"a": 2.0, "b": 0.0}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"symbols": []}, "at least one symbol"),
        ({"symbols": ["SPY", "SPY"]}, "SPY is listed twice"),
        ({"type": ""}, "at least 1 character"),
        ({"typ": "sma_cross"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_strategy_specs(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        StrategySpec.model_validate(raw)


@pytest.mark.parametrize("name", ["base.yaml", "minute.yaml", "risk_aggressive.yaml"])
def test_the_shipped_composer_sections_still_validate(name: str) -> None:
    path = Path(__file__).resolve().parents[2] / "config" / name
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    ComposerSettings.model_validate(raw.get("composer", {}))


def test_the_documented_sections_validate() -> None:
    raw = yaml.safe_load(
        """
method: regime
regime:
  symbol: SPX
  table:
    up_low_vol: {trend: 0.6, momentum: 0.4}
    up_high_vol: {trend: 0.3, reversion: 0.3}
    down_low_vol: {reversion: 0.5}
    down_high_vol: {reversion: 0.2}
vol_target: {annual_vol: 0.10, lookback: 60, periods_per_year: 98280}
"""
    )
    s = ComposerSettings.model_validate(raw)
    assert s.regime is not None
    assert s.regime.min_dwell == 5
    assert s.vol_target is not None
    assert s.vol_target.periods_per_year == 98280
    rp = ComposerSettings.model_validate(
        {"method": "risk_parity", "risk_parity": {"across": "strategies"}}
    )
    assert rp.risk_parity is not None
    assert rp.risk_parity.lookback == 60
