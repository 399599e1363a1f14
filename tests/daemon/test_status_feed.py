"""The status page's feed: the curve (thinned past its bound, seeded from the journal after a
restart), the last fills, today's orders and their outcome."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from brokers.orders import OrderFilled, OrderRejected, OrderSide, OrderType, SubmitOrder
from daemon.engine import Decision
from daemon.live.lifecycle import LiveDaemon
from daemon.service.status_feed import MAX_POINTS, StatusFeed
from portfolio.ledger import Ledger
from sandbox import Sandbox
from tests.daemon.livekit import ENV, Session, live_config, quiet_log, start_session

TS = 1_733_760_000_000_000_000  # 2024-12-09 16:00 UTC
MINUTE = 60 * 10**9


def decision(cid: str, ts: int, *, sent: bool = True) -> Decision:
    order = SubmitOrder(
        client_order_id=cid,
        symbol="SPY",
        side=OrderSide.BUY,
        qty=Decimal(10),
        order_type=OrderType.MARKET,
        ts=ts,
    )
    return Decision(
        slice_ts=ts,
        symbol="SPY",
        client_order_id=cid,
        signals={"s": 1.0},
        target_weight=0.5,
        current_weight=0.0,
        requested=order,
        risk="approved" if sent else "denied",
        risk_event=None,
        order=order if sent else None,
    )


def fill(cid: str, ts: int) -> OrderFilled:
    return OrderFilled(
        client_order_id=cid,
        symbol="SPY",
        side=OrderSide.BUY,
        qty=Decimal(10),
        price=Decimal("400.5"),
        commission=Decimal(0),
        ts=ts,
        execution_id=f"x-{cid}",
    )


def test_the_curve_keeps_its_bound_and_its_last_point() -> None:
    feed = StatusFeed()
    ledger = Ledger(Decimal(100_000))
    for i in range(MAX_POINTS * 3):
        feed.on_slice(TS + i * MINUTE, ledger)
    assert len(feed.points) <= MAX_POINTS
    assert feed.points[0][0] == TS
    assert feed.points[-1][0] == TS + (MAX_POINTS * 3 - 1) * MINUTE
    times = [p[0] for p in feed.points]
    assert times == sorted(set(times))
    feed.on_slice(feed.points[-1][0], ledger)  # the same slice again replaces its point
    assert feed.points[-1][0] == times[-1]
    assert len(feed.points) == len(times)


def test_orders_follow_their_outcome_and_start_afresh_each_new_york_day() -> None:
    feed = StatusFeed()
    feed.on_decision(decision("a", TS))
    feed.on_decision(decision("b", TS, sent=False))
    feed.on_decision(decision("c", TS))
    feed.on_execution(fill("a", TS + MINUTE), True)
    feed.on_execution(fill("a", TS + MINUTE), False)  # a duplicate is not a second fill
    feed.on_execution(
        OrderRejected(client_order_id="c", symbol="SPY", ts=TS + MINUTE, reason="no"), True
    )
    assert [(o["client_order_id"], o["status"]) for o in feed.orders] == [
        ("a", "filled"),
        ("b", "denied"),
        ("c", "rejected"),
    ]
    assert [f["client_order_id"] for f in feed.fills] == ["a"]
    # 16:00 UTC on the 9th, then 03:00 UTC on the 10th: still the 9th in New York.
    feed.on_decision(decision("d", TS + 11 * 60 * MINUTE))
    assert len(feed.orders) == 4
    feed.on_decision(decision("e", TS + 24 * 60 * MINUTE))
    assert [o["client_order_id"] for o in feed.orders] == ["e"]


async def test_after_a_restart_the_curve_begins_with_the_journals_runs(
    tmp_path: Path, sandbox: Sandbox, recorder: Any
) -> None:
    first = await start_session(tmp_path, sandbox)
    await first.step(3)
    await first.settle()
    equity = float(first.daemon.ledger.equity)
    assert await first.stop() == 0

    daemon = LiveDaemon(live_config(tmp_path, sandbox), log=quiet_log(), env=ENV)
    second = Session(daemon, sandbox)
    await second.started()
    try:
        points = daemon.herald.feed.points
        assert len(points) == 1  # the first run, as it began
        assert points[0][1] == 100_000.0
        await second.step(2)
        assert len(daemon.herald.feed.points) == 3
        assert daemon.herald.feed.points[0][0] < daemon.herald.feed.points[1][0]
        assert abs(daemon.herald.feed.points[1][1] - equity) < 1_000
    finally:
        assert await second.stop() == 0
