"""Volatility targeting: gross scaled by target / realized annual vol, capped by max_gross, on
series whose vol is known; left alone until the window is full; recomputed when only the vol
moved."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pytest
from pydantic import ValidationError

from composer.composer import Composer
from composer.settings import ComposerSettings, VolTargetSettings
from feeds.bar import Bar
from tests.composer.helpers import Fixed, bars


def _closes(returns: Sequence[float]) -> list[float]:
    closes = [100.0]
    for r in returns:
        closes.append(closes[-1] * (1.0 + r))
    return closes


def _alternating(symbol: str, per_bar_vol: float, n: int, start: int = 0) -> list[Bar]:
    # Simple returns +x, -x, ...: over an even window, mean 0 and population std exactly x.
    return bars(symbol, _closes([per_bar_vol * (-1) ** i for i in range(n)]))[start:]


def _composer(
    vt: VolTargetSettings, strategies: Mapping[str, Fixed], max_gross: float = 1.0
) -> Composer:
    settings = ComposerSettings(vol_target=vt, max_gross=max_gross)
    return Composer(settings, strategies, ["A", "B"])


VT = VolTargetSettings(annual_vol=0.10, lookback=4, periods_per_year=252)


def test_twice_the_target_vol_halves_gross() -> None:
    # Per-bar vol .2 / sqrt(252): annualized .2, twice the .1 target.
    composer = _composer(VT, {"a": Fixed(["A"], {"A": 1.0})})
    assert composer.warmup_bars == 5
    feed = _alternating("A", 0.2 / math.sqrt(252), 4)
    for b in feed[:4]:
        composer.on_bar(b)
    # Three returns: the vol is not known yet, the weights are left as composed.
    assert composer.compose(0).weights == {"A": 1.0, "B": 0.0}
    composer.on_bar(feed[4])
    t = composer.compose(1)
    assert t.weights == pytest.approx({"A": 0.5, "B": 0.0}, rel=1e-9)
    assert t.by_strategy == {"a": {"A": 1.0}}  # before vol targeting


def test_low_vol_scales_up_to_max_gross_at_most() -> None:
    # Annualized .05: k = 2, gross 2 above max_gross 1.5 -> 1.5. With max_gross 3: 2.
    feed = _alternating("A", 0.05 / math.sqrt(252), 4)
    for cap, gross in ((1.5, 1.5), (3.0, 2.0)):
        composer = _composer(VT, {"a": Fixed(["A"], {"A": -1.0})}, max_gross=cap)
        for b in feed:
            composer.on_bar(b)
        assert composer.compose(0).weights == pytest.approx({"A": -gross, "B": 0.0}, rel=1e-9)


def test_uncorrelated_symbols_combine_by_the_portfolio_variance() -> None:
    # Weights .5 and .5; A's per-bar vol a, B's b, uncorrelated over the window of 4
    # (+b +b -b -b against +a -a +a -a): variance .25 a^2 + .25 b^2.
    a, b = 0.01, 0.03
    composer = _composer(VT, {"ab": Fixed(["A", "B"], {"A": 1.0, "B": 1.0})}, max_gross=5.0)
    feed_a = _alternating("A", a, 4)
    feed_b = bars("B", _closes([b, b, -b, -b]))
    for x, y in zip(feed_a, feed_b, strict=True):
        composer.on_bar(x)
        composer.on_bar(y)
    realized = math.sqrt((0.25 * a * a + 0.25 * b * b) * 252)
    k = 0.10 / realized
    assert composer.compose(0).weights == pytest.approx({"A": 0.5 * k, "B": 0.5 * k}, rel=1e-9)


def test_the_factor_follows_the_vol_when_the_signals_do_not_change() -> None:
    composer = _composer(VT, {"a": Fixed(["A"], {"A": 1.0})})
    x = 0.2 / math.sqrt(252)
    feed = bars("A", _closes([x, -x, x, -x, 2 * x, -2 * x, 2 * x, -2 * x]))
    for b in feed[:5]:
        composer.on_bar(b)
    first = composer.compose(0)
    assert first.weights["A"] == pytest.approx(0.5, rel=1e-9)
    same = composer.compose(1)
    assert same.weights is first.weights  # nothing moved: reused
    for b in feed[5:]:
        composer.on_bar(b)
    # Window now +-2x: annualized .4 -> a quarter.
    assert composer.compose(2).weights["A"] == pytest.approx(0.25, rel=1e-9)


def test_flat_weights_stay_flat() -> None:
    composer = _composer(VT, {"a": Fixed(["A"], {"A": 0.0})})
    for b in _alternating("A", 0.01, 4):
        composer.on_bar(b)
    assert composer.compose(0).weights == {"A": 0.0, "B": 0.0}


def test_zero_vol_goes_to_max_gross() -> None:
    composer = _composer(VT, {"a": Fixed(["A"], {"A": 0.5})}, max_gross=0.8)
    for b in bars("A", [10.0] * 5):
        composer.on_bar(b)
    assert composer.compose(0).weights == pytest.approx({"A": 0.8, "B": 0.0})


def test_off_by_default() -> None:
    assert ComposerSettings().vol_target is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"annual_vol": 0}, r"vol_target.annual_vol\n.*greater than 0"),
        ({}, r"vol_target.annual_vol\n.*Field required"),
        ({"annual_vol": 0.1, "lookback": 1}, "greater than or equal to 2"),
        ({"annual_vol": 0.1, "periods_per_year": -1}, "greater than 0"),
        ({"annual_vol": 0.1, "annualize": True}, "Extra inputs are not permitted"),
    ],
)
def test_bad_vol_target_settings_say_which_field(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ComposerSettings.model_validate({"vol_target": raw})
