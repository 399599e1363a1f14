"""The built-in strategies on constructed series whose signals were worked out by hand."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from pydantic import ValidationError

from composer.strategies import (
    Breakout,
    BreakoutParams,
    MeanReversion,
    MeanReversionParams,
    Momentum,
    MomentumParams,
    SmaCross,
    SmaCrossParams,
)
from composer.strategy import Strategy
from feeds.bar import Bar
from tests.composer.helpers import bar, bars


def _run(
    strat: Strategy[SmaCrossParams]
    | Strategy[MomentumParams]
    | Strategy[MeanReversionParams]
    | Strategy[BreakoutParams],
    feed: Sequence[Bar],
) -> list[float]:
    out: list[float] = []
    for b in feed:
        strat.on_bar(b)
        out.append(strat.signals[b.symbol])
    return out


# --------------------------------------------------------------------------- sma_cross

# fast=2, slow=4. Ready at bar 3. Rising: fast mean above slow. Bar 8 (close 7): fast 7.5 >
# slow 7.0, still long. Bar 9 (close 6): fast 6.5 < slow (7+8+7+6)/4 = 7.0: the flip.
RAMP = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0]


@pytest.mark.parametrize(("allow_short", "bear"), [(False, 0.0), (True, -1.0)])
def test_sma_cross_flips_at_the_bar_computed_by_hand(allow_short: bool, bear: float) -> None:
    strat = SmaCross(SmaCrossParams(fast=2, slow=4, allow_short=allow_short), ["A"])
    got = _run(strat, bars("A", RAMP))
    assert got == [0.0] * 3 + [1.0] * 6 + [bear] * 4
    assert strat.warmup_bars == 4


def test_sma_cross_matches_a_naive_reference_on_a_random_walk() -> None:
    rng = np.random.default_rng(7)
    closes = 100.0 + np.cumsum(rng.normal(0.0, 1.0, 3_000))
    strat = SmaCross(SmaCrossParams(fast=5, slow=13, allow_short=True), ["A"])
    got = _run(strat, bars("A", [float(c) for c in closes]))
    for t, signal in enumerate(got):
        if t < 12:
            assert signal == 0.0
            continue
        fast = np.mean(closes[t - 4 : t + 1])
        slow = np.mean(closes[t - 12 : t + 1])
        if abs(fast - slow) > 1e-9:  # a tie within rounding may go either way
            assert signal == (1.0 if fast > slow else -1.0), t


def test_sma_cross_keeps_symbols_apart() -> None:
    strat = SmaCross(SmaCrossParams(fast=2, slow=4, allow_short=True), ["A", "B"])
    for i, c in enumerate(RAMP[:8]):
        strat.on_bar(bar("A", i, c))
        strat.on_bar(bar("B", i, 100.0 - c))
    assert strat.signals == {"A": 1.0, "B": -1.0}


def test_sma_cross_params_need_fast_below_slow() -> None:
    with pytest.raises(ValidationError, match=r"fast \(30\) must be less than slow \(30\)"):
        SmaCrossParams(fast=30, slow=30)
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        SmaCrossParams(fast=0)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        SmaCrossParams.model_validate({"fats": 3})


# --------------------------------------------------------------------------- momentum

# lookback=2, threshold=0.05: r = close / close two bars ago - 1.
# bar 2: 0 -> 0; bar 3: 110/100 -> +0.10 long; bar 4: 100/100 -> 0; bar 5: 90/110 -> -0.18
# bearish; bar 6: 100/100 -> 0; bar 7: 100/90 -> +0.11 long; bar 8: 103/100 -> +0.03 in band.
MOMENTUM_CLOSES = [100.0, 100.0, 100.0, 110.0, 100.0, 90.0, 100.0, 100.0, 103.0]


@pytest.mark.parametrize(("allow_short", "bear"), [(False, 0.0), (True, -1.0)])
def test_momentum_signals_computed_by_hand(allow_short: bool, bear: float) -> None:
    params = MomentumParams(lookback=2, threshold=0.05, allow_short=allow_short)
    strat = Momentum(params, ["A"])
    got = _run(strat, bars("A", MOMENTUM_CLOSES))
    assert got == [0.0, 0.0, 0.0, 1.0, 0.0, bear, 0.0, 1.0, 0.0]
    assert strat.warmup_bars == 3


def test_momentum_threshold_cannot_be_negative() -> None:
    with pytest.raises(ValidationError, match="threshold"):
        MomentumParams(threshold=-0.1)


# --------------------------------------------------------------------------- mean_reversion

# window=5, entry_z=1.5, exit_z=0.5. Flat at 100 (std 0, z 0), then:
# bar 5 close 90: window 100,100,100,100,90: mean 98, std 4, z -2.0 -> long
# bar 6 close 92: window 100,100,100,90,92: mean 96.4, std 4.454, z -0.988 -> stays long
# bar 7 close 97: window 100,100,90,92,97: mean 95.8, std 4.118, z +0.291 >= -0.5 -> flat
DIP = [100.0] * 5 + [90.0, 92.0, 97.0]
SPIKE = [200.0 - c for c in DIP]  # the mirror image: z +2.0, +0.988, -0.291


def _naive_z(closes: Sequence[float], t: int, window: int) -> float:
    w = np.asarray(closes[t + 1 - window : t + 1])
    return float((closes[t] - w.mean()) / w.std())


def test_mean_reversion_dip_z_scores_are_the_ones_worked_out() -> None:
    assert _naive_z(DIP, 5, 5) == pytest.approx(-2.0)
    assert _naive_z(DIP, 6, 5) == pytest.approx(-0.988, abs=1e-3)
    assert _naive_z(DIP, 7, 5) == pytest.approx(0.291, abs=1e-3)


@pytest.mark.parametrize("allow_short", [False, True])
def test_mean_reversion_enters_a_dip_and_exits_at_the_expected_bars(allow_short: bool) -> None:
    params = MeanReversionParams(window=5, entry_z=1.5, exit_z=0.5, allow_short=allow_short)
    strat = MeanReversion(params, ["A"])
    assert _run(strat, bars("A", DIP)) == [0.0] * 5 + [1.0, 1.0, 0.0]
    assert strat.warmup_bars == 5


@pytest.mark.parametrize(("allow_short", "bear"), [(False, 0.0), (True, -1.0)])
def test_mean_reversion_shorts_a_spike_only_if_allowed(allow_short: bool, bear: float) -> None:
    params = MeanReversionParams(window=5, entry_z=1.5, exit_z=0.5, allow_short=allow_short)
    strat = MeanReversion(params, ["A"])
    assert _run(strat, bars("A", SPIKE)) == [0.0] * 5 + [bear, bear, 0.0]


def test_mean_reversion_long_flips_short_on_one_bar_when_z_jumps_past_entry() -> None:
    # After the dip entry (bar 5, long), bar 6 closes at 130: window 100,100,100,90,130:
    # mean 104, std 13.56, z +1.92 > 1.5: the long exits and a short opens on the same bar.
    params = MeanReversionParams(window=5, entry_z=1.5, exit_z=0.5, allow_short=True)
    strat = MeanReversion(params, ["A"])
    closes = [*DIP[:6], 130.0]
    assert _naive_z(closes, 6, 5) == pytest.approx(1.917, abs=1e-3)
    assert _run(strat, bars("A", closes))[5:] == [1.0, -1.0]


def test_mean_reversion_params_need_exit_below_entry() -> None:
    with pytest.raises(ValidationError, match=r"exit_z \(2.0\) must be less than entry_z \(2.0\)"):
        MeanReversionParams(entry_z=2.0, exit_z=2.0)
    with pytest.raises(ValidationError, match="window"):
        MeanReversionParams(window=1)


# --------------------------------------------------------------------------- breakout

# entry=3, exit=2; high = close + 1, low = close - 1. A flat channel (high 101, low 99), then:
# bar 3 close 100: inside -> 0. bar 4 close 102 > 101 (max high of bars 1-3) -> long.
# bar 5 close 101: min low of bars 3-4 = 99 -> stays long.
# bar 6 close 98 < 100 (min low of bars 4-5) -> exits; with shorts, 98 < 99 (min low of bars
#   3-5) is also a short entry.
# bar 7 close 100: short exit needs > 102 (max high of bars 5-6): stays. bar 8 close 104 >
#   102 (max high of bars 5-7) -> long from either state.
BREAKOUT_CLOSES = [100.0, 100.0, 100.0, 100.0, 102.0, 101.0, 98.0, 100.0, 104.0]


@pytest.mark.parametrize(
    ("allow_short", "expected"),
    [
        (False, [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]),
        (True, [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, -1.0, -1.0, 1.0]),
    ],
)
def test_breakout_of_a_flat_channel(allow_short: bool, expected: list[float]) -> None:
    strat = Breakout(BreakoutParams(entry=3, exit=2, allow_short=allow_short), ["A"])
    feed = [bar("A", i, c, high=c + 1.0, low=c - 1.0) for i, c in enumerate(BREAKOUT_CLOSES)]
    assert _run(strat, feed) == expected
    assert strat.warmup_bars == 4


def test_breakout_ignores_the_current_bars_own_high() -> None:
    # A close at this bar's own high is not above the channel of the previous bars.
    strat = Breakout(BreakoutParams(entry=2, exit=1), ["A"])
    feed = [bar("A", i, 100.0, high=101.0, low=99.0) for i in range(3)]
    feed.append(bar("A", 3, 101.0, high=101.0, low=100.0))  # equal to the channel: no entry
    feed.append(bar("A", 4, 101.5, high=101.5, low=100.0))  # above 101: entry
    assert _run(strat, feed) == [0.0, 0.0, 0.0, 0.0, 1.0]
