"""The live daemon against the sandbox: every mode, the faults, warm-up and a clean stop.

The sandbox plays the sample minute bars one step at a time; each test steps it and waits for the
daemon to have decided that minute (an event with a deadline, never a guessed sleep).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
import time
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from brokers.orders import OrderSide, OrderType, SubmitOrder
from daemon.config import LoadedConfig, load_config
from daemon.live.lifecycle import LiveDaemon
from daemon.live.recovery import positions_of
from feeds.alpaca_stream import StreamSubscriptionRefused
from feeds.bar import NS_PER_MINUTE, Bar
from feeds.errors import ConfigError, InvariantViolation
from sandbox import Sandbox
from tests.daemon.helpers import write_yaml
from tests.daemon.livekit import (
    DATA,
    DEADLINE_S,
    ENV,
    ROOT,
    SYMBOLS,
    live_config,
    quiet_log,
    start_session,
)


async def test_paper_session_ends_with_the_ledger_equal_to_the_broker(
    tmp_path: Path, sandbox: Sandbox, recorder: Any
) -> None:
    session = await start_session(tmp_path, sandbox)
    daemon = session.daemon
    await session.step(8)
    await session.settle()  # the last decision's orders fill at the next open
    assert await session.stop() == 0

    counters = daemon.engine.counters
    assert counters.orders > 0
    assert counters.fills > 0
    assert positions_of(daemon.ledger) == {s: q for s, q in sandbox.positions.items() if q}
    assert daemon.ledger.cash == sandbox.cash
    assert set(sandbox.orders_created.values()) == {1}
    summary = orjson.loads((daemon.out_dir / "summary.json").read_bytes())
    assert summary["mode"] == "paper"
    assert summary["fills"] == counters.fills
    assert (daemon.out_dir / "fills.csv").read_text().count("\n") == counters.fills + 1


async def test_dropped_data_socket_is_backfilled_before_any_slice_closes(
    tmp_path: Path, sandbox: Sandbox, recorder: Any
) -> None:
    session = await start_session(tmp_path, sandbox)
    daemon = session.daemon
    await session.step(2)
    connections = sandbox.data_connections
    # The next minute: two of four bars, then the socket dies and stays refused for 3 minutes.
    sandbox.faults.drop_data_socket(after_bars=2, down_steps=3)
    await sandbox.step()
    gap_start = sandbox.last_minute_ns
    await sandbox.step(3)
    gap_end = sandbox.last_minute_ns
    assert gap_start is not None
    assert gap_end is not None
    await session.until(lambda: gap_end in daemon.slices.symbols)
    await session.step(2)
    assert await session.stop() == 0

    assert sandbox.data_connections > connections
    assert daemon.market.counters.backfills >= 1  # the reconnect fetched the gap
    decided = daemon.slices.decided
    # Every minute, in order, once, each decided with all four symbols.
    assert decided == sorted(set(decided))
    assert all(b - a == NS_PER_MINUTE for a, b in itertools.pairwise(decided))
    assert all(daemon.slices.symbols[ts] == len(SYMBOLS) for ts in decided)
    assert gap_start in decided
    assert gap_end in decided


async def test_lost_submit_response_is_resolved_without_a_second_order(
    tmp_path: Path, sandbox: Sandbox, recorder: Any
) -> None:
    session = await start_session(tmp_path, sandbox)
    daemon = session.daemon
    sandbox.faults.lose_order_response(times=2)
    await session.step(3)
    await session.settle()
    assert await session.stop() == 0

    assert sandbox.orders_created
    assert max(sandbox.orders_created.values()) == 1
    assert max(sandbox.order_posts.values()) == 1  # looked up by client id, not re-sent
    assert positions_of(daemon.ledger) == {s: q for s, q in sandbox.positions.items() if q}
    assert daemon.ledger.cash == sandbox.cash


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_throttled_and_failing_submits_are_retried_once_each(
    tmp_path: Path, sandbox: Sandbox, recorder: Any, status: int
) -> None:
    session = await start_session(tmp_path, sandbox)
    daemon = session.daemon
    sandbox.faults.fail_rest(status, times=3, method="POST", path="/v2/orders")
    broker = daemon.broker
    # At a market's pace: each minute's orders are out (or given up) before the next minute.
    for _ in range(3):
        await session.step()
        await session.until(lambda: broker.health().in_flight == 0)
    await session.settle()
    assert await session.stop() == 0

    assert daemon.engine.counters.rejected_orders == 0
    assert daemon.engine.counters.fills > 0
    assert max(sandbox.orders_created.values()) == 1
    assert daemon.ledger.cash == sandbox.cash


async def test_422_becomes_an_order_rejected_event_and_is_not_retried(
    tmp_path: Path, sandbox: Sandbox, recorder: Any
) -> None:
    session = await start_session(tmp_path, sandbox)
    daemon = session.daemon
    sandbox.faults.reject_orders(422, "invalid qty: the test says no", times=1)
    await session.step(1)
    await session.settle()
    assert await session.stop() == 0

    assert daemon.engine.counters.rejected_orders == 1
    rejected = [cid for cid, n in sandbox.order_posts.items() if cid not in sandbox.orders_created]
    assert len(rejected) == 1
    assert sandbox.order_posts[rejected[0]] == 1
    orders_csv = (daemon.out_dir / "orders.csv").read_text()
    assert "the test says no" in orders_csv


async def test_a_halted_symbol_gets_no_order_until_it_resumes(
    tmp_path: Path, sandbox: Sandbox, recorder: Any
) -> None:
    session = await start_session(tmp_path, sandbox)
    daemon = session.daemon
    await sandbox.trading_status("AAA", "H", "Trading Halt", "T12", "news pending")
    await session.until(lambda: "AAA" in daemon.halted_symbols)
    await session.step(1)
    await session.settle()
    assert daemon.orders.halted_orders >= 1  # once per slice while halted
    assert "AAA" not in sandbox.positions
    await sandbox.trading_status("AAA", "T", "Trading Resumption")
    await session.until(lambda: "AAA" not in daemon.halted_symbols)
    await session.step(1)
    await session.settle()
    assert await session.stop() == 0

    assert sandbox.positions.get("AAA", Decimal(0)) > 0
    assert positions_of(daemon.ledger) == {s: q for s, q in sandbox.positions.items() if q}


async def test_a_feed_the_plan_lacks_stops_the_daemon_naming_it(
    tmp_path: Path, sandbox: Sandbox, recorder: Any
) -> None:
    sandbox.faults.refuse_data(409)
    daemon = LiveDaemon(live_config(tmp_path, sandbox), log=quiet_log(), env=ENV)
    with pytest.raises(StreamSubscriptionRefused, match="iex"):
        await asyncio.wait_for(daemon.run(), DEADLINE_S)
    assert sum(sandbox.order_posts.values()) == 0
    assert (daemon.out_dir / "summary.json").exists()


async def test_track_mode_sends_no_order_and_follows_the_account(
    tmp_path: Path, sandbox: Sandbox, recorder: Any
) -> None:
    session = await start_session(tmp_path, sandbox, mode="track")
    daemon = session.daemon
    await session.step(3)
    # A person buys by hand, outside the daemon: the fill reaches the ledger.
    from alpaca.trading.client import TradingClient
    from alpaca.trading.enums import OrderSide as AlpacaSide
    from alpaca.trading.enums import TimeInForce
    from alpaca.trading.requests import MarketOrderRequest

    client = TradingClient(
        "test-key", "test-secret", raw_data=True, url_override=sandbox.trading_url
    )
    await asyncio.to_thread(
        client.submit_order,
        MarketOrderRequest(symbol="BBB", qty=3, side=AlpacaSide.BUY, time_in_force=TimeInForce.DAY),
    )
    await session.step(2)
    await session.until(lambda: "BBB" in daemon.ledger.positions)
    assert daemon.broker is not None
    never = SubmitOrder(
        client_order_id="never",
        symbol="AAA",
        side=OrderSide.BUY,
        qty=Decimal(1),
        order_type=OrderType.MARKET,
        ts=0,
    )
    with pytest.raises(InvariantViolation):
        daemon.broker.submit(never)
    assert await session.stop() == 0

    assert daemon.broker.read_only
    assert daemon.engine.counters.orders == 0
    assert sum(sandbox.order_posts.values()) == 1  # the person's order only
    assert daemon.ledger.positions["BBB"].qty == Decimal(3)
    assert positions_of(daemon.ledger) == {s: q for s, q in sandbox.positions.items() if q}


async def test_sim_mode_fills_through_the_simulated_broker(
    tmp_path: Path, sandbox: Sandbox, recorder: Any
) -> None:
    session = await start_session(tmp_path, sandbox, mode="sim")
    daemon = session.daemon
    await session.step(4)
    assert await session.stop() == 0

    assert not daemon.broker.shares_account  # the simulated broker: no account
    assert not sandbox.order_posts
    assert daemon.engine.counters.fills > 0
    assert set(daemon.ledger.positions) <= set(SYMBOLS)
    assert daemon.ledger.positions


async def test_strategies_warm_up_before_the_first_order(tmp_path: Path, sandbox: Sandbox) -> None:
    strategies = {"trend": {"type": "momentum", "params": {"lookback": 60}}}
    session = await start_session(tmp_path, sandbox, strategies=strategies)
    daemon = session.daemon
    first_live = None
    # Warm-up ran through the core without trading; the lookback was full on the first slice.
    assert daemon.warmup_bars == 120 * len(SYMBOLS)
    assert daemon.engine.counters.warmup_slices == 120
    assert daemon.engine.counters.orders == 0
    await session.step(1)
    first_live = sandbox.last_minute_ns
    assert await session.stop() == 0

    assert daemon.slices.decided[0] == first_live
    orders_csv = (daemon.out_dir / "orders.csv").read_text().splitlines()[1:]
    assert orders_csv, "a warmed-up momentum strategy trades on the first live slice"


async def test_sigterm_stops_the_cli_cleanly(tmp_path: Path, sandbox: Sandbox) -> None:
    loaded = live_config(tmp_path, sandbox, strategies={"t": {"type": "momentum"}})
    config = Path(loaded.files[0])
    env = {**os.environ, **ENV}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon.cli",
        "run",
        str(config),
        "--out",
        str(tmp_path / "run"),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert process.stderr is not None
    lines: list[dict[str, Any]] = []

    async def read_until(event: str) -> None:
        assert process.stderr is not None
        while True:
            line = await process.stderr.readline()
            if not line:
                raise AssertionError(f"stderr closed before {event}: {lines[-3:]}")
            record = orjson.loads(line)
            lines.append(record)
            if record["event"] == event:
                return

    await asyncio.wait_for(read_until("feed_connected"), DEADLINE_S)
    await sandbox.step(2)
    process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(read_until("daemon_stopped"), DEADLINE_S)
    code = await asyncio.wait_for(process.wait(), DEADLINE_S)
    assert code == 0
    stopped = lines[-1]
    assert stopped["error"] is None
    assert stopped["seconds"] < 10
    assert (tmp_path / "run" / "summary.json").exists()
    assert all("test-secret" not in orjson.dumps(r).decode() for r in lines)


def offline_config(tmp_path: Path, *, timeframe: str = "1Min", **live: Any) -> LoadedConfig:
    """A config that never gets as far as the network: for the checks made at construction."""
    tree = {
        "symbols": ["SPY"],
        "data": {"path": str(DATA), "timeframe": timeframe},
        "strategies": {"t": {"type": "momentum"}},
        "live": live,
    }
    return load_config([str(write_yaml(tmp_path / "offline.yaml", tree))])


def test_live_mode_needs_the_flag_and_the_flag_needs_live_mode(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--live"):
        LiveDaemon(offline_config(tmp_path, mode="live"), log=quiet_log(), env=ENV)
    paper = offline_config(tmp_path, mode="paper")
    with pytest.raises(ConfigError, match=r"live\.mode is paper"):
        LiveDaemon(paper, log=quiet_log(), env=ENV, allow_live=True)


def test_missing_keys_are_named_and_never_echoed(tmp_path: Path) -> None:
    env = {"APCA_API_KEY_ID": "PKSECRETISH"}
    with pytest.raises(ConfigError, match="APCA_API_SECRET_KEY not set") as info:
        LiveDaemon(offline_config(tmp_path), log=quiet_log(), env=env)
    assert "PKSECRETISH" not in str(info.value)


def test_live_takes_coarser_timeframes_from_the_minute_stream(tmp_path: Path) -> None:
    daemon = LiveDaemon(offline_config(tmp_path, timeframe="1Day"), log=quiet_log(), env=ENV)
    assert daemon.buckets is not None
    assert daemon.buckets.aggregator.timeframe == "1Day"
    # max_decision_age_s defaults to half the strategies' bar: 12 hours for daily bars.
    assert daemon.orders.max_decision_age_s == 43_200


async def test_a_journal_from_another_session_is_refused(
    tmp_path: Path, sandbox: Sandbox, recorder: Any
) -> None:
    session = await start_session(tmp_path, sandbox)
    await session.step(3)
    assert await session.stop() == 0
    # A new sandbox starts its clock over: this journal has decided minutes "in its future".
    fresh = Sandbox(DATA, speed=None, warm_minutes=60, key="test-key", secret="test-secret")
    await fresh.start()
    try:
        again = LiveDaemon(live_config(tmp_path, fresh), log=quiet_log(), env=ENV)
        with pytest.raises(ConfigError, match="belongs to account"):
            await asyncio.wait_for(again.run(), DEADLINE_S)
        assert not fresh.order_posts
    finally:
        await fresh.close()


async def test_bars_download_writes_files_that_replay_reads(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon.cli",
        "bars",
        "download",
        "--symbols",
        "AAA,BBB,NOPE",
        "--start",
        "2024-11-18",
        "--end",
        "2024-11-18",
        "--url",
        sandbox.data_url,
        "--out",
        str(tmp_path / "bars"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **ENV},
        cwd=ROOT,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), DEADLINE_S)
    assert process.returncode == 0, stderr.decode()
    printed = stdout.decode()
    assert "AAA: 120 bars" in printed  # the sandbox's 120 minutes of history
    assert "NOPE: 0 bars (none: no file)" in printed
    replayed = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon.cli",
        "replay",
        str(Path(live_config(tmp_path, sandbox, strategies={"t": {"type": "momentum"}}).files[0])),
        "--data",
        str(tmp_path / "bars"),
        "--symbols",
        "AAA,BBB",
        "--out",
        str(tmp_path / "replay"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    _, err = await asyncio.wait_for(replayed.communicate(), DEADLINE_S)
    assert replayed.returncode == 0, err.decode()
    summary = orjson.loads((tmp_path / "replay" / "summary.json").read_bytes())
    assert summary["bars_in"] == 240


async def test_a_closed_market_is_waited_through_without_reconnects_or_busy_loop(
    tmp_path: Path, recorder: Any
) -> None:
    # The sample's last session, with 60 of its minutes in the past: 330 left to play.
    box = Sandbox(
        DATA,
        speed=None,
        start=date(2024, 12, 9),
        warm_minutes=60,
        key="test-key",
        secret="test-secret",
    )
    await box.start()
    try:
        # silence_s is well above the time the clock poll takes to notice the close (under
        # load too), and the window below is twice silence_s.
        live = {"clock_poll_s": 0.05, "silence_s": 1.0}
        session = await start_session(tmp_path, box, live=live)
        daemon = session.daemon
        while await box.step():  # play to the close
            pass
        await session.until(lambda: not daemon.market_open)
        assert daemon.market.stream is not None
        reconnects = daemon.market.stream.reconnects
        cpu = time.process_time()
        wall = time.monotonic()
        # Closed: the socket stays quiet for 40 clock polls (at least 2 s, twice silence_s),
        # and that is normal.
        polls = box.requests[("GET", "/v2/clock")] + 40
        async with asyncio.timeout(DEADLINE_S):
            while box.requests[("GET", "/v2/clock")] < polls:
                await daemon.next_step()
        assert daemon.market.stream.reconnects == reconnects
        assert daemon.feed_connected
        busy = (time.process_time() - cpu) / (time.monotonic() - wall)
        assert busy < 0.5, f"{busy:.0%} of a core while waiting"
        assert "market_closed" in session.log_tail(500)
        assert await session.stop() == 0
    finally:
        await box.close()


async def test_the_summary_counts_rejected_bars_by_reason(
    tmp_path: Path, sandbox: Sandbox, recorder: Any
) -> None:
    session = await start_session(tmp_path, sandbox)
    await session.step(1)
    # The same minute again, as when a backfill and the stream both deliver it.
    minute = sandbox.last_minute_ns
    assert minute is not None
    again = Bar("AAA", minute, 1.0, 1.0, 1.0, 1.0, 100.0)
    assert session.daemon.engine.on_bar(again) == "duplicate"
    assert await session.stop() == 0
    summary = orjson.loads((session.daemon.out_dir / "summary.json").read_bytes())
    assert summary["bars_rejected"] == {"duplicate": 1}
