"""deploy/alertmanager.yml: amtool accepts it, every shipped rule routes by its severity, its
secrets stay out of the file where Alertmanager allows, and a real Alertmanager delivers a
critical alert to all four kinds of receiver (a warning to all but the phone), here to the
local stand-ins of Slack, Discord, Telegram and a webhook."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.daemon.notify.receivers import CHAT_ID, HOOK_TOKEN, TELEGRAM_TOKEN, Receivers
from tests.ports import free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CONFIG = DEPLOY / "alertmanager.yml"
AMTOOL = shutil.which("amtool")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
needs_amtool = pytest.mark.skipif(
    AMTOOL is None, reason="amtool not installed (Debian: apt-get install prometheus-alertmanager)"
)
DEADLINE_S = 30.0
# The placeholders the installer replaces (deploy/README.md shows the command).
DISCORD_PLACEHOLDER = (
    "https://discord.com/api/webhooks/REPLACE_DISCORD_WEBHOOK_ID/REPLACE_DISCORD_WEBHOOK_TOKEN"
)
TELEGRAM_PLACEHOLDER = "REPLACE_TELEGRAM_BOT_TOKEN"
CHAT_PLACEHOLDER = "-1000000000001"


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert AMTOOL is not None
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=60, check=False)


def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return doc


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((DEPLOY / "tradingd_alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


@needs_amtool
def test_amtool_accepts_the_shipped_config() -> None:
    result = _amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_amtool
@pytest.mark.parametrize("rule", _rules(), ids=lambda r: str(r["alert"]))
def test_every_shipped_rule_routes_by_its_severity(rule: dict[str, Any]) -> None:
    severity = rule["labels"]["severity"]
    assert severity in ("critical", "warning")
    result = _amtool(
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        f"alertname={rule['alert']}",
        f"severity={severity}",
        "instance=127.0.0.1:9108",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == severity


def test_the_receivers_cover_the_four_kinds_and_keep_secrets_in_files() -> None:
    receivers = {r["name"]: r for r in _doc()["receivers"]}
    critical, warning = receivers["critical"], receivers["warning"]
    kinds = ("slack_configs", "discord_configs", "telegram_configs", "webhook_configs")
    assert all(critical.get(kind) for kind in kinds)
    assert "telegram_configs" not in warning  # warnings do not buzz the phone
    assert all(warning.get(kind) for kind in kinds if kind != "telegram_configs")
    for receiver in receivers.values():
        for slack in receiver["slack_configs"]:
            assert "api_url" not in slack
            assert slack["api_url_file"].startswith("/etc/prometheus/secrets/")
        for hook in receiver["webhook_configs"]:
            auth = hook["http_config"]["authorization"]
            assert "credentials" not in auth
            assert auth["credentials_file"].startswith("/etc/prometheus/secrets/")
    # The two without a file form in Alertmanager 0.25 hold placeholders, never a real value.
    assert critical["discord_configs"][0]["webhook_url"] == DISCORD_PLACEHOLDER
    assert critical["telegram_configs"][0]["bot_token"] == TELEGRAM_PLACEHOLDER


# -- a real Alertmanager ----------------------------------------------------------------------


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    box = Receivers()
    await box.start()
    try:
        yield box
    finally:
        await box.close()


def _render(receivers: Receivers, tmp_path: Path) -> Path:
    """The shipped config as an installer would fill it, pointed at the local receivers; the
    timings shortened so the test waits seconds, not minutes (the routes are untouched)."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    env = receivers.env
    (secrets / "slack_url").write_text(env["TRADINGD_SLACK_URL"])
    (secrets / "webhook_token").write_text(HOOK_TOKEN)
    text = CONFIG.read_text()
    text = text.replace(DISCORD_PLACEHOLDER, env["TRADINGD_DISCORD_URL"])
    text = text.replace(TELEGRAM_PLACEHOLDER, TELEGRAM_TOKEN)
    text = text.replace(CHAT_PLACEHOLDER, CHAT_ID)
    text = text.replace("/etc/prometheus/secrets/", f"{secrets}/")
    text = text.replace("http://127.0.0.1:9095/tradingd-alerts", env["TRADINGD_WEBHOOK_URL"])
    doc = yaml.safe_load(text)
    doc["route"].update(group_wait="1s", group_interval="1s")
    for config in doc["receivers"][0]["telegram_configs"]:
        config["api_url"] = receivers.url("/telegram")
    rendered = tmp_path / "alertmanager.yml"
    rendered.write_text(yaml.safe_dump(doc, sort_keys=False))
    return rendered


def _alert(name: str, severity: str) -> dict[str, Any]:
    return {
        "labels": {
            "alertname": name,
            "severity": severity,
            "instance": "127.0.0.1:9108",
            "job": "tradingd",
        },
        "annotations": {"summary": f"{name} on 127.0.0.1:9108", "description": "a test alert"},
    }


async def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "alertmanager exited"
            try:
                async with session.get(f"{url}/-/ready") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("alertmanager not ready in time")


@pytest.mark.slow
@pytest.mark.skipif(
    ALERTMANAGER is None,
    reason="alertmanager not installed (Debian: apt-get install prometheus-alertmanager)",
)
async def test_a_real_alertmanager_routes_the_rules_to_every_kind_of_receiver(
    receivers: Receivers, tmp_path: Path
) -> None:
    assert ALERTMANAGER is not None
    config = _render(receivers, tmp_path)
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("wb")
    proc = subprocess.Popen(  # stopped by its PID (terminate) below
        [
            ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip port: one instance, loopback only
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(url, proc)
        alerts = [
            _alert("TradingdKillSwitchTripped", "critical"),
            _alert("TradingdOrdersRejected", "warning"),
        ]
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{url}/api/v2/alerts", json=alerts) as response,
        ):
            assert response.status == 200, await response.text()
        for service in ("slack", "discord", "hook"):
            got = await receivers.wait_for(service, 2, timeout_s=DEADLINE_S)
            names = " ".join(r.text for r in got)
            assert "TradingdKillSwitchTripped" in names
            assert "TradingdOrdersRejected" in names
        [phone] = await receivers.wait_for("telegram", 1, timeout_s=DEADLINE_S)
        assert "TradingdKillSwitchTripped" in phone.text
        assert str(phone.body["chat_id"]) == CHAT_ID
        hooks = [r for r in receivers.received if r.service == "hook"]
        assert {r.headers["Authorization"] for r in hooks} == {f"Bearer {HOOK_TOKEN}"}
        assert {r.body["version"] for r in hooks} == {"4"}
        # Only the critical alert reaches the phone, once the warning's group was sent too.
        assert [r.text for r in receivers.received if r.service == "telegram"] == [phone.text]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        if sys.exc_info()[0] is not None:
            print((tmp_path / "alertmanager.log").read_text()[-4000:])
