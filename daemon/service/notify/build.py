"""From the settings and the environment to a running notifier's parts.

The YAML names environment variables; their values (webhook URLs, the bot token) are read here
and nowhere else. A configured target whose variable is unset or malformed is a ConfigError
naming the target and the variable, and never showing the value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, assert_never
from urllib.parse import urlsplit

from daemon.logs import EventLog
from daemon.service.notify.apis import Api, DiscordApi, SlackApi, TelegramApi, WebhookApi
from daemon.service.notify.channel import Channel
from daemon.service.notify.counters import NotifyCounters
from daemon.service.notify.service import Notifications, SendResult
from daemon.service.notify.settings import (
    DiscordTarget,
    NotifySettings,
    SlackTarget,
    TargetSettings,
    TelegramTarget,
    WebhookTarget,
    target_name,
)
from feeds.errors import ConfigError

if TYPE_CHECKING:
    from daemon.settings import Settings


def _always_open() -> bool:
    return True


def build_notifications(
    settings: Settings,
    env: Mapping[str, str],
    log: EventLog,
    *,
    market_open: Callable[[], bool] = _always_open,
    market_poll_s: float = 30.0,
) -> Notifications:
    """The notifier of `settings.notify`, its secrets read from `env`.

    Args:
        market_open: whether the market is open now; stream outages are told only while it
            is (default: always, for a caller without a calendar).

    Raises:
        ConfigError: a target's environment variable is unset, or not what it must hold.
    """
    notify = settings.notify
    label = notify.label or f"tradingd {settings.live.mode}"
    return notifications_of(
        notify, env, log, label=label, market_open=market_open, market_poll_s=market_poll_s
    )


def notifications_of(
    notify: NotifySettings,
    env: Mapping[str, str],
    log: EventLog,
    *,
    label: str,
    market_open: Callable[[], bool] = _always_open,
    market_poll_s: float = 30.0,
) -> Notifications:
    """`build_notifications` for the `notify:` section alone, with its label given."""
    names = [target_name(t) for t in notify.targets]
    counters = NotifyCounters(names)
    channels = [
        Channel(
            name=name,
            api=api_of(target, env, label=label, where=f"notify.targets[{i}] ({name})"),
            settings=target,
            log=log,
            counters=counters,
            market_open=market_open,
            market_poll_s=market_poll_s,
        )
        for i, (name, target) in enumerate(zip(names, notify.targets, strict=True))
    ]
    return Notifications(
        channels, log=log, counters=counters, stop_deadline_s=notify.stop_deadline_s
    )


async def send_test(
    settings: Settings, env: Mapping[str, str], log: EventLog, text: str | None = None
) -> dict[str, SendResult]:
    """`tradingd notify test`: one message to every configured target; name -> result.

    Raises:
        ConfigError: as `build_notifications`.
    """
    notifications = build_notifications(settings, env, log)
    return await notifications.send_test(text)


def api_of(target: TargetSettings, env: Mapping[str, str], *, label: str, where: str) -> Api:
    """The API of one configured target, its secrets read from `env`."""
    match target:
        case SlackTarget():
            return SlackApi(url=_url(env, target.url_env, where, "webhook URL"), label=label)
        case DiscordTarget():
            return DiscordApi(url=_url(env, target.url_env, where, "webhook URL"), label=label)
        case TelegramTarget():
            token = _value(env, target.token_env, where, "bot token")
            if "/" in token or any(c.isspace() for c in token):
                raise ConfigError(
                    f"{where}: {target.token_env} does not hold a bot token (no '/' or spaces)"
                )
            chat_env = target.chat_env
            chat_id = target.chat_id
            if chat_env is not None:
                chat_id = _value(env, chat_env, where, "chat id")
            assert chat_id is not None  # the settings give one of the two
            return TelegramApi(api_url=target.api_url, token=token, chat_id=chat_id, label=label)
        case WebhookTarget():
            url = _url(env, target.url_env, where, "URL")
            bearer = None
            if target.token_env is not None:
                bearer = _value(env, target.token_env, where, "bearer token")
            return WebhookApi(url=url, label=label, token=bearer)
        case _:
            assert_never(target)


def _value(env: Mapping[str, str], var: str, where: str, what: str) -> str:
    value = env.get(var, "").strip()
    if not value:
        raise ConfigError(
            f"{where}: the environment variable {var} is not set (it holds this target's {what})"
        )
    return value


def _url(env: Mapping[str, str], var: str, where: str, what: str) -> str:
    value = _value(env, var, where, what)
    split = urlsplit(value)
    if split.scheme not in ("http", "https") or not split.netloc:
        # Never echo the value: it is the credential.
        raise ConfigError(f"{where}: {var} does not hold an http(s):// URL")
    return value
