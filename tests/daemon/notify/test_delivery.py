"""Notifications against local stand-ins of Slack, Discord, Telegram and a webhook: the right
messages arrive in order within a bound, each service's 429 is waited out its own way, 5xx and
hangs are retried, refusals are not, and a dead receiver delays neither the caller nor the
other targets."""

from __future__ import annotations

import statistics
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from brokers.orders import OrderFilled, OrderRejected, OrderSide
from daemon.service.notify import (
    DaemonStarted,
    DaemonStopped,
    DaySummary,
    NotifyEvent,
)
from portfolio.events import KillSwitchTripped
from tests.daemon.notify.conftest import LABEL, Logged, Make
from tests.daemon.notify.receivers import (
    CHAT_ID,
    DISCORD_SECRET,
    HOOK_TOKEN,
    SLACK_SECRET,
    TELEGRAM_TOKEN,
    Fault,
    Receivers,
)
from tests.ports import free_port

FAST: dict[str, Any] = {"backoff_min_s": 0.05, "backoff_max_s": 0.2, "timeout_s": 2.0}
NO_LIMIT: dict[str, Any] = {"rate_limit": {"burst": 10_000, "window_s": 60}}
ALL_FOUR: tuple[str, ...] = ("slack", "discord", "telegram", "hook")
# Local delivery of one message, retries aside, takes milliseconds; this is the bound.
ARRIVAL_BOUND_S = 2.0


def _targets(**extra: Any) -> list[dict[str, Any]]:
    return [
        {"type": "slack", **FAST, **extra},
        {"type": "discord", **FAST, **extra},
        {"type": "telegram", **FAST, **extra},
        {"type": "webhook", "token_env": "TRADINGD_WEBHOOK_TOKEN", **FAST, **extra},
    ]


def _rejected(i: int) -> OrderRejected:
    return OrderRejected(
        client_order_id=f"td-{i:04d}", symbol="SPY", ts=i, reason="insufficient buying power"
    )


def _filled(i: int) -> OrderFilled:
    return OrderFilled(
        client_order_id=f"td-{i:04d}",
        symbol="QQQ",
        side=OrderSide.BUY,
        qty=Decimal(10),
        price=Decimal("450.25"),
        commission=Decimal(0),
        ts=i,
        execution_id=f"x{i}",
    )


async def test_every_service_gets_the_messages_in_order(receivers: Receivers, make: Make) -> None:
    notifications = make(*_targets(events={"fills": True}, **NO_LIMIT))
    events: list[NotifyEvent] = [
        DaemonStarted(mode="paper", account="PA123", symbols=("SPY", "QQQ")),
        _rejected(1),
        _filled(2),
        KillSwitchTripped(
            ts=3, reason="daily_loss", equity=Decimal("94000"), value=0.061, limit=0.05
        ),
        DaySummary(
            day=date(2024, 5, 1),
            pnl=Decimal("-1234.5"),
            equity=Decimal("98765.5"),
            orders=12,
            fills=10,
            rejected=1,
            max_drawdown=0.012,
        ),
        DaemonStopped(reason="SIGTERM"),
    ]
    await notifications.start()
    sent_at = time.monotonic()
    for event in events:
        notifications.notify(event)
    for service in ALL_FOUR:
        got = await receivers.wait_for(service, len(events))
        assert max(r.at_s for r in got) - sent_at < ARRIVAL_BOUND_S
    expected = [
        "started: mode paper, account PA123, 2 symbols",
        "order rejected: SPY td-0001: insufficient buying power",
        "filled: buy 10 QQQ @ 450.25 (td-0002)",
        "KILL SWITCH TRIPPED: daily loss 6.1% reached the limit 5.0%; equity 94,000.00. New "
        "exposure is denied until `tradingd ctl reset`.",
        "day 2024-05-01: P&L -1,234.50, equity 98,765.50; 12 orders, 10 fills, 1 rejected; max "
        "drawdown 1.2%",
        "stopped: SIGTERM",
    ]
    for service in ("slack", "discord", "telegram"):
        assert receivers.texts(service) == [f"[{LABEL}] {text}" for text in expected]
    assert receivers.texts("hook") == expected
    telegram = [r.body for r in receivers.received if r.service == "telegram"]
    assert {b["chat_id"] for b in telegram} == {CHAT_ID}
    discord = [r.body for r in receivers.received if r.service == "discord"]
    assert all(b["allowed_mentions"] == {"parse": []} for b in discord)
    hook = [r for r in receivers.received if r.service == "hook"]
    assert hook[0].headers["Authorization"] == f"Bearer {HOOK_TOKEN}"
    assert [r.body["kind"] for r in hook] == [
        "start_stop",
        "rejected",
        "fills",
        "kill_switch",
        "day_summary",
        "start_stop",
    ]
    assert hook[2].body["event"] == "OrderFilled"
    assert hook[2].body["data"]["price"] == "450.25"  # Decimals exact, as strings
    assert hook[4].body["data"]["day"] == "2024-05-01"
    assert hook[0].body["source"] == LABEL
    noticed = datetime.strptime(hook[0].body["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(noticed.timestamp() - time.time()) < 60
    assert notifications.counters.snapshot()["sent"] == dict.fromkeys(notifications.targets, 6)
    assert notifications.counters.snapshot()["failed"] == dict.fromkeys(notifications.targets, 0)


async def test_each_services_429_is_waited_out_as_it_asks(
    receivers: Receivers, make: Make, logged: Logged
) -> None:
    # Slack and Telegram say whole seconds (header; body); Discord says 0.3 in its body and
    # a rounded-up 1 in the header: the body's precise value is the one to wait.
    receivers.arm("slack", Fault("429", retry_after_s=1.0))
    receivers.arm("discord", Fault("429", retry_after_s=0.3))
    receivers.arm("telegram", Fault("429", retry_after_s=1.0))
    receivers.arm("hook", Fault("429", retry_after_s=0.3))  # a 503 with Retry-After: 0.3
    notifications = make(*_targets())
    await notifications.start()
    notifications.notify(DaemonStarted(mode="paper"))
    for service in ALL_FOUR:
        await receivers.wait_for(service, 1, timeout_s=5.0)
    waited = {s: receivers.attempts[s][1] - receivers.attempts[s][0] for s in ALL_FOUR}
    assert 1.0 <= waited["slack"] < 1.0 + ARRIVAL_BOUND_S
    assert 1.0 <= waited["telegram"] < 1.0 + ARRIVAL_BOUND_S
    assert 0.3 <= waited["discord"] < 0.9
    assert 0.3 <= waited["hook"] < 0.3 + ARRIVAL_BOUND_S
    retries = {r["target"]: r["wait_s"] for r in logged.events("notification_retry")}
    assert retries == {"slack": 1.0, "discord": 0.3, "telegram": 1.0, "webhook": 0.3}
    assert notifications.counters.snapshot()["failed"] == dict.fromkeys(notifications.targets, 0)


async def test_a_5xx_is_retried_with_backoff_and_no_secret_is_logged(
    receivers: Receivers, make: Make, logged: Logged
) -> None:
    # The 500's body echoes the request path: the webhook's secret and the bot's token.
    receivers.arm("slack", Fault("500"), Fault("500"))
    receivers.arm("telegram", Fault("500"), Fault("500"))
    notifications = make(*_targets())
    await notifications.start()
    notifications.notify(_rejected(1))
    for service in ("slack", "telegram"):
        await receivers.wait_for(service, 1)
        assert len(receivers.attempts[service]) == 3
    retries = logged.events("notification_retry")
    assert len(retries) == 4
    assert all("HTTP 500: internal error handling" in r["error"] for r in retries)
    assert "***" in retries[0]["error"]
    for secret in (SLACK_SECRET, TELEGRAM_TOKEN, DISCORD_SECRET, HOOK_TOKEN):
        assert secret not in logged.text
    counts = notifications.counters.snapshot()
    assert counts["sent"]["slack"] == 1
    assert counts["failed"]["slack"] == 0


async def test_a_target_failing_every_try_is_logged_counted_and_goes_on(
    receivers: Receivers, make: Make, logged: Logged
) -> None:
    receivers.arm("telegram", Fault("500"), Fault("500"), Fault("500"))
    notifications = make({"type": "telegram", **FAST, "max_attempts": 3})
    await notifications.start()
    notifications.notify(_rejected(1))
    notifications.notify(_rejected(2))
    got = await receivers.wait_for("telegram", 1)
    assert [r.text for r in got] == [
        f"[{LABEL}] order rejected: SPY td-0002: insufficient buying power"
    ]
    assert len(receivers.attempts["telegram"]) == 4
    failed = logged.events("notification_failed")
    assert [(f["target"], f["kind"]) for f in failed] == [("telegram", "rejected")]
    assert TELEGRAM_TOKEN not in logged.text
    assert notifications.counters.get("failed", "telegram") == 1
    assert notifications.counters.get("sent", "telegram") == 1


async def test_a_refusal_is_not_retried(receivers: Receivers, make: Make, logged: Logged) -> None:
    receivers.arm("slack", Fault("400"))
    receivers.arm("telegram", Fault("400"))
    notifications = make({"type": "slack", **FAST}, {"type": "telegram", **FAST})
    await notifications.start()
    notifications.notify(_rejected(1))
    notifications.notify(_rejected(2))
    for service in ("slack", "telegram"):
        got = await receivers.wait_for(service, 1)
        assert "td-0002" in got[0].text
        assert len(receivers.attempts[service]) == 2  # one each: the refused one not again
    errors = {f["target"]: f["error"] for f in logged.events("notification_failed")}
    assert errors == {
        "slack": "HTTP 400: invalid_payload",
        "telegram": "HTTP 400: 400 Bad Request: chat not found",
    }
    assert logged.events("notification_retry") == []


async def test_a_hung_receiver_times_out_and_the_retry_delivers(
    receivers: Receivers, make: Make, logged: Logged
) -> None:
    receivers.arm("discord", Fault("hang"))
    notifications = make({"type": "discord", **{**FAST, "timeout_s": 0.3}})
    await notifications.start()
    sent_at = time.monotonic()
    notifications.notify(_rejected(1))
    got = await receivers.wait_for("discord", 1)
    # One timeout, one backoff (at most backoff_min_s), then the answer.
    assert 0.3 <= got[0].at_s - sent_at < 0.3 + 0.05 + ARRIVAL_BOUND_S
    [retry] = logged.events("notification_retry")
    assert retry["error"] == "no answer within 0.3 s"


async def test_a_dead_receiver_delays_neither_the_caller_nor_another_target(
    receivers: Receivers, make: Make
) -> None:
    receivers.arm("slack", *[Fault("hang")] * 5)
    env = {**receivers.env, "TRADINGD_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/hook"}
    notifications = make(
        {"type": "slack", **NO_LIMIT, "timeout_s": 30.0, "queue_size": 50},  # hangs
        {"type": "webhook", **NO_LIMIT, **FAST, "queue_size": 50},  # connection refused
        {"type": "telegram", **NO_LIMIT, **FAST, "queue_size": 1000},  # healthy
        env=env,
    )
    await notifications.start()
    n = 500
    calls_ns: list[int] = []
    sent_at = time.monotonic()
    for i in range(n):
        start = time.perf_counter_ns()
        notifications.notify(_rejected(i))
        calls_ns.append(time.perf_counter_ns() - start)
    got = await receivers.wait_for("telegram", n, timeout_s=30.0)
    took_s = max(r.at_s for r in got) - sent_at
    assert [r.text.split()[5] for r in got] == [f"td-{i:04d}:" for i in range(n)]
    assert len(receivers.attempts["slack"]) == 1  # still hung on its first message
    assert notifications.counters.get("dropped", "slack") == n - 50
    median_us = statistics.median(calls_ns) / 1000
    p99_us = sorted(calls_ns)[int(n * 0.99)] / 1000
    print(
        f"notify(): median {median_us:.1f} us, p99 {p99_us:.1f} us; "
        f"telegram got {n} in {took_s:.2f} s"
    )
    assert median_us < 100
    assert p99_us < 1000
    assert took_s < 10.0


async def test_a_wait_longer_than_the_target_holds_its_queue_fails_at_once(
    receivers: Receivers, make: Make, logged: Logged
) -> None:
    receivers.arm("discord", Fault("429", retry_after_s=3600.0))
    notifications = make({"type": "discord", **FAST, "max_retry_after_s": 60})
    await notifications.start()
    notifications.notify(_rejected(1))
    notifications.notify(_rejected(2))
    got = await receivers.wait_for("discord", 1)
    assert "td-0002" in got[0].text
    assert len(receivers.attempts["discord"]) == 2  # no second try of the first
    [failed] = logged.events("notification_failed")
    assert failed["error"].endswith("(asked to wait 3600 s, over max_retry_after_s 60)")


async def test_stop_keeps_its_deadline_with_a_hung_target(
    receivers: Receivers, make: Make, logged: Logged
) -> None:
    receivers.arm("slack", Fault("hang"))
    notifications = make({"type": "slack", "timeout_s": 30.0}, {"type": "telegram", **FAST})
    await notifications.start()
    notifications.notify(_rejected(1))
    notifications.notify(DaemonStopped(reason="SIGTERM"))
    await receivers.wait_attempts("slack", 1)
    started = time.monotonic()
    await notifications.stop(deadline_s=0.5)
    assert time.monotonic() - started < 0.5 + ARRIVAL_BOUND_S
    assert len(receivers.texts("telegram")) == 2  # the healthy target got everything
    [unsent] = logged.events("notifications_unsent")
    assert (unsent["target"], unsent["count"]) == ("slack", 1)
    assert notifications.counters.get("dropped", "slack") == 1
