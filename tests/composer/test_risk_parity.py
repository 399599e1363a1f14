"""Risk parity: the solver against inverse volatility and equal risk contributions, the
fallback on a singular covariance, and the method inside the composer on series whose
volatilities and correlations are known."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from pydantic import ValidationError

from composer.composer import Composer
from composer.covariance import (
    inverse_vol_weights,
    risk_contributions,
    risk_parity_weights,
    shrunk_covariance,
)
from composer.settings import ComposerSettings, RiskParitySettings
from tests.composer.helpers import Fixed, bars


def _closes(returns: Sequence[float]) -> list[float]:
    closes = [100.0]
    for r in returns:
        closes.append(closes[-1] * (1.0 + r))
    return closes


def test_diagonal_covariance_gives_inverse_volatility() -> None:
    cov = np.diag([0.01**2, 0.02**2, 0.04**2])
    w = risk_parity_weights(cov)
    # 1/.01 : 1/.02 : 1/.04 = 4 : 2 : 1
    assert w == pytest.approx([4 / 7, 2 / 7, 1 / 7], rel=1e-10)
    assert w == pytest.approx(inverse_vol_weights(cov), rel=1e-10)


def test_risk_contributions_are_equal_with_correlations() -> None:
    cov = np.array(
        [
            [0.0400, 0.0060, -0.0020, 0.0030],
            [0.0060, 0.0900, 0.0150, 0.0000],
            [-0.0020, 0.0150, 0.0100, 0.0010],
            [0.0030, 0.0000, 0.0010, 0.0025],
        ]
    )
    w = risk_parity_weights(cov)
    assert w.sum() == pytest.approx(1.0, rel=1e-12)
    assert np.all(w > 0)
    assert risk_contributions(w, cov) == pytest.approx([0.25] * 4, abs=1e-9)
    # With correlations it is not inverse volatility.
    assert not np.allclose(w, inverse_vol_weights(cov), atol=1e-3)


def test_two_assets_are_inverse_volatility_whatever_the_correlation() -> None:
    # For two assets, equal contributions give w1 * s1 = w2 * s2 at any correlation.
    s1, s2, rho = 0.1, 0.3, 0.6
    cov = np.array([[s1 * s1, rho * s1 * s2], [rho * s1 * s2, s2 * s2]])
    assert risk_parity_weights(cov) == pytest.approx([0.75, 0.25], rel=1e-10)


def test_singular_covariance_falls_back_to_inverse_volatility() -> None:
    # Column 2 is twice column 1: rank 1 without shrinkage.
    x = np.array([[0.01, 0.02, 0.0], [-0.01, -0.02, 0.01], [0.02, 0.04, -0.01], [0.0, 0.0, 0.0]])
    cov = shrunk_covariance(x, 0.0)
    assert np.linalg.matrix_rank(cov) < 3
    assert risk_parity_weights(cov) == pytest.approx(inverse_vol_weights(cov))


def test_zero_variance_counts_as_the_smallest_positive_one() -> None:
    cov = np.diag([0.0, 0.01**2, 0.02**2])
    assert inverse_vol_weights(cov) == pytest.approx([0.4, 0.4, 0.2])
    assert risk_parity_weights(cov) == pytest.approx([0.4, 0.4, 0.2])


def test_shrinkage_moves_the_covariances_toward_zero() -> None:
    x = np.array([[1.0, 2.0], [3.0, 0.0], [2.0, 4.0], [-2.0, 2.0]])
    sample = np.cov(x, rowvar=False, ddof=0)
    shrunk = shrunk_covariance(x, 0.25)
    assert np.diag(shrunk) == pytest.approx(np.diag(sample))
    assert shrunk[0, 1] == pytest.approx(0.75 * sample[0, 1])
    # Naive population covariance of the two columns.
    m0, m1 = x[:, 0].mean(), x[:, 1].mean()
    naive = sum((a - m0) * (b - m1) for a, b in x) / 4
    assert sample[0, 1] == pytest.approx(naive)


# Uncorrelated over a window of 4: A's returns +a -a +a -a, B's +b +b -b -b; vols a and b.
A_RET = [0.01, -0.01] * 4
B_RET = [0.02, 0.02, -0.02, -0.02] * 2


def _feed(composer: Composer, n: int) -> None:
    feeds = [bars("A", _closes(A_RET)), bars("B", _closes(B_RET)), bars("C", [50.0] * 9)]
    for i in range(n):
        for feed in feeds:
            composer.on_bar(feed[i])


def test_across_symbols_splits_each_strategy_by_inverse_vol_when_uncorrelated() -> None:
    strategies = {
        "ab": Fixed(["A", "B"], {"A": 1.0, "B": 1.0}),
        "b": Fixed(["B"], {"B": -1.0}),
    }
    settings = ComposerSettings(
        method="risk_parity", risk_parity=RiskParitySettings(lookback=4, shrinkage=0.1)
    )
    composer = Composer(settings, strategies, ["A", "B", "C"])
    assert composer.warmup_bars == 5
    _feed(composer, 4)  # three returns: not ready, equal split
    assert composer.compose(0).by_strategy["ab"] == pytest.approx({"A": 0.25, "B": 0.25})
    _feed_rest = [bars("A", _closes(A_RET))[4], bars("B", _closes(B_RET))[4]]
    for b in _feed_rest:
        composer.on_bar(b)
    t = composer.compose(1)
    # 1/.01 : 1/.02 -> 2/3, 1/3 of the strategy's half.
    assert t.strategy_weights == {"ab": 0.5, "b": 0.5}
    assert t.by_strategy["ab"] == pytest.approx({"A": 1 / 3, "B": 1 / 6}, rel=1e-9)
    assert t.by_strategy["b"] == pytest.approx({"B": -0.5})
    assert t.weights == pytest.approx({"A": 1 / 3, "B": 1 / 6 - 0.5, "C": 0.0}, rel=1e-9)


def test_across_strategies_weights_the_strategies_by_their_paper_risk() -> None:
    # Each strategy holds one symbol long: its paper returns are that symbol's, from the
    # second slice on (the first has no previous signal). 5 slices -> 4 returns.
    strategies = {"a": Fixed(["A"], {"A": 1.0}), "b": Fixed(["B"], {"B": 1.0})}
    settings = ComposerSettings(
        method="risk_parity",
        risk_parity=RiskParitySettings(across="strategies", lookback=4, shrinkage=0.0),
    )
    composer = Composer(settings, strategies, ["A", "B", "C"])
    feeds = [bars("A", _closes(A_RET)), bars("B", _closes(B_RET))]
    for i in range(5):
        for feed in feeds:
            composer.on_bar(feed[i])
        t = composer.compose(feeds[0][i].ts)
        if i < 4:
            assert t.strategy_weights == {"a": 0.5, "b": 0.5}
    assert t.strategy_weights == pytest.approx({"a": 2 / 3, "b": 1 / 3}, rel=1e-9)
    assert t.weights == pytest.approx({"A": 2 / 3, "B": 1 / 3, "C": 0.0}, rel=1e-9)


def test_an_unchanged_window_reuses_the_allocation() -> None:
    strategies = {"ab": Fixed(["A", "B"], {"A": 1.0, "B": 1.0})}
    settings = ComposerSettings(method="risk_parity", risk_parity=RiskParitySettings(lookback=4))
    composer = Composer(settings, strategies, ["A", "B", "C"])
    _feed(composer, 6)
    first = composer.compose(1)
    second = composer.compose(2)
    assert second.weights is first.weights


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"method": "equal", "risk_parity": {}}, "risk_parity: only used by method"),
        ({"method": "risk_parity", "risk_parity": {"shrinkage": 1.5}}, "less than or equal to 1"),
        ({"method": "risk_parity", "risk_parity": {"across": "sectors"}}, "'symbols' or"),
        ({"method": "risk_parity", "risk_parity": {"lookback": 1}}, "greater than or equal to 2"),
    ],
)
def test_bad_risk_parity_settings_say_which_field(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ComposerSettings.model_validate(raw)
