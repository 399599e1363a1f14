"""Incremental indicators: O(1) per update (amortized for the rolling max and min).

Each indicator takes one value at a time with `update(x)`, says whether it has seen enough with
`ready`, and exposes its result as the plain attribute `value` (attributes, not properties: the
per-bar path reads them millions of times). Until `ready`, `value` is computed over the values
seen so far (`Lag`: nan).
"""

from __future__ import annotations

import math
from collections import deque

# A variance below (this * mean)**2 is rounding noise of a constant window: the mean of n equal
# floats is not always exactly that float, so a two-pass variance of them can come out as ulp**2.
_REL_VAR_NOISE = 1e-28


def _check_window(name: str, n: int, minimum: int) -> None:
    if n < minimum:
        raise ValueError(f"{name} window must be >= {minimum}, got {n}")


class SMA:
    """Simple moving average of the last `n` values.

    A running sum, recomputed exactly (math.fsum) each time the ring buffer wraps, so float
    drift is bounded by `n` updates' worth of rounding.

    Raises:
        ValueError: `n` < 1.
    """

    __slots__ = ("_buf", "_count", "_i", "_n", "_sum", "ready", "value")

    def __init__(self, n: int) -> None:
        _check_window("SMA", n, 1)
        self._n = n
        self._buf = [0.0] * n
        self._i = 0
        self._sum = 0.0
        self._count = 0
        self.ready = False
        self.value = math.nan

    def update(self, x: float) -> None:
        """Add one value (HOT)."""
        buf = self._buf
        i = self._i
        s = self._sum + x - buf[i]
        buf[i] = x
        i += 1
        if i == self._n:
            i = 0
            s = math.fsum(buf)
        self._i = i
        self._sum = s
        if self.ready:
            self.value = s / self._n
        else:
            c = self._count + 1
            self._count = c
            self.value = s / c
            self.ready = c >= self._n


class RollingMeanStd:
    """Mean and population standard deviation of the last `n` values.

    A sliding Welford update (add the new value and drop the oldest in one step), with an exact
    two-pass recompute each time the ring buffer wraps so drift stays bounded; the variance is
    clamped at zero and never negative.

    Attributes:
        value: the mean (same as `mean`).
        mean: the mean of the window.
        std: the population standard deviation of the window.

    Raises:
        ValueError: `n` < 1.
    """

    __slots__ = ("_buf", "_count", "_i", "_inv_n", "_m2", "_n", "mean", "ready", "std", "value")

    def __init__(self, n: int) -> None:
        _check_window("RollingMeanStd", n, 1)
        self._n = n
        self._inv_n = 1.0 / n
        self._buf = [0.0] * n
        self._i = 0
        self._m2 = 0.0
        self._count = 0
        self.ready = False
        self.mean = math.nan
        self.std = math.nan
        self.value = math.nan

    def update(self, x: float) -> None:
        """Add one value (HOT)."""
        if not self.ready:
            self._fill(x)
            return
        buf = self._buf
        i = self._i
        y = buf[i]
        buf[i] = x
        mean = self.mean
        d = x - y
        new_mean = mean + d * self._inv_n
        m2 = self._m2 + d * (x - new_mean + y - mean)
        i += 1
        if i == self._n:
            # Exact recompute once per n updates: amortized O(1), and it resets any drift.
            i = 0
            new_mean, m2 = self._exact()
        elif m2 < 0.0:
            m2 = 0.0
        self._i = i
        self._m2 = m2
        self.mean = new_mean
        self.value = new_mean
        self.std = math.sqrt(m2 * self._inv_n)

    def _fill(self, x: float) -> None:
        # Welford's update while the window fills.
        c = self._count + 1
        self._count = c
        mean = 0.0 if c == 1 else self.mean
        delta = x - mean
        new_mean = mean + delta / c
        m2 = self._m2 + delta * (x - new_mean)
        i = self._i
        self._buf[i] = x
        i += 1
        if i == self._n:
            i = 0
            self.ready = True
            new_mean, m2 = self._exact()
        elif m2 < 0.0:
            m2 = 0.0
        self._i = i
        self._m2 = m2
        self.mean = new_mean
        self.value = new_mean
        self.std = math.sqrt(m2 / c)

    def _exact(self) -> tuple[float, float]:
        """Two-pass mean and sum of squared deviations of the full window."""
        buf = self._buf
        mean = math.fsum(buf) / self._n
        m2 = math.fsum([(v - mean) * (v - mean) for v in buf])
        if m2 * self._inv_n <= _REL_VAR_NOISE * mean * mean:
            m2 = 0.0
        return mean, m2


class RollingMax:
    """Maximum of the last `n` values, with a monotonic deque (amortized O(1)).

    Raises:
        ValueError: `n` < 1.
    """

    __slots__ = ("_idx", "_n", "_t", "_vals", "ready", "value")

    def __init__(self, n: int) -> None:
        _check_window("RollingMax", n, 1)
        self._n = n
        self._t = 0
        # Parallel deques (values, and the update number each came in at) avoid a tuple per bar.
        self._vals: deque[float] = deque()
        self._idx: deque[int] = deque()
        self.ready = False
        self.value = math.nan

    def update(self, x: float) -> None:
        """Add one value (HOT)."""
        t = self._t + 1
        self._t = t
        vals = self._vals
        idx = self._idx
        while vals and vals[-1] <= x:
            vals.pop()
            idx.pop()
        vals.append(x)
        idx.append(t)
        # Indices are strictly increasing and t moves by one, so at most one entry expires.
        if idx[0] <= t - self._n:
            idx.popleft()
            vals.popleft()
        self.value = vals[0]
        if not self.ready:
            self.ready = t >= self._n


class RollingMin:
    """Minimum of the last `n` values, with a monotonic deque (amortized O(1)).

    Raises:
        ValueError: `n` < 1.
    """

    __slots__ = ("_idx", "_n", "_t", "_vals", "ready", "value")

    def __init__(self, n: int) -> None:
        _check_window("RollingMin", n, 1)
        self._n = n
        self._t = 0
        self._vals: deque[float] = deque()
        self._idx: deque[int] = deque()
        self.ready = False
        self.value = math.nan

    def update(self, x: float) -> None:
        """Add one value (HOT)."""
        t = self._t + 1
        self._t = t
        vals = self._vals
        idx = self._idx
        while vals and vals[-1] >= x:
            vals.pop()
            idx.pop()
        vals.append(x)
        idx.append(t)
        if idx[0] <= t - self._n:
            idx.popleft()
            vals.popleft()
        self.value = vals[0]
        if not self.ready:
            self.ready = t >= self._n


class Lag:
    """The value `n` updates ago: after updates x1..xt, `value` is x(t-n); ready once t > n.

    Raises:
        ValueError: `n` < 1.
    """

    __slots__ = ("_buf", "_count", "_i", "_n", "ready", "value")

    def __init__(self, n: int) -> None:
        _check_window("Lag", n, 1)
        self._n = n
        self._buf = [math.nan] * n
        self._i = 0
        self._count = 0
        self.ready = False
        self.value = math.nan

    def update(self, x: float) -> None:
        """Add one value (HOT)."""
        buf = self._buf
        i = self._i
        old = buf[i]
        buf[i] = x
        i += 1
        if i == self._n:
            i = 0
        self._i = i
        if self.ready:
            self.value = old
        else:
            c = self._count + 1
            self._count = c
            if c > self._n:
                self.ready = True
                self.value = old
