"""Method "regime": classification of constructed reference series, the dwell time, the table
of weights inside the composer, the regime history, and the config errors."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from pydantic import ValidationError

from composer.composer import Composer
from composer.regime import RegimeDetector
from composer.settings import REGIMES, ComposerSettings, RegimeSettings
from feeds.bar import NS_PER_MINUTE
from feeds.errors import ConfigError
from tests.composer.helpers import Fixed, bars

TABLE = {
    "up_low_vol": {"t": 0.8, "m": 0.2},
    "up_high_vol": {"t": 0.5},
    "down_low_vol": {"m": 1.0},
    "down_high_vol": {"m": 0.1},
}


def _regimes(settings: RegimeSettings, closes: Sequence[float]) -> list[str | None]:
    detector = RegimeDetector(settings)
    out = []
    for b in bars("SPX", closes):
        detector.on_bar(b)
        out.append(detector.regime)
    return out


def test_a_steady_uptrend_with_low_vol_is_up_low_vol_after_lookback_and_dwell() -> None:
    # Closes 100 * 1.01^t * (1 +- .001): log returns alternate log 1.01 +- d, a constant vol
    # over an even window. Trend needs 6 closes, vol 5: the first classification is at bar 5,
    # and with min_dwell 3 it takes effect at bar 7.
    closes = [100.0 * 1.01**t * (1.0 + 0.001 * (-1) ** t) for t in range(30)]
    settings = RegimeSettings(
        symbol="SPX",
        trend_lookback=5,
        vol_lookback=4,
        vol_history=10,
        vol_percentile=0.7,
        min_dwell=3,
        table=TABLE,
    )
    regimes = _regimes(settings, closes)
    assert regimes[:7] == [None] * 7
    assert regimes[7:] == ["up_low_vol"] * 23
    detector = RegimeDetector(settings)
    for b in bars("SPX", closes):
        detector.on_bar(b)
    assert detector.history == [(7 * NS_PER_MINUTE, "up_low_vol")]


def test_a_steady_downtrend_is_down_low_vol() -> None:
    closes = [100.0 * 0.99**t * (1.0 + 0.001 * (-1) ** t) for t in range(20)]
    settings = RegimeSettings(
        symbol="SPX", trend_lookback=5, vol_lookback=4, vol_history=10, min_dwell=1, table=TABLE
    )
    regimes = _regimes(settings, closes)
    assert regimes[:5] == [None] * 5
    assert regimes[5:] == ["down_low_vol"] * 15


def _stepped(moves: str) -> list[float]:
    """Closes from 100 moving +1% on 'u' and -1% on 'd'."""
    closes = [100.0]
    for m in moves:
        closes.append(closes[-1] * (1.01 if m == "u" else 0.99))
    return closes


def test_the_dwell_time_holds_a_regime_for_at_least_min_dwell_bars() -> None:
    # trend_lookback 1: up when the close did not fall. vol_history 1: the vol is never above
    # its own history, so always low vol. Raw regime from bar 2 (2 returns for the vol).
    # bars:   0 1 2 3 4 5 6 7 8 9 10 11
    # moves:    u u u u d d u d d d  u
    # raw:          U U U D D U D D D  U
    # regime:   . . . . U U U U U U D  D   (U at bar 4: the 3rd U in a row; the two Ds at
    #                                        5-6 do not last; D at bar 10: the 3rd D)
    settings = RegimeSettings(
        symbol="SPX", trend_lookback=1, vol_lookback=2, vol_history=1, min_dwell=3, table=TABLE
    )
    regimes = _regimes(settings, _stepped("uuuuddudddu"))
    u, d = "up_low_vol", "down_low_vol"
    assert regimes == [None, None, None, None, u, u, u, u, u, u, d, d]
    detector = RegimeDetector(settings)
    for b in bars("SPX", _stepped("uuuuddudddu")):
        detector.on_bar(b)
    assert detector.history == [(4 * NS_PER_MINUTE, u), (10 * NS_PER_MINUTE, d)]


def test_a_vol_spike_is_high_vol() -> None:
    # log returns +-.01 alternate (vol of 2 returns: .01), then +.1: vol (.1 - -.01)/2 = .055,
    # above the median of the history -> up_high_vol; then -.01: vol .055 again, history
    # sorted [.01, .01, .01, .055, .055], median .01 -> down_high_vol.
    logs = [0.01, -0.01] * 4 + [0.1, -0.01]
    closes = [100.0]
    for r in logs:
        closes.append(closes[-1] * math.exp(r))
    settings = RegimeSettings(
        symbol="SPX",
        trend_lookback=1,
        vol_lookback=2,
        vol_percentile=0.5,
        vol_history=5,
        min_dwell=1,
        table=TABLE,
    )
    regimes = _regimes(settings, closes)
    assert regimes[-2:] == ["up_high_vol", "down_high_vol"]
    assert set(regimes[2:-2]) == {"up_low_vol", "down_low_vol"}


def _composer(settings: RegimeSettings, universe: Sequence[str] = ("A", "SPX")) -> Composer:
    strategies = {"t": Fixed(["A"], {"A": 1.0}), "m": Fixed(["A"], {"A": -1.0})}
    return Composer(ComposerSettings(method="regime", regime=settings), strategies, universe)


def test_the_composer_uses_the_table_row_of_the_regime_in_effect() -> None:
    # The reference symbol is traded by no strategy; its bars still reach the detector.
    settings = RegimeSettings(
        symbol="SPX", trend_lookback=1, vol_lookback=2, vol_history=1, min_dwell=3, table=TABLE
    )
    composer = _composer(settings)
    assert [composer.regime] == [None]  # (a list: mypy would narrow the property for good)
    assert composer.compose(0).strategy_weights == {"t": 0.5, "m": 0.5}
    spx = bars("SPX", _stepped("uuuuddudddu"))
    for b in spx[:5]:
        composer.on_bar(b)
    assert composer.regime == "up_low_vol"
    t = composer.compose(spx[4].ts)
    assert t.strategy_weights == {"t": 0.8, "m": 0.2}
    assert t.weights == pytest.approx({"A": 0.6, "SPX": 0.0})  # .8 * 1 - .2 * 1
    for b in spx[5:]:
        composer.on_bar(b)
    t = composer.compose(spx[-1].ts)
    assert composer.regime == "down_low_vol"
    assert t.strategy_weights == {"t": 0.0, "m": 1.0}
    assert composer.regime_history == [
        (4 * NS_PER_MINUTE, "up_low_vol"),
        (10 * NS_PER_MINUTE, "down_low_vol"),
    ]


def test_warmup_covers_the_vol_history() -> None:
    settings = RegimeSettings(
        symbol="SPX", trend_lookback=50, vol_lookback=20, vol_history=250, table=TABLE
    )
    assert _composer(settings).warmup_bars == 270


def test_other_methods_have_no_regime() -> None:
    composer = Composer(ComposerSettings(), {"t": Fixed(["A"], {"A": 1.0})}, ["A"])
    assert composer.regime is None
    assert composer.regime_history == []


def test_a_table_naming_an_unknown_strategy_is_a_config_error() -> None:
    table = {**TABLE, "up_high_vol": {"t": 0.5, "breakout": 0.5}}
    settings = RegimeSettings(symbol="SPX", table=table)
    with pytest.raises(ConfigError) as info:
        _composer(settings)
    assert str(info.value) == (
        "composer.regime.table.up_high_vol.breakout: no such strategy; strategies: t, m"
    )


def test_a_reference_symbol_outside_the_universe_is_a_config_error() -> None:
    settings = RegimeSettings(symbol="SPX", table=TABLE)
    with pytest.raises(ConfigError, match=r"^composer.regime.symbol: SPX is not in the universe"):
        _composer(settings, ["A"])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"symbol": "SPX", "table": {k: v for k, v in TABLE.items() if k != "down_high_vol"}},
            r"regime.table\n.*missing regime\(s\) down_high_vol",
        ),
        ({"symbol": "SPX", "table": {**TABLE, "sideways": {"t": 1.0}}}, "unknown regime"),
        (
            {"symbol": "SPX", "table": {**TABLE, "up_low_vol": {"t": 0.0}}},
            "up_low_vol: at least one strategy weight must be > 0",
        ),
        ({"symbol": "SPX", "table": {**TABLE, "up_low_vol": {"t": -1}}}, "greater than or equal"),
        ({"symbol": "SPX", "table": TABLE, "vol_percentile": 1.0}, "less than 1"),
        ({"symbol": "SPX", "table": TABLE, "min_dwell": 0}, "greater than or equal to 1"),
        ({"table": TABLE}, r"regime.symbol\n.*Field required"),
    ],
)
def test_bad_regime_settings_say_which_field(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ComposerSettings.model_validate({"method": "regime", "regime": raw})


def test_method_and_regime_section_go_together() -> None:
    with pytest.raises(ValidationError, match="regime: required for method 'regime'"):
        ComposerSettings.model_validate({"method": "regime"})
    with pytest.raises(ValidationError, match="regime: only used by method 'regime'"):
        ComposerSettings.model_validate({"regime": {"symbol": "SPX", "table": TABLE}})


def test_the_regimes_are_trend_crossed_with_vol() -> None:
    assert set(REGIMES) == {f"{t}_{v}_vol" for t in ("up", "down") for v in ("low", "high")}
