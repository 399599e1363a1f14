"""Covariance with shrinkage and the equal-risk-contribution (risk parity) weights.

Rebalance-time work (not per bar): O(window x n^2) for the covariance and O(n^3) per Newton step
of the risk parity solver.
"""

from __future__ import annotations

import math

import numpy as np

from composer.returns import FloatArray

# The solver stops when every risk contribution is within this (relative) of 1/n.
_TOL = 1e-10
_MAX_STEPS = 100
# A covariance whose smallest eigenvalue is below this times its largest is singular.
_SINGULAR = 1e-12


def shrunk_covariance(returns: FloatArray, shrinkage: float) -> FloatArray:
    """(1 - shrinkage) * sample + shrinkage * diag(sample), of the columns of `returns`.

    The sample covariance is the population one (divided by the number of rows), as the
    volatilities of `composer.indicators` are.
    """
    sample: FloatArray = np.atleast_2d(np.cov(returns, rowvar=False, ddof=0))
    if shrinkage == 0.0:
        return sample
    diag = np.diag(np.diag(sample))
    shrunk: FloatArray = (1.0 - shrinkage) * sample + shrinkage * diag
    return shrunk


def is_singular(cov: FloatArray) -> bool:
    """Whether `cov` is not (numerically) positive definite."""
    eig = np.linalg.eigvalsh(cov)
    top = float(eig[-1])
    return not (top > 0.0 and float(eig[0]) > _SINGULAR * top)


def inverse_vol_weights(cov: FloatArray) -> FloatArray:
    """Weights proportional to 1/vol, summing to 1.

    A zero vol counts as the smallest positive one; all zero: equal weights.
    """
    vols = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    positive = vols[vols > 0.0]
    if positive.size == 0:
        return np.full(vols.size, 1.0 / vols.size)
    inv = 1.0 / np.where(vols > 0.0, vols, positive.min())
    out: FloatArray = inv / inv.sum()
    return out


def risk_parity_weights(cov: FloatArray) -> FloatArray:
    """Long-only weights summing to 1 whose risk contributions w_i (C w)_i are all equal.

    The minimizer y of the convex f(y) = y'Cy / 2 - sum(log y) / n, normalized, is that
    portfolio (Spinu, 2013): at it, y_i (C y)_i = 1/n for every i. Found by damped Newton
    from the inverse-volatility portfolio: a handful of O(n^3) steps. Falls back to inverse
    volatility when `cov` is singular (or the iteration does not converge).
    """
    n = cov.shape[0]
    if n == 1:
        return np.ones(1)
    if n == 2:
        # w1 s1 (w1 s1 + rho w2 s2) = w2 s2 (w2 s2 + rho w1 s1) holds at w1 s1 = w2 s2: with
        # two assets, equal risk is inverse volatility at any correlation.
        return inverse_vol_weights(cov)
    if is_singular(cov):
        return inverse_vol_weights(cov)
    b = 1.0 / n
    y = 1.0 / np.sqrt(np.diag(cov))
    y /= math.sqrt(float(y @ cov @ y))  # at the optimum y'Cy = sum of contributions = 1
    for _ in range(_MAX_STEPS):
        cy = cov @ y
        if float(np.max(np.abs(y * cy - b))) <= _TOL * b:
            out: FloatArray = y / y.sum()
            return out
        grad = cy - b / y
        hess = cov.copy()
        hess.flat[:: n + 1] += b / (y * y)
        step = np.linalg.solve(hess, grad)
        # f / b is self-concordant, so the step 1 / (1 + decrement) stays feasible and
        # converges; within the quadratic region the full step does.
        decrement = math.sqrt(max(float(grad @ step), 0.0) / b)
        cand = y - (step if decrement < 0.25 else step / (1.0 + decrement))
        if not bool(np.all(cand > 0.0)):
            break
        y = cand
    return inverse_vol_weights(cov)


def risk_contributions(weights: FloatArray, cov: FloatArray) -> FloatArray:
    """Each weight's share of the portfolio variance: w_i (C w)_i / (w' C w)."""
    cw = cov @ weights
    contrib: FloatArray = weights * cw / float(weights @ cw)
    return contrib
