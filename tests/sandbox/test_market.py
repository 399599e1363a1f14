"""The virtual market: minute bars only, the past and the next minute, refused data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from feeds.bar import NS_PER_MINUTE, NS_PER_SECOND
from feeds.calendar import SessionCalendar
from feeds.errors import ConfigError, SourceError
from sandbox import Market
from sandbox.market import spacing_text
from tests.sandbox.kit import DATA, write_bars

OPEN = dt.datetime(2024, 11, 18, 14, 30, tzinfo=dt.UTC)


def market(data: Path, warm_minutes: int = 0) -> Market:
    return Market(
        data, symbols=None, start=None, warm_minutes=warm_minutes, calendar=SessionCalendar()
    )


def test_warm_minutes_are_history_and_the_clock_is_at_their_end() -> None:
    m = market(DATA, warm_minutes=3)
    assert m.played == 3
    assert m.now_ns == m.minutes[2] + NS_PER_MINUTE
    assert m.last_minute_ns == m.minutes[2]
    assert [b.ts for b in m.history("AAA", 0, 2**62)] == m.minutes[:3]
    nxt = m.next_bars()
    assert set(nxt) == set(m.symbols)
    assert m.advance() == list(nxt.values())
    assert m.last_minute_ns == m.minutes[3]


def test_minute_bars_with_a_night_between_sessions_play(tmp_path: Path) -> None:
    write_bars(tmp_path / "AAA.csv", OPEN, dt.timedelta(minutes=1), 3)
    write_bars(tmp_path / "BBB.csv", OPEN + dt.timedelta(days=1), dt.timedelta(minutes=1), 3)
    m = market(tmp_path)
    assert len(m.minutes) == 6


@pytest.mark.parametrize(
    ("step", "found"),
    [
        (dt.timedelta(days=1), "1 day"),
        (dt.timedelta(minutes=5), "5 minutes"),
        (dt.timedelta(seconds=30), "30 seconds"),
    ],
)
def test_bars_not_a_minute_apart_are_refused_naming_the_file_and_spacing(
    tmp_path: Path, step: dt.timedelta, found: str
) -> None:
    path = write_bars(tmp_path / "AAA.csv", OPEN, step, 4)
    with pytest.raises(ConfigError) as refused:
        market(tmp_path)
    message = str(refused.value)
    assert message.startswith(f"{path}: bars {found} apart")
    assert "1-minute bars" in message


def test_no_bars_and_too_many_warm_minutes_are_refused(tmp_path: Path) -> None:
    write_bars(tmp_path / "AAA.csv", OPEN, dt.timedelta(minutes=1), 4)
    calendar = SessionCalendar()
    after = dt.date(2030, 1, 2)
    # The source names the range asked and what the data cover.
    with pytest.raises(SourceError, match=r"no bars in 2030-01-02 \.\. the last bar"):
        Market(tmp_path, symbols=None, start=after, warm_minutes=0, calendar=calendar)
    with pytest.raises(ConfigError, match="5 warm minutes asked for, but the data hold 4"):
        market(tmp_path, warm_minutes=5)


def test_spacing_text() -> None:
    assert spacing_text(86_400 * NS_PER_SECOND) == "1 day"
    assert spacing_text(2 * 3600 * NS_PER_SECOND) == "2 hours"
    assert spacing_text(NS_PER_SECOND // 2) == "0.5 seconds"
