"""The notifier's counts on /metrics: one series per configured target from the start, and an
exposition promtool accepts."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.service.notify import NotifyCounters
from daemon.service.telemetry import Telemetry


def telemetry_with(counters: NotifyCounters) -> Telemetry:
    t = Telemetry(mode="paper", symbols=["SPY"], strategies=["s"])
    t.count_notifications(counters)
    return t


def samples(t: Telemetry) -> dict[tuple[str, str], float]:
    body, _ = t.exposition()
    return {
        (s.name, s.labels["target"]): s.value
        for family in text_string_to_metric_families(body.decode())
        if family.name.startswith("tradingd_notifications_")
        for s in family.samples
    }


def test_every_target_and_outcome_is_a_counter_from_zero() -> None:
    counters = NotifyCounters(["phone", "slack"])
    t = telemetry_with(counters)
    found = samples(t)
    for outcome in ("sent", "failed", "dropped", "suppressed"):
        for target in ("phone", "slack"):
            assert found[(f"tradingd_notifications_{outcome}_total", target)] == 0
    counters.count("sent", "slack", 3)
    counters.count("failed", "phone")
    found = samples(t)
    assert found[("tradingd_notifications_sent_total", "slack")] == 3
    assert found[("tradingd_notifications_failed_total", "phone")] == 1


def test_promtool_accepts_the_notification_families() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus): cannot lint metrics")
    counters = NotifyCounters(["phone", "slack"])
    counters.count("failed", "phone")
    body, _ = telemetry_with(counters).exposition()
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, check=False
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    assert not result.stdout.strip(), result
    assert not result.stderr.strip(), result
