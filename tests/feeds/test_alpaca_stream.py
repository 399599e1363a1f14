"""AlpacaDataStream against the sandbox's market-data websocket (manual stepping)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from feeds.alpaca_messages import parse_rfc3339_ns
from feeds.alpaca_stream import (
    AlpacaDataStream,
    DataEvent,
    StreamAuthFailed,
    StreamBar,
    StreamConnected,
    StreamDisconnected,
    StreamNotice,
    StreamSubscriptionRefused,
)
from feeds.bar import Bar
from feeds.replay import ReplaySource
from sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "sample" / "minute"
SYMBOLS = ("AAA", "BBB", "CCC", "DDD")
KEY = "PK-TEST-KEY-0001"
SECRET = "very-secret-value-9f8e7d"
DEADLINE_S = 10.0

E = TypeVar("E", bound=DataEvent)


class Recorder:
    """The sink: every event into a queue (and a list); `next` awaits one of a type."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[DataEvent] = asyncio.Queue()
        self.all: list[DataEvent] = []

    def __call__(self, event: DataEvent) -> None:
        self.all.append(event)
        self.queue.put_nowait(event)

    async def next(self, kind: type[E]) -> E:
        async def scan() -> E:
            while True:
                event = await self.queue.get()
                if isinstance(event, kind):
                    return event

        return await asyncio.wait_for(scan(), DEADLINE_S)


class FastSleep:
    """Records the backoff delays asked for and returns at once (after yielding)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box = Sandbox(DATA, speed=None, key=KEY, secret=SECRET)
    await box.start()
    try:
        yield box
    finally:
        await box.close()


def make_stream(
    box: Sandbox,
    sink: Recorder,
    *,
    feed: str = "iex",
    key: str = KEY,
    secret: str = SECRET,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    silence_s: float = 120.0,
    market_open: Callable[[], bool] = lambda: True,
) -> AlpacaDataStream:
    return AlpacaDataStream(
        url=box.data_stream_url(feed),
        feed=feed,
        symbols=SYMBOLS,
        key=key,
        secret=secret,
        sink=sink,
        sleep=sleep or FastSleep(),
        silence_s=silence_s,
        market_open=market_open,
    )


async def finish(stream: AlpacaDataStream, task: asyncio.Task[None]) -> None:
    stream.stop()
    await asyncio.wait_for(task, DEADLINE_S)


def expected_bars(count_minutes: int) -> list[Bar]:
    """The first `count_minutes` minutes of the sample data, in (ts, symbol) order."""
    bars = [bar for bar, _ in ReplaySource(DATA, symbols=SYMBOLS)]
    minutes = sorted({b.ts for b in bars})[:count_minutes]
    return sorted((b for b in bars if b.ts in set(minutes)), key=lambda b: (b.ts, b.symbol))


async def test_connect_auth_subscribe_then_bars_arrive_in_order(sandbox: Sandbox) -> None:
    sink = Recorder()
    stream = make_stream(sandbox, sink)
    task = asyncio.create_task(stream.run())
    connected = await sink.next(StreamConnected)
    assert connected.attempt == 1
    assert not connected.reconnect
    assert stream.connected
    for channel in ("bars", "updatedBars", "statuses"):
        assert set(SYMBOLS) <= set(connected.subscription[channel])

    assert await sandbox.step(2)
    got = [(await sink.next(StreamBar)) for _ in range(2 * len(SYMBOLS))]
    assert not any(e.updated for e in got)
    bars = [e.bar for e in got]
    assert [b.ts for b in bars] == sorted(b.ts for b in bars)  # minute by minute
    assert sorted(bars, key=lambda b: (b.ts, b.symbol)) == expected_bars(2)
    assert stream.messages >= len(bars)
    await finish(stream, task)


async def test_wrong_keys_raise_auth_failed_without_the_secret(sandbox: Sandbox) -> None:
    sink = Recorder()
    wrong_key, wrong_secret = "PK-WRONG-KEY-7777", "wrong-secret-abcdef"
    stream = make_stream(sandbox, sink, key=wrong_key, secret=wrong_secret)
    with pytest.raises(StreamAuthFailed) as info:
        await asyncio.wait_for(stream.run(), DEADLINE_S)
    text = str(info.value)
    assert info.value.code == 402
    assert "402" in text
    assert "APCA_API_KEY_ID" in text
    everything = text + repr(sink.all)
    for secret in (wrong_key, wrong_secret, KEY, SECRET):
        assert secret not in everything
    assert not stream.connected


async def test_connection_limit_backs_off_at_least_90_s_then_connects(
    sandbox: Sandbox,
) -> None:
    sandbox.faults.refuse_data(406)
    sink = Recorder()
    sleep = FastSleep()
    stream = make_stream(sandbox, sink, sleep=sleep)
    task = asyncio.create_task(stream.run())
    connected = await sink.next(StreamConnected)
    assert connected.attempt == 2
    assert sleep.delays
    assert sleep.delays[0] >= 90.0
    notices = [e for e in sink.all if isinstance(e, StreamNotice)]
    assert [n.event for n in notices] == ["connection_limit"]
    disconnected = [e for e in sink.all if isinstance(e, StreamDisconnected)]
    assert disconnected[0].retry_in_s == sleep.delays[0]
    await finish(stream, task)


async def test_insufficient_subscription_is_fatal_and_names_the_feed(sandbox: Sandbox) -> None:
    sandbox.faults.refuse_data(409)
    sink = Recorder()
    stream = make_stream(sandbox, sink, feed="sip")
    with pytest.raises(StreamSubscriptionRefused) as info:
        await asyncio.wait_for(stream.run(), DEADLINE_S)
    assert info.value.code == 409
    assert "'sip'" in str(info.value)
    assert "iex" in str(info.value)


async def test_dropped_socket_reconnects_and_bars_resume(sandbox: Sandbox) -> None:
    sink = Recorder()
    sleep = FastSleep()
    stream = make_stream(sandbox, sink, sleep=sleep)
    task = asyncio.create_task(stream.run())
    await sink.next(StreamConnected)

    sandbox.faults.drop_data_socket(after_bars=0, down_steps=1)
    assert await sandbox.step()
    first = await sink.next(StreamDisconnected)
    assert first.retry_in_s > 0
    # Refused (HTTP 503) until one more minute is played: the client keeps retrying.
    refused = await sink.next(StreamDisconnected)
    assert "503" in refused.reason
    assert await sandbox.step()
    again = await sink.next(StreamConnected)
    assert again.reconnect
    assert sandbox.data_connections >= 2

    assert await sandbox.step()
    bar = await sink.next(StreamBar)
    assert bar.bar.ts == sandbox.last_minute_ns
    await finish(stream, task)


async def test_silence_while_market_open_reconnects(sandbox: Sandbox) -> None:
    sink = Recorder()
    stream = make_stream(sandbox, sink, silence_s=0.2, market_open=lambda: True)
    task = asyncio.create_task(stream.run())
    await sink.next(StreamConnected)
    sandbox.faults.silence_data()
    assert await sandbox.step()
    notice = await sink.next(StreamNotice)
    assert notice.event == "feed_silent"
    disconnected = await sink.next(StreamDisconnected)
    assert "no message" in disconnected.reason
    again = await sink.next(StreamConnected)
    assert again.reconnect
    await finish(stream, task)


async def test_silence_while_market_closed_keeps_the_connection(sandbox: Sandbox) -> None:
    sink = Recorder()
    checks = asyncio.Event()
    calls = 0

    def market_open() -> bool:
        nonlocal calls
        calls += 1
        if calls >= 3:
            checks.set()
        return False

    stream = make_stream(sandbox, sink, silence_s=0.05, market_open=market_open)
    task = asyncio.create_task(stream.run())
    await sink.next(StreamConnected)
    await asyncio.wait_for(checks.wait(), DEADLINE_S)  # three silent periods went by
    assert not any(isinstance(e, StreamDisconnected | StreamNotice) for e in sink.all)
    assert stream.connected
    assert sandbox.data_connections == 1
    await finish(stream, task)


async def test_stop_ends_run_promptly_while_connected(sandbox: Sandbox) -> None:
    sink = Recorder()
    stream = make_stream(sandbox, sink)
    task = asyncio.create_task(stream.run())
    await sink.next(StreamConnected)
    stream.stop()
    await asyncio.wait_for(task, 5.0)
    assert task.result() is None
    assert not stream.connected
    stream.stop()  # idempotent


async def test_stop_wakes_a_backoff_sleep(sandbox: Sandbox) -> None:
    sandbox.faults.refuse_data(406)
    sink = Recorder()
    stream = make_stream(sandbox, sink, sleep=asyncio.sleep)  # a real 90 s backoff
    task = asyncio.create_task(stream.run())
    disconnected = await sink.next(StreamDisconnected)
    assert disconnected.retry_in_s >= 90.0
    stream.stop()
    await asyncio.wait_for(task, 5.0)
    assert task.result() is None


async def test_cancelling_the_caller_propagates(sandbox: Sandbox) -> None:
    sink = Recorder()
    stream = make_stream(sandbox, sink)
    task = asyncio.create_task(stream.run())
    await sink.next(StreamConnected)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, DEADLINE_S)


def test_rfc3339_parser_keeps_nanoseconds_and_offsets() -> None:
    base = parse_rfc3339_ns("2021-02-22T19:15:00Z")
    assert base == 1_614_021_300 * 1_000_000_000
    assert parse_rfc3339_ns("2021-02-22T19:15:00.123456789Z") == base + 123_456_789
    assert parse_rfc3339_ns("2021-02-22T19:15:00.5Z") == base + 500_000_000
    assert parse_rfc3339_ns("2021-02-22T14:15:00-05:00") == base
    with pytest.raises(ValueError, match="no offset"):
        parse_rfc3339_ns("2021-02-22T19:15:00")
