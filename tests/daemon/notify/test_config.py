"""The `notify:` section: validated like every section, its secrets read from the environment
only (a missing one names the target and the variable, and no value is ever shown), and
`send_test` answering per target."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.config import LoadedConfig, load_config
from daemon.logs import EventLog
from daemon.service.notify import (
    NotifySettings,
    SendResult,
    TelegramTarget,
    build_notifications,
    send_test,
)
from daemon.service.notify.apis import DiscordApi, TelegramApi, WebhookApi, retry_after
from daemon.service.notify.events import EventKind
from daemon.service.notify.messages import Message
from daemon.service.notify.redact import Redactor
from feeds.errors import ConfigError
from tests.conftest import ROOT
from tests.daemon.notify.receivers import (
    DISCORD_SECRET,
    SLACK_SECRET,
    TELEGRAM_TOKEN,
    Fault,
    Receivers,
)

BASE = str(ROOT / "config" / "base.yaml")


def _load(tmp_path: Path, notify: dict[str, Any]) -> LoadedConfig:
    overlay = tmp_path / "notify.yaml"
    overlay.write_text(yaml.safe_dump({"notify": notify}))
    return load_config([BASE, str(overlay)])


def _log() -> EventLog:
    return EventLog(io.StringIO())


def test_no_targets_by_default() -> None:
    settings = load_config([BASE]).settings
    assert settings.notify == NotifySettings()
    assert settings.notify.targets == []
    assert build_notifications(settings, {}, _log()).targets == []


def test_a_full_section_is_read(tmp_path: Path) -> None:
    loaded = _load(
        tmp_path,
        {
            "label": "paper box",
            "targets": [
                {"type": "slack", "url_env": "MY_SLACK", "stream_down_s": 300},
                {
                    "type": "telegram",
                    "name": "phone",
                    "chat_id": "-100123",
                    "events": {"fills": True, "day_summary": False},
                    "rate_limit": {"burst": 5, "window_s": 60},
                },
                {"type": "discord"},
                {"type": "webhook", "name": "pager", "token_env": "PAGER_TOKEN"},
            ],
        },
    )
    notify = loaded.settings.notify
    assert [t.type for t in notify.targets] == ["slack", "telegram", "discord", "webhook"]
    phone = notify.targets[1]
    assert isinstance(phone, TelegramTarget)
    assert phone.events.on(EventKind.FILLS)
    assert not phone.events.on(EventKind.DAY_SUMMARY)
    assert not notify.targets[0].events.on(EventKind.FILLS)  # off by default
    assert notify.targets[0].events.on(EventKind.TEST)  # a test always goes
    env = {
        "MY_SLACK": "https://hooks.slack.com/services/T/B/xyz",
        "TRADINGD_TELEGRAM_TOKEN": "123:abc",
        "TRADINGD_DISCORD_URL": "https://discord.com/api/webhooks/1/abc",
        "TRADINGD_WEBHOOK_URL": "https://example.com/hook",
        "PAGER_TOKEN": "t0k",
    }
    notifications = build_notifications(loaded.settings, env, _log())
    assert notifications.targets == ["slack", "phone", "discord", "pager"]
    telegram = notifications.channels[1].api
    assert isinstance(telegram, TelegramApi)
    assert telegram.chat_id == "-100123"
    assert telegram.label == "paper box"
    hook = notifications.channels[3].api
    assert isinstance(hook, WebhookApi)
    assert hook.token == "t0k"


def test_the_label_defaults_to_the_mode(tmp_path: Path) -> None:
    loaded = _load(tmp_path, {"targets": [{"type": "discord"}]})
    env = {"TRADINGD_DISCORD_URL": "https://discord.com/api/webhooks/1/abc"}
    api = build_notifications(loaded.settings, env, _log()).channels[0].api
    assert isinstance(api, DiscordApi)
    assert api.label == "tradingd paper"


@pytest.mark.parametrize(
    ("notify", "says"),
    [
        ({"targets": [{"type": "email"}]}, "notify.targets.0"),
        ({"targets": [{"type": "slack", "url": "https://hooks.slack.com/x"}]}, "url"),
        ({"targets": [{"type": "slack", "url_env": "not a name"}]}, "environment variable"),
        ({"targets": [{"type": "slack"}, {"type": "slack"}]}, "two targets are named 'slack'"),
        ({"targets": [{"type": "discord", "events": {"fill": True}}]}, "events.fill"),
        (
            {"targets": [{"type": "telegram", "chat_id": "1", "chat_id_env": "X"}]},
            "chat_id or chat_id_env",
        ),
        ({"targets": [{"type": "telegram", "token": "123:abc"}]}, "token"),
        ({"targets": [{"type": "webhook", "backoff_min_s": 5, "backoff_max_s": 1}]}, "backoff"),
    ],
)
def test_a_wrong_section_names_the_file_and_the_key(
    tmp_path: Path, notify: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, notify)
    message = str(caught.value)
    assert "notify.yaml" in message
    assert says in message


def test_a_secret_in_the_yaml_is_refused_without_being_repeated(tmp_path: Path) -> None:
    secret_url = f"https://hooks.slack.com/services/T/B/{SLACK_SECRET}"
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, {"targets": [{"type": "slack", "url": secret_url}]})
    assert str(caught.value).endswith("notify.targets.0.slack.url: unknown key")
    assert SLACK_SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("target", "env", "says"),
    [
        (
            {"type": "slack"},
            {},
            "notify.targets[0] (slack): the environment variable TRADINGD_SLACK_URL is not set",
        ),
        (
            {"type": "telegram", "name": "phone"},
            {"TRADINGD_TELEGRAM_TOKEN": "1:a"},
            "notify.targets[0] (phone): the environment variable TRADINGD_TELEGRAM_CHAT_ID is "
            "not set",
        ),
        (
            {"type": "telegram", "chat_id": "5"},
            {"TRADINGD_TELEGRAM_TOKEN": "  "},
            "the environment variable TRADINGD_TELEGRAM_TOKEN is not set",
        ),
        (
            {"type": "webhook", "token_env": "HOOK_TOKEN"},
            {"TRADINGD_WEBHOOK_URL": "https://example.com/h"},
            "the environment variable HOOK_TOKEN is not set",
        ),
    ],
)
def test_a_missing_variable_names_the_target_and_the_variable(
    tmp_path: Path, target: dict[str, Any], env: dict[str, str], says: str
) -> None:
    loaded = _load(tmp_path, {"targets": [target]})
    with pytest.raises(ConfigError, match=re.escape(says)):
        build_notifications(loaded.settings, env, _log())


def test_a_malformed_secret_is_named_but_not_shown(tmp_path: Path) -> None:
    loaded = _load(tmp_path, {"targets": [{"type": "discord", "url_env": "D"}]})
    with pytest.raises(ConfigError) as caught:
        build_notifications(loaded.settings, {"D": f"discord.com/{DISCORD_SECRET}"}, _log())
    assert str(caught.value) == "notify.targets[0] (discord): D does not hold an http(s):// URL"
    loaded = _load(tmp_path, {"targets": [{"type": "telegram", "chat_id": "1"}]})
    token = f"https://api.telegram.org/bot{TELEGRAM_TOKEN}"
    with pytest.raises(ConfigError) as caught:
        build_notifications(loaded.settings, {"TRADINGD_TELEGRAM_TOKEN": token}, _log())
    assert TELEGRAM_TOKEN not in str(caught.value)
    assert "TRADINGD_TELEGRAM_TOKEN does not hold a bot token" in str(caught.value)


async def test_send_test_answers_per_target(tmp_path: Path, receivers: Receivers) -> None:
    receivers.arm("discord", Fault("500"))
    loaded = _load(
        tmp_path,
        {
            "targets": [
                {"type": "slack"},
                {"type": "discord"},
                {"type": "telegram", "api_url": receivers.telegram_api},
                {"type": "webhook", "timeout_s": 2},
            ]
        },
    )
    env = {**receivers.env, "TRADINGD_TELEGRAM_TOKEN": "999:wrong-token"}
    env["TRADINGD_WEBHOOK_URL"] = receivers.url("/nowhere")
    results = await send_test(loaded.settings, env, _log())
    assert results["slack"] == SendResult(ok=True)
    assert results["discord"] == SendResult(ok=False, error="HTTP 500: internal error handling ***")
    assert results["telegram"] == SendResult(ok=False, error="HTTP 401: 401 Unauthorized")
    assert results["webhook"].error is not None
    assert results["webhook"].error.startswith("HTTP 404")
    assert receivers.texts("slack") == [
        "[tradingd paper] test message: notifications from this daemon reach this channel"
    ]
    assert len(receivers.attempts["discord"]) == 1  # one try each: a test answers at once
    for result in results.values():
        assert DISCORD_SECRET not in str(result)
        assert "wrong-token" not in str(result)


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after({"Retry-After": "3"}) == 3.0
    assert retry_after({"Retry-After": "0.25"}) == 0.25
    assert retry_after({}) is None
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({"Retry-After": "nan"}) is None
    date = "Wed, 21 Oct 2015 07:28:30 GMT"
    assert retry_after({"Retry-After": date}, now_s=1445412480.0) == 30.0
    assert retry_after({"Retry-After": date}, now_s=1445412600.0) == 0.0  # already past


def test_long_messages_are_clipped_to_each_services_limit() -> None:
    message = Message(kind=EventKind.RECONCILIATION, event="X", text="x" * 5000)
    content = DiscordApi(url="https://d/x", label="t").request(message).json["content"]
    assert len(content) == 2000
    assert content.endswith("\u2026")
    api = TelegramApi(api_url="https://t", token="1:a", chat_id="1", label="t")
    assert len(api.request(message).json["text"]) == 4096


def test_a_telegram_answer_is_read_from_its_body() -> None:
    api = TelegramApi(api_url="https://t", token="1:a", chat_id="1", label="t")
    assert api.reply(200, {}, b'{"ok": true, "result": {}}').ok
    flood = api.reply(
        429, {}, b'{"ok": false, "error_code": 429, "parameters": {"retry_after": 7}}'
    )
    assert (flood.ok, flood.retryable, flood.retry_after_s) == (False, True, 7.0)
    not_json = api.reply(200, {}, b"<html>proxy</html>")
    assert (not_json.ok, not_json.retryable) == (False, True)
    blocked = api.reply(403, {}, b'{"ok": false, "error_code": 403, "description": "Forbidden"}')
    assert (blocked.ok, blocked.retryable) == (False, False)


def test_the_redactor_masks_urls_their_paths_and_tokens() -> None:
    url = f"https://hooks.slack.com/services/T/B/{SLACK_SECRET}?x=1"
    redact = Redactor([url, TELEGRAM_TOKEN, ""])
    assert redact(f"failed {url}") == "failed ***"
    assert redact(f"POST /services/T/B/{SLACK_SECRET} 500") == "POST *** 500"
    assert redact(f"/bot{TELEGRAM_TOKEN}/sendMessage") == "/bot***/sendMessage"
    assert redact("nothing secret") == "nothing secret"
