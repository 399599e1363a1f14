"""SanityChecker: each reason, session rules (holiday, early close), jumps against a reference."""

from __future__ import annotations

import datetime as dt
import math
import random
import statistics
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from feeds.bar import NS_PER_DAY, NS_PER_MINUTE, Bar
from feeds.calendar import SessionCalendar
from feeds.sanity import Reason, SanityChecker, SanitySettings

NY = ZoneInfo("America/New_York")
T0 = int(dt.datetime(2024, 1, 2, 10, tzinfo=NY).timestamp()) * 1_000_000_000


def ny_ns(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=NY).timestamp()) * 10**9


def bar(
    ts: int = T0,
    close: float = 100.0,
    *,
    symbol: str = "SPY",
    open: float | None = None,
    high: float | None = None,
    low: float | None = None,
    volume: float = 1000.0,
    vwap: float | None = None,
) -> Bar:
    o = close if open is None else open
    return Bar(
        symbol=symbol,
        ts=ts,
        open=o,
        high=max(o, close) if high is None else high,
        low=min(o, close) if low is None else low,
        close=close,
        volume=volume,
        vwap=vwap,
    )


@pytest.fixture(scope="module")
def calendar() -> SessionCalendar:
    return SessionCalendar()


def checker(calendar: SessionCalendar, bar_ns: int = NS_PER_MINUTE, **kw: object) -> SanityChecker:
    return SanityChecker(SanitySettings(**kw), bar_ns=bar_ns, calendar=calendar)


@pytest.mark.parametrize(
    "field",
    [
        {"open": math.nan},
        {"high": math.inf},
        {"low": -math.inf},
        {"volume": math.nan},
        {"vwap": math.nan},
    ],
)
def test_non_finite_fields(calendar: SessionCalendar, field: dict[str, float]) -> None:
    assert checker(calendar).check(bar(**field)) is Reason.NON_FINITE  # type: ignore[arg-type]


def test_nan_close_is_non_finite(calendar: SessionCalendar) -> None:
    b = Bar(symbol="SPY", ts=T0, open=1.0, high=1.0, low=1.0, close=math.nan, volume=1.0)
    assert checker(calendar).check(b) is Reason.NON_FINITE


@pytest.mark.parametrize("close", [0.0, -1.0])
def test_non_positive_price(calendar: SessionCalendar, close: float) -> None:
    assert checker(calendar).check(bar(close=close)) is Reason.NON_POSITIVE_PRICE


@pytest.mark.parametrize(
    "prices",
    [
        {"open": 100.0, "close": 101.0, "high": 100.5, "low": 99.0},  # high < close
        {"open": 100.0, "close": 101.0, "high": 102.0, "low": 100.5},  # low > open
        {"open": 100.0, "close": 100.0, "high": 99.0, "low": 101.0},  # high < low
    ],
)
def test_high_low_inconsistent(calendar: SessionCalendar, prices: dict[str, float]) -> None:
    assert checker(calendar).check(bar(**prices)) is Reason.HIGH_LOW  # type: ignore[arg-type]


def test_negative_volume(calendar: SessionCalendar) -> None:
    assert checker(calendar).check(bar(volume=-1.0)) is Reason.NEGATIVE_VOLUME


def test_zero_volume_is_accepted(calendar: SessionCalendar) -> None:
    assert checker(calendar).check(bar(volume=0.0)) is None


def test_duplicate_and_backwards_per_symbol(calendar: SessionCalendar) -> None:
    c = checker(calendar)
    assert c.check(bar(T0)) is None
    assert c.check(bar(T0)) is Reason.DUPLICATE
    assert c.check(bar(T0 - NS_PER_MINUTE)) is Reason.BACKWARDS
    assert c.check(bar(T0, symbol="AAPL")) is None  # other symbol, own history
    assert c.check(bar(T0 + NS_PER_MINUTE)) is None


def test_field_rejected_bar_does_not_advance_time(calendar: SessionCalendar) -> None:
    c = checker(calendar)
    assert c.check(bar(T0, volume=-1.0)) is Reason.NEGATIVE_VOLUME
    assert c.check(bar(T0)) is None


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ((2024, 1, 2, 9, 29), Reason.OUTSIDE_SESSION),
        ((2024, 1, 2, 9, 30), None),
        ((2024, 1, 2, 15, 59), None),
        ((2024, 1, 2, 16, 0), Reason.OUTSIDE_SESSION),
        ((2024, 11, 28, 12, 0), Reason.OUTSIDE_SESSION),  # Thanksgiving
        ((2024, 11, 29, 12, 59), None),  # early close at 13:00
        ((2024, 11, 29, 13, 0), Reason.OUTSIDE_SESSION),
        ((2024, 1, 6, 12, 0), Reason.OUTSIDE_SESSION),  # Saturday
    ],
)
def test_regular_session_minute_bars(
    calendar: SessionCalendar, when: tuple[int, ...], expected: Reason | None
) -> None:
    assert checker(calendar).check(bar(ny_ns(*when))) is expected


def test_regular_session_whole_interval_must_fit(calendar: SessionCalendar) -> None:
    five = 5 * NS_PER_MINUTE
    assert checker(calendar, five).check(bar(ny_ns(2024, 1, 2, 15, 55))) is None
    assert checker(calendar, five).check(bar(ny_ns(2024, 1, 2, 15, 56))) is Reason.OUTSIDE_SESSION


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ((2024, 1, 2, 3, 59), Reason.OUTSIDE_SESSION),
        ((2024, 1, 2, 4, 0), None),
        ((2024, 1, 2, 19, 59), None),
        ((2024, 1, 2, 20, 0), Reason.OUTSIDE_SESSION),
        ((2024, 11, 28, 8, 0), Reason.OUTSIDE_SESSION),
    ],
)
def test_extended_session(
    calendar: SessionCalendar, when: tuple[int, ...], expected: Reason | None
) -> None:
    assert checker(calendar, session="extended").check(bar(ny_ns(*when))) is expected


def test_any_session_and_daily_bars_skip_the_session_check(calendar: SessionCalendar) -> None:
    assert checker(calendar, session="any").check(bar(ny_ns(2024, 11, 28, 3))) is None
    # Daily bars stamped at midnight New York, even on a holiday, are not session-checked.
    assert checker(calendar, NS_PER_DAY).check(bar(ny_ns(2024, 11, 28))) is None


def test_calendar_is_built_from_settings_when_not_given() -> None:
    c = SanityChecker(SanitySettings(), bar_ns=NS_PER_MINUTE, calendar=None)
    assert c.check(bar(ny_ns(2024, 11, 28, 12))) is Reason.OUTSIDE_SESSION


def walk(c: SanityChecker, n: int, step: float = 0.001, start: float = 100.0) -> tuple[int, float]:
    """Feed n bars alternating +step/-step log returns; returns (next ts, last close)."""
    price = start
    ts = T0
    assert c.check(bar(ts, price)) is None
    for i in range(n):
        ts += NS_PER_MINUTE
        price *= math.exp(step if i % 2 == 0 else -step)
        assert c.check(bar(ts, price)) is None
    return ts + NS_PER_MINUTE, price


def test_spike_rejected_and_the_bar_after_it_accepted(calendar: SessionCalendar) -> None:
    c = checker(calendar, session="any")
    ts, price = walk(c, 40)
    assert c.check(bar(ts, price * 1.05)) is Reason.JUMP
    assert c.check(bar(ts + NS_PER_MINUTE, price * 1.001)) is None
    assert c.flagged == 0


def test_duplicate_of_a_jump_rejected_bar_is_a_duplicate(calendar: SessionCalendar) -> None:
    c = checker(calendar, session="any")
    ts, price = walk(c, 40)
    assert c.check(bar(ts, price * 1.05)) is Reason.JUMP
    assert c.check(bar(ts, price)) is Reason.DUPLICATE


def test_no_jump_check_before_min_obs(calendar: SessionCalendar) -> None:
    c = checker(calendar, session="any", jump_min_obs=30)
    ts, price = walk(c, 29)  # 29 returns in the window
    assert c.check(bar(ts, price * 1.05)) is None


def test_flagged_jump_passes_and_is_counted(calendar: SessionCalendar) -> None:
    c = checker(calendar, session="any", jump_action="flag")
    ts, price = walk(c, 40)
    assert c.check(bar(ts, price * 1.05)) is None
    assert c.flagged == 1


def test_threshold_is_sigmas_times_the_window_std(calendar: SessionCalendar) -> None:
    # 40 returns of +-0.001: sample std = 0.001 * sqrt(40/39); limit = 10x that.
    std = 0.001 * math.sqrt(40 / 39)
    c = checker(calendar, session="any")
    ts, price = walk(c, 40)
    assert c.check(bar(ts, price * math.exp(10 * std * 1.01))) is Reason.JUMP
    # The rejected return did not enter the window: the same limit still applies.
    assert c.check(bar(ts + NS_PER_MINUTE, price * math.exp(10 * std * 0.99))) is None


def test_two_bars_at_a_new_level_confirm_it(calendar: SessionCalendar) -> None:
    c = checker(calendar, session="any")
    ts, price = walk(c, 40)
    assert c.check(bar(ts, price * 1.2)) is Reason.JUMP
    assert c.check(bar(ts + NS_PER_MINUTE, price * 1.2)) is None
    assert c.check(bar(ts + 2 * NS_PER_MINUTE, price * 1.2)) is None


def reference(bars: list[Bar], settings: SanitySettings) -> list[Reason | None]:
    """A naive re-statement of the jump rule for consecutive minute bars of one symbol."""
    returns: list[float] = []
    prev: float | None = None
    candidate: float | None = None
    out: list[Reason | None] = []

    def is_jump(r: float) -> bool:
        window = returns[-settings.jump_window :]
        if len(window) < settings.jump_min_obs:
            return False
        return abs(r) > settings.jump_sigmas * statistics.stdev(window)

    for b in bars:
        if prev is None:
            prev = b.close
            out.append(None)
            continue
        r = math.log(b.close / prev)
        if not is_jump(r):
            returns.append(r)
            prev, candidate = b.close, None
            out.append(None)
        elif candidate is not None and not is_jump(math.log(b.close / candidate)):
            returns.append(math.log(b.close / candidate))
            prev, candidate = b.close, None
            out.append(None)
        else:
            candidate = b.close
            out.append(Reason.JUMP)
    return out


def test_jump_decisions_match_a_naive_reference(calendar: SessionCalendar) -> None:
    rng = random.Random(3)
    settings = SanitySettings(session="any", jump_window=50, jump_min_obs=20, jump_sigmas=6.0)
    price = 50.0
    bars = []
    for i in range(3000):
        r = rng.gauss(0.0, 0.001)
        if rng.random() < 0.02:
            r += rng.choice([-1, 1]) * rng.uniform(0.002, 0.05)
        price *= math.exp(r)
        bars.append(bar(T0 + i * NS_PER_MINUTE, price))
    expected = reference(bars, settings)
    c = SanityChecker(settings, bar_ns=NS_PER_MINUTE, calendar=calendar)
    got = [c.check(b) for b in bars]
    assert got == expected
    assert expected.count(Reason.JUMP) > 10


def test_gap_returns_are_scaled_by_elapsed_bars(calendar: SessionCalendar) -> None:
    std = 0.001 * math.sqrt(40 / 39)
    c = checker(calendar, session="any")
    ts, price = walk(c, 40)
    # 99 bars of silence: the limit grows by sqrt(100) = 10.
    later = ts + 99 * NS_PER_MINUTE
    assert c.check(bar(later, price * math.exp(10 * std * 9.9))) is None


def test_settings_validate_ranges() -> None:
    with pytest.raises(ValidationError, match="greater than 0"):
        SanitySettings(jump_sigmas=0)
    with pytest.raises(ValidationError, match="greater than or equal to 2"):
        SanitySettings(jump_window=1)
    with pytest.raises(ValidationError, match="Extra inputs"):
        SanitySettings(jump_sigma=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        SanitySettings(session="night")


def test_reason_values() -> None:
    assert Reason.HIGH_LOW.value == "high_low_inconsistent"
    assert Reason.BACKWARDS.value == "time_backwards"
    assert Reason.UNPARSEABLE_TIME.value == "unparseable_time"


def naive_field_reason(b: Bar) -> Reason | None:
    """Rules 1-4 of the module docstring, stated directly."""
    prices = (b.open, b.high, b.low, b.close)
    values = (*prices, b.volume) + (() if b.vwap is None else (b.vwap,))
    if not all(math.isfinite(x) for x in values):
        return Reason.NON_FINITE
    if min(prices) <= 0.0:
        return Reason.NON_POSITIVE_PRICE
    if b.high < max(b.open, b.close) or b.low > min(b.open, b.close) or b.high < b.low:
        return Reason.HIGH_LOW
    if b.volume < 0.0:
        return Reason.NEGATIVE_VOLUME
    return None


def test_field_rules_match_a_naive_statement_on_random_and_extreme_values(
    calendar: SessionCalendar,
) -> None:
    rng = random.Random(7)
    big = 1.7e308  # finite, but high + volume overflows: such a bar is still accepted
    specials = [math.nan, math.inf, -math.inf, 0.0, -1.0, 1.0, 2.0, 3.0, big]
    seen: set[Reason | None] = set()
    for i in range(5000):
        o, h, lo, c, v = (
            rng.choice(specials) if rng.random() < 0.15 else rng.uniform(0.5, 3.5) for _ in range(5)
        )
        vw = None if i % 2 else rng.choice([*specials, 1.5])
        b = Bar("SPY", T0, o, h, lo, c, v, None, vw)
        expected = naive_field_reason(b)
        seen.add(expected)
        # A fresh checker with no session or jump state: only rules 1-4 can reject.
        assert checker(calendar, session="any").check(b) is expected, b
    assert seen == {
        None,
        Reason.NON_FINITE,
        Reason.NON_POSITIVE_PRICE,
        Reason.HIGH_LOW,
        Reason.NEGATIVE_VOLUME,
    }


def test_bar_whose_high_plus_volume_overflows_is_accepted_and_remembered(
    calendar: SessionCalendar,
) -> None:
    c = checker(calendar, session="any")
    b = bar(T0, 1e308, volume=1e308)
    assert c.check(b) is None
    assert c.check(b) is Reason.DUPLICATE


def gap_reference(
    bars: list[Bar], settings: SanitySettings, bar_ns: int
) -> tuple[list[Reason | None], int]:
    """The jump rule for one symbol with gaps (returns scaled by sqrt(elapsed bars)) and the
    flag action; also the count of flagged jumps."""
    returns: list[float] = []
    prev: tuple[int, float] | None = None
    candidate: tuple[int, float] | None = None
    out: list[Reason | None] = []
    flagged = 0

    def ret(ts: int, close: float, ref: tuple[int, float]) -> float:
        return math.log(close / ref[1]) / math.sqrt(max(1.0, (ts - ref[0]) / bar_ns))

    def is_jump(r: float) -> bool:
        window = returns[-settings.jump_window :]
        if len(window) < settings.jump_min_obs:
            return False
        return abs(r) > settings.jump_sigmas * statistics.stdev(window)

    for b in bars:
        if prev is None:
            prev = (b.ts, b.close)
            out.append(None)
            continue
        r = ret(b.ts, b.close, prev)
        if not is_jump(r):
            returns.append(r)
            prev, candidate = (b.ts, b.close), None
            out.append(None)
        elif settings.jump_action == "flag":
            flagged += 1
            prev = (b.ts, b.close)
            out.append(None)
        elif candidate is not None and not is_jump(ret(b.ts, b.close, candidate)):
            returns.append(ret(b.ts, b.close, candidate))
            prev, candidate = (b.ts, b.close), None
            out.append(None)
        else:
            candidate = (b.ts, b.close)
            out.append(Reason.JUMP)
    return out, flagged


@pytest.mark.parametrize("action", ["reject", "flag"])
def test_jump_decisions_with_gaps_over_many_windows_match_a_reference(
    calendar: SessionCalendar, action: str
) -> None:
    # 6,000 bars with a window of 40: the running sums are re-summed many times on the way.
    rng = random.Random(11)
    settings = SanitySettings(
        session="any", jump_window=40, jump_min_obs=10, jump_sigmas=5.0, jump_action=action
    )
    price, ts = 80.0, T0
    bars = []
    for _ in range(6000):
        gap = rng.choice([1, 1, 1, 1, 2, 7])
        ts += gap * NS_PER_MINUTE
        r = rng.gauss(0.0, 0.001) * math.sqrt(gap)
        if rng.random() < 0.03:
            r += rng.choice([-1, 1]) * rng.uniform(0.003, 0.08)
        price *= math.exp(r)
        bars.append(bar(ts, price))
    expected, flagged = gap_reference(bars, settings, NS_PER_MINUTE)
    c = SanityChecker(settings, bar_ns=NS_PER_MINUTE, calendar=calendar)
    assert [c.check(b) for b in bars] == expected
    assert c.flagged == flagged
    assert expected.count(Reason.JUMP) + flagged > 50


def test_session_cache_follows_days_back_and_forth_across_symbols(
    calendar: SessionCalendar,
) -> None:
    c = checker(calendar)
    # Symbols on different days (a replay of one symbol after another), then a holiday.
    assert c.check(bar(ny_ns(2024, 1, 3, 9, 30), symbol="A")) is None
    assert c.check(bar(ny_ns(2024, 1, 2, 15, 59), symbol="B")) is None
    assert c.check(bar(ny_ns(2024, 1, 2, 16, 0), symbol="C")) is Reason.OUTSIDE_SESSION
    assert c.check(bar(ny_ns(2024, 1, 3, 16, 0), symbol="B")) is Reason.OUTSIDE_SESSION
    assert c.check(bar(ny_ns(2024, 11, 28, 10), symbol="A")) is Reason.OUTSIDE_SESSION
    assert c.check(bar(ny_ns(2024, 11, 29, 12, 59), symbol="A")) is None
