"""Config overlays: merge order, validation, and messages that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from composer.registry import load_registry
from daemon.config import build_strategies, load_config, redacted
from feeds.errors import ConfigError
from tests.daemon.helpers import write_yaml

BASE = {
    "data": {"path": "data/sample/daily", "timeframe": "1Day"},
    "strategies": {"trend": {"type": "sma_cross", "params": {"fast": 5, "slow": 20}}},
}


def load_and_build(paths: list[Path]) -> None:
    loaded = load_config([str(p) for p in paths])
    build_strategies(loaded, load_registry(), ["SPX"])


def config_error(paths: list[Path]) -> str:
    with pytest.raises(ConfigError) as info:
        load_and_build(paths)
    return str(info.value)


def test_the_later_overlay_wins_and_mappings_merge(tmp_path: Path) -> None:
    base = write_yaml(
        tmp_path / "base.yaml", {**BASE, "risk": {"max_gross": 1.0, "max_weight": 0.3}}
    )
    over = write_yaml(tmp_path / "over.yaml", {"risk": {"max_gross": 0.5}})
    loaded = load_config([str(base), str(over)])
    assert loaded.settings.risk.max_gross == 0.5
    assert loaded.settings.risk.max_weight == 0.3  # kept from the earlier file
    assert loaded.origin(("risk", "max_gross")) == str(over)
    assert loaded.origin(("risk", "max_weight")) == str(base)


def test_a_list_is_replaced_whole(tmp_path: Path) -> None:
    base = write_yaml(tmp_path / "base.yaml", {**BASE, "symbols": ["SPX", "GOOG"]})
    over = write_yaml(tmp_path / "over.yaml", {"symbols": ["MSFT"]})
    assert load_config([str(base), str(over)]).settings.symbols == ["MSFT"]


def test_a_negative_risk_limit_names_the_overlay_and_the_key(tmp_path: Path) -> None:
    base = write_yaml(tmp_path / "base.yaml", BASE)
    risk = write_yaml(tmp_path / "risk_balanced.yaml", {"risk": {"max_gross": -1}})
    assert config_error([base, risk]) == (
        f"{risk}: risk.max_gross: must be greater than 0 and at most 10, got -1"
    )


def test_a_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("risk:\n  max_gross: [1, 2\n")
    message = config_error([bad])
    assert message.startswith(f"{bad}:")
    assert "YAML syntax error" in message


def test_a_missing_file(tmp_path: Path) -> None:
    assert config_error([tmp_path / "nope.yaml"]) == f"{tmp_path / 'nope.yaml'}: no such file"


def test_a_top_level_list_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    assert "must be a mapping" in config_error([bad])


def test_an_unknown_key_lists_the_known_ones(tmp_path: Path) -> None:
    base = write_yaml(tmp_path / "base.yaml", {**BASE, "risk": {"max_gros": 1.0}})
    message = config_error([base])
    assert message.startswith(f"{base}: risk.max_gros: unknown key; expected one of: ")
    assert "max_gross" in message


def test_an_unknown_strategy_lists_the_registered_ones(tmp_path: Path) -> None:
    base = write_yaml(tmp_path / "base.yaml", {**BASE, "strategies": {"t": {"type": "sma_crss"}}})
    message = config_error([base])
    assert message.startswith(f"{base}: strategies.t.type: ")
    assert "sma_crss" in message
    for name in ("breakout", "mean_reversion", "momentum", "sma_cross"):
        assert name in message


def test_an_unknown_param_lists_the_params(tmp_path: Path) -> None:
    base = write_yaml(tmp_path / "base.yaml", BASE)
    over = write_yaml(tmp_path / "over.yaml", {"strategies": {"trend": {"params": {"fsat": 3}}}})
    message = config_error([base, over])
    assert message.startswith(f"{over}: strategies.trend.params.fsat: unknown key; expected")
    assert "fast" in message
    assert "slow" in message


def test_a_bad_param_value_names_the_key(tmp_path: Path) -> None:
    base = write_yaml(
        tmp_path / "base.yaml",
        {**BASE, "strategies": {"trend": {"type": "sma_cross", "params": {"fast": "x"}}}},
    )
    assert config_error([base]).startswith(f"{base}: strategies.trend.params.fast: ")


def test_a_missing_required_section(tmp_path: Path) -> None:
    base = write_yaml(tmp_path / "base.yaml", {"data": BASE["data"]})
    assert config_error([base]) == f"{base}: strategies: required, not set"


def test_command_line_overrides_win(tmp_path: Path) -> None:
    base = write_yaml(tmp_path / "base.yaml", {**BASE, "symbols": ["SPX"]})
    loaded = load_config([str(base)], {("symbols",): ["GOOG", "MSFT"]})
    assert loaded.settings.symbols == ["GOOG", "MSFT"]
    assert loaded.origin(("symbols",)) == "command line"


def test_the_digest_depends_on_the_resolved_config_only(tmp_path: Path) -> None:
    a = write_yaml(tmp_path / "a.yaml", BASE)
    b = write_yaml(tmp_path / "b.yaml", {**BASE, "risk": {}})
    c = write_yaml(tmp_path / "c.yaml", {**BASE, "risk": {"max_gross": 0.5}})
    assert load_config([str(a)]).digest == load_config([str(b)]).digest
    assert load_config([str(a)]).digest != load_config([str(c)]).digest


def test_redaction_hides_secret_looking_keys() -> None:
    class Fake:
        @staticmethod
        def model_dump(mode: str) -> dict[str, object]:
            return {"broker": {"api_key": "k", "secret_key": "s", "url": "u"}}

    assert redacted(Fake()) == {  # type: ignore[arg-type]
        "broker": {"api_key": "***", "secret_key": "***", "url": "u"}
    }
