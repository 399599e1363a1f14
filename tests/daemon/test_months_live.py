"""Months of running, the live side: a stop during a start-up stuck in its reconciliation, and
the journal's upkeep at a session's close (snapshot, retention, checkpoint)."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from typing import Any

from daemon.config import LoadedConfig
from daemon.engine import Engine
from daemon.live.guard import JournalGuard
from daemon.live.lifecycle import LiveDaemon
from daemon.live.upkeep import Upkeep, session_of
from daemon.replay.audit import TargetsListener
from daemon.settings import RetentionSettings
from daemon.wiring import build_engine
from portfolio.journal import Journal, JournalReader, LedgerSnapshot
from sandbox import Sandbox
from tests.daemon.livekit import ENV, live_config, quiet_log
from tests.daemon.test_audit import SYMBOLS, T0, minute_config

NS_PER_DAY = 86_400 * 10**9


async def test_a_stop_during_a_stuck_start_up_exits_within_the_stop_deadline(
    tmp_path: Path, recorder: Any, sandbox: Sandbox
) -> None:
    # The reconciliation's listing of orders fails for a long time: the start-up retries it.
    sandbox.faults.fail_rest(503, times=10_000, method="GET", path="/v2/orders")
    loaded = live_config(tmp_path, sandbox, live={"stop_deadline_s": 3})
    daemon = LiveDaemon(loaded, log=quiet_log(), env=ENV)
    task = asyncio.create_task(daemon.run())
    async with asyncio.timeout(20):
        while sandbox.requests[("GET", "/v2/orders")] < 2:
            assert not task.done(), "the start-up should be stuck, not over"
            await asyncio.sleep(0.01)

    asked = time.monotonic()
    daemon.request_stop()
    code = await asyncio.wait_for(task, 20)

    assert code == 0
    assert time.monotonic() - asked < loaded.settings.live.stop_deadline_s + 2
    stream = daemon.log._stream
    assert isinstance(stream, io.StringIO)
    assert '"start_interrupted"' in stream.getvalue()


def test_a_session_close_snapshots_then_compacts_and_checkpoints(tmp_path: Path) -> None:
    loaded = minute_config(tmp_path)
    engine, _ = build_engine(loaded, SYMBOLS, TargetsListener(), trade_from_ts=2**63 - 1)
    with Journal(tmp_path / "state") as journal:
        upkeep = upkeep_of(journal, loaded, engine, RetentionSettings(sessions=2, archive="drop"))
        for day in range(4):
            open_ts = T0 + day * NS_PER_DAY
            upkeep.on_clock(market_open=False, ts=open_ts - 60 * 10**9)  # closed: no snapshot
            journal.warmup_done(open_ts)  # an input of the session
            upkeep.on_clock(market_open=True, ts=open_ts)
            upkeep.on_clock(market_open=True, ts=open_ts + 60 * 10**9)
            upkeep.on_clock(market_open=False, ts=open_ts + 390 * 60 * 10**9)
        wal = journal.path.with_name(journal.path.name + "-wal")
        assert upkeep.snapshots == 4
        assert wal.stat().st_size < 1_000_000

    with JournalReader.open(tmp_path / "state") as reader:
        sessions = [s.session for s in reader.snapshots()]
        kept = [i.ts for i in reader.inputs(1)]
        compacted = reader.compacted()
    assert sessions == [session_of(T0 + d * NS_PER_DAY) for d in range(4)]
    assert compacted is not None
    # Two sessions kept: the inputs after the second snapshot.
    assert kept == [T0 + 2 * NS_PER_DAY, T0 + 3 * NS_PER_DAY]


async def test_the_live_upkeep_checkpoints_on_a_worker_thread(tmp_path: Path) -> None:
    loaded = minute_config(tmp_path)
    engine, _ = build_engine(loaded, SYMBOLS, TargetsListener(), trade_from_ts=2**63 - 1)
    with Journal(tmp_path / "state") as journal:
        upkeep = upkeep_of(
            journal,
            loaded,
            engine,
            RetentionSettings(sessions=None, archive="drop"),
            background=True,
        )
        for minute in range(200):
            journal.close_slice(T0 + minute * 60 * 10**9, targets=None, orders=())
        before = journal.path.stat().st_size  # the slices' pages are in the WAL only
        upkeep.on_clock(market_open=True, ts=T0)
        await upkeep.stop()  # waits for the thread's checkpoint
        assert journal.path.stat().st_size > before  # moved into the file
        journal.close_slice(T0 + 200 * 60 * 10**9, targets=None, orders=())
        upkeep.on_clock(market_open=True, ts=T0 + 1)  # after a stop: a new connection, no error
        await upkeep.stop()


def upkeep_of(
    journal: Journal,
    loaded: LoadedConfig,
    engine: Engine,
    retention: RetentionSettings,
    *,
    background: bool = False,
) -> Upkeep:
    """The upkeep of `journal`, with a paper segment opened at T0 with `engine`'s books."""
    journal.begin_segment(
        mode="paper",
        config_digest=loaded.digest,
        config=loaded.settings.model_dump(mode="json"),
        config_files=list(loaded.files),
        ledger=LedgerSnapshot.of(engine.ledger),
        ts=T0,
    )
    guard = JournalGuard(journal, log=quiet_log(), on_failed=lambda: None)
    return Upkeep(
        engine=engine, guard=guard, retention=retention, log=quiet_log(), background=background
    )
