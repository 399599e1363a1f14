"""The `notify:` section: where notifications go and which ones.

    notify:
      label: "tradingd paper"          # the first words of every message (default: by mode)
      targets:
        - type: telegram               # token and chat id from the environment
          name: phone
          events: {fills: true}        # switch kinds on or off; fills are off by default
        - type: slack
          url_env: TRADINGD_SLACK_URL  # the variable holding the webhook URL
          stream_down_s: 300
          rate_limit: {burst: 3, window_s: 300}

Secrets (webhook URLs, the bot token) come only from the environment: the YAML names the
variable, never the value. A configured target whose variable is unset stops the daemon at
start (`build_notifications`).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, TypeAlias

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from daemon.service.notify.events import EventKind

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TELEGRAM_API_URL = "https://api.telegram.org"


class EventSwitches(BaseModel):
    """Which kinds of events a target receives; all on except fills."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start_stop: bool = True
    kill_switch: bool = True
    halt_resume: bool = True
    stream: bool = True
    journal: bool = True
    reconciliation: bool = True
    rejected: bool = True
    fills: bool = False
    day_summary: bool = True

    def on(self, kind: EventKind) -> bool:
        """Whether `kind` is switched on (a test message always is)."""
        if kind is EventKind.TEST:
            return True
        switched: bool = getattr(self, kind.value)
        return switched


class RateLimit(BaseModel):
    """Repeated events of one kind: the first `burst` in a window are sent, the rest counted
    and summarized in one message when the window ends (`... and 12 more order rejections in
    the last 5 minutes`). A window opens at the first event of a kind."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    burst: int = Field(3, ge=1)
    window_s: float = Field(300.0, gt=0)


class _TargetBase(BaseModel):
    """What every target has.

    Attributes:
        name: its label in logs and metrics; defaults to its type (names must differ).
        events: the kinds it receives.
        stream_down_s: a stream down this long while the market is open is reported.
        rate_limit: how repeated events of one kind are held back.
        timeout_s: each request's deadline (connect, send, answer).
        max_attempts: tries per message (a 429, 5xx, timeout or refused connection is
            retried; another 4xx is not).
        backoff_min_s, backoff_max_s: the exponential backoff between tries, with jitter.
        max_retry_after_s: a 429 asking to wait longer than this fails the message instead.
        queue_size: messages waiting for this target; when full the oldest is dropped (and
            the next message delivered says how many were).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = None
    events: EventSwitches = EventSwitches()
    stream_down_s: float = Field(120.0, ge=0)
    rate_limit: RateLimit = RateLimit()
    timeout_s: float = Field(10.0, gt=0)
    max_attempts: int = Field(5, ge=1)
    backoff_min_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)
    max_retry_after_s: float = Field(300.0, gt=0)
    queue_size: int = Field(100, ge=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError(
                "must be 1 to 32 of a-z, 0-9, '_' or '-', starting with a letter or digit"
            )
        return value

    @model_validator(mode="after")
    def _backoff(self) -> _TargetBase:
        if self.backoff_max_s < self.backoff_min_s:
            raise ValueError("backoff_max_s is below backoff_min_s")
        return self


def _env_name(value: str) -> str:
    if not _ENV.match(value):
        raise ValueError(f"{value!r} is not an environment variable's name")
    return value


EnvName: TypeAlias = Annotated[str, AfterValidator(_env_name)]
"""The name of an environment variable (the value is read at start, never from YAML)."""


class SlackTarget(_TargetBase):
    """A Slack incoming webhook; its URL in the variable `url_env`."""

    type: Literal["slack"]
    url_env: EnvName = "TRADINGD_SLACK_URL"


class DiscordTarget(_TargetBase):
    """A Discord incoming webhook; its URL in the variable `url_env`."""

    type: Literal["discord"]
    url_env: EnvName = "TRADINGD_DISCORD_URL"


class TelegramTarget(_TargetBase):
    """A Telegram bot's sendMessage to one chat.

    Attributes:
        token_env: the variable holding the bot's token (from @BotFather).
        chat_id: the chat to write to (not a secret), or
        chat_id_env: the variable holding it (the default when `chat_id` is not given).
        api_url: the Bot API's base URL (a local Bot API server, or a test's).
    """

    type: Literal["telegram"]
    token_env: EnvName = "TRADINGD_TELEGRAM_TOKEN"  # noqa: S105 - a variable's name
    chat_id: str | None = Field(None, min_length=1)
    chat_id_env: EnvName | None = None
    api_url: str = TELEGRAM_API_URL

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s):// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _chat(self) -> TelegramTarget:
        if self.chat_id is not None and self.chat_id_env is not None:
            raise ValueError("give chat_id or chat_id_env, not both")
        return self

    @property
    def chat_env(self) -> str | None:
        """The variable holding the chat id, or None when `chat_id` is given."""
        if self.chat_id is not None:
            return None
        return self.chat_id_env or "TRADINGD_TELEGRAM_CHAT_ID"


class WebhookTarget(_TargetBase):
    """Any HTTP endpoint taking a JSON POST: `{"source", "kind", "event", "text", "data",
    "time"}`.

    Attributes:
        url_env: the variable holding the URL.
        token_env: if set, the variable holding a bearer token sent as `Authorization`.
    """

    type: Literal["webhook"]
    url_env: EnvName = "TRADINGD_WEBHOOK_URL"
    token_env: EnvName | None = None


TargetSettings: TypeAlias = Annotated[
    SlackTarget | DiscordTarget | TelegramTarget | WebhookTarget, Field(discriminator="type")
]


class NotifySettings(BaseModel):
    """The `notify:` section: no targets by default (nothing is sent).

    Attributes:
        label: the first words of every message, to tell daemons apart; None: "tradingd
            <mode>".
        targets: where messages go.
        stop_deadline_s: at stop, queued messages (the "stopped" one among them) get this
            long to go out.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str | None = Field(None, min_length=1, max_length=64)
    targets: list[TargetSettings] = Field(default_factory=list)
    stop_deadline_s: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _unique_names(self) -> NotifySettings:
        seen: set[str] = set()
        for target in self.targets:
            name = target_name(target)
            if name in seen:
                raise ValueError(f"two targets are named {name!r}: give each a distinct `name`")
            seen.add(name)
        return self


def target_name(target: TargetSettings) -> str:
    """A target's name: its `name`, else its type."""
    return target.name or target.type
