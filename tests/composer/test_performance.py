"""Method "performance": paper returns without look-ahead, the score -> weight formula by hand,
the floor and cap, and a steadily winning strategy outweighing a losing one."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from pydantic import ValidationError

from composer.composer import Composer
from composer.methods import PerformanceMethod
from composer.returns import PaperReturns
from composer.settings import ComposerSettings, PerformanceSettings
from composer.strategy import Strategy, strategy
from feeds.bar import Bar
from feeds.errors import ConfigError
from tests.composer.helpers import Fixed, NoParams, bars


@strategy("follow", params=NoParams)
class Follow(Strategy[NoParams]):
    """Long after a rise, short after a fall: it would be perfect if it could see ahead."""

    def __init__(self, symbols: Sequence[str]) -> None:
        super().__init__(NoParams(), symbols)
        self.last: dict[str, float] = {}

    @property
    def warmup_bars(self) -> int:
        return 1

    def on_bar(self, bar: Bar) -> None:
        last = self.last.get(bar.symbol)
        if last is not None:
            self.signals[bar.symbol] = 1.0 if bar.close > last else -1.0
        self.last[bar.symbol] = bar.close


def _closes(returns: Sequence[float]) -> list[float]:
    closes = [100.0]
    for r in returns:
        closes.append(closes[-1] * (1.0 + r))
    return closes


def test_paper_returns_use_the_signal_held_before_the_bar() -> None:
    # A: 100 -> 110 -> 99 -> 108.9; B: flat. Follow's signal on A: 0, then +1 (after the
    # rise), then -1. Paper returns per slice (half its capital in A): 0 * .1, then
    # 1 * -.1 * .5, then -1 * .1 * .5. The first slice has no return.
    follow = Follow(["A", "B"])
    paper = PaperReturns({"f": follow}, 3)
    for a, b in zip(bars("A", [100.0, 110.0, 99.0, 108.9]), bars("B", [5.0] * 4), strict=True):
        follow.on_bar(a)
        paper.on_bar(a)
        follow.on_bar(b)
        paper.on_bar(b)
    paper.flush()
    assert paper.ready()
    assert paper.matrix()[:, 0] == pytest.approx([0.0, -0.05, -0.05])


def _method(n: int, perf: PerformanceSettings) -> PerformanceMethod:
    strategies = {f"s{i}": Fixed(["A"], {"A": 1.0}) for i in range(n)}
    settings = ComposerSettings(method="performance", performance=perf)
    return PerformanceMethod(settings, strategies, ["A"])


def test_weights_computed_by_hand_with_floor_and_cap() -> None:
    # Sharpe: s0 = .01/.01 = 1, s1 = .03/.01 = 3, s2 < 0 -> 0. p = .25, .75, 0.
    # shrink .2: w = .8 p + .2/3 = .2667, .6667, .0667. cap .6: s1 = .6, the other .4 in
    # proportion .2667 : .0667 -> .32, .08; floor .1: s2 = .1, s0 = .3.
    returns = np.array(
        [[0.02, 0.04, -0.01], [0.0, 0.02, 0.01], [0.02, 0.04, -0.02], [0.0, 0.02, 0.0]]
    )
    method = _method(3, PerformanceSettings(lookback=4, shrink=0.2, floor=0.1, cap=0.6))
    assert method.weights(returns) == pytest.approx([0.3, 0.6, 0.1])
    loose = _method(3, PerformanceSettings(lookback=4, shrink=0.2, floor=0.0, cap=1.0))
    assert loose.weights(returns) == pytest.approx([0.2 + 0.2 / 3, 0.6 + 0.2 / 3, 0.2 / 3])


def test_all_losing_strategies_get_equal_weights() -> None:
    returns = np.array([[-0.01, -0.02], [0.0, -0.01], [-0.02, 0.0]])
    method = _method(2, PerformanceSettings(lookback=3, shrink=0.0))
    assert method.weights(returns) == pytest.approx([0.5, 0.5])


def _run(perf: PerformanceSettings, n_bars: int) -> list[dict[str, float]]:
    # "up" holds A, which rises 1% every bar; "down" holds B, which falls 1% every bar.
    strategies = {"up": Fixed(["A"], {"A": 1.0}), "down": Fixed(["B"], {"B": 1.0})}
    settings = ComposerSettings(method="performance", performance=perf)
    composer = Composer(settings, strategies, ["A", "B"])
    a = bars("A", _closes([0.01] * n_bars))
    b = bars("B", _closes([-0.01] * n_bars))
    out = []
    for i in range(n_bars):
        composer.on_bar(a[i])
        composer.on_bar(b[i])
        out.append(composer.compose(a[i].ts).strategy_weights)
    return out


def test_a_steady_winner_outweighs_a_loser_within_floor_and_cap() -> None:
    # Scores: steady gains (zero std) rank first, losses count as 0: p = 1, 0;
    # shrink .5: .75, .25; cap .6: .6, .4.
    weights = _run(PerformanceSettings(lookback=4, shrink=0.5, floor=0.05, cap=0.6), 8)
    assert weights[:4] == [{"up": 0.5, "down": 0.5}] * 4  # 4 slices: 3 returns, not ready
    for w in weights[4:]:
        assert w == pytest.approx({"up": 0.6, "down": 0.4})
    unbounded = _run(PerformanceSettings(lookback=4, shrink=0.5, floor=0.0, cap=1.0), 6)
    assert unbounded[-1] == pytest.approx({"up": 0.75, "down": 0.25})
    floored = _run(PerformanceSettings(lookback=4, shrink=0.0, floor=0.3, cap=1.0), 6)
    assert floored[-1] == pytest.approx({"up": 0.7, "down": 0.3})


def test_weights_change_only_at_a_rebalance() -> None:
    strategies = {"up": Fixed(["A"], {"A": 1.0}), "down": Fixed(["B"], {"B": 1.0})}
    perf = PerformanceSettings(lookback=2, shrink=0.0)
    settings = ComposerSettings(method="performance", performance=perf)
    composer = Composer(settings, strategies, ["A", "B"])
    first = composer.compose(0)
    for a, b in zip(bars("A", _closes([0.01] * 5)), bars("B", _closes([-0.01] * 5)), strict=True):
        composer.on_bar(a)
        composer.on_bar(b)
    assert first.strategy_weights == {"up": 0.5, "down": 0.5}
    assert composer.compose(10).strategy_weights == pytest.approx({"up": 1.0, "down": 0.0})


@pytest.mark.parametrize(
    ("perf", "message"),
    [
        (PerformanceSettings(floor=0.4), "composer.performance.floor: 0.4 for each of 3"),
        (PerformanceSettings(cap=0.3), "composer.performance.cap: 0.3 for each of 3"),
    ],
)
def test_floor_and_cap_that_cannot_sum_to_one(perf: PerformanceSettings, message: str) -> None:
    strategies = {k: Fixed(["A"], {"A": 1.0}) for k in "abc"}
    settings = ComposerSettings(method="performance", performance=perf)
    with pytest.raises(ConfigError, match=message):
        Composer(settings, strategies, ["A"])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"floor": 0.5, "cap": 0.4}, "floor: 0.5 is above cap 0.4"),
        ({"shrink": -0.1}, "greater than or equal to 0"),
        ({"cap": 0}, "greater than 0"),
        ({"lookback": 1}, "greater than or equal to 2"),
        ({"window": 5}, "Extra inputs are not permitted"),
    ],
)
def test_bad_performance_settings_say_which_field(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ComposerSettings.model_validate({"method": "performance", "performance": raw})
