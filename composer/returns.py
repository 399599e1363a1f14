"""Rolling windows of returns: per symbol from closes, and per strategy from its paper trades.

Both update in O(1) per bar (HOT) and hand out their windows as numpy arrays at a rebalance,
where the covariance and scores are computed. Returns are simple: close / previous close - 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from composer.strategy import Strategy
from feeds.bar import Bar

FloatArray = npt.NDArray[np.float64]


class ReturnWindow:
    """The last `n` values pushed, in a ring buffer.

    Attributes:
        count: values pushed so far.
        ready: `count` >= `n`.
    """

    __slots__ = ("_buf", "_i", "_n", "count", "last_close", "ready")

    def __init__(self, n: int) -> None:
        self._n = n
        self._buf = [0.0] * n
        self._i = 0
        self.count = 0
        self.ready = False
        self.last_close = 0.0  # for `add_close`; 0.0: none yet

    def push(self, x: float) -> None:
        """Add one value (HOT)."""
        i = self._i
        self._buf[i] = x
        i += 1
        self._i = 0 if i == self._n else i
        self.count += 1
        if not self.ready:
            self.ready = self.count >= self._n

    def add_close(self, close: float) -> None:
        """Push the return from the previous close to `close` (nothing for the first) (HOT)."""
        last = self.last_close
        if last > 0.0 and close > 0.0:
            self.push(close / last - 1.0)
        self.last_close = close

    def values(self) -> FloatArray:
        """The window's values, oldest first (only the pushed ones while not ready)."""
        if not self.ready:
            return np.array(self._buf[: self.count], dtype=np.float64)
        i = self._i
        return np.array(self._buf[i:] + self._buf[:i], dtype=np.float64)


class SymbolReturns:
    """A `ReturnWindow` of close-to-close returns per symbol.

    Symbols are aligned by position: the k-th newest return of each symbol is taken to be of
    the same period, which holds when every symbol prints every slice (a symbol that misses
    slices is shifted by that many periods until its window has rolled past the gap).
    """

    __slots__ = ("_windows", "version")

    def __init__(self, symbols: Sequence[str], lookback: int) -> None:
        self._windows = {s: ReturnWindow(lookback) for s in symbols}
        self.version = 0  # bumped per bar: an unchanged version means unchanged windows

    def on_bar(self, bar: Bar) -> None:
        """Take one bar's close (HOT)."""
        w = self._windows.get(bar[0])
        if w is not None:
            w.add_close(bar[5])
            self.version += 1

    def ready(self, symbols: Sequence[str]) -> bool:
        """Whether every one of `symbols` has a full window."""
        windows = self._windows
        return all(windows[s].ready for s in symbols)

    def matrix(self, symbols: Sequence[str]) -> FloatArray:
        """The full windows of `symbols` as the columns of a (lookback x len) array."""
        windows = self._windows
        return np.column_stack([windows[s].values() for s in symbols])


class PaperReturns:
    """Each strategy's own paper return per slice, in a `ReturnWindow` per strategy.

    A strategy's paper portfolio holds signal * 1/len(symbols) of its capital in each of its
    symbols, from the signal it had at the previous close of the symbol (no look-ahead: the
    strategies see a bar before this does). A slice's return is summed over the bars of one
    timestamp and pushed when a bar of a later timestamp arrives, or at `flush()`; a slice in
    which no symbol had a previous close (the first) is not a period.

    Args:
        strategies: strategy id -> instance; their `signals` are read at every bar.
        lookback: slices in each window.
    """

    __slots__ = ("_acc", "_closes", "_entries", "_pending", "_ts", "version", "windows")

    def __init__(self, strategies: Mapping[str, Strategy[Any]], lookback: int) -> None:
        self.windows = {sid: ReturnWindow(lookback) for sid in strategies}
        self._acc = dict.fromkeys(strategies, 0.0)
        # symbol -> [strategy id, strategy, share, signal held since the previous close]
        self._entries: dict[str, list[list[Any]]] = {}
        for sid, strat in strategies.items():
            share = 1.0 / len(strat.symbols)
            for sym in strat.symbols:
                self._entries.setdefault(sym, []).append([sid, strat, share, 0.0])
        self._closes: dict[str, float] = {}
        self._ts: int | None = None
        self._pending = False
        self.version = 0  # bumped per pushed slice

    def on_bar(self, bar: Bar) -> None:
        """Take one bar, after the strategies have seen it (HOT)."""
        sym = bar[0]
        ts = bar[1]
        if ts != self._ts:
            if self._pending:
                self.flush()
            self._ts = ts
        entries = self._entries.get(sym)
        if entries is None:
            return
        close = bar[5]
        last = self._closes.get(sym, 0.0)
        self._closes[sym] = close
        if last > 0.0 and close > 0.0:
            r = close / last - 1.0
            # Only a slice with a return in it is a period: the first slice is not.
            self._pending = True
        else:
            r = 0.0
        acc = self._acc
        for e in entries:
            sid = e[0]
            acc[sid] += e[3] * e[2] * r
            e[3] = e[1].signals[sym]

    def flush(self) -> None:
        """Push the open slice's returns (a no-op when nothing is pending)."""
        if not self._pending:
            return
        acc = self._acc
        for sid, w in self.windows.items():
            w.push(acc[sid])
            acc[sid] = 0.0
        self._pending = False
        self.version += 1

    def ready(self) -> bool:
        """Whether every strategy has a full window."""
        return all(w.ready for w in self.windows.values())

    def matrix(self) -> FloatArray:
        """The windows as the columns of a (lookback x strategies) array, in strategy order."""
        return np.column_stack([w.values() for w in self.windows.values()])
