"""The composer: each method on signals whose targets were computed by hand, the gross cap,
the routing of bars, the config errors and each rebalance schedule."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import math
from collections.abc import Mapping, Sequence
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict

from composer.composer import Composer
from composer.settings import ComposerSettings, RebalanceSchedule
from composer.strategy import Strategy, strategy
from composer.targets import Targets
from feeds.bar import NS_PER_MINUTE, NS_PER_SECOND, Bar
from feeds.errors import ConfigError, InvariantViolation
from tests.composer.helpers import bar

NY = ZoneInfo("America/New_York")


class NoParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@strategy("held", params=NoParams)
class Held(Strategy[NoParams]):
    """Signals set by the test; counts the bars it is given."""

    def __init__(self, symbols: Sequence[str], signals: Mapping[str, float] | None = None) -> None:
        super().__init__(NoParams(), symbols)
        self.signals.update(signals or {})
        self.seen: list[str] = []
        self.warmup = 3

    @property
    def warmup_bars(self) -> int:
        return self.warmup

    def on_bar(self, bar: Bar) -> None:
        self.seen.append(bar.symbol)


UNIVERSE = ["A", "B", "C", "D"]


def _two() -> dict[str, Held]:
    return {
        "a": Held(["A", "B"], {"A": 1.0, "B": -1.0}),
        "b": Held(["B", "C"], {"B": 1.0, "C": 0.5}),
    }


def test_equal_method_computed_by_hand() -> None:
    # w = 1/2 each; each strategy splits 1/2 per symbol.
    # A = .5*1*.5 = .25; B = .5*-1*.5 + .5*1*.5 = 0; C = .5*.5*.5 = .125; D untraded.
    composer = Composer(ComposerSettings(), _two(), UNIVERSE)
    t = composer.compose(7)
    assert t.ts == 7
    assert t.weights == pytest.approx({"A": 0.25, "B": 0.0, "C": 0.125, "D": 0.0})
    assert t.strategy_weights == {"a": 0.5, "b": 0.5}
    assert t.by_strategy["a"] == pytest.approx({"A": 0.25, "B": -0.25})
    assert t.by_strategy["b"] == pytest.approx({"B": 0.25, "C": 0.125})
    assert t.signals == {"a": {"A": 1.0, "B": -1.0}, "b": {"B": 1.0, "C": 0.5}}


def test_targets_hold_copies_of_the_signals() -> None:
    strategies = _two()
    composer = Composer(ComposerSettings(), strategies, UNIVERSE)
    t = composer.compose(0)
    strategies["a"].signals["A"] = 0.0
    assert t.signals["a"]["A"] == 1.0


def test_static_method_computed_by_hand() -> None:
    # a: .6, b: .2, c: missing -> 0.
    # A = .6*1*.5 = .3; B = .6*-1*.5 + .2*1*.5 = -.2; C = .2*.5*.5 = .05; D: c's signal, weight 0.
    strategies = {**_two(), "c": Held(["D"], {"D": 1.0})}
    settings = ComposerSettings(method="static", strategy_weights={"a": 0.6, "b": 0.2})
    t = Composer(settings, strategies, UNIVERSE).compose(0)
    assert t.weights == pytest.approx({"A": 0.3, "B": -0.2, "C": 0.05, "D": 0.0})
    assert t.strategy_weights == {"a": 0.6, "b": 0.2, "c": 0.0}
    assert t.by_strategy["c"] == {"D": 0.0}


def test_gross_is_scaled_down_to_max_gross_exactly() -> None:
    # static weights 1 and 2 on all-long signals: A = 1*1*.5 + 2*1*1/3, ... gross 3 > 0.7.
    strategies = {
        "a": Held(["A", "B"], {"A": 1.0, "B": 1.0}),
        "b": Held(["A", "B", "C"], {"A": 1.0, "B": 1.0, "C": -1.0}),
    }
    settings = ComposerSettings(
        method="static", strategy_weights={"a": 1.0, "b": 2.0}, max_gross=0.7
    )
    t = Composer(settings, strategies, UNIVERSE).compose(0)
    raw = {"A": 0.5 + 2 / 3, "B": 0.5 + 2 / 3, "C": -2 / 3, "D": 0.0}
    k = 0.7 / 3.0
    assert t.weights == pytest.approx({s: x * k for s, x in raw.items()})
    gross = math.fsum(abs(x) for x in t.weights.values())
    assert gross <= 0.7
    assert gross == pytest.approx(0.7, rel=1e-15)
    # by_strategy is before the scaling.
    assert t.by_strategy["b"] == pytest.approx({"A": 2 / 3, "B": 2 / 3, "C": -2 / 3})


def test_gross_under_the_cap_is_left_alone() -> None:
    strategies = {"a": Held(["A", "B"], {"A": 1.0, "B": -1.0})}
    t = Composer(ComposerSettings(max_gross=1.5), strategies, UNIVERSE).compose(0)
    assert t.weights == {"A": 0.5, "B": -0.5, "C": 0.0, "D": 0.0}


def _alternating(symbol: str, r: float, n: int) -> list[Bar]:
    # Log returns +r, -r, +r, ...: population std of an even count is exactly |r|.
    return [bar(symbol, i, 100.0 * math.exp(r if i % 2 else 0.0)) for i in range(n)]


def test_inverse_vol_splits_by_one_over_vol_after_warmup() -> None:
    # vol_lookback 4: A's returns +-.01 (vol .01), B's +-.02 (vol .02), C flat (vol 0, which
    # counts as the smallest positive vol seen, .01).
    # s1 [A, B]: 1/.01 : 1/.02 = 100 : 50 -> 2/3, 1/3.  s2 [A, B, C]: 100 : 50 : 100 -> .4 .2 .4
    strategies = {
        "s1": Held(["A", "B"], {"A": 1.0, "B": 1.0}),
        "s2": Held(["A", "B", "C"], {"A": 1.0, "B": 1.0, "C": 1.0}),
    }
    settings = ComposerSettings(method="inverse_vol", vol_lookback=4)
    composer = Composer(settings, strategies, UNIVERSE)
    assert composer.warmup_bars == 5
    feeds = [_alternating("A", 0.01, 5), _alternating("B", 0.02, 5), _alternating("C", 0.0, 5)]
    for i in range(4):
        for feed in feeds:
            composer.on_bar(feed[i])
    # Four closes are three returns: not ready, equal split.
    t = composer.compose(0)
    assert t.by_strategy["s1"] == pytest.approx({"A": 0.25, "B": 0.25})
    for feed in feeds:
        composer.on_bar(feed[4])
    t = composer.compose(1)
    assert t.strategy_weights == {"s1": 0.5, "s2": 0.5}
    assert t.by_strategy["s1"] == pytest.approx({"A": 0.5 * 2 / 3, "B": 0.5 / 3})
    assert t.by_strategy["s2"] == pytest.approx({"A": 0.2, "B": 0.1, "C": 0.2})
    assert t.weights == pytest.approx(
        {"A": 0.5 * 2 / 3 + 0.2, "B": 0.5 / 3 + 0.1, "C": 0.2, "D": 0.0}
    )


def test_inverse_vol_is_equal_while_only_some_symbols_are_ready() -> None:
    strategies = {"s": Held(["A", "B"], {"A": 1.0, "B": 1.0})}
    composer = Composer(
        ComposerSettings(method="inverse_vol", vol_lookback=2), strategies, ["A", "B"]
    )
    for b in _alternating("A", 0.01, 5) + _alternating("B", 0.03, 2):
        composer.on_bar(b)
    assert composer.compose(0).weights == pytest.approx({"A": 0.5, "B": 0.5})


def test_bars_reach_only_the_strategies_that_trade_the_symbol() -> None:
    strategies = _two()
    composer = Composer(ComposerSettings(), strategies, UNIVERSE)
    for symbol in ["A", "B", "C", "D", "ZZZ"]:
        composer.on_bar(bar(symbol, 0, 1.0))
    assert strategies["a"].seen == ["A", "B"]
    assert strategies["b"].seen == ["B", "C"]


def test_warmup_is_the_longest_of_strategies_and_method() -> None:
    strategies = _two()
    strategies["b"].warmup = 9
    assert Composer(ComposerSettings(), strategies, UNIVERSE).warmup_bars == 9
    settings = ComposerSettings(method="inverse_vol", vol_lookback=20)
    assert Composer(settings, strategies, UNIVERSE).warmup_bars == 21


@pytest.mark.parametrize(
    ("settings", "strategies", "message"),
    [
        (
            ComposerSettings(method="static", strategy_weights={"a": 1.0, "trend": 1.0}),
            _two(),
            "composer.strategy_weights.trend: no such strategy; strategies: a, b",
        ),
        (
            ComposerSettings.model_construct(method="static", strategy_weights={}),
            _two(),
            "composer.strategy_weights: required for method 'static'",
        ),
        (
            ComposerSettings(),
            {"x": Held(["A", "Q"])},
            "strategies.x.symbols: Q is not in the universe",
        ),
        (ComposerSettings(), {"x": Held([])}, "strategies.x.symbols: the strategy has no symbols"),
        (
            ComposerSettings(),
            {"x": Held(["A", "B", "A"])},
            "strategies.x.symbols: A is listed twice",
        ),
        (ComposerSettings(), {}, "strategies: at least one strategy"),
    ],
)
def test_config_errors_start_with_the_key_path(
    settings: ComposerSettings, strategies: dict[str, Strategy[NoParams]], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Composer(settings, strategies, UNIVERSE)
    assert str(info.value) == message or str(info.value).startswith(message)


@pytest.mark.parametrize("bad", [1.5, -2.0, math.nan])
def test_a_signal_outside_the_range_stops_the_process(bad: float) -> None:
    composer = Composer(ComposerSettings(), {"x": Held(["A"], {"A": bad})}, UNIVERSE)
    with pytest.raises(InvariantViolation, match=r"strategy 'x' .* for A, outside"):
        composer.compose(0)


def test_a_numpy_signal_outside_the_range_stops_the_process() -> None:
    # numpy's float32 is no float: float's own comparison methods answer NotImplemented for it,
    # which a check built on them would take for true.
    signal = np.float32(1.5)
    composer = Composer(ComposerSettings(), {"x": Held(["A"], {"A": signal})}, UNIVERSE)  # type: ignore[dict-item]
    with pytest.raises(InvariantViolation, match=r"strategy 'x' .* for A, outside"):
        composer.compose(0)


# --------------------------------------------------------------------------- schedules


def _composer(schedule: RebalanceSchedule) -> Composer:
    return Composer(ComposerSettings(rebalance=schedule), {"a": Held(["A"])}, ["A"])


def _rebalances(composer: Composer, slices: Sequence[int]) -> list[int]:
    done = []
    for ts in slices:
        if composer.due(ts):
            composer.compose(ts)
            done.append(ts)
    return done


def _ns(local: datetime.datetime) -> int:
    return int(local.timestamp()) * NS_PER_SECOND


def test_every_slice_is_due() -> None:
    composer = _composer(RebalanceSchedule())
    slices = [i * NS_PER_MINUTE for i in range(5)]
    assert _rebalances(composer, slices) == slices
    assert composer.due(slices[-1])


def test_minutes_buckets_are_aligned_to_the_epoch() -> None:
    # 5-minute buckets: [0, 5), [5, 10), [10, 15) minutes since the epoch. Slices start at
    # minute 3 (the first slice is due: a new bucket), and minute 10 is missing.
    composer = _composer(RebalanceSchedule(every="minutes", minutes=5))
    minutes = [3, 4, 5, 6, 7, 8, 9, 11, 12, 14, 15]
    done = _rebalances(composer, [m * NS_PER_MINUTE for m in minutes])
    assert [ts // NS_PER_MINUTE for ts in done] == [3, 5, 11, 15]


def test_due_is_a_query_and_compose_consumes_the_period() -> None:
    composer = _composer(RebalanceSchedule(every="minutes", minutes=5))
    assert composer.due(6 * NS_PER_MINUTE)
    assert composer.due(6 * NS_PER_MINUTE)  # not composed yet: still due
    composer.compose(6 * NS_PER_MINUTE)
    assert not composer.due(7 * NS_PER_MINUTE)
    assert composer.due(10 * NS_PER_MINUTE)


def test_daily_minute_bars_across_the_dst_change() -> None:
    # 15:50 New York is 20:50 UTC on Friday 2024-03-08 (EST) and 19:50 UTC on Monday
    # 2024-03-11 (EDT; clocks moved on Sunday the 10th).
    composer = _composer(RebalanceSchedule(every="daily", at=datetime.time(15, 50)))
    slices = []
    for day in (8, 11):
        open_ns = _ns(datetime.datetime(2024, 3, day, 9, 30, tzinfo=NY))
        slices += [open_ns + i * NS_PER_MINUTE for i in range(390)]
    done = _rebalances(composer, slices)
    assert done == [
        _ns(datetime.datetime(2024, 3, 8, 20, 50, tzinfo=datetime.UTC)),
        _ns(datetime.datetime(2024, 3, 11, 19, 50, tzinfo=datetime.UTC)),
    ]


def test_daily_waits_for_at_on_the_first_day_and_fires_after_a_gap() -> None:
    composer = _composer(RebalanceSchedule(every="daily", at=datetime.time(15, 50)))
    t = [
        datetime.datetime(2024, 3, 8, 15, 49, tzinfo=NY),  # before at: no
        datetime.datetime(2024, 3, 8, 15, 52, tzinfo=NY),  # first slice at/after 15:50: yes
        datetime.datetime(2024, 3, 8, 15, 59, tzinfo=NY),  # same local date: no
        datetime.datetime(2024, 3, 11, 9, 30, tzinfo=NY),  # next date, before at: no
        datetime.datetime(2024, 3, 11, 16, 0, tzinfo=NY),  # yes (no 15:50 slice that day)
        datetime.datetime(2024, 3, 12, 9, 30, tzinfo=NY),  # Monday was done: no
    ]
    assert _rebalances(composer, [_ns(x) for x in t]) == [_ns(t[1]), _ns(t[4])]


def test_daily_after_an_early_close_rebalances_at_the_next_open_and_at() -> None:
    # 2024-11-29 closes at 13:00: no slice reaches 15:50, so its rebalance is overdue and
    # happens at Monday's first slice; Monday's own happens at its 15:50.
    composer = _composer(RebalanceSchedule(every="daily", at=datetime.time(15, 50)))
    slices = []
    for day, minutes in ((29, 210), (2, 390)):
        month = 11 if day == 29 else 12
        open_ns = _ns(datetime.datetime(2024, month, day, 9, 30, tzinfo=NY))
        slices += [open_ns + i * NS_PER_MINUTE for i in range(minutes)]
    assert _rebalances(composer, slices) == [
        _ns(datetime.datetime(2024, 12, 2, 9, 30, tzinfo=NY)),
        _ns(datetime.datetime(2024, 12, 2, 15, 50, tzinfo=NY)),
    ]


def test_daily_bars_at_local_midnight_rebalance_once_per_bar() -> None:
    # Each midnight is past the previous date's 15:50, so every bar but the first is due,
    # across the DST change on 2024-03-10 too.
    composer = _composer(RebalanceSchedule(every="daily", at=datetime.time(15, 50)))
    days = [_ns(datetime.datetime(2024, 3, d, tzinfo=NY)) for d in range(4, 16)]
    assert _rebalances(composer, days) == days[1:]


def test_a_compose_before_at_leaves_that_days_rebalance_due() -> None:
    composer = _composer(RebalanceSchedule(every="daily", at=datetime.time(15, 50)))
    composer.compose(_ns(datetime.datetime(2024, 3, 8, 10, 0, tzinfo=NY)))
    assert not composer.due(_ns(datetime.datetime(2024, 3, 8, 15, 49, tzinfo=NY)))
    assert composer.due(_ns(datetime.datetime(2024, 3, 8, 15, 50, tzinfo=NY)))


# --------------------------------------------------------------------------- reuse of targets


def _fresh(strategies: Mapping[str, Held], settings: ComposerSettings, ts: int) -> Targets:
    """What a new composer (no previous targets to reuse) composes from the same signals."""
    copies = {sid: Held(s.symbols, s.signals) for sid, s in strategies.items()}
    return Composer(settings, copies, UNIVERSE).compose(ts)


def test_unchanged_signals_give_the_previous_targets_at_the_new_ts() -> None:
    strategies = _two()
    composer = Composer(ComposerSettings(), strategies, UNIVERSE)
    first = composer.compose(1)
    second = composer.compose(2)
    assert second.ts == 2
    assert first.ts == 1
    assert second == dataclasses.replace(first, ts=2)
    assert second == _fresh(strategies, ComposerSettings(), 2)


def test_a_changed_signal_is_recomposed_and_earlier_targets_stay_as_they_were() -> None:
    strategies = _two()
    composer = Composer(ComposerSettings(), strategies, UNIVERSE)
    first = composer.compose(1)
    before = copy.deepcopy(first)
    strategies["b"].signals["C"] = -1.0
    second = composer.compose(2)
    # C = .5 * -1 * .5
    assert second.weights == pytest.approx({"A": 0.25, "B": 0.0, "C": -0.25, "D": 0.0})
    assert second == _fresh(strategies, ComposerSettings(), 2)
    assert first == before
    strategies["b"].signals["C"] = 0.5  # back to the first signals: same numbers again
    assert composer.compose(3) == dataclasses.replace(first, ts=3)


def test_a_bad_signal_after_a_reuse_still_stops_the_process() -> None:
    held = Held(["A"], {"A": 1.0})
    composer = Composer(ComposerSettings(), {"x": held}, UNIVERSE)
    composer.compose(0)
    held.signals["A"] = math.nan
    with pytest.raises(InvariantViolation, match=r"strategy 'x' .* for A, outside"):
        composer.compose(1)


def test_inverse_vol_recomposes_when_only_the_vols_changed() -> None:
    # Signals never change; the split does, once A and B have full windows.
    strategies = {"s": Held(["A", "B"], {"A": 1.0, "B": 1.0})}
    settings = ComposerSettings(method="inverse_vol", vol_lookback=4)
    composer = Composer(settings, strategies, ["A", "B", "C", "D"])
    feeds = [_alternating("A", 0.01, 5), _alternating("B", 0.02, 5)]
    for i in range(4):
        for feed in feeds:
            composer.on_bar(feed[i])
    assert composer.compose(0).weights == pytest.approx({"A": 0.5, "B": 0.5, "C": 0, "D": 0})
    for feed in feeds:
        composer.on_bar(feed[4])
    assert composer.compose(1).weights == pytest.approx(
        {"A": 2 / 3, "B": 1 / 3, "C": 0.0, "D": 0.0}
    )


@pytest.mark.parametrize("size", [6, 80])  # below and above composer's _ARRAYS_FROM
@pytest.mark.parametrize("method", ["equal", "inverse_vol"])
def test_whole_universe_strategies_compose_the_numbers_of_the_per_symbol_loops(
    method: str, size: int
) -> None:
    # Strategies that trade every symbol in the universe's order take the fast paths (the
    # products and sums by C loops or on arrays, one inverse-vol split); with one of them
    # listing its symbols in another order, the same strategies take the per-symbol loops.
    # Both give the same floats, to the last bit. The last symbol never moves: its vol is 0
    # and counts as the smallest positive one.
    rng = np.random.default_rng(7)
    universe = [f"S{k:03d}" for k in range(size)]
    settings = ComposerSettings(method=method, vol_lookback=5)

    def build(*orders: list[str]) -> tuple[Composer, list[Held]]:
        held = [Held(order) for order in orders]
        return Composer(settings, {f"s{i}": h for i, h in enumerate(held)}, universe), held

    fast, fast_held = build(universe, universe, universe)
    loops, loop_held = build(universe, universe[::-1], universe)
    closes = dict.fromkeys(universe, 100.0)
    for i in range(12):
        for symbol in universe:
            if symbol != universe[-1]:
                closes[symbol] *= math.exp(rng.normal(0.0, 0.001 * (1 + universe.index(symbol))))
            for composer in (fast, loops):
                composer.on_bar(bar(symbol, i, closes[symbol]))
        for a, b in zip(fast_held, loop_held, strict=True):
            signals = {
                s: float(rng.choice([-1.0, -0.0, 0.0, 0.3, 1.0, rng.uniform(-1, 1)]))
                for s in universe
            }
            a.signals.update(signals)
            b.signals.update(signals)
        got, want = fast.compose(i), loops.compose(i)
        assert got.weights == want.weights
        assert got.by_strategy == want.by_strategy
        # The contributions, computed on read, are the terms the weights summed (gross is
        # under the cap here: no scaling).
        for composed in (got, want):
            contributions = composed.by_strategy
            for s in universe:
                total = 0.0
                for sid in ("s0", "s1", "s2"):
                    total += contributions[sid][s]
                assert total == composed.weights[s]
        assert [math.copysign(1.0, w) for w in got.weights.values()] == [
            math.copysign(1.0, want.weights[s]) for s in got.weights
        ]
