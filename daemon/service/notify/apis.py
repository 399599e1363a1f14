"""The four kinds of target, each as its HTTP API: what to POST, and what its answer means.

    slack     an incoming webhook: POST {"text"} to the URL; 200 "ok"; a 429 carries a
              `Retry-After` header (seconds)
    discord   an incoming webhook: POST {"content"} to the URL; 204 (or 200); a 429's JSON body
              carries `retry_after` (seconds, a float) beside the `Retry-After` header
    telegram  the Bot API: POST {"chat_id", "text"} to <api>/bot<token>/sendMessage; the answer
              is JSON {"ok": ...}; a 429 carries `parameters.retry_after` (seconds) in its body
    webhook   any endpoint: POST the message as JSON; any 2xx; a 429 or 503 may carry
              `Retry-After` (seconds or an HTTP date)

Each is pure: no I/O here (the channel sends), so each answer's reading is tested on its own.
A 429, a 5xx, a 408 are worth another try; any other answer outside 2xx is not (a revoked
webhook, a wrong token, a chat the bot may not write to will not heal by waiting).
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from daemon.service.notify.messages import Message
from daemon.timeutil import iso_utc

_BODY_IN_ERRORS = 200  # characters of a refusing answer's body kept in the error


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One POST of a JSON body."""

    url: str
    json: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """What an answer means.

    Attributes:
        ok: delivered.
        retryable: not delivered, but another try may succeed.
        retry_after_s: how long the service asked to wait before that try, if it said.
        error: why not, for the log (without secrets: the caller redacts it again anyway).
    """

    ok: bool
    retryable: bool = False
    retry_after_s: float | None = None
    error: str = ""


class Api(Protocol):
    """One target's HTTP API."""

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values that must never be logged (URLs, tokens)."""
        ...

    def request(self, message: Message) -> Request:
        """The POST that delivers `message`."""
        ...

    def reply(self, status: int, headers: Mapping[str, str], body: bytes) -> Reply:
        """Read the service's answer."""
        ...


def retry_after(headers: Mapping[str, str], *, now_s: float | None = None) -> float | None:
    """The `Retry-After` header in seconds (it may be a number or an HTTP date), if valid."""
    raw = headers.get("Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now_s is None else now_s)
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _by_status(status: int, headers: Mapping[str, str], body: bytes) -> Reply:
    """The reading shared by all: 2xx delivered; 429, 408 and 5xx worth retrying."""
    if 200 <= status < 300:
        return Reply(ok=True)
    text = body[:_BODY_IN_ERRORS].decode("utf-8", "replace").strip()
    error = f"HTTP {status}" + (f": {text}" if text else "")
    if status in (408, 429) or status >= 500:
        return Reply(ok=False, retryable=True, retry_after_s=retry_after(headers), error=error)
    return Reply(ok=False, error=error)


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def line(label: str, message: Message) -> str:
    """The text a person reads: the daemon's label, then the message."""
    return f"[{label}] {message.text}"


@dataclass(frozen=True, slots=True)
class SlackApi:
    """A Slack incoming webhook."""

    url: str
    label: str
    # Slack truncates a message's text at 40,000 characters and advises under 4,000.
    max_chars: int = 4000

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.url,)

    def request(self, message: Message) -> Request:
        return Request(url=self.url, json={"text": clip(line(self.label, message), self.max_chars)})

    def reply(self, status: int, headers: Mapping[str, str], body: bytes) -> Reply:
        return _by_status(status, headers, body)


@dataclass(frozen=True, slots=True)
class DiscordApi:
    """A Discord incoming webhook."""

    url: str
    label: str
    max_chars: int = 2000  # Discord refuses longer content

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.url,)

    def request(self, message: Message) -> Request:
        body = {
            "content": clip(line(self.label, message), self.max_chars),
            # A symbol or a broker's message must never ping @everyone or a role.
            "allowed_mentions": {"parse": []},
        }
        return Request(url=self.url, json=body)

    def reply(self, status: int, headers: Mapping[str, str], body: bytes) -> Reply:
        read = _by_status(status, headers, body)
        if status == 429:
            doc = _json(body)
            wait = doc.get("retry_after") if isinstance(doc, dict) else None
            if isinstance(wait, int | float) and wait >= 0:
                # The body's value is the precise one; the header is rounded up. Take the
                # smaller, which also guards against an old API's milliseconds.
                header = read.retry_after_s
                wait_s = float(wait) if header is None else min(float(wait), header)
                return Reply(ok=False, retryable=True, retry_after_s=wait_s, error=read.error)
        return read


@dataclass(frozen=True, slots=True)
class TelegramApi:
    """A Telegram bot writing to one chat."""

    api_url: str
    token: str
    chat_id: str
    label: str
    max_chars: int = 4096  # sendMessage's limit on text

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.token,)

    def request(self, message: Message) -> Request:
        return Request(
            url=f"{self.api_url}/bot{self.token}/sendMessage",
            json={"chat_id": self.chat_id, "text": clip(line(self.label, message), self.max_chars)},
        )

    def reply(self, status: int, headers: Mapping[str, str], body: bytes) -> Reply:
        doc = _json(body)
        if not isinstance(doc, dict):
            read = _by_status(status, headers, body)
            if read.ok:  # a 2xx that is not the Bot API's JSON: not delivered for sure
                return Reply(ok=False, retryable=True, error=f"HTTP {status}: not JSON")
            return read
        if doc.get("ok") is True and 200 <= status < 300:
            return Reply(ok=True)
        code = doc.get("error_code", status)
        error = f"HTTP {status}: {code} {str(doc.get('description', ''))[:_BODY_IN_ERRORS]}"
        params = doc.get("parameters")
        wait = params.get("retry_after") if isinstance(params, dict) else None
        if code == 429 or status == 429:
            wait_s = float(wait) if isinstance(wait, int | float) else retry_after(headers)
            return Reply(ok=False, retryable=True, retry_after_s=wait_s, error=error.strip())
        return Reply(ok=False, retryable=status >= 500, error=error.strip())


@dataclass(frozen=True, slots=True)
class WebhookApi:
    """Any endpoint taking the message as JSON: {"source", "kind", "event", "text", "data",
    "time"} (time: when the daemon noticed it, ISO 8601 UTC)."""

    url: str
    label: str
    token: str | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.url,) if self.token is None else (self.url, self.token)

    def request(self, message: Message) -> Request:
        body = {
            "source": self.label,
            "kind": message.kind.value,
            "event": message.event,
            "text": message.text,
            "data": message.data,
            "time": iso_utc(message.ts_ns) if message.ts_ns else None,
        }
        headers = {} if self.token is None else {"Authorization": f"Bearer {self.token}"}
        return Request(url=self.url, json=body, headers=headers)

    def reply(self, status: int, headers: Mapping[str, str], body: bytes) -> Reply:
        return _by_status(status, headers, body)
