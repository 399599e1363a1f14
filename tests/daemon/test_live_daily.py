"""A daily strategy live against the sandbox: warm-up from daily bars, the day's bar rebuilt from
the minutes already played, one decision after the close, opg orders held until Alpaca's window
opens and filled at the next session's open, books equal to the sandbox's, audit clean."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from brokers.auctions import NEW_YORK
from daemon.config import load_config
from daemon.live.lifecycle import LiveDaemon
from daemon.live.recovery import positions_of
from daemon.logs import EventLog
from daemon.replay.audit import audit
from daemon.replay.driver import replay
from feeds.bar import NS_PER_SECOND
from sandbox import Sandbox
from tests.daemon.livekit import DATA, ENV, SYMBOLS, DaemonProcess, Session, quiet_log

SESSION = 390  # minutes of a full session in the sample (2024-11-18 on)
KEY, SECRET = ENV["APCA_API_KEY_ID"], ENV["APCA_API_SECRET_KEY"]
WARM = 4 * SESSION + 385  # four whole sessions and 2024-11-22 up to 15:55 are history


def ny_ns(day: dt.date, hour: int, minute: int, second: int = 0) -> int:
    moment = dt.datetime.combine(day, dt.time(hour, minute, second), NEW_YORK)
    return int(moment.timestamp()) * NS_PER_SECOND


@pytest.fixture
async def box() -> AsyncIterator[Sandbox]:
    sandbox = Sandbox(DATA, speed=None, warm_minutes=WARM, key=KEY, secret=SECRET)
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.close()


def daily_daemon(
    tmp_path: Path, box: Sandbox, execution: dict[str, Any] | None = None, timeframe: str = "1Day"
) -> LiveDaemon:
    path = daily_config(tmp_path, box, execution, timeframe)
    return LiveDaemon(load_config([str(path)]), log=quiet_log(), env=ENV)


def daily_config(
    tmp_path: Path,
    box: Sandbox,
    execution: dict[str, Any] | None = None,
    timeframe: str = "1Day",
    http: dict[str, Any] | None = None,
) -> Path:
    tree: dict[str, Any] = {
        "symbols": SYMBOLS,
        "data": {"path": str(DATA), "timeframe": timeframe},
        "execution": execution or {"style": "next_open"},
        "strategies": {
            "hold": {"type": "recorder"},
            "trend": {"type": "sma_cross", "params": {"fast": 2, "slow": 4}},
        },
        "composer": {"method": "equal", "rebalance": {"every": "slice"}},
        "rebalance": {"fractional": False, "min_trade_notional": 100},
        "risk": {"max_weight": 0.3, "max_gross": 1.0, "allow_short": False},
        "run": {"out_dir": str(tmp_path / "out"), "order_id_prefix": "daily"},
        "http": http or {"enabled": False},
        "state": {"dir": str(tmp_path / "state")},
        "live": {
            "mode": "paper",
            "feed": "iex",
            "trading_url": box.trading_url,
            "trade_stream_url": box.trade_stream_url,
            "data_stream_url": box.data_stream_url("iex"),
            "data_url": box.data_url,
            "slice_grace_s": 0.5,
            "clock_poll_s": 0.05,
            "backoff_min_s": 0.02,
            "backoff_max_s": 0.2,
            "cancel_on_stop": False,
        },
    }
    path = tmp_path / "daily.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


async def test_a_daily_strategy_trades_at_the_next_open_with_opg_orders(
    tmp_path: Path, box: Sandbox, recorder: Any
) -> None:
    daemon = daily_daemon(tmp_path, box)
    session = Session(daemon, box)
    await session.started()
    day = dt.date(2024, 11, 22)
    buckets = daemon.buckets
    assert buckets is not None
    # Warm-up: the four sessions before as daily bars; today's 385 minutes rebuild its bucket.
    assert daemon.warmup_bars == 4 * len(SYMBOLS)
    assert buckets.aggregator.open_symbols() == sorted(SYMBOLS)
    assert daemon.engine.counters.slices == 4

    assert await box.step(SESSION - 385)  # 15:55 to 15:59
    last = ny_ns(day, 15, 59)
    await session.until(lambda: daemon.slicer.next_ts == last + 60 * NS_PER_SECOND)
    assert daemon.engine.counters.slices == 4  # nothing decided during the session

    await box.pass_time(ny_ns(day, 16, 0, 1))  # after the close: the day's bar completes
    await session.until(lambda: daemon.engine.counters.slices == 5)
    assert buckets.held, "the decision's opg orders wait for Alpaca's window"
    decided = list(buckets.held)
    assert {o.time_in_force.value for o in decided} == {"opg"}
    assert not box.orders_created

    await box.pass_time(ny_ns(day, 19, 0, 1))  # the opg window opens
    await session.until(
        lambda: len(box.orders_created) == len(decided) and daemon.broker.health().in_flight == 0
    )
    assert not buckets.held

    assert await box.step()  # 2024-11-25 09:30: the opening auction
    await session.until(lambda: daemon.engine.counters.fills == len(decided))
    opening = {b.symbol: b for b in box.market.by_minute[WARM + SESSION - 385]}
    for order in decided:
        fill = box.account.by_client_id[order.client_order_id]
        assert fill.filled_avg_price == Decimal(repr(opening[order.symbol].open))
    assert positions_of(daemon.ledger) == {s: q for s, q in box.positions.items() if q}
    assert daemon.ledger.cash == box.cash
    assert await session.stop() == 0

    result = audit(tmp_path / "state")
    assert result.differences == []
    assert result.orders == len(decided)


async def test_a_daily_strategy_decides_before_the_close_with_cls_orders(
    tmp_path: Path, recorder: Any
) -> None:
    # 2024-11-22 is played up to 15:40; the daemon decides at 15:45 on the bar so far.
    box = Sandbox(DATA, speed=None, warm_minutes=4 * SESSION + 370, key=KEY, secret=SECRET)
    await box.start()
    try:
        execution = {"style": "before_close", "decide_at": "15:45", "order": "cls"}
        daemon = daily_daemon(tmp_path, box, execution)
        session = Session(daemon, box)
        await session.started()
        assert await box.step(5)  # 15:40 to 15:44: no decision yet
        day = dt.date(2024, 11, 22)
        await session.until(lambda: daemon.slicer.next_ts == ny_ns(day, 15, 45))
        assert daemon.engine.counters.slices == 4
        assert await box.step()  # the 15:45 minute: decide first, on minutes before 15:45
        await session.until(
            lambda: daemon.engine.counters.slices == 5 and daemon.broker.health().in_flight == 0
        )
        ids = list(daemon.engine.order_book.open_orders)
        assert ids
        decided = [box.account.by_client_id[cid] for cid in ids]
        assert {o.time_in_force for o in decided} == {"cls"}
        assert len(box.orders_created) == len(decided)  # taken: before the 15:50 cut-off
        assert await box.step(14)  # to 15:59: the closing auction fills at its close
        await session.until(lambda: daemon.engine.counters.fills == len(decided))
        closing = {b.symbol: b for b in box.market.by_minute[4 * SESSION + SESSION - 1]}
        for order in decided:
            assert order.filled_avg_price == Decimal(repr(closing[order.symbol].close))
        assert positions_of(daemon.ledger) == {s: q for s, q in box.positions.items() if q}
        assert daemon.ledger.cash == box.cash
        assert await session.stop() == 0
    finally:
        await box.close()
    assert audit(tmp_path / "state").differences == []

    # The replay of the same minutes (warmed up on the four sessions before, trading from
    # 2024-11-22 as the daemon did) decides the same orders: ids, sides, quantities.
    window: dict[tuple[str | int, ...], Any] = {
        ("run", "start"): "2024-11-22",
        ("run", "end"): "2024-11-22",
    }
    config = load_config([str(tmp_path / "daily.yaml")], window)
    out = tmp_path / "replay"
    replay(config, out_dir=out, log=EventLog(io.StringIO()), warmup_from=dt.date(2024, 11, 18))
    with (out / "orders.csv").open() as f:
        replayed = [r for r in csv.DictReader(f) if r["slice_time"].startswith("2024-11-22")]
    assert sorted((r["client_order_id"], r["side"], r["qty"]) for r in replayed) == sorted(
        (o.client_order_id, o.side, str(o.qty)) for o in decided
    )


async def test_an_hourly_strategy_decides_once_per_bucket(
    tmp_path: Path, sandbox: Sandbox, recorder: Any
) -> None:
    # The sandbox fixture has 09:30 to 11:29 of 2024-11-18 played.
    daemon = daily_daemon(tmp_path, sandbox, {"style": "bar_close"}, timeframe="1Hour")
    session = Session(daemon, sandbox)
    await session.started()
    day = dt.date(2024, 11, 18)
    assert daemon.engine.counters.warmup_slices == 1  # 09:30-10:29, from the minutes played
    # 10:30-11:29 completes by the clock (its end plus the grace has passed) or by the 11:30
    # minute, whichever comes first, and is decided once.
    assert await sandbox.step()
    await session.until(lambda: ny_ns(day, 10, 30) in daemon.slices.symbols)
    # Its orders leave before the clock jumps an hour (a market's clock never moves an hour
    # while four orders are posted: they would be dropped as decided too long before).
    await session.until(lambda: daemon.broker.health().unsent == 0)
    assert await sandbox.step(59)  # to 12:29; then the clock passes 12:30 plus the grace
    await session.until(lambda: ny_ns(day, 11, 30) in daemon.slices.symbols)
    assert daemon.slices.decided == [ny_ns(day, 10, 30), ny_ns(day, 11, 30)]
    assert await sandbox.step()  # the orders of 11:30's bucket fill at 12:30's open
    await session.until(
        lambda: daemon.broker.health().in_flight == 0 and not daemon.engine.order_book.open_orders
    )
    assert daemon.engine.counters.fills > 0
    assert positions_of(daemon.ledger) == {s: q for s, q in sandbox.positions.items() if q}
    assert daemon.ledger.cash == sandbox.cash
    assert await session.stop() == 0
    assert audit(tmp_path / "state").differences == []


async def test_a_restart_mid_session_rebuilds_the_day_and_drops_unsent_held_orders(
    tmp_path: Path, box: Sandbox, recorder: Any
) -> None:
    day = dt.date(2024, 11, 22)
    first = Session(daily_daemon(tmp_path, box), box)
    await first.started()
    assert await box.step(2)  # 15:55, 15:56
    await first.until(lambda: first.daemon.slicer.next_ts == ny_ns(day, 15, 57))
    assert await first.stop() == 0  # mid-session: the day's bar is not decided

    second = Session(daily_daemon(tmp_path, box), box)
    await second.started()
    daemon = second.daemon
    buckets = daemon.buckets
    assert buckets is not None
    # The day's bucket rebuilt from the 387 minutes played, by symbol.
    rebuilt = buckets.aggregator.partial("AAA")
    assert rebuilt is not None
    assert rebuilt.ts == ny_ns(day, 0, 0)
    played = [b for b in box.market.by_symbol["AAA"] if ny_ns(day, 9, 30) <= b.ts < box.now_ns]
    assert len(played) == 387
    assert (rebuilt.open, rebuilt.close) == (played[0].open, played[-1].close)
    assert rebuilt.volume == sum(b.volume for b in played)
    assert await box.step(3)  # to the close
    await box.pass_time(ny_ns(day, 16, 0, 1))
    await second.until(lambda: bool(buckets.held))
    assert daemon.slices.decided[-1] == ny_ns(day, 0, 0)
    held = [o.client_order_id for o in buckets.held]
    assert await second.stop() == 0  # stopped before the opg window: nothing was sent

    third = Session(daily_daemon(tmp_path, box), box)
    await third.started()
    book = third.daemon.engine.order_book
    await third.until(lambda: not any(cid in book.open_orders for cid in held))
    assert not box.orders_created  # never sent, never sent twice
    assert third.daemon.buckets is not None
    assert not third.daemon.buckets.held
    assert await third.stop() == 0
    assert audit(tmp_path / "state").differences == []


async def test_a_daemon_started_after_the_close_decides_that_day(
    tmp_path: Path, recorder: Any
) -> None:
    box = Sandbox(DATA, speed=None, warm_minutes=5 * SESSION, key=KEY, secret=SECRET)
    await box.start()
    try:
        day = dt.date(2024, 11, 22)
        await box.pass_time(ny_ns(day, 17, 0))  # 2024-11-22 is over, the opg window not open
        session = Session(daily_daemon(tmp_path, box), box)
        await session.started()
        daemon = session.daemon
        buckets = daemon.buckets
        assert buckets is not None
        await session.until(lambda: bool(buckets.held))
        assert daemon.engine.counters.warmup_slices == 4
        assert daemon.slices.decided == [ny_ns(day, 0, 0)]
        assert not box.orders_created
        await box.pass_time(ny_ns(day, 19, 0, 1))
        await session.until(
            lambda: len(box.orders_created) == len(daemon.engine.order_book.open_orders) > 0
        )
        assert await session.stop() == 0
    finally:
        await box.close()
    assert audit(tmp_path / "state").differences == []


@pytest.mark.slow
async def test_kill_9_mid_session_rebuilds_the_day_and_trades_it_once(
    tmp_path: Path, box: Sandbox, recorder: Any
) -> None:
    day = dt.date(2024, 11, 22)
    config = daily_config(tmp_path, box, http={"port": 0})
    out = tmp_path / "out"
    # The recorder strategy is installed under tmp_path/site-packages: the child needs it too.
    env = {"PYTHONPATH": str(tmp_path / "site-packages")}
    first = DaemonProcess(config, out, env=env)
    await first.start()
    assert await box.step(2)  # 15:55, 15:56 while it runs
    assert first.process is not None
    first.process.kill()  # kill -9, mid-session
    assert await first.wait_exit() == -9

    again = DaemonProcess(config, out, env=env)
    await again.start()
    warm = await again.wait_event("warmup_done")
    assert warm["minutes_rebuilt"] == 387 * len(SYMBOLS)  # the day so far, from history
    assert await box.step(3)  # to 15:59
    await box.pass_time(ny_ns(day, 16, 0, 1))
    async with asyncio.timeout(20):  # decided after the close, once, its orders held
        while (await again.state())["last_slice"] != "2024-11-22T05:00:00Z":
            await asyncio.sleep(0.02)
    assert not box.orders_created
    await box.pass_time(ny_ns(day, 19, 0, 1))
    released = await again.wait_event("auction_orders_released")
    assert released["orders"] > 0
    async with asyncio.timeout(20):
        while len(box.orders_created) < released["orders"]:
            await asyncio.sleep(0.02)
    assert max(box.orders_created.values()) == 1
    assert await box.step()  # the opening auction of 2024-11-25
    async with asyncio.timeout(20):
        while (await again.state())["open_orders"]:
            await asyncio.sleep(0.02)
    assert await again.terminate() == 0, again.tail()
    summary = orjson.loads((out / "summary.json").read_bytes())
    held = {s: Decimal(p["qty"]) for s, p in summary["ledger"]["positions"].items()}
    assert held == {s: q for s, q in box.positions.items() if q}
    assert Decimal(summary["ledger"]["cash"]) == box.cash
    assert audit(tmp_path / "state").differences == []
