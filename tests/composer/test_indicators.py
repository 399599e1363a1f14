"""Each indicator against a naive numpy reference on random data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from composer.indicators import SMA, Lag, RollingMax, RollingMeanStd, RollingMin

N_POINTS = 5_000


def _random_walk(seed: int, level: float = 100.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return level + np.cumsum(rng.normal(0.0, 1.0, N_POINTS))


@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_sma_matches_numpy_mean_of_the_last_n(n: int) -> None:
    xs = _random_walk(1)
    sma = SMA(n)
    for t, x in enumerate(xs):
        sma.update(float(x))
        assert sma.ready == (t + 1 >= n)
        window = xs[max(0, t + 1 - n) : t + 1]
        assert sma.value == pytest.approx(float(np.mean(window)), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_rolling_mean_std_matches_numpy_population_std(n: int) -> None:
    xs = _random_walk(2)
    stats = RollingMeanStd(n)
    for t, x in enumerate(xs):
        stats.update(float(x))
        assert stats.ready == (t + 1 >= n)
        window = xs[max(0, t + 1 - n) : t + 1]
        assert stats.mean == pytest.approx(float(np.mean(window)), rel=1e-12)
        assert stats.value == stats.mean
        assert stats.std == pytest.approx(float(np.std(window)), rel=1e-8, abs=1e-10)


def test_rolling_std_stays_accurate_on_large_level_small_moves() -> None:
    # Prices near 1e4 moving by 1e-3: naive sums of squares lose every digit here.
    rng = np.random.default_rng(3)
    xs = 1e4 + rng.normal(0.0, 1e-3, N_POINTS)
    stats = RollingMeanStd(20)
    for t, x in enumerate(xs):
        stats.update(float(x))
        if t >= 19:
            assert stats.std == pytest.approx(float(np.std(xs[t - 19 : t + 1])), rel=1e-6)


def test_rolling_std_of_a_constant_window_is_exactly_zero() -> None:
    stats = RollingMeanStd(3)
    for x in [5.0, -2.0, 9.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]:
        stats.update(x)
        assert stats.std >= 0.0
    assert stats.std == 0.0
    assert stats.mean == pytest.approx(0.1)


@pytest.mark.parametrize("n", [1, 3, 20])
def test_rolling_max_and_min_match_numpy(n: int) -> None:
    rng = np.random.default_rng(4)
    # Rounded values give ties, which the monotonic deque must handle.
    xs = np.round(rng.normal(0.0, 3.0, N_POINTS))
    hi = RollingMax(n)
    lo = RollingMin(n)
    for t, x in enumerate(xs):
        hi.update(float(x))
        lo.update(float(x))
        window = xs[max(0, t + 1 - n) : t + 1]
        assert hi.ready == lo.ready == (t + 1 >= n)
        assert hi.value == float(np.max(window))
        assert lo.value == float(np.min(window))


@pytest.mark.parametrize("n", [1, 5, 30])
def test_lag_is_the_value_n_updates_ago(n: int) -> None:
    xs = _random_walk(5)
    lag = Lag(n)
    for t, x in enumerate(xs):
        lag.update(float(x))
        if t < n:
            assert not lag.ready
            assert math.isnan(lag.value)
        else:
            assert lag.ready
            assert lag.value == float(xs[t - n])


@pytest.mark.parametrize("cls", [SMA, RollingMeanStd, RollingMax, RollingMin, Lag])
def test_a_window_below_one_is_rejected(cls: type[SMA | RollingMeanStd | RollingMax]) -> None:
    with pytest.raises(ValueError, match="window must be >= 1"):
        cls(0)
