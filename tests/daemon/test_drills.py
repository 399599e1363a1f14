"""Fault drills against the sandbox: nothing lost, nothing twice.

1. kill -9 at chosen moments of a paper session, restart, run on (a fast run per moment, and many
   seeds, marked slow).
2. The data socket down for 3 minutes: the backfill makes the decisions of an uninterrupted run.
3. Broker REST failing: no duplicate, not ready, recovered.
4. The trade stream down while an order fills: reconciliation books the fill once.
5. The journal cannot be written: no order leaves; resuming works once it can.
6. SIGTERM mid-session: a clean stop in time, and the restart resumes.
"""

from __future__ import annotations

import asyncio
import csv
import os
import random
import sqlite3
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from daemon.live.crash import CRASH_POINTS
from daemon.live.recovery import positions_of
from daemon.timeutil import iso_utc
from portfolio.journal import JournalReader
from sandbox import Sandbox
from tests.daemon.livekit import (
    DEADLINE_S,
    DaemonProcess,
    live_config,
    start_session,
)

# Momentum on a short lookback flips often: many orders, so a crash point is reached early.
BUSY = {"flip": {"type": "momentum", "params": {"lookback": 3}}}


def config_file(tmp_path: Path, box: Sandbox, **kwargs: Any) -> Path:
    return Path(live_config(tmp_path, box, **kwargs).files[0])


async def decided(daemon: DaemonProcess, minute: int) -> bool:
    """Wait until the daemon decided `minute` (True) or died (False)."""
    want = iso_utc(minute)
    async with asyncio.timeout(DEADLINE_S):
        while daemon.alive():
            try:
                if (await daemon.state())["last_slice"] == want:
                    return True
            except OSError:
                pass  # it died between the check and the request
            await asyncio.sleep(0.02)
    return False


async def settle(daemon: DaemonProcess, box: Sandbox) -> None:
    """Halt the daemon (over its control plane), then play minutes until its last orders
    filled at the next open."""
    await daemon.control("halt")
    for _ in range(6):
        state = await daemon.state()
        if not state["open_orders"] and state["broker"]["in_flight"] == 0:
            return
        assert await box.step()
        assert await decided(daemon, box.last_minute_ns or 0)
    log = "\n".join(str(e) for e in daemon.events[-25:])
    raise AssertionError(f"orders still open: {state['open_orders']}\n{log}")


def sandbox_fills(box: Sandbox) -> Counter[tuple[str, Decimal]]:
    return Counter(
        (e["data"]["order"]["client_order_id"], Decimal(e["data"]["qty"]))
        for e in box.trade_events
        if e["data"]["event"] == "fill"
    )


def journal_fills(state_dir: Path) -> Counter[tuple[str, Decimal]]:
    with JournalReader.open(state_dir) as journal:
        return Counter((f.client_order_id, f.qty) for f in journal.state().fills)


def assert_books_match(box: Sandbox, out: Path, state_dir: Path) -> None:
    """No client order id twice at the broker; the ledger is the broker's; every fill once."""
    assert box.orders_created, "the drill placed no order"
    assert max(box.orders_created.values()) == 1
    summary = orjson.loads((out / "summary.json").read_bytes())
    ledger = summary["ledger"]
    held = {s: Decimal(p["qty"]) for s, p in ledger["positions"].items()}
    assert held == {s: q for s, q in box.positions.items() if q}
    assert Decimal(ledger["cash"]) == box.cash
    assert journal_fills(state_dir) == sandbox_fills(box)


async def crash_and_recover(
    tmp_path: Path, box: Sandbox, point: str, hits: int, minutes: int
) -> bool:
    """One drill: run until the crash point kills the daemon (or `minutes` pass), restart, run
    on, stop. Returns whether the crash happened."""
    config = config_file(tmp_path, box, strategies=BUSY)
    out = tmp_path / "out"
    daemon = DaemonProcess(config, out, env={"TRADINGD_CRASH_AT": f"{point}:{hits}"})
    await daemon.start()
    crashed = False
    for _ in range(minutes):
        assert await box.step()
        if not await decided(daemon, box.last_minute_ns or 0):
            crashed = True
            break
    if not crashed:
        assert await daemon.terminate() == 0, daemon.tail()
    else:
        assert await daemon.wait_exit() == -9
        assert any(e["event"] == "crash_injected" for e in daemon.events)
        # The run's files were written as it went: the killed run's are on disk.
        with (out / "equity.csv").open() as f:
            assert len(f.readlines()) > 1
    again = DaemonProcess(config, out)
    await again.start()
    for _ in range(3):
        assert await box.step()
        assert await decided(again, box.last_minute_ns or 0)
    await settle(again, box)
    assert await again.terminate() == 0, again.tail()
    assert_books_match(box, out, tmp_path / "state")
    return crashed


@pytest.mark.parametrize("point", sorted(CRASH_POINTS))
async def test_kill_9_at_each_moment_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path, sandbox: Sandbox, point: str
) -> None:
    assert await crash_and_recover(tmp_path, sandbox, point, hits=1, minutes=12)


# CI runs 12 seeds; TRADINGD_DRILL_SEEDS=N runs more.
SEEDS = int(os.environ.get("TRADINGD_DRILL_SEEDS", "12"))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(SEEDS))
async def test_kill_9_drill_over_many_seeds(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    point = rng.choice(sorted(CRASH_POINTS))
    hits = rng.randint(1, 4)
    box = Sandbox(
        Path(__file__).resolve().parents[2] / "data" / "sample" / "minute",
        speed=None,
        warm_minutes=rng.randint(60, 400),
        key="test-key",
        secret="test-secret",
    )
    await box.start()
    try:
        assert await crash_and_recover(tmp_path, box, point, hits=hits, minutes=20)
    finally:
        await box.close()


def read_orders(out: Path) -> list[tuple[str, ...]]:
    """orders.csv without the client order id prefix (which differs between configs)."""
    with (out / "orders.csv").open() as f:
        return [
            (r["time"], r["slice_time"], r["symbol"], r["side"], r["qty"], r["status"])
            for r in csv.DictReader(f)
        ]


async def sim_session(run: Path, *, outage: bool) -> Path:
    """A sim session over the same bars, with or without 3 minutes of data outage."""
    data = Path(__file__).resolve().parents[2] / "data" / "sample" / "minute"
    box = Sandbox(data, speed=None, warm_minutes=120, key="test-key", secret="test-secret")
    await box.start()
    try:
        run.mkdir()
        session = await start_session(run, box, mode="sim", strategies=BUSY)
        daemon = session.daemon
        await session.step(3)
        if outage:
            box.faults.drop_data_socket(after_bars=1, down_steps=3)
            assert await box.step(4)  # the drop's minute, and 3 more while refused
            gap_end = box.last_minute_ns
            await session.until(lambda: gap_end in daemon.slices.symbols)
            assert daemon.market.counters.backfilled_bars > 0
        else:
            await session.step(4)
        await session.step(5)
        assert await session.stop() == 0
        return daemon.out_dir
    finally:
        await box.close()


def read_targets(out: Path) -> list[tuple[str, ...]]:
    with (out / "targets.csv").open() as f:
        return [(r["time"], r["kind"], r["name"], r["weight"]) for r in csv.DictReader(f)]


def held_slices(state: Path) -> dict[str, str]:
    """Slice time -> why it was decided without orders, from the journal."""
    with JournalReader.open(state) as journal:
        segment = journal.segments()[-1].id
        return {
            iso_utc(int(item.payload["slice_ts"])): str(item.payload["held"])
            for item in journal.inputs(segment)
            if item.kind == "close" and isinstance(item.payload, dict) and "held" in item.payload
        }


async def test_a_3_minute_data_outage_feeds_the_strategies_and_sends_nothing_stale(
    tmp_path: Path,
) -> None:
    steady_out = await sim_session(tmp_path / "steady", outage=False)
    outage_out = await sim_session(tmp_path / "outage", outage=True)
    steady, outage = read_orders(steady_out), read_orders(outage_out)
    assert steady, "the steady run placed no order"
    # The strategies and the composer saw every minute: the same targets at every rebalance.
    assert read_targets(outage_out) == read_targets(steady_out)
    held = held_slices(tmp_path / "outage" / "state")
    assert set(held.values()) == {"catch_up"}
    assert len(held) >= 2, held  # the minutes rebuilt from history, but not the latest
    assert held_slices(tmp_path / "steady" / "state") == {}
    # Nothing decided on a rebuilt minute was sent; before the outage both runs agree.
    assert not [o for o in outage if o[1] in held]
    first_held = min(held)
    assert [o for o in outage if o[1] < first_held] == [o for o in steady if o[1] < first_held]


async def test_broker_rest_failing_is_survived_without_duplicates(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    session = await start_session(tmp_path, sandbox, strategies=BUSY)
    daemon = session.daemon
    for _ in range(2):  # at a market's pace: each minute's orders are out before the next
        await session.step()
        await session.until(lambda: daemon.broker.health().in_flight == 0)
    sandbox.faults.fail_rest(503, times=40)
    await sandbox.step()
    await session.until(lambda: not daemon.readiness()["broker_rest"])
    assert daemon.alive()
    await session.step(3)
    daemon.halt()  # this strategy trades every minute: stop it to let the last orders fill
    await session.settle()
    await session.until(lambda: all(daemon.readiness().values()))
    assert await session.stop() == 0
    assert max(sandbox.orders_created.values()) == 1
    assert positions_of(daemon.ledger) == {s: q for s, q in sandbox.positions.items() if q}
    assert daemon.ledger.cash == sandbox.cash


async def test_a_fill_during_a_trade_stream_outage_is_booked_once(
    tmp_path: Path, sandbox: Sandbox, recorder: Any
) -> None:
    session = await start_session(tmp_path, sandbox)
    daemon = session.daemon
    await session.step(1)  # decides: buys go out
    assert daemon.broker is not None
    await session.until(lambda: daemon.broker is not None and daemon.broker.health().in_flight == 0)
    reconciled = daemon.broker.reconciliations
    sandbox.faults.drop_trade_socket()
    assert await sandbox.step()  # the buys fill while nobody listens
    broker = daemon.broker
    await session.until(lambda: broker.reconciliations > reconciled)
    await session.settle()
    assert await session.stop() == 0
    assert positions_of(daemon.ledger) == {s: q for s, q in sandbox.positions.items() if q}
    assert daemon.ledger.cash == sandbox.cash
    assert journal_fills(tmp_path / "state") == sandbox_fills(sandbox)


async def test_no_order_leaves_without_a_journal(
    tmp_path: Path, sandbox: Sandbox, recorder: Any
) -> None:
    session = await start_session(tmp_path, sandbox)
    daemon = session.daemon
    assert daemon.journal is not None
    # Another writer holds the journal: every write the daemon tries fails (busy).
    blocker = sqlite3.connect(daemon.journal.path, isolation_level=None, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")
    posts = sum(sandbox.order_posts.values())
    try:
        await session.step(1)  # the first decision would buy everything
        assert daemon.journal_failed is not None
        assert sum(sandbox.order_posts.values()) == posts
        assert not daemon.readiness()["journal"]
        assert "journal_failed" in session.log_tail(200)
        assert daemon.state()["journal"]["failed"]
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    daemon.resume()  # the journal is writable again: the write of the resume is the proof
    await session.step(1)
    await session.settle()
    assert sum(sandbox.order_posts.values()) > posts
    assert await session.stop() == 0


async def test_sigterm_mid_session_stops_in_time_and_the_restart_resumes(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    config = config_file(tmp_path, sandbox, strategies=BUSY)
    out = tmp_path / "out"
    first = DaemonProcess(config, out)
    await first.start()
    for _ in range(3):
        assert await sandbox.step()
        assert await decided(first, sandbox.last_minute_ns or 0)
    assert await first.terminate() == 0, first.tail()
    stopped = next(e for e in first.events if e["event"] == "daemon_stopped")
    assert stopped["seconds"] < 10
    last = sandbox.last_minute_ns or 0
    again = DaemonProcess(config, out)
    await again.start()
    restored = await again.wait_event("ledger_restored")
    assert restored["segment"] == 1
    for _ in range(3):
        assert await sandbox.step()
        assert await decided(again, sandbox.last_minute_ns or 0)
    assert (sandbox.last_minute_ns or 0) > last
    await settle(again, sandbox)
    assert await again.terminate() == 0, again.tail()
    assert_books_match(sandbox, out, tmp_path / "state")
    with JournalReader.open(tmp_path / "state") as journal:
        assert len(journal.segments()) == 2


async def test_audit_of_a_clean_session_finds_nothing_and_a_planted_change_is_found(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    config = config_file(tmp_path, sandbox, strategies=BUSY)
    out = tmp_path / "out"
    state = tmp_path / "state"
    # Two segments (a restart in the middle), as a daemon that runs for days has.
    for _ in range(2):
        daemon = DaemonProcess(config, out)
        await daemon.start()
        for _ in range(4):
            assert await sandbox.step()
            assert await decided(daemon, sandbox.last_minute_ns or 0)
        assert await daemon.terminate() == 0, daemon.tail()

    clean = await audit_cli(state)
    assert clean.returncode == 0, clean.stdout
    assert "0 differences" in clean.stdout
    assert "2 segments" in clean.stdout

    # Plant a difference: drop the journaled fill of a live buy, as if it had been lost. The
    # replay's ledger then lacks that position, and the next decision about it differs.
    with JournalReader.open(state) as journal:
        segment = journal.segments()[-1].id
        filled = {f.client_order_id for f in journal.state().fills}
        # A buy that filled (one the next decision superseded before it was sent has none).
        buy = next(
            order
            for record in journal.decisions(segment).values()
            for order in record.orders
            if order.side.value == "buy" and order.client_order_id in filled
        )
    db = sqlite3.connect(state / "journal.sqlite3")
    with db:
        dropped = db.execute(
            "DELETE FROM input WHERE kind = 'event' AND segment = ? "
            "AND payload LIKE '%OrderFilled%' AND payload LIKE ?",
            (segment, f'%"{buy.client_order_id}"%'),
        ).rowcount
    db.close()
    assert dropped == 1
    planted = await audit_cli(state)
    assert planted.returncode == 1, planted.stdout
    assert "0 differences" not in planted.stdout


async def audit_cli(state: Path) -> subprocess.CompletedProcess[str]:
    """`tradingd audit STATE_DIR`, as a user runs it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon.cli",
        "audit",
        str(state),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), DEADLINE_S)
    assert process.returncode is not None
    return subprocess.CompletedProcess(
        args=["audit"],
        returncode=process.returncode,
        stdout=stdout.decode(),
        stderr=stderr.decode(),
    )
