"""HistoricalBars and download against the sandbox's historical-bars endpoint."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feeds.alpaca_history import HistoricalBars, download, parse_timeframe, time_ordered
from feeds.bar import Bar
from feeds.errors import ConfigError, SourceError
from feeds.replay import ReplaySource
from sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "sample" / "minute"
SYMBOLS = ("AAA", "BBB", "CCC", "DDD")
KEY = "PK-TEST-KEY-0002"
SECRET = "history-secret-1a2b3c"
# 4 symbols x 3000 minutes = 12,000 bars: more than one page of 10,000 (alpaca-py's size).
WARM_MINUTES = 3000


class SleepLog:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box = Sandbox(DATA, speed=None, key=KEY, secret=SECRET, warm_minutes=WARM_MINUTES)
    await box.start()
    try:
        yield box
    finally:
        await box.close()


def warm_bars() -> list[Bar]:
    """The sandbox's warm minutes, in (ts, symbol) order."""
    bars = [bar for bar, _ in ReplaySource(DATA, symbols=SYMBOLS)]
    minutes = set(sorted({b.ts for b in bars})[:WARM_MINUTES])
    return sorted((b for b in bars if b.ts in minutes), key=lambda b: (b.ts, b.symbol))


def history(
    box: Sandbox, *, retries: int = 4, sleep: Callable[[float], None] | None = None
) -> HistoricalBars:
    return HistoricalBars(
        key=KEY, secret=SECRET, url=box.data_url, retries=retries, sleep=sleep or SleepLog()
    )


async def test_fetch_across_pages_returns_each_bar_once_sorted(sandbox: Sandbox) -> None:
    expected = warm_bars()
    source = history(sandbox)
    got = await asyncio.to_thread(source.fetch, SYMBOLS, expected[0].ts, expected[-1].ts)
    assert sandbox.requests[("GET", "/v2/stocks/bars")] >= 2  # really paged
    assert len(got) == len(expected) == len({(b.ts, b.symbol) for b in got})
    assert got == expected


async def test_fetch_bounds_are_inclusive(sandbox: Sandbox) -> None:
    expected = warm_bars()
    start, end = expected[40].ts, expected[80].ts
    got = await asyncio.to_thread(history(sandbox).fetch, ["aaa"], start, end)
    assert got == [b for b in expected if b.symbol == "AAA" and start <= b.ts <= end]
    assert got[0].ts == start
    assert got[-1].ts == end


async def test_fetch_retries_5xx_and_429_through_the_injected_sleep(sandbox: Sandbox) -> None:
    expected = warm_bars()[:40]
    sandbox.faults.fail_rest(503, times=1, path="/v2/stocks/bars")
    sandbox.faults.fail_rest(429, times=1, path="/v2/stocks/bars")
    sleep = SleepLog()
    got = await asyncio.to_thread(
        history(sandbox, sleep=sleep).fetch, SYMBOLS, expected[0].ts, expected[-1].ts
    )
    assert got == expected
    assert len(sleep.delays) == 2
    assert all(0 < d <= 60 for d in sleep.delays)


async def test_fetch_gives_up_with_a_source_error_naming_status_and_url(
    sandbox: Sandbox,
) -> None:
    sandbox.faults.fail_rest(500, times=5, path="/v2/stocks/bars")
    sleep = SleepLog()
    source = history(sandbox, retries=2, sleep=sleep)
    with pytest.raises(SourceError) as info:
        await asyncio.to_thread(source.fetch, SYMBOLS, warm_bars()[0].ts)
    text = str(info.value)
    assert "HTTP 500" in text
    assert sandbox.url in text
    assert len(sleep.delays) == 2
    assert SECRET not in text
    assert KEY not in text


async def test_wrong_keys_give_a_source_error_without_the_secret(sandbox: Sandbox) -> None:
    source = HistoricalBars(key="PK-WRONG", secret="wrong-secret-zzz", url=sandbox.data_url)
    with pytest.raises(SourceError) as info:
        await asyncio.to_thread(source.fetch, SYMBOLS, warm_bars()[0].ts)
    text = str(info.value)
    assert "HTTP 401" in text
    assert "APCA_API_KEY_ID" in text
    assert "wrong-secret-zzz" not in text
    assert "PK-WRONG" not in text


async def test_download_writes_files_replay_reads_back_exactly(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    expected = warm_bars()
    first_day = dt.datetime.fromtimestamp(expected[0].ts / 1e9, dt.UTC).date()
    last_day = dt.datetime.fromtimestamp(expected[-1].ts / 1e9, dt.UTC).date()
    out = tmp_path / "bars"
    written = await asyncio.to_thread(
        download,
        history(sandbox),
        list(SYMBOLS),
        first_day,
        last_day,
        timeframe="1Min",
        out_dir=out,
    )
    assert set(written) == set(SYMBOLS)
    for symbol, (path, rows) in written.items():
        assert path == out / f"{symbol}.parquet"
        assert rows == sum(1 for b in expected if b.symbol == symbol)
    assert sorted(p.name for p in out.iterdir()) == [f"{s}.parquet" for s in SYMBOLS]
    replayed = [bar for bar, _ in ReplaySource(out)]
    assert replayed == expected


async def test_download_reports_a_symbol_without_bars_and_writes_no_file(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    day = dt.datetime.fromtimestamp(warm_bars()[0].ts / 1e9, dt.UTC).date()
    written = await asyncio.to_thread(
        download, history(sandbox), ["AAA", "ZZZ"], day, day, timeframe="1Min", out_dir=tmp_path
    )
    assert written["ZZZ"] == (tmp_path / "ZZZ.parquet", 0)
    assert written["AAA"][1] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["AAA.parquet"]


def test_parse_timeframe_accepts_alpaca_forms_and_refuses_others() -> None:
    assert parse_timeframe("1Min") == (1, "Min")
    assert parse_timeframe("15Min") == (15, "Min")
    assert parse_timeframe("1Hour") == (1, "Hour")
    assert parse_timeframe("1Day") == (1, "Day")
    for bad in ("60Min", "0Min", "24Hour", "2Day", "1min", "5T", ""):
        with pytest.raises(ConfigError, match="timeframe"):
            parse_timeframe(bad)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["AAA", "BBB", "BRK.B", "Z"]),
            st.integers(min_value=0, max_value=5) | st.integers(min_value=0, max_value=2**62),
            st.integers(min_value=0, max_value=1000),
        ),
        max_size=60,
    )
)
def test_time_ordered_is_sorted_by_time_then_symbol_stably(
    rows: list[tuple[str, int, int]],
) -> None:
    # Repeated times and (time, symbol) pairs told apart by their volume: stable as `sorted`.
    bars = [Bar(sym, ts, 1.0, 1.0, 1.0, 1.0, float(v)) for sym, ts, v in rows]
    assert time_ordered(bars) == sorted(bars, key=lambda b: (b.ts, b.symbol))
