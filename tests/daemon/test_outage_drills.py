"""Outage drills against `tradingd sandbox` (issue 10, "Done means"): after each outage every
order that reached the broker was decided less than `live.max_decision_age_s` (market time)
before the broker created it, the orders sent on recovery are one rebalance at most, positions
and cash are the sandbox's, and `tradingd audit` finds 0 differences.

Each drill prints one `drill_figures` line (run with -s to see them): the orders sent on
recovery and the largest decision age the broker saw. Ages are measured at the sandbox: the
market time it created the order at, minus the decision time the journal holds for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import string
from pathlib import Path
from typing import Any

import orjson
import pytest

from daemon.live.lifecycle import LiveDaemon
from daemon.live.loop import EngineLoop
from daemon.live.recovery import positions_of
from feeds.synth import write_synthetic
from portfolio.journal import JournalReader
from sandbox import Sandbox
from tests.daemon.livekit import ENV, Session, live_config, quiet_log, start_session
from tests.daemon.test_drills import BUSY, audit_cli, held_slices, journal_fills, sandbox_fills

MAX_AGE_S = 30.0  # the default: half a bar
NS = 1_000_000_000


@dataclasses.dataclass(frozen=True, slots=True)
class Figures:
    drill: str
    orders_sent: int
    recovery_orders: int
    recovery_decisions: int
    max_age_s: float
    never_sent: dict[str, int]


def decided_at(state: Path) -> dict[str, int]:
    """Client order id -> its decision time (market time, UTC ns), from the journal."""
    with JournalReader.open(state) as journal:
        return {
            order.client_order_id: order.ts
            for segment in journal.segments()
            for record in journal.decisions(segment.id).values()
            for order in record.orders
        }


def ages_s(box: Sandbox, state: Path) -> dict[str, float]:
    """Seconds from each order's decision to its creation at the broker (market time)."""
    decided = decided_at(state)
    return {
        o.client_order_id: (o.created_ns - decided[o.client_order_id]) / NS
        for o in box.account.orders.values()
    }


async def minute(session: Session) -> None:
    """One market minute at a real pace: decided, and its orders out before the next."""
    await session.step()
    broker = session.daemon.broker
    await session.until(lambda: broker.health().in_flight == 0)


async def finish(
    session: Session, box: Sandbox, state: Path, drill: str, before: set[str]
) -> Figures:
    """Halt, let the last orders fill, stop; check the books and the audit; the figures.

    Args:
        before: the client order ids the broker had when the outage was under way (the ones
            it gets after are the recovery's, up to the first slice that sent).
    """
    daemon = session.daemon
    recovery = [cid for cid in box.orders_created if cid not in before]
    daemon.halt()
    await session.settle()
    assert await session.stop() == 0, session.log_tail()
    ages = ages_s(box, state)
    decided = decided_at(state)
    summary = orjson.loads((daemon.out_dir / "summary.json").read_bytes())
    out = summary["orders_out"]
    figures = Figures(
        drill=drill,
        orders_sent=len(ages),
        recovery_orders=len(recovery),
        recovery_decisions=len({decided[cid] for cid in recovery}),
        max_age_s=max(ages.values(), default=0.0),
        never_sent=out["never_sent_by_reason"],
    )
    print("drill_figures", orjson.dumps(dataclasses.asdict(figures)).decode())
    assert ages, "the drill placed no order"
    assert figures.max_age_s < MAX_AGE_S, ages
    assert figures.recovery_decisions <= 1, recovery
    assert figures.recovery_orders <= len(box.symbols)
    assert max(box.orders_created.values()) == 1
    assert positions_of(daemon.ledger) == {s: q for s, q in box.positions.items() if q}
    assert daemon.ledger.cash == box.cash
    assert journal_fills(state) == sandbox_fills(box)
    assert out["sent"] + out["never_sent"] <= daemon.engine.counters.orders
    audit = await audit_cli(state)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "0 differences" in audit.stdout
    return figures


async def busy_session(tmp_path: Path, box: Sandbox, **live: Any) -> Session:
    session = await start_session(tmp_path, box, strategies=BUSY, live=live or None)
    for _ in range(3):
        await minute(session)
    return session


@pytest.mark.parametrize("turn_s", [None, 0.0], ids=["turns", "a-bar-a-turn"])
async def test_drill_a_30_minute_data_outage(
    tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, turn_s: float | None
) -> None:
    if turn_s is not None:
        # The backfill is fed one bar per turn of the engine's task, the stream's bars of the
        # minutes after it queued behind: the same catch-up, the same books, audited.
        monkeypatch.setattr("daemon.live.turns.INPUT_S", turn_s)
    session = await busy_session(tmp_path, sandbox)
    daemon = session.daemon
    # /readyz's "backfilled" at each turn of the catch-up: not ready until it is over.
    backfilled_at_turns: list[bool] = []
    feed = EngineLoop._catch_up

    def watched(loop: EngineLoop) -> None:
        backfilled_at_turns.append(daemon.readiness()["backfilled"])
        feed(loop)

    monkeypatch.setattr(EngineLoop, "_catch_up", watched)
    before = set(sandbox.orders_created)
    sandbox.faults.drop_data_socket(after_bars=1, down_steps=30)
    assert await sandbox.step(31)  # the drop's minute, then 30 refused
    gap_end = sandbox.last_minute_ns or 0
    await session.until(lambda: gap_end in daemon.slices.symbols)
    await session.until(lambda: daemon.broker.health().in_flight == 0)
    assert daemon.market.counters.backfilled_bars >= 30 * len(sandbox.symbols)
    assert backfilled_at_turns
    assert not any(backfilled_at_turns)
    if turn_s == 0.0:
        assert len(backfilled_at_turns) >= 30 * len(sandbox.symbols)  # a turn per bar
    held = held_slices(tmp_path / "state")
    assert set(held.values()) == {"catch_up"}
    assert len(held) >= 29
    figures = await finish(session, sandbox, tmp_path / "state", "data outage 30 min", before)
    assert figures.recovery_decisions == 1  # BUSY trades every minute: recovery traded once


async def test_drill_a_406_wait(tmp_path: Path, sandbox: Sandbox) -> None:
    session = await busy_session(tmp_path, sandbox, connection_limit_backoff_s=1.0)
    daemon = session.daemon
    before = set(sandbox.orders_created)
    sandbox.faults.refuse_data(406)
    sandbox.faults.drop_data_socket()
    assert await sandbox.step()  # cut: the reconnect is refused with 406 and waits
    await session.until(lambda: not daemon.feed_connected)
    assert await sandbox.step(10)
    last = sandbox.last_minute_ns or 0
    await session.until(lambda: last in daemon.slices.symbols)
    await session.until(lambda: daemon.broker.health().in_flight == 0)
    assert "connection_limit" in session.log_tail(400)
    await finish(session, sandbox, tmp_path / "state", "406 wait", before)


async def test_drill_a_trade_stream_outage_while_orders_fill(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    session = await busy_session(tmp_path, sandbox)
    daemon = session.daemon
    broker = daemon.broker
    assert daemon.engine.order_book.open_orders  # they fill at the next open
    sandbox.faults.drop_trade_socket(hold=True)
    await session.until(lambda: not broker.health().stream_connected)
    for _ in range(5):  # the open orders fill unheard; slices decided meanwhile send nothing
        await session.step()
    before = set(sandbox.orders_created)
    held = {s: q for s, q in sandbox.positions.items() if q}
    await session.until(lambda: positions_of(daemon.ledger) == held)  # polled through REST
    assert not broker.health().stream_connected
    sandbox.faults.restore_trade_socket()
    await session.until(lambda: broker.health().reconciled)
    await minute(session)
    await finish(session, sandbox, tmp_path / "state", "trade stream outage", before)


async def test_drill_a_rest_outage(tmp_path: Path, sandbox: Sandbox) -> None:
    session = await busy_session(tmp_path, sandbox)
    daemon = session.daemon
    sandbox.faults.fail_rest(503, times=1_000_000)
    await session.step()  # decides; its POSTs fail
    await session.until(lambda: not daemon.readiness()["broker_rest"])
    for _ in range(5):
        await session.step()
    before = set(sandbox.orders_created)
    sandbox.faults.restore_rest()
    await session.until(lambda: daemon.readiness()["broker_rest"])
    await session.until(lambda: daemon.broker.health().in_flight == 0)
    await minute(session)
    await finish(session, sandbox, tmp_path / "state", "REST outage", before)


async def test_drill_a_silent_socket_of_10_minutes_is_backfilled(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    session = await busy_session(tmp_path, sandbox, silence_s=1.0)
    daemon = session.daemon
    first = (sandbox.last_minute_ns or 0) + 60 * NS
    before = set(sandbox.orders_created)
    sandbox.faults.silence_data()
    assert await sandbox.step(10)  # the open socket hears none of it
    last = sandbox.last_minute_ns or 0
    await session.until(lambda: last in daemon.slices.symbols)
    minutes = range(first, last + 1, 60 * NS)
    assert len(minutes) == 10
    n = len(sandbox.symbols)
    assert {m: daemon.slices.symbols.get(m) for m in minutes} == dict.fromkeys(minutes, n)
    await session.until(lambda: daemon.broker.health().in_flight == 0)
    await finish(session, sandbox, tmp_path / "state", "silent socket 10 min", before)


# -- a universe larger than the rate limit ------------------------------------------------------

N_SYMBOLS = 500
SMALL_LIMIT = 60  # requests a minute: far fewer than the orders one slice decides


def universe(n: int) -> list[str]:
    return [
        "".join(t) for t in itertools.islice(itertools.product(string.ascii_uppercase, repeat=3), n)
    ]


@pytest.mark.slow
async def test_drill_500_symbols_decide_more_orders_than_the_limiter_sends(
    tmp_path: Path,
) -> None:
    symbols = universe(N_SYMBOLS)
    data = tmp_path / "bars"
    write_synthetic(data, symbols=symbols, sessions=1, seed=7)
    box = Sandbox(data, speed=None, warm_minutes=30, key="test-key", secret="test-secret")
    await box.start()
    try:
        loaded = live_config(
            tmp_path,
            box,
            symbols=symbols,
            data=data,
            strategies=BUSY,
            rebalance={"no_trade_band": 0.0, "min_trade_notional": 1},
            live={"max_requests_per_minute": SMALL_LIMIT, "slice_grace_s": 30},
        )
        daemon = LiveDaemon(loaded, log=quiet_log(), env=ENV)
        session = Session(daemon, box)
        await session.started()
        assert "order_rate_above_limit" in session.log_tail(400)
        rest = daemon.rest
        broker = daemon.broker

        def quiet() -> bool:
            """The limiter holds every order back for a while, and no POST is under way."""
            health = broker.health()
            return rest.wait_s() > 5.0 and health.in_flight == health.unsent

        unsent: list[int] = []
        for _ in range(4):
            await session.step()
            # The sandbox's clock moves a whole minute at a step: the next step comes only
            # while the limiter holds every order back for a while (a POST racing the step
            # would be created a minute after its decision, which a market's clock never shows).
            await _polled(quiet)
            health = daemon.broker.health()
            unsent.append(health.unsent)
            assert health.unsent <= N_SYMBOLS
            assert health.in_flight <= N_SYMBOLS + 1
        decided = daemon.engine.counters.orders
        assert decided > SMALL_LIMIT
        assert await session.stop() == 0, session.log_tail()
        ages = ages_s(box, tmp_path / "state")
        summary = orjson.loads((daemon.out_dir / "summary.json").read_bytes())
        out = summary["orders_out"]
        figures = {
            "drill": "500 symbols",
            "orders_decided": decided,
            "orders_sent": out["sent"],
            "never_sent": out["never_sent_by_reason"],
            "unsent_after_each_slice": unsent,
            "max_age_s": max(ages.values(), default=0.0),
        }
        print("drill_figures", orjson.dumps(figures).decode())
        assert ages
        assert max(ages.values()) < MAX_AGE_S
        assert out["sent"] == len(box.orders_created)
        # Every order decided was sent or never sent, and the stop says which.
        assert out["sent"] + out["never_sent"] == decided
        assert out["in_flight"] == 0
    finally:
        await box.close()


async def _polled(predicate: Any, deadline_s: float = 60.0) -> None:
    """Wait for `predicate()`, looked at every 20 ms up to `deadline_s`: the limiter's state
    changes with time and with a POST's answer, neither of which is a step of the daemon."""
    async with asyncio.timeout(deadline_s):
        while not predicate():
            await asyncio.sleep(0.02)
