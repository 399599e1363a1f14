"""The deployment files: Prometheus accepts them, and they name only metrics tradingd exposes."""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian: apt-get install prometheus)"
)

# A metric name inside a PromQL expression (label values and functions never match these
# prefixes; `up` is Prometheus's own, checked separately).
_NAME = re.compile(r"\b((?:tradingd|process|python)_[A-Za-z0-9_]+)")


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def _rule_exprs() -> list[str]:
    doc = yaml.safe_load((DEPLOY / "tradingd_alerts.yml").read_text())
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DEPLOY / "grafana" / "tradingd.json").read_text())
    return doc


def _query_panels() -> list[dict[str, Any]]:
    return [p for p in _dashboard()["panels"] if p["type"] != "row"]


def _dashboard_exprs() -> list[str]:
    return [t["expr"] for p in _query_panels() for t in p["targets"]]


def _exposed_names() -> set[str]:
    """Every sample name a fresh Telemetry can expose, from its families' names and types."""
    from daemon.service.telemetry import Telemetry

    telemetry = Telemetry(mode="paper", symbols=["SPY", "QQQ"], strategies=["trend", "momentum"])
    body, _ = telemetry.exposition()
    names: set[str] = set()
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
        "gauge": ("",),
        "unknown": ("",),
        "stateset": ("",),
        "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    }
    for family in text_string_to_metric_families(body.decode()):
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def _used_names(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in _NAME.findall(expr)}


@needs_promtool
def test_promtool_accepts_the_alert_rules() -> None:
    result = _promtool("check", "rules", "tradingd_alerts.yml", cwd=DEPLOY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_accepts_the_prometheus_config_and_finds_the_rules() -> None:
    result = _promtool("check", "config", "prometheus.yml", cwd=DEPLOY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_alert_rules_cover_the_issue_and_carry_severity_and_annotations() -> None:
    doc = yaml.safe_load((DEPLOY / "tradingd_alerts.yml").read_text())
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    by_name = {rule["alert"]: rule for rule in rules}
    assert set(by_name) >= {
        "TradingdDown",
        "TradingdNotReady",
        "TradingdFeedStale",
        "TradingdFeedReconnectStorm",
        "TradingdOrdersRejected",
        "TradingdKillSwitchTripped",
        "TradingdDrawdownHigh",
        "TradingdReconciliationDifferences",
    }
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]
    assert 'up{job="tradingd"} == 0' in by_name["TradingdDown"]["expr"]
    assert by_name["TradingdDown"]["for"] == "1m"
    assert "tradingd_market_open == 1" in by_name["TradingdFeedStale"]["expr"]
    assert by_name["TradingdNotReady"]["for"] == "5m"


def test_every_metric_in_the_rules_and_dashboard_is_exposed_by_telemetry() -> None:
    used = _used_names(_rule_exprs() + _dashboard_exprs())
    assert {"tradingd_equity", "tradingd_market_open", "tradingd_ready"} <= used
    missing = sorted(used - _exposed_names())
    assert not missing, f"not in Telemetry's exposition: {missing}"


def test_up_is_only_used_for_the_tradingd_job() -> None:
    for expr in _rule_exprs() + _dashboard_exprs():
        for match in re.finditer(r"\bup\b(\{[^}]*\})?", expr):
            selector = match.group(1) or ""
            assert 'job="tradingd"' in selector, expr


def test_dashboard_is_grafana_json_with_a_datasource_input_and_targets_on_every_panel() -> None:
    dash = _dashboard()
    assert dash["schemaVersion"] == 39
    assert [i["name"] for i in dash["__inputs"]] == ["DS_PROMETHEUS"]
    panels = _query_panels()
    assert len(panels) >= 20
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
    exprs = " ".join(_dashboard_exprs())
    for needed in (
        "tradingd_equity",
        "tradingd_drawdown_ratio",
        "tradingd_gross_exposure",
        "tradingd_net_exposure",
        "tradingd_position_value",
        "tradingd_bars_accepted_total",
        "tradingd_bars_rejected_total",
        "histogram_quantile(0.95, sum by (le) (rate(tradingd_decision_latency_seconds_bucket",
        "tradingd_order_ack_seconds_bucket",
        "tradingd_order_fill_seconds_bucket",
        "tradingd_feed_connected",
        "tradingd_seconds_since_last_bar",
        "tradingd_feed_reconnects_total",
        "tradingd_kill_switch",
        "tradingd_orders_filled_total",
        "tradingd_orders_rejected_total",
    ):
        assert needed in exprs, needed


def _unit() -> dict[str, str]:
    """The [Service] keys of the systemd unit (continuation lines joined)."""
    text = (DEPLOY / "tradingd.service").read_text().replace("\\\n", " ")
    section, out = "", {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            out[key] = value
    return out


def test_systemd_unit_is_notify_with_a_watchdog_and_always_restarts() -> None:
    unit = _unit()
    assert unit["Type"] == "notify"
    assert unit["NotifyAccess"] == "main"
    assert unit["WatchdogSec"] == "30"
    assert unit["Restart"] == "always"
    assert unit["RestartSec"] == "5"
    assert unit["KillSignal"] == "SIGTERM"
    assert unit["EnvironmentFile"] == "/etc/tradingd/tradingd.env"
    assert unit["WorkingDirectory"] == "/var/lib/tradingd"
    assert unit["User"] == "tradingd"
    assert unit["ProtectSystem"] == "strict"
    assert unit["ReadWritePaths"] == "/var/lib/tradingd"
    assert unit["ExecStart"].split()[:2] == ["/opt/tradingd/.venv/bin/tradingd", "run"]


def test_dockerfile_runs_unprivileged_with_a_healthcheck_and_a_state_volume() -> None:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    first = {line.split()[0] for line in instructions}
    assert {"USER", "HEALTHCHECK", "VOLUME", "EXPOSE", "WORKDIR", "ENTRYPOINT"} <= first
    assert instructions[0] == "FROM python:3.11-slim"
    assert "USER tradingd" in instructions
    assert 'VOLUME ["/var/lib/tradingd"]' in instructions
    assert "WORKDIR /var/lib/tradingd" in instructions
    assert "EXPOSE 9108" in instructions
    health = next(line for line in instructions if line.startswith("HEALTHCHECK"))
    assert "urllib.request" in health
    assert "/healthz" in health
    assert 'ENTRYPOINT ["tradingd", "run"]' in instructions
    # The keys come from the environment at run time, never baked into the image.
    assert "APCA_API_SECRET_KEY" not in " ".join(i for i in instructions if i.startswith("ENV"))


class _Daemon:
    """A DaemonControl whose liveness the test sets."""

    mode = "paper"

    def __init__(self, *, alive: bool) -> None:
        self._alive = alive

    def alive(self) -> bool:
        return self._alive

    def readiness(self) -> dict[str, bool]:
        return {"feed": self._alive}

    def state(self) -> dict[str, Any]:
        return {}

    def halt(self) -> dict[str, Any]:
        return {}

    def resume(self) -> dict[str, Any]:
        return {}

    def flatten(self) -> dict[str, Any]:
        return {}

    def reset_kill_switch(self) -> dict[str, Any]:
        return {}


@pytest.mark.parametrize(("alive", "healthy"), [(True, True), (False, False)])
async def test_docker_healthcheck_command_follows_healthz(alive: bool, healthy: bool) -> None:
    from daemon.logs import EventLog
    from daemon.service.http import HttpServer
    from daemon.service.telemetry import Telemetry

    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    match = re.search(r"^HEALTHCHECK .*? CMD (\[.*\])$", text, re.MULTILINE)
    assert match is not None
    cmd = json.loads(match[1])
    assert cmd[:2] == ["python", "-c"]
    telemetry = Telemetry(mode="paper", symbols=["SPY"], strategies=["trend"])
    server = HttpServer(_Daemon(alive=alive), telemetry, log=EventLog(io.StringIO()), port=0)
    await server.start()
    try:
        code = cmd[2].replace("127.0.0.1:9108", f"127.0.0.1:{server.port}")
        assert code != cmd[2]
        probe = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stderr=asyncio.subprocess.DEVNULL
        )
        returncode = await asyncio.wait_for(probe.wait(), 30)
    finally:
        await server.close()
    assert (returncode == 0) is healthy


def test_env_example_names_the_keys_and_the_control_token() -> None:
    lines = (DEPLOY / "tradingd.env.example").read_text().splitlines()
    names = {line.split("=", 1)[0] for line in lines if line and not line.startswith("#")}
    assert names == {"APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "TRADINGD_CONTROL_TOKEN"}
