"""The composer: many strategies' signals -> one set of target weights, on a schedule.

    target[sym] = sum over strategies s of  w_s * signal_s[sym] * a_s[sym]

where w_s is the capital weight of s and a_s[sym] its allocation to sym, both decided by the
composition method (`composer.methods`). With `vol_target` set, every target is then scaled
by k = annual_vol / (annualized vol of the targets) (`composer.vol_target`). If the sum of
|target| exceeds `max_gross`, every target is scaled down so that it equals `max_gross`.

The engine calls, per accepted bar, `on_bar(bar)`; per slice, `due(ts)` and, when it is True,
`compose(ts)`. `compose` records the rebalance and schedules the next one.
"""

from __future__ import annotations

import datetime
import math
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from itertools import repeat
from operator import add, mul
from typing import Any, assert_never

import numpy as np

from composer.methods import METHODS, RegimeMethod
from composer.settings import ComposerSettings, RebalanceSchedule
from composer.strategy import Strategy
from composer.targets import Targets
from composer.vol_target import VolTarget
from feeds.bar import NS_PER_MINUTE, NS_PER_SECOND, Bar
from feeds.errors import ConfigError, InvariantViolation

# From this many symbols, whole-universe contributions are summed on arrays (numpy's calls
# cost more than they save on a few symbols: 3 symbols ~10 us slower, 500 ~0.1 ms faster).
_ARRAYS_FROM = 64
_ALWAYS = -(2**63)  # a due time every slice is at or after
_NEVER = 2**63
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


class Composer:
    """Feeds bars to the strategies and composes their signals into targets.

    Args:
        settings: the `composer:` settings.
        strategies: strategy id -> instance, in the configured order.
        symbols: the universe; targets carry every one of them (0.0 where nothing trades it).

    Raises:
        ConfigError: no strategy; a strategy with no symbols or a symbol outside the universe;
            `strategy_weights` naming an unknown strategy (or missing for method 'static');
            method settings that do not fit (`composer.regime.table.<regime>.<id>` naming an
            unknown strategy, `composer.regime.symbol` outside the universe,
            `composer.performance.floor`/`cap` that cannot sum to 1). The message starts
            with the key path.
    """

    def __init__(
        self,
        settings: ComposerSettings,
        strategies: Mapping[str, Strategy[Any]],
        symbols: Sequence[str],
    ) -> None:
        if not strategies:
            raise ConfigError("strategies: at least one strategy is required")
        universe = tuple(symbols)
        known = set(universe)
        for sid, strat in strategies.items():
            if not strat.symbols:
                raise ConfigError(f"strategies.{sid}.symbols: the strategy has no symbols")
            if len(set(strat.symbols)) != len(strat.symbols):
                twice = next(s for s in strat.symbols if strat.symbols.count(s) > 1)
                raise ConfigError(f"strategies.{sid}.symbols: {twice} is listed twice")
            for sym in strat.symbols:
                if sym not in known:
                    raise ConfigError(
                        f"strategies.{sid}.symbols: {sym} is not in the universe (symbols)"
                    )
        if settings.method == "static" and not settings.strategy_weights:
            raise ConfigError("composer.strategy_weights: required for method 'static'")
        for sid in settings.strategy_weights:
            if sid not in strategies:
                raise ConfigError(
                    f"composer.strategy_weights.{sid}: no such strategy; "
                    f"strategies: {', '.join(strategies)}"
                )

        self._settings = settings
        self._strategies = dict(strategies)
        self._universe = universe
        self._max_gross = settings.max_gross
        self._method = METHODS[settings.method](settings, self._strategies, universe)
        self._vol_target = (
            None if settings.vol_target is None else VolTarget(settings.vol_target, universe)
        )

        # Strategies first: a method that reads signals at a bar reads the ones it produced.
        routes: dict[str, list[Callable[[Bar], None]]] = {}
        for strat in self._strategies.values():
            for sym in strat.symbols:
                routes.setdefault(sym, []).append(strat.on_bar)
        if self._method.observes_bars:
            for sym in self._method.observed_symbols:
                routes.setdefault(sym, []).append(self._method.on_bar)
        if self._vol_target is not None:
            for sym in universe:
                routes.setdefault(sym, []).append(self._vol_target.on_bar)
        # One callable per symbol: most symbols have one handler, called directly.
        self._routes: dict[str, Callable[[Bar], None]] = {
            sym: handlers[0] if len(handlers) == 1 else _fan_out(tuple(handlers))
            for sym, handlers in routes.items()
        }
        self._zeros = dict.fromkeys(universe, 0.0)
        self._pairs = tuple(self._strategies.items())
        # Each strategy's symbols (in the Targets too): one tuple for all that trade the universe.
        everything = tuple(self._zeros)
        self._symbols_of: dict[str, tuple[str, ...]] = {
            sid: everything if s.symbols == everything else s.symbols
            for sid, s in self._strategies.items()
        }
        self._universe_of_all = (
            everything if all(syms is everything for syms in self._symbols_of.values()) else None
        )
        # The last compose's outputs, reused while neither the signals nor the allocation
        # change. None of these dicts is mutated once a Targets holds it.
        self._last: Targets | None = None
        self._last_a: Mapping[str, Mapping[str, float]] | None = None
        # With vol targeting: the last weights before it, and the factor applied to them.
        self._last_raw: dict[str, float] = {}
        self._last_k = 1.0

        self.warmup_bars: int = max(
            [s.warmup_bars for s in self._strategies.values()]
            + [self._method.warmup_bars]
            + ([] if self._vol_target is None else [self._vol_target.warmup_bars])
        )
        """Bars per symbol to preload: the longest of the strategies' and the method's."""

        self._schedule = _schedule(settings.rebalance)

    @property
    def regime(self) -> str | None:
        """The market regime in effect (method "regime"); None before the first, or with
        another method."""
        method = self._method
        return method.detector.regime if isinstance(method, RegimeMethod) else None

    @property
    def regime_history(self) -> list[tuple[int, str]]:
        """Each regime change as (ts of the reference bar it took effect at, new regime),
        oldest first (a copy); empty with another method."""
        method = self._method
        return list(method.detector.history) if isinstance(method, RegimeMethod) else []

    def route(self, symbol: str) -> Callable[[Bar], None] | None:
        """The callable `on_bar` hands `symbol`'s bars to (None: nobody trades it); fixed at
        construction, so a per-bar caller may look it up once per symbol."""
        return self._routes.get(symbol)

    def on_bar(self, bar: Bar) -> None:
        """Feed one accepted bar to the strategies that trade its symbol (and the method) (HOT)."""
        handle = self._routes.get(bar[0])
        if handle is not None:
            handle(bar)

    def due(self, ts: int) -> bool:
        """Whether the slice starting at `ts` (UTC ns) is a rebalance (HOT).

        Call it once per slice, in time order. It stays True until `compose` is called, which
        consumes the period; calling it again for the same `ts` gives the same answer.

        "slice": always. "minutes": the first slice of each `minutes`-long bucket of UTC epoch
        time (aligned to the epoch: 60 means on UTC hours) not yet composed in. "daily": the
        first slice at or after `at` (local time in `timezone`) of each local date; a date
        that had slices but none at or after `at` is rebalanced at the first slice of the next
        date with slices. So daily bars stamped at local midnight with at=15:50 rebalance once
        per bar, each for the date before (none at the first bar); minute bars rebalance at
        15:50 every trading day, Mondays too; after an early close, at the next date's first
        slice and again at its `at`.
        """
        return self._schedule.due(ts)

    def compose(self, ts: int) -> Targets:
        """The targets at `ts` from the strategies' current signals; schedules the next due.

        When no strategy's signals changed since the last compose and the method returns the
        same allocation (the same dicts: see `CompositionMethod.allocate`), the result is the
        previous targets' dicts under the new `ts`. The dicts of a returned Targets are shared
        with later ones and must not be mutated.

        Raises:
            InvariantViolation: a strategy holds a signal outside [-1, 1] (or nan).
        """
        last = self._last
        if last is None:
            signals = self._copy_signals()
        else:
            # A dict compare per strategy: a change of any value or key (or a nan) is a change.
            signals = last.signals
            for sid, strat in self._pairs:
                if strat.signals != signals[sid]:
                    signals = self._copy_signals()
                    break
        alloc = self._method.allocate(ts, signals)
        w_of = alloc.strategy_weights
        a_of = alloc.symbol_weights
        vt = self._vol_target
        if (
            last is not None
            and signals is last.signals
            and w_of is last.strategy_weights
            and a_of is self._last_a
        ):
            if vt is None:
                self._schedule.rebalanced(ts)
                return Targets(
                    ts=ts,
                    weights=last.weights,
                    strategy_weights=last.strategy_weights,
                    signals=signals,
                    shares=last.shares,
                    symbols=last.symbols,
                )
            # Same weights before vol targeting; the vol, and so the factor, may have moved.
            raw = self._last_raw
            k = vt.scale(raw)
            weights = last.weights if k == self._last_k else self._capped(raw, k)
            self._last_k = k
            self._schedule.rebalanced(ts)
            targets = Targets(
                ts=ts,
                weights=weights,
                strategy_weights=last.strategy_weights,
                signals=signals,
                shares=last.shares,
                symbols=last.symbols,
            )
            self._last = targets
            return targets

        weights = self._combined(w_of, a_of, signals)

        if vt is None:
            cap = self._max_gross
            if math.fsum(map(abs, weights.values())) > cap:
                weights = _scaled(weights, cap)
        else:
            self._last_raw = weights
            k = vt.scale(weights)
            self._last_k = k
            weights = self._capped(weights, k)

        self._schedule.rebalanced(ts)
        # The method's dicts are shared, not copied: neither it nor any reader mutates them.
        targets = Targets(
            ts=ts,
            weights=weights,
            strategy_weights=w_of,
            signals=signals,
            shares=a_of,
            symbols=self._symbols_of,
        )
        self._last = targets
        self._last_a = a_of
        return targets

    def _combined(
        self,
        w_of: Mapping[str, float],
        a_of: Mapping[str, Mapping[str, float]],
        signals: Mapping[str, Mapping[str, float]],
    ) -> dict[str, float]:
        """The weights: each symbol's sum over the strategies, in their order, of their
        contributions (capital weight x signal x share of the capital, `Targets.by_strategy`)."""
        universe = self._universe_of_all
        if universe is not None and len(universe) >= _ARRAYS_FROM:
            # Every strategy trades the whole universe, a large one: the products (w x signal,
            # then x a) and sums of the loop below, in its order, on arrays of doubles (each
            # element rounds as the loop's float operations do).
            n = len(universe)
            total = np.zeros(n)
            arrays = {
                key: np.fromiter(map(a.__getitem__, universe), np.float64, n)
                for key, a in _distinct(a_of).items()
            }
            for sid in self._symbols_of:
                signal = np.fromiter(map(signals[sid].__getitem__, universe), np.float64, n)
                products = signal * w_of[sid]
                products *= arrays[id(a_of[sid])]
                total += products
            weights = dict(zip(universe, total.tolist(), strict=True))
        elif universe is not None:
            # Every strategy trades the whole (small) universe: the same by C loops (map).
            sums: list[float] = [0.0] * len(universe)
            shares = {key: list(map(a.__getitem__, universe)) for key, a in _distinct(a_of).items()}
            for sid in self._symbols_of:
                parts = list(
                    map(
                        mul,
                        map(mul, repeat(w_of[sid]), map(signals[sid].__getitem__, universe)),
                        shares[id(a_of[sid])],
                    )
                )
                sums = list(map(add, sums, parts))
            weights = dict(zip(universe, sums, strict=True))
        else:
            weights = self._zeros.copy()
            for sid, syms in self._symbols_of.items():
                w = w_of[sid]
                a = a_of[sid]
                sig = signals[sid]
                for sym in syms:
                    weights[sym] += w * sig[sym] * a[sym]
        return weights

    def _capped(self, weights: dict[str, float], k: float) -> dict[str, float]:
        """`weights` times `k` (inf: as much as the cap allows), capped at `max_gross`."""
        cap = self._max_gross
        gross = math.fsum(map(abs, weights.values()))
        if gross == 0.0:
            return weights
        if k * gross > cap:
            return _scaled(weights, cap)
        scaled = {sym: x * k for sym, x in weights.items()}
        # k * gross <= cap can still round to a sum an ulp above it.
        return _scaled(weights, cap) if math.fsum(map(abs, scaled.values())) > cap else scaled

    def _copy_signals(self) -> dict[str, dict[str, float]]:
        signals: dict[str, dict[str, float]] = {}
        for sid, strat in self._pairs:
            sig = dict(strat.signals)
            # nan fails the comparison too; a value that is no number raises (a comparison
            # method's NotImplemented would pass for true).
            if not all(-1.0 <= x <= 1.0 for x in sig.values()):
                _bad_signal(sid, strat, sig)
            signals[sid] = sig
        return signals


def _distinct(a_of: Mapping[str, Mapping[str, float]]) -> dict[int, Mapping[str, float]]:
    """The allocation's dicts by identity, each once (one dict is often every strategy's)."""
    return {id(a): a for a in a_of.values()}


def _scaled(weights: Mapping[str, float], cap: float) -> dict[str, float]:
    """`weights` scaled down so that the sum of their absolute values is at most `cap`."""
    k = cap / math.fsum(map(abs, weights.values()))
    scaled = {sym: x * k for sym, x in weights.items()}
    # Rounding can leave the scaled sum an ulp above the cap; the cap is a promise.
    while math.fsum(map(abs, scaled.values())) > cap:
        k = math.nextafter(k, 0.0)
        scaled = {sym: x * k for sym, x in weights.items()}
    return scaled


def _fan_out(handlers: tuple[Callable[[Bar], None], ...]) -> Callable[[Bar], None]:
    """One callable that calls each of `handlers` in order."""

    def handle(bar: Bar) -> None:
        for h in handlers:
            h(bar)

    return handle


def _bad_signal(sid: str, strat: Strategy[Any], signals: Mapping[str, float]) -> None:
    for sym, x in signals.items():
        if not -1.0 <= x <= 1.0:
            raise InvariantViolation(
                f"strategy {sid!r} ({strat.strategy_name}) has signal {x!r} for {sym}, "
                "outside [-1, 1]"
            )


class _EverySlice:
    """every: slice."""

    def due(self, ts: int) -> bool:
        return True

    def rebalanced(self, ts: int) -> None:
        pass


class _EveryMinutes:
    """every: minutes. Buckets of UTC epoch time; the first slice is always due."""

    def __init__(self, minutes: int) -> None:
        self._bucket_ns = minutes * NS_PER_MINUTE
        self._next_due = _ALWAYS

    def due(self, ts: int) -> bool:
        return ts >= self._next_due

    def rebalanced(self, ts: int) -> None:
        self._next_due = (ts // self._bucket_ns + 1) * self._bucket_ns


class _Daily:
    """every: daily. Due times are computed once per local date or rebalance, in UTC ns.

    A date's rebalance is due from its `at`. A date that had slices but none at or after `at`
    (daily bars stamped at midnight, an early close) leaves its rebalance overdue: it is due at
    the first slice of the next date that has slices. Dates without slices (weekends) do not
    count, so minute bars rebalance at `at` on Mondays too.
    """

    def __init__(self, at: datetime.time, zone: zoneinfo.ZoneInfo) -> None:
        self._at = at
        self._zone = zone
        self._day_end = _ALWAYS  # forces the first slice to open its date
        self._first = True
        self._at_today = _NEVER
        self._done_today = False
        self._overdue = False
        self._next_due = _NEVER

    def due(self, ts: int) -> bool:
        if ts >= self._day_end:
            self._open_date(ts)
        return ts >= self._next_due

    def rebalanced(self, ts: int) -> None:
        if ts >= self._day_end:
            self._open_date(ts)
        self._overdue = False
        if ts >= self._at_today:
            self._done_today = True
        self._next_due = _NEVER if self._done_today else self._at_today

    def _open_date(self, ts: int) -> None:
        if not self._first and not self._done_today:
            self._overdue = True
        self._first = False
        utc = datetime.datetime.fromtimestamp(ts // NS_PER_SECOND, tz=datetime.UTC)
        day = utc.astimezone(self._zone).date()
        self._at_today = self._local_ns(day, self._at)
        self._day_end = self._local_ns(day + datetime.timedelta(days=1), datetime.time(0))
        self._done_today = False
        self._next_due = _ALWAYS if self._overdue else self._at_today

    def _local_ns(self, day: datetime.date, at: datetime.time) -> int:
        # fold=0: a time inside a DST gap is read with the offset before it (02:30 -> 03:30
        # EDT), and one repeated by a fall-back is its first occurrence.
        delta = datetime.datetime.combine(day, at, tzinfo=self._zone) - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * NS_PER_SECOND + delta.microseconds * 1000


def _schedule(settings: RebalanceSchedule) -> _EverySlice | _EveryMinutes | _Daily:
    match settings.every:
        case "slice":
            return _EverySlice()
        case "minutes":
            assert settings.minutes is not None  # the settings require it
            return _EveryMinutes(settings.minutes)
        case "daily":
            assert settings.at is not None  # the settings require it
            return _Daily(settings.at, zoneinfo.ZoneInfo(settings.timezone))
        case other:
            assert_never(other)
