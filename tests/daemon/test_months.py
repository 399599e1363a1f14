"""Months of running: snapshots at each session close, a restart that reads only after the last
one, audits of a range, compaction that keeps the audit's answer, a v3 journal upgraded, and a
stop during start-up."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from daemon.config import LoadedConfig
from daemon.live.recovery import rebuild_ledger
from daemon.live.tasks import start_unless_stopped
from daemon.live.upkeep import session_of
from daemon.replay.audit import Difference, TargetsListener, audit
from daemon.wiring import build_engine
from feeds.bar import NS_PER_MINUTE, Bar
from portfolio.journal import JOURNAL_FILE, MIGRATIONS, Journal, JournalReader, LedgerSnapshot
from portfolio.journal.retention import compact, export, stats
from tests.daemon.test_audit import SYMBOLS, T0, WARMUP_MINUTES, Driver, minute_config, walk_bars
from tests.portfolio.test_journal_account import drop_schema_4, schema_of

NS_PER_DAY = 86_400 * 10**9
MINUTES = 10  # trading minutes per session


def session_bars(
    rng: random.Random, prices: dict[str, float], day: int, minutes: int
) -> list[list[Bar]]:
    return walk_bars(rng, prices, T0 + day * NS_PER_DAY, minutes)


def run_sessions(state_dir: Path, loaded: LoadedConfig, sessions: int, *, tail: int = 0) -> Driver:
    """One segment: a warm-up, then `sessions` sessions each ending in a snapshot, then `tail`
    minutes of one more session (journaled after the last snapshot). Every order fills."""
    rng = random.Random(17)
    prices = dict.fromkeys(SYMBOLS, 100.0)
    journal = Journal(state_dir)
    driver = Driver(loaded, journal)
    driver.begin(T0)
    for row in session_bars(rng, prices, -1, WARMUP_MINUTES):
        for bar in row:
            driver.bar(bar, warmup=True)
    driver.close()
    journal.warmup_done(T0)
    driver.engine.trade_from_ts = -(2**63)
    for day in range(sessions + (1 if tail else 0)):
        rows = session_bars(rng, prices, day, MINUTES if day < sessions else tail)
        for row in rows:
            for bar in row:
                driver.bar(bar)
            orders = driver.close()
            driver.fill_all(orders, {b.symbol: b.close for b in row}, row[0].ts + NS_PER_MINUTE)
        if day < sessions:
            end = rows[-1][0].ts + NS_PER_MINUTE
            journal.snapshot(
                ledger=LedgerSnapshot.of(driver.engine.ledger), session=session_of(end), ts=end
            )
    journal.close()
    return driver


def tamper(state_dir: Path, day: int, minute: int) -> int:
    """Change one bar's close in the journal (as a corrupted file would); its slice's ts."""
    ts = T0 + day * NS_PER_DAY + minute * NS_PER_MINUTE
    db = sqlite3.connect(state_dir / JOURNAL_FILE)
    try:
        db.execute(
            "UPDATE input SET close = close * 1.05 WHERE kind = 'bar' AND ts = ? AND symbol = ?",
            (ts, SYMBOLS[0]),
        )
        db.commit()
    finally:
        db.close()
    return ts


def after(differences: list[Difference], ts: int) -> list[Difference]:
    return [d for d in differences if d.slice_ts >= ts]


def test_a_restart_reads_only_what_came_after_the_last_snapshot(tmp_path: Path) -> None:
    loaded = minute_config(tmp_path)
    driver = run_sessions(tmp_path / "state", loaded, 8, tail=3)
    engine, _ = build_engine(loaded, SYMBOLS, TargetsListener(), trade_from_ts=2**63 - 1)

    with JournalReader.open(tmp_path / "state") as reader:
        snapshots = reader.snapshots()
        rebuilt = rebuild_ledger(reader, engine.ledger)
        tail = list(reader.inputs(1, after_seq=snapshots[-1].seq))
        state = reader.restart_state()
        every_order = reader.orders()

    assert len(snapshots) == 8
    assert rebuilt.snapshot == snapshots[-1].id
    # Only the events of the three minutes after the snapshot were read: no bar, no history.
    assert rebuilt.inputs == sum(1 for i in tail if i.kind in ("event", "control")) > 0
    assert LedgerSnapshot.of(engine.ledger) == LedgerSnapshot.of(driver.engine.ledger)
    assert state.fills == []
    # The orders a reconciliation can meet: those of the last hour before the last event.
    assert state.last_event_ts is not None
    recent = [o for o in every_order if o.ts >= state.last_event_ts - 3_600 * 10**9]
    assert state.orders == recent
    assert len(recent) < len(every_order)


def test_an_audit_of_the_last_sessions_finds_what_the_full_audit_finds_there(
    tmp_path: Path,
) -> None:
    loaded = minute_config(tmp_path)
    state = tmp_path / "state"
    run_sessions(state, loaded, 8)
    clean = audit(state, sessions=3)
    assert clean.differences == []
    assert clean.skipped == []
    assert clean.slices == 3 * MINUTES

    early = tamper(state, 2, 4)
    late = tamper(state, 6, 5)
    full = audit(state)
    ranged = audit(state, sessions=3)
    since = audit(state, since=session_of(T0 + 5 * NS_PER_DAY))

    assert after(full.differences, early)
    assert full.differences[0].slice_ts == early
    assert ranged.differences == after(full.differences, late) != []
    assert since.differences == after(full.differences, T0 + 5 * NS_PER_DAY)
    assert ranged.slices == 3 * MINUTES < full.slices


def test_compaction_keeps_the_audits_answer_for_the_kept_range(tmp_path: Path) -> None:
    loaded = minute_config(tmp_path)
    state = tmp_path / "state"
    run_sessions(state, loaded, 8)
    late = tamper(state, 6, 5)
    before = audit(state)
    rows_before = stats(state).rows["input"]

    with Journal(state) as journal:
        done = compact(journal, keep_sessions=4, archive=True, ts=T0 + 9 * NS_PER_DAY)
        again = compact(journal, keep_sessions=4, archive=True, ts=T0 + 9 * NS_PER_DAY)
    assert done is not None
    assert again is None

    after_compaction = audit(state)
    found = stats(state)
    archived = pq.read_table(next(p for p in done.files if p.name.startswith("input-")))
    assert found.rows["input"] == rows_before - done.inputs
    assert archived.num_rows == done.inputs > 0
    assert found.compacted_through == done.through_seq
    # The kept range (4 sessions, the first of them warming the strategies) audits as before.
    assert after_compaction.differences == after(before.differences, late) != []
    assert after_compaction.slices == 3 * MINUTES
    exported = export(state, tmp_path / "out")
    assert pq.read_table(exported["input"]).num_rows == found.rows["input"]


def test_a_schema_3_journal_is_read_then_upgraded(tmp_path: Path) -> None:
    loaded = minute_config(tmp_path)
    state = tmp_path / "state"
    driver = run_sessions(state, loaded, 2)
    db = sqlite3.connect(state / JOURNAL_FILE, isolation_level=None)
    reference = sqlite3.connect(":memory:")
    try:
        drop_schema_4(db)
        reference.executescript("".join(MIGRATIONS[:3]))
        assert schema_of(db) == schema_of(reference)  # exactly a schema-3 file
    finally:
        db.close()
        reference.close()

    with JournalReader.open(state) as reader:  # a reader never migrates
        assert reader.schema_version == 3
        assert reader.snapshots() == []
        engine, _ = build_engine(loaded, SYMBOLS, TargetsListener(), trade_from_ts=2**63 - 1)
        rebuilt = rebuild_ledger(reader, engine.ledger)
        assert rebuilt.snapshot is None
        assert set(reader.restart_state().orders) <= set(reader.orders())
    # From the segment's start, as before schema 4 (marks are not inputs: high water aside).
    assert engine.ledger.cash == driver.engine.ledger.cash
    restored = LedgerSnapshot.of(engine.ledger).positions
    assert restored == LedgerSnapshot.of(driver.engine.ledger).positions
    assert audit(state).differences == []

    with Journal(state) as journal:
        assert journal.schema_version == len(MIGRATIONS)
        journal.segment = 1
        journal.snapshot(ledger=LedgerSnapshot.of(engine.ledger), session="2024-01-05", ts=T0)
    with JournalReader.open(state) as reader:
        assert [s.session for s in reader.snapshots()] == ["2024-01-05"]
        again, _ = build_engine(loaded, SYMBOLS, TargetsListener(), trade_from_ts=2**63 - 1)
        assert rebuild_ledger(reader, again.ledger).inputs == 0
    assert LedgerSnapshot.of(again.ledger) == LedgerSnapshot.of(engine.ledger)


async def test_a_stop_during_start_up_cancels_it() -> None:
    stopping = asyncio.Event()
    reached = asyncio.Event()
    cancelled = asyncio.Event()

    async def long_start() -> None:
        reached.set()
        try:
            await asyncio.Event().wait()  # a reconciliation that would take minutes
        except asyncio.CancelledError:
            cancelled.set()
            raise

    started = asyncio.create_task(start_unless_stopped(long_start(), stopping))
    async with asyncio.timeout(10):
        await reached.wait()
    stopping.set()
    async with asyncio.timeout(10):
        assert await started is False
    assert cancelled.is_set()


async def test_a_start_up_that_finishes_returns_true_and_raises_what_it_raised() -> None:
    async def quick() -> None:
        return None

    async def broken() -> None:
        raise ValueError("refused")

    assert await start_unless_stopped(quick(), asyncio.Event()) is True
    with pytest.raises(ValueError, match="refused"):
        await start_unless_stopped(broken(), asyncio.Event())


def test_a_live_runs_out_files_are_never_empty_before_its_first_slice(tmp_path: Path) -> None:
    """A kill -9 right after the start (no close, no flush of ours): every file holds its
    header on disk already; summary.json appears whole or not at all."""
    import io

    from daemon.logs import EventLog
    from daemon.recorder import Recorder

    recorder = Recorder(tmp_path / "out", EventLog(io.StringIO()), flush_each_slice=True)
    recorder.start()
    sizes = {p.name: p.stat().st_size for p in (tmp_path / "out").iterdir()}
    recorder.write_summary({"orders": 0})
    recorder.close()

    assert len(sizes) == 6
    assert all(size > 0 for size in sizes.values()), sizes
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if "partial" in p.name) == []
