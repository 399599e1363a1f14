"""BarAggregator: alignment, sessions (early close, holiday), gaps, silence, late minutes,
corrections, partial buckets and the OHLCV arithmetic, each on minutes whose answer is known."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from feeds.aggregator import AggregatorSettings, BarAggregator, Bucket
from feeds.bar import NS_PER_MINUTE, Bar
from feeds.calendar import SessionCalendar
from feeds.timeframes import Timeframe

NY = ZoneInfo("America/New_York")
M = NS_PER_MINUTE


def ny(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=NY).timestamp()) * 10**9


@pytest.fixture(scope="module")
def calendar() -> SessionCalendar:
    return SessionCalendar()


def minute(
    ts: int,
    price: float = 100.0,
    *,
    symbol: str = "SPY",
    volume: float = 100.0,
    trade_count: int | None = 1,
    vwap: float | None = None,
) -> Bar:
    """A flat minute at `price` (high +0.5, low -0.5) unless the test needs more."""
    return Bar(
        symbol=symbol,
        ts=ts,
        open=price,
        high=price + 0.5,
        low=price - 0.5,
        close=price,
        volume=volume,
        trade_count=trade_count,
        vwap=price if vwap is None else vwap,
    )


def session_minutes(open_ns: int, close_ns: int, symbol: str = "SPY") -> Iterator[Bar]:
    """Every minute of a session, priced by its index (100, 101, ...)."""
    for i, ts in enumerate(range(open_ns, close_ns, M)):
        yield minute(ts, 100.0 + i, symbol=symbol)


def run(agg: BarAggregator, minutes: list[Bar], through: int) -> list[Bar]:
    """Feed the minutes, then close the clock through `through`; every completed bar in order."""
    out: list[Bar] = []
    for bar in minutes:
        out.extend(agg.add(bar))
    out.extend(agg.close_through(through))
    return out


def stamps(bars: list[Bar]) -> list[str]:
    return [dt.datetime.fromtimestamp(b.ts / 1e9, NY).strftime("%H:%M") for b in bars]


# -- alignment ---------------------------------------------------------------------------------


def test_hourly_buckets_align_to_the_session_open(calendar: SessionCalendar) -> None:
    agg = BarAggregator("1Hour", calendar, align="session")
    day = list(session_minutes(ny(2024, 3, 5, 9, 30), ny(2024, 3, 5, 16)))
    bars = run(agg, day, ny(2024, 3, 5, 16))
    assert stamps(bars) == ["09:30", "10:30", "11:30", "12:30", "13:30", "14:30", "15:30"]
    first, last = bars[0], bars[-1]
    # 09:30-10:29: minutes 0..59; the last bucket 15:30-15:59 is half an hour (360..389).
    assert (first.open, first.close, first.high, first.low) == (100.0, 159.0, 159.5, 99.5)
    assert (first.volume, first.trade_count) == (6000.0, 60)
    assert (last.open, last.close, last.volume) == (460.0, 489.0, 3000.0)


def test_hourly_buckets_align_to_the_clock_as_alpaca_stamps_them(
    calendar: SessionCalendar,
) -> None:
    agg = BarAggregator("1Hour", calendar, align="clock")
    day = list(session_minutes(ny(2024, 3, 5, 9, 30), ny(2024, 3, 5, 16)))
    bars = run(agg, day, ny(2024, 3, 5, 16))
    assert stamps(bars) == ["09:00", "10:00", "11:00", "12:00", "13:00", "14:00", "15:00"]
    # The first bucket holds only 09:30-09:59 but is stamped 09:00; the others a full hour.
    assert (bars[0].open, bars[0].close, bars[0].volume) == (100.0, 129.0, 3000.0)
    assert (bars[1].open, bars[1].close, bars[1].volume) == (130.0, 189.0, 6000.0)
    assert (bars[-1].open, bars[-1].close) == (430.0, 489.0)
    assert agg.bucket(ny(2024, 3, 5, 9, 45)) == Bucket(
        ts=ny(2024, 3, 5, 9), start=ny(2024, 3, 5, 9, 30), end=ny(2024, 3, 5, 10)
    )


def test_clock_alignment_in_summer_time(calendar: SessionCalendar) -> None:
    # EDT: 09:00 New York is 13:00 UTC.
    agg = BarAggregator("1Hour", calendar, align="clock")
    bucket = agg.bucket(ny(2024, 7, 1, 9, 30))
    assert bucket is not None
    assert bucket.ts == int(dt.datetime(2024, 7, 1, 13, tzinfo=dt.UTC).timestamp()) * 10**9


@pytest.mark.parametrize("timeframe", ["5Min", "15Min", "30Min"])
def test_sub_hour_buckets_are_the_same_either_way(
    calendar: SessionCalendar, timeframe: Timeframe
) -> None:
    day = list(session_minutes(ny(2024, 3, 5, 9, 30), ny(2024, 3, 5, 16)))
    by_session = run(BarAggregator(timeframe, calendar), day, ny(2024, 3, 5, 16))
    by_clock = run(BarAggregator(timeframe, calendar, align="clock"), day, ny(2024, 3, 5, 16))
    assert by_session == by_clock
    size = {"5Min": 5, "15Min": 15, "30Min": 30}[timeframe]
    assert len(by_session) == 390 // size
    second = {"5Min": "09:35", "15Min": "09:45", "30Min": "10:00"}[timeframe]
    assert stamps(by_session)[:2] == ["09:30", second]


def test_one_minute_timeframe_gives_each_session_minute_back(calendar: SessionCalendar) -> None:
    agg = BarAggregator("1Min", calendar)
    day = list(session_minutes(ny(2024, 3, 5, 9, 30), ny(2024, 3, 5, 10)))
    assert run(agg, day, ny(2024, 3, 5, 10)) == [b._replace(vwap=b.close) for b in day]


# -- sessions ----------------------------------------------------------------------------------


def test_early_close_ends_the_last_bucket_at_the_close(calendar: SessionCalendar) -> None:
    # 2024-11-29, the day after Thanksgiving: the session closes at 13:00 New York.
    day = list(session_minutes(ny(2024, 11, 29, 9, 30), ny(2024, 11, 29, 13)))
    session = BarAggregator("1Hour", calendar)
    assert stamps(run(session, day, ny(2024, 11, 29, 13))) == ["09:30", "10:30", "11:30", "12:30"]
    clock = BarAggregator("1Hour", calendar, align="clock")
    bars = run(clock, day, ny(2024, 11, 29, 13))
    assert stamps(bars) == ["09:00", "10:00", "11:00", "12:00"]
    assert clock.bucket(ny(2024, 11, 29, 12, 59)) == Bucket(
        ts=ny(2024, 11, 29, 12), start=ny(2024, 11, 29, 12), end=ny(2024, 11, 29, 13)
    )

    daily = BarAggregator("1Day", calendar)
    for bar in day:
        assert daily.add(bar) == []
    # The clock completes the day at 13:00, not at 16:00; a minute after 13:00 is outside.
    assert daily.close_through(ny(2024, 11, 29, 12, 59)) == []
    (bar,) = daily.close_through(ny(2024, 11, 29, 13))
    assert (bar.ts, bar.open, bar.close, bar.volume) == (ny(2024, 11, 29), 100.0, 309.0, 21000.0)
    assert daily.add(minute(ny(2024, 11, 29, 13, 5))) == []
    assert daily.outside_session == 1


def test_an_after_hours_minute_completes_the_day(calendar: SessionCalendar) -> None:
    daily = BarAggregator("1Day", calendar)
    day = list(session_minutes(ny(2024, 11, 29, 9, 30), ny(2024, 11, 29, 13)))
    for bar in day:
        daily.add(bar)
    (bar,) = daily.add(minute(ny(2024, 11, 29, 13, 1), 999.0))
    assert (bar.ts, bar.close, bar.high) == (ny(2024, 11, 29), 309.0, 309.5)
    assert daily.outside_session == 1


def test_a_holiday_has_no_bucket_and_days_around_it_are_separate(
    calendar: SessionCalendar,
) -> None:
    daily = BarAggregator("1Day", calendar)
    assert daily.bucket(ny(2024, 11, 28, 10)) is None  # Thanksgiving
    assert daily.is_closed("SPY", ny(2024, 11, 28, 10))
    out = daily.add(minute(ny(2024, 11, 27, 10), 50.0))
    out += daily.add(minute(ny(2024, 11, 28, 10), 60.0))  # a stray holiday print: left out
    out += daily.add(minute(ny(2024, 11, 29, 10), 70.0))
    out += daily.close_through(ny(2024, 11, 29, 13))
    assert [(b.ts, b.close) for b in out] == [(ny(2024, 11, 27), 50.0), (ny(2024, 11, 29), 70.0)]
    assert daily.outside_session == 1


def test_pre_market_minutes_are_left_out(calendar: SessionCalendar) -> None:
    daily = BarAggregator("1Day", calendar)
    assert daily.add(minute(ny(2024, 3, 5, 8, 0), 1.0)) == []
    assert daily.partial("SPY") is None
    daily.add(minute(ny(2024, 3, 5, 9, 30), 100.0))
    partial = daily.partial("SPY")
    assert partial is not None
    assert partial.open == 100.0
    assert daily.outside_session == 1


# -- gaps and silence --------------------------------------------------------------------------


def test_a_halt_inside_a_bucket_leaves_a_bar_of_the_minutes_it_has(
    calendar: SessionCalendar,
) -> None:
    agg = BarAggregator("1Hour", calendar)
    day = [
        b
        for b in session_minutes(ny(2024, 3, 5, 9, 30), ny(2024, 3, 5, 11, 30))
        if not ny(2024, 3, 5, 9, 40) <= b.ts < ny(2024, 3, 5, 10, 20)  # halted 40 minutes
    ]
    bars = run(agg, day, ny(2024, 3, 5, 11, 30))
    assert stamps(bars) == ["09:30", "10:30"]
    assert (bars[0].open, bars[0].close, bars[0].volume, bars[0].trade_count) == (
        100.0,
        159.0,
        2000.0,
        20,
    )


def test_a_symbol_silent_for_a_bucket_gets_no_bar_for_it(calendar: SessionCalendar) -> None:
    agg = BarAggregator("1Hour", calendar)
    out: list[Bar] = []
    for ts in range(ny(2024, 3, 5, 9, 30), ny(2024, 3, 5, 12, 30), M):
        out += agg.add(minute(ts, symbol="AAA"))
        if not ny(2024, 3, 5, 10, 30) <= ts < ny(2024, 3, 5, 11, 30):
            out += agg.add(minute(ts, symbol="BBB"))
        if (ts - ny(2024, 3, 5, 9, 30)) % (60 * M) == 59 * M:
            # The clock after each bucket: closes what the minutes have not closed yet.
            out += agg.close_through(ts + M)
    assert [(b.symbol, stamps([b])[0]) for b in out] == [
        ("AAA", "09:30"),
        ("BBB", "09:30"),
        ("AAA", "10:30"),
        ("AAA", "11:30"),
        ("BBB", "11:30"),
    ]


def test_a_later_minute_of_the_symbol_completes_its_bucket_without_the_clock(
    calendar: SessionCalendar,
) -> None:
    agg = BarAggregator("1Hour", calendar)
    assert agg.add(minute(ny(2024, 3, 5, 9, 45), 1.0)) == []
    assert agg.add(minute(ny(2024, 3, 5, 10, 29), 2.0, symbol="QQQ")) == []
    (done,) = agg.add(minute(ny(2024, 3, 5, 12, 0), 3.0))  # skips the 10:30 bucket entirely
    assert (done.symbol, done.ts, done.close) == ("SPY", ny(2024, 3, 5, 9, 30), 1.0)
    assert agg.open_symbols() == ["QQQ", "SPY"]
    # The clock closes QQQ's bucket, and leaves SPY's 11:30 bucket open.
    (qqq,) = agg.close_through(ny(2024, 3, 5, 10, 30))
    assert (qqq.symbol, qqq.close) == ("QQQ", 2.0)
    assert agg.open_symbols() == ["SPY"]


def test_close_through_returns_each_bar_once_sorted_by_time_then_symbol(
    calendar: SessionCalendar,
) -> None:
    agg = BarAggregator("15Min", calendar)
    for symbol in ("ZZZ", "AAA", "MMM"):
        agg.add(minute(ny(2024, 3, 5, 9, 31), symbol=symbol))
        agg.add(minute(ny(2024, 3, 5, 9, 46), symbol=symbol))
    out = agg.close_through(ny(2024, 3, 5, 10, 1))
    assert [(stamps([b])[0], b.symbol) for b in out] == [
        ("09:45", "AAA"),
        ("09:45", "MMM"),
        ("09:45", "ZZZ"),
    ]
    assert agg.close_through(ny(2024, 3, 5, 10, 1)) == []
    assert agg.close_through(ny(2024, 3, 6, 10)) == []


# -- late minutes and corrections --------------------------------------------------------------


def test_a_late_minute_of_a_completed_bucket_is_counted_not_aggregated(
    calendar: SessionCalendar,
) -> None:
    agg = BarAggregator("1Hour", calendar)
    agg.add(minute(ny(2024, 3, 5, 10, 0), 1.0))
    (done,) = agg.close_through(ny(2024, 3, 5, 10, 30))
    assert done.close == 1.0
    assert agg.is_closed("SPY", ny(2024, 3, 5, 10, 29))
    assert agg.add(minute(ny(2024, 3, 5, 10, 29), 2.0)) == []
    assert agg.late_minutes == 1
    assert agg.partial("SPY") is None
    # Another symbol's first minute of that bucket is late too: the clock has passed it.
    assert agg.add(minute(ny(2024, 3, 5, 10, 29), 2.0, symbol="QQQ")) == []
    assert agg.late_minutes == 2
    assert not agg.is_closed("SPY", ny(2024, 3, 5, 10, 30))


def test_minutes_out_of_order_inside_a_bucket_give_the_in_order_bar(
    calendar: SessionCalendar,
) -> None:
    rng = random.Random(7)
    day = [
        Bar("SPY", ts, o, o + rng.random(), o - rng.random(), o + 0.1, rng.randint(1, 999), 3, o)
        for ts, o in (
            (ts, 100 + rng.random()) for ts in range(ny(2024, 3, 5, 9, 30), ny(2024, 3, 5, 16), M)
        )
    ]
    in_order = run(BarAggregator("1Day", calendar), day, ny(2024, 3, 5, 16))
    shuffled = day[:]
    rng.shuffle(shuffled)
    agg = BarAggregator("1Day", calendar)
    # Shuffled minutes of one day: none is at or after the day's end, so none is late.
    assert run(agg, shuffled, ny(2024, 3, 5, 16)) == in_order
    assert agg.late_minutes == 0


def test_a_correction_before_the_bucket_closes_corrects_it(calendar: SessionCalendar) -> None:
    agg = BarAggregator("1Hour", calendar)
    agg.add(minute(ny(2024, 3, 5, 9, 30), 100.0))
    agg.add(minute(ny(2024, 3, 5, 9, 31), 101.0))
    corrected = agg.correct(minute(ny(2024, 3, 5, 9, 30), 90.0, volume=300.0))
    assert corrected is not None
    assert (corrected.open, corrected.low, corrected.volume) == (90.0, 89.5, 400.0)
    # A correction of a minute whose bar never came adds it.
    corrected = agg.correct(minute(ny(2024, 3, 5, 9, 35), 120.0))
    assert corrected is not None
    assert (corrected.close, corrected.high, corrected.volume) == (120.0, 120.5, 500.0)
    (done,) = agg.close_through(ny(2024, 3, 5, 10, 30))
    assert done == corrected
    assert agg.closed_corrections == 0


def test_a_correction_after_the_bucket_closed_is_reported_and_changes_nothing(
    calendar: SessionCalendar,
) -> None:
    agg = BarAggregator("1Hour", calendar)
    agg.add(minute(ny(2024, 3, 5, 10, 29), 100.0))
    (done,) = agg.add(minute(ny(2024, 3, 5, 10, 30), 101.0))
    assert agg.correct(minute(ny(2024, 3, 5, 10, 29), 50.0)) is None
    assert agg.closed_corrections == 1
    assert done.close == 100.0
    # Closed by the clock rather than by a minute: the same.
    assert agg.close_through(ny(2024, 3, 5, 11, 30))[0].close == 101.0
    assert agg.correct(minute(ny(2024, 3, 5, 10, 30), 50.0)) is None
    assert agg.closed_corrections == 2
    assert agg.correct(minute(ny(2024, 3, 5, 17, 0), 50.0)) is None  # outside the session
    assert agg.outside_session == 1


def test_a_correction_of_the_next_bucket_does_not_close_the_open_one(
    calendar: SessionCalendar,
) -> None:
    agg = BarAggregator("1Hour", calendar)
    agg.add(minute(ny(2024, 3, 5, 10, 29), 100.0))
    # The 10:30 minute's bar never came; its correction opens the 10:30 bucket.
    opened = agg.correct(minute(ny(2024, 3, 5, 10, 30), 110.0))
    assert opened is not None
    assert opened.ts == ny(2024, 3, 5, 10, 30)
    partial = agg.partial("SPY")
    assert partial is not None
    assert partial.ts == ny(2024, 3, 5, 10, 30)
    # The next minute closes the 09:30 bucket, the 10:30 bucket has both minutes.
    (done,) = agg.add(minute(ny(2024, 3, 5, 10, 31), 111.0))
    assert (done.ts, done.close) == (ny(2024, 3, 5, 9, 30), 100.0)
    (later,) = agg.close_through(ny(2024, 3, 5, 11, 30))
    assert (later.open, later.close, later.volume) == (110.0, 111.0, 200.0)


def test_the_same_minute_added_twice_replaces_the_first(calendar: SessionCalendar) -> None:
    agg = BarAggregator("1Hour", calendar)
    agg.add(minute(ny(2024, 3, 5, 9, 30), 100.0))
    agg.add(minute(ny(2024, 3, 5, 9, 30), 105.0))
    (done,) = agg.close_through(ny(2024, 3, 5, 10, 30))
    assert (done.open, done.volume) == (105.0, 100.0)


# -- the daily bar -----------------------------------------------------------------------------


def test_daily_bar_from_minutes_equals_the_hand_computed_one(calendar: SessionCalendar) -> None:
    minutes = [
        Bar("SPY", ny(2024, 3, 5, 9, 30), 500.0, 501.0, 499.0, 500.5, 1000.0, 10, 500.2),
        Bar("SPY", ny(2024, 3, 5, 11, 0), 502.0, 506.0, 501.5, 505.0, 3000.0, 25, 504.0),
        Bar("SPY", ny(2024, 3, 5, 13, 17), 498.0, 498.5, 495.0, 496.0, 2000.0, 30, 497.0),
        Bar("SPY", ny(2024, 3, 5, 15, 59), 499.0, 500.0, 498.0, 499.5, 4000.0, 35, 499.0),
    ]
    agg = BarAggregator("1Day", calendar)
    (daily,) = run(agg, minutes, ny(2024, 3, 5, 16))
    # vwap = (500.2*1000 + 504*3000 + 497*2000 + 499*4000) / 10000 = 5002200 / 10000
    assert daily._replace(vwap=None) == Bar(
        symbol="SPY",
        ts=ny(2024, 3, 5),  # New York midnight, as Alpaca and daily files stamp a day
        open=500.0,
        high=506.0,
        low=495.0,
        close=499.5,
        volume=10000.0,
        trade_count=100,
    )
    assert daily.vwap == pytest.approx(500.22, abs=1e-9)


def test_daily_bar_of_a_full_day_matches_a_direct_computation(
    calendar: SessionCalendar,
) -> None:
    rng = random.Random(3)
    day: list[Bar] = []
    for ts in range(ny(2024, 3, 5, 9, 30), ny(2024, 3, 5, 16), M):
        o = 100 + rng.gauss(0, 1)
        c = o + rng.gauss(0, 0.1)
        day.append(
            Bar("SPY", ts, o, max(o, c) + 0.05, min(o, c) - 0.05, c, rng.randint(1, 9) * 100.0)
        )
    (daily,) = run(BarAggregator("1Day", calendar), day, ny(2024, 3, 5, 16))
    assert daily.open == day[0].open
    assert daily.close == day[-1].close
    assert daily.high == max(b.high for b in day)
    assert daily.low == min(b.low for b in day)
    assert daily.volume == sum(b.volume for b in day)
    # A minute without trade_count or vwap leaves them unknown for the day.
    assert (daily.trade_count, daily.vwap) == (None, None)


def test_partial_is_the_daily_bar_built_so_far(calendar: SessionCalendar) -> None:
    agg = BarAggregator("1Day", calendar)
    assert agg.partial("SPY") is None
    day = list(session_minutes(ny(2024, 3, 5, 9, 30), ny(2024, 3, 5, 16)))
    decision = ny(2024, 3, 5, 15, 45)
    for bar in day:
        if bar.ts >= decision:
            break
        agg.add(bar)
    partial = agg.partial("SPY")
    # 09:30-15:44: minutes 0..374.
    assert partial is not None
    assert partial._replace(vwap=None) == Bar(
        "SPY", ny(2024, 3, 5), 100.0, 474.5, 99.5, 474.0, 37500.0, 375
    )
    assert partial.vwap == pytest.approx(287.0)
    for bar in day[375:]:
        agg.add(bar)
    (final,) = agg.close_through(ny(2024, 3, 5, 16))
    assert (final.close, final.volume) == (489.0, 39000.0)
    assert agg.partial("SPY") is None


def test_settings_and_bad_arguments() -> None:
    assert AggregatorSettings().align == "session"
    assert AggregatorSettings(align="clock").align == "clock"
    with pytest.raises(ValidationError):
        AggregatorSettings(align="midnight")
    with pytest.raises(ValidationError, match="Extra inputs"):
        AggregatorSettings(alignment="clock")  # type: ignore[call-arg]
