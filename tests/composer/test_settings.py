"""The composer's config models: defaults, constraints and cross-field messages."""

from __future__ import annotations

import datetime

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
        ({"method": "risk_parity"}, "'equal', 'static' or 'inverse_vol'"),
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
