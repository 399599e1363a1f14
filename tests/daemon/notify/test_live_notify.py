"""Notifications from a paper daemon trading on the sandbox, to local receivers on 127.0.0.1:
the events arrive in order, a dead receiver holds up no decision, failures are counted."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from daemon.config import load_config
from daemon.live.lifecycle import LiveDaemon
from sandbox import Sandbox
from tests.daemon.livekit import DATA, ENV, Session, live_config, quiet_log
from tests.daemon.notify.receivers import Fault, Receivers

FAST = {"backoff_min_s": 0.05, "backoff_max_s": 0.1, "timeout_s": 1.0}


async def start(
    tmp_path: Path,
    box: Sandbox,
    env: dict[str, str],
    targets: list[dict[str, Any]],
    **notify: Any,
) -> Session:
    base = live_config(tmp_path, box)
    overlay = tmp_path / "notify.yaml"
    overlay.write_text(yaml.safe_dump({"notify": {"targets": targets, **notify}}), encoding="utf-8")
    loaded = load_config([*base.files, str(overlay)])
    daemon = LiveDaemon(loaded, log=quiet_log(), env={**ENV, **env})
    session = Session(daemon, box)
    await session.started()
    return session


def counter(daemon: LiveDaemon, name: str, target: str) -> float:
    body, _ = daemon.telemetry.exposition()
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("target") == target:
                return float(sample.value)
    raise AssertionError(f"{name}{{target={target!r}}} not exposed")


async def test_the_days_events_reach_each_target_in_order(
    tmp_path: Path, sandbox: Sandbox, recorder: Any, receivers: Receivers
) -> None:
    session = await start(
        tmp_path,
        sandbox,
        receivers.env,
        [
            {"type": "slack", "stream_down_s": 0, **FAST},
            {
                "type": "webhook",
                "events": {"fills": True},
                "rate_limit": {"burst": 100, "window_s": 60},
                **FAST,
            },
        ],
    )
    daemon = session.daemon
    try:
        await receivers.wait_for("slack", 1, timeout_s=10)
        await session.step(3)
        await session.settle()
        await receivers.wait_for("hook", 2, timeout_s=10)  # started, then fills

        # The feed's socket dies and stays refused until the next minute: told, then its end.
        sandbox.faults.drop_data_socket(after_bars=0, down_steps=1)
        assert await sandbox.step()
        await receivers.wait_for("slack", 2, timeout_s=10)
        await sandbox.step()
        await session.until(lambda: daemon.feed_connected)
        await receivers.wait_for("slack", 3, timeout_s=10)

        daemon.halt()
        await receivers.wait_for("slack", 4, timeout_s=10)
        daemon.resume()
        await receivers.wait_for("slack", 5, timeout_s=10)
    finally:
        assert await session.stop() == 0
    await receivers.wait_for("slack", 6, timeout_s=10)

    slack = receivers.texts("slack")
    assert slack[0].startswith("[tradingd paper] started: mode paper, account ")
    assert slack[1].startswith("[tradingd paper] feed stream DOWN for ")
    assert slack[2].startswith("[tradingd paper] feed stream back after ")
    assert slack[3:] == [
        "[tradingd paper] trading HALTED (by operator): no new orders until resumed",
        "[tradingd paper] trading resumed (by operator)",
        "[tradingd paper] stopped: requested",
    ]
    hook = receivers.texts("hook")
    fills = [t for t in hook if "filled: buy" in t]
    assert len(fills) == daemon.engine.counters.fills > 0
    assert not [t for t in slack if "filled" in t]  # fills are off unless switched on
    assert hook[-1] == "stopped: requested"  # the webhook carries its label in its own field
    assert counter(daemon, "tradingd_notifications_sent_total", "slack") == 6
    assert counter(daemon, "tradingd_notifications_failed_total", "slack") == 0


async def test_a_dead_receiver_delays_nothing_and_is_counted(
    tmp_path: Path, sandbox: Sandbox, recorder: Any, receivers: Receivers
) -> None:
    # Slack hangs on every request; the webhook's address answers 404 (a failure, not retried).
    receivers.arm("slack", *[Fault("hang")] * 50)
    env = {**receivers.env, "TRADINGD_WEBHOOK_URL": receivers.url("/nowhere")}
    session = await start(
        tmp_path,
        sandbox,
        env,
        [
            {"type": "slack", "max_attempts": 2, **FAST},
            {"type": "webhook", "max_attempts": 2, "events": {"fills": True}, **FAST},
        ],
        stop_deadline_s=1.0,
    )
    daemon = session.daemon
    try:
        started = time.monotonic()
        await session.step(4)  # each minute decided as it comes, whatever the targets do
        await session.settle()
        assert daemon.engine.counters.fills > 0
        stepped_s = time.monotonic() - started
        async with asyncio.timeout(10):
            while counter(daemon, "tradingd_notifications_failed_total", "webhook") < 1:
                await asyncio.sleep(0.05)  # polled with a deadline: the retries' end
    finally:
        stop_started = time.monotonic()
        assert await session.stop() == 0
    stop_s = time.monotonic() - stop_started
    assert stepped_s < 5.0
    # The notifier's stop deadline bounds the wait for a hung target.
    assert stop_s < daemon.settings.notify.stop_deadline_s + 3.0
    assert counter(daemon, "tradingd_notifications_dropped_total", "slack") >= 1
    assert counter(daemon, "tradingd_notifications_sent_total", "slack") == 0
    assert receivers.texts("hook") == []


async def test_rejections_and_a_journal_failure_are_told(
    tmp_path: Path, sandbox: Sandbox, recorder: Any, receivers: Receivers
) -> None:
    session = await start(tmp_path, sandbox, receivers.env, [{"type": "slack", **FAST}])
    daemon = session.daemon
    try:
        await receivers.wait_for("slack", 1, timeout_s=10)
        sandbox.faults.reject_orders(422, "invalid qty: the test says no", times=1)
        await session.step(1)
        await session.settle()
        await receivers.wait_for("slack", 2, timeout_s=10)

        assert daemon.journal is not None
        blocker = sqlite3.connect(daemon.journal.path, isolation_level=None, timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")  # another writer: every write of the daemon fails
        try:
            await session.step(1)
            await receivers.wait_for("slack", 4, timeout_s=10)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        daemon.resume()
        await receivers.wait_for("slack", 5, timeout_s=10)
    finally:
        assert await session.stop() == 0
    texts = receivers.texts("slack")
    assert texts[1].startswith("[tradingd paper] order rejected: ")
    assert texts[1].endswith("invalid qty: the test says no")
    assert texts[2].startswith("[tradingd paper] JOURNAL FAILURE: ")
    assert texts[3:] == [
        "[tradingd paper] trading HALTED (by journal): no new orders until resumed",
        "[tradingd paper] trading resumed (by operator)",
        "[tradingd paper] stopped: requested",
    ]


@pytest.mark.slow
async def test_the_kill_switch_and_the_days_summary_are_told(
    tmp_path: Path, recorder: Any, receivers: Receivers
) -> None:
    # The sample's last session, 60 minutes in the past: played to its close.
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
        base = live_config(tmp_path, box, live={"clock_poll_s": 0.05})
        overlay = tmp_path / "notify.yaml"
        overlay.write_text(
            yaml.safe_dump(
                {
                    "risk": {"max_drawdown": 0.0001},  # the first dip trips it
                    "notify": {
                        "targets": [
                            {"type": "slack", "rate_limit": {"burst": 100, "window_s": 60}, **FAST}
                        ]
                    },
                }
            ),
            encoding="utf-8",
        )
        loaded = load_config([*base.files, str(overlay)])
        daemon = LiveDaemon(loaded, log=quiet_log(), env={**ENV, **receivers.env})
        session = Session(daemon, box)
        await session.started()
        try:
            for _ in range(60):
                if daemon.engine.risk.kill_switch:
                    break
                await session.step(1)
            assert daemon.engine.risk.kill_switch
            await receivers.wait_for("slack", 2, timeout_s=10)
            daemon.reset_kill_switch()
            await receivers.wait_for("slack", 3, timeout_s=10)
            while await box.step():  # to the close
                pass
            await session.until(lambda: not daemon.market_open)
            async with asyncio.timeout(10):
                while not [t for t in receivers.texts("slack") if " day 2024-12-09: " in t]:
                    await asyncio.sleep(0.05)  # polled with a deadline: the watch's next look
        finally:
            assert await session.stop() == 0
    finally:
        await box.close()
    texts = receivers.texts("slack")
    assert texts[1].startswith("[tradingd paper] KILL SWITCH TRIPPED: drawdown ")
    assert texts[2] == (
        "[tradingd paper] kill switch reset (by operator): new exposure is allowed again"
    )
    # Tripped again after the reset, maybe, as the dips go on.
    days = [t for t in texts if t.startswith("[tradingd paper] day 2024-12-09: P&L ")]
    assert len(days) == 1, texts
    assert f"{daemon.engine.counters.orders} orders" in days[0]
    assert texts[-1] == "[tradingd paper] stopped: requested"
