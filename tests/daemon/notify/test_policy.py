"""What a target is told and when: its switches, the rate limit and its summaries, the bounded
queue, stream outages (past a threshold, while the market is open), and what `stop` still
sends."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from brokers.orders import OrderFilled, OrderRejected, OrderSide
from daemon.service.notify import (
    DaemonStarted,
    DaemonStopped,
    Outcome,
    StreamDown,
    StreamRestored,
)
from tests.daemon.notify.conftest import LABEL, Make
from tests.daemon.notify.receivers import Receivers

FAST: dict[str, Any] = {"backoff_min_s": 0.05, "backoff_max_s": 0.2, "timeout_s": 2.0}


def _rejected(i: int) -> OrderRejected:
    return OrderRejected(client_order_id=f"td-{i:04d}", symbol="SPY", ts=i, reason="halted")


def _filled(i: int) -> OrderFilled:
    from decimal import Decimal

    return OrderFilled(
        client_order_id=f"td-{i:04d}",
        symbol="SPY",
        side=OrderSide.SELL,
        qty=Decimal(3),
        price=Decimal("501.5"),
        commission=Decimal(0),
        ts=i,
        execution_id=f"x{i}",
    )


def _plain(texts: list[str]) -> list[str]:
    return [t.removeprefix(f"[{LABEL}] ") for t in texts]


async def test_fills_are_off_by_default_and_switches_are_per_target(
    receivers: Receivers, make: Make
) -> None:
    notifications = make(
        {"type": "slack", **FAST},
        {"type": "telegram", **FAST, "events": {"fills": True, "start_stop": False}},
    )
    await notifications.start()
    notifications.notify(_filled(1))
    notifications.notify(DaemonStarted(mode="paper"))
    notifications.notify(_rejected(2))
    # Each target's queue is in order: its last message arriving means the earlier ones did.
    await receivers.wait_for("slack", 2)
    await receivers.wait_for("telegram", 2)
    assert _plain(receivers.texts("slack")) == [
        "started: mode paper, 0 symbols",
        "order rejected: SPY td-0002: halted",
    ]
    assert _plain(receivers.texts("telegram")) == [
        "filled: sell 3 SPY @ 501.5 (td-0001)",
        "order rejected: SPY td-0002: halted",
    ]


async def test_repeated_events_are_held_back_and_summarized(
    receivers: Receivers, make: Make
) -> None:
    notifications = make(
        {
            "type": "slack",
            **FAST,
            "events": {"fills": True},
            "rate_limit": {"burst": 2, "window_s": 0.5},
        }
    )
    await notifications.start()
    opened = time.monotonic()
    for i in range(1, 13):
        notifications.notify(_rejected(i))
    notifications.notify(_filled(99))  # another kind: its own window, not held back
    got = await receivers.wait_for("slack", 4)
    assert _plain([r.text for r in got]) == [
        "order rejected: SPY td-0001: halted",
        "order rejected: SPY td-0002: halted",
        "filled: sell 3 SPY @ 501.5 (td-0099)",
        "... and 10 more order rejections in the last 0.5 seconds; the last: order rejected: "
        "SPY td-0012: halted",
    ]
    assert got[3].at_s - opened >= 0.5
    assert notifications.counters.get("suppressed", "slack") == 10
    # The window closed: the next rejection opens a new one and goes out at once.
    notifications.notify(_rejected(13))
    got = await receivers.wait_for("slack", 5)
    assert got[4].text.endswith("td-0013: halted")


async def test_a_full_queue_drops_its_oldest_and_the_next_message_says_so(
    receivers: Receivers, make: Make
) -> None:
    notifications = make({"type": "discord", **FAST, "queue_size": 3, "rate_limit": {"burst": 100}})
    for i in range(1, 11):  # before start: nothing is sent yet, the queue fills
        notifications.notify(_rejected(i))
    await notifications.start()
    got = await receivers.wait_for("discord", 3)
    assert _plain([r.text for r in got]) == [
        "(7 earlier notifications were dropped: the queue was full)\n"
        "order rejected: SPY td-0008: halted",
        "order rejected: SPY td-0009: halted",
        "order rejected: SPY td-0010: halted",
    ]
    assert notifications.counters.get("dropped", "discord") == 7


async def test_stop_sends_what_is_queued_and_the_open_summaries(
    receivers: Receivers, make: Make
) -> None:
    notifications = make({"type": "slack", **FAST, "rate_limit": {"burst": 1, "window_s": 600}})
    await notifications.start()
    for i in range(1, 6):
        notifications.notify(_rejected(i))
    notifications.notify(DaemonStopped(reason="SIGTERM"))
    await notifications.stop(deadline_s=5.0)
    texts = _plain(receivers.texts("slack"))
    assert texts[:2] == ["order rejected: SPY td-0001: halted", "stopped: SIGTERM"]
    assert texts[2].startswith("... and 4 more order rejections in the last ")
    assert texts[2].endswith("the last: order rejected: SPY td-0005: halted")
    assert not notifications.running


async def test_a_short_outage_says_nothing_a_long_one_is_told_and_its_end(
    receivers: Receivers, make: Make
) -> None:
    notifications = make({"type": "telegram", **FAST, "stream_down_s": 0.3})
    await notifications.start()
    notifications.notify(StreamDown(stream="broker", reason="reconnecting"))
    notifications.notify(StreamRestored(stream="broker"))  # back before the threshold
    down_at = time.monotonic()
    notifications.notify(StreamDown(stream="feed", reason="connection closed"))
    notifications.notify(StreamDown(stream="feed", reason="again"))  # a repeat: no change
    [told] = await receivers.wait_for("telegram", 1)
    assert told.at_s - down_at >= 0.3
    assert _plain([told.text]) == [
        "feed stream DOWN for 0.3 seconds while the market is open (connection closed)"
    ]
    notifications.notify(StreamRestored(stream="feed"))
    got = await receivers.wait_for("telegram", 2)
    assert _plain([got[1].text])[0].startswith("feed stream back after 0.")
    notifications.notify(DaemonStarted(mode="paper"))  # a marker: nothing else came before it
    got = await receivers.wait_for("telegram", 3)
    assert _plain([r.text for r in got])[2] == "started: mode paper, 0 symbols"


async def test_an_outage_while_the_market_is_closed_is_told_at_the_open(
    receivers: Receivers, make: Make
) -> None:
    is_open = False
    asked = asyncio.Event()
    looks = 0

    def market_open() -> bool:
        nonlocal looks
        looks += 1
        if looks >= 3:
            asked.set()
        return is_open

    notifications = make(
        {"type": "slack", **FAST, "stream_down_s": 0.1}, market_open=market_open, market_poll_s=0.05
    )
    await notifications.start()
    notifications.notify(StreamDown(stream="feed"))
    await asyncio.wait_for(asked.wait(), 5.0)  # looked at the closed market three times
    assert receivers.texts("slack") == []
    assert receivers.attempts["slack"] == []
    is_open = True
    [told] = await receivers.wait_for("slack", 1)
    assert "feed stream DOWN for" in told.text
    assert "while the market is open" in told.text


async def test_a_listener_sees_every_count(receivers: Receivers, make: Make) -> None:
    seen: list[tuple[Outcome, str]] = []
    notifications = make({"type": "slack", **FAST, "name": "ops", "rate_limit": {"burst": 1}})
    notifications.counters.subscribe(lambda outcome, target: seen.append((outcome, target)))
    await notifications.start()
    notifications.notify(_rejected(1))
    notifications.notify(_rejected(2))
    await receivers.wait_for("slack", 1)
    await notifications.stop(deadline_s=5.0)
    assert seen == [("suppressed", "ops"), ("sent", "ops"), ("sent", "ops")]
    assert notifications.counters.snapshot() == {
        "sent": {"ops": 2},
        "failed": {"ops": 0},
        "dropped": {"ops": 0},
        "suppressed": {"ops": 1},
    }
