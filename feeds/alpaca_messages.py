"""What Alpaca's market-data stream says and means: its feeds' URLs, the events
`AlpacaDataStream` hands to its sink, the errors it raises, and the parsing of the stream's
messages (bars, updated bars, trading statuses, subscription replies)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

from feeds.bar import Bar
from feeds.errors import SourceError

FEED_URLS: Mapping[str, str] = MappingProxyType(
    {
        feed: f"wss://stream.data.alpaca.markets/v2/{feed}"
        for feed in ("iex", "sip", "delayed_sip", "test")
    }
)
"""Production URL of each stock feed; ``test`` streams the symbol FAKEPACA around the clock."""

HALT_CODES = frozenset({"H", "P", "Q"})
"""Trading-status codes that mean no regular trading: halt, volatility pause, quotation only."""


# -- events --------------------------------------------------------------------------------


NoticeLevel: TypeAlias = Literal["info", "warning", "error"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamBar:
    """A minute bar; ``updated`` is True for a revision (``updatedBars``, same ts) of a bar
    already sent, which replaces it."""

    bar: Bar
    updated: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class TradingStatus:
    """A trading-status message (T ``s``).

    Attributes:
        ts: UTC ns of the status change.
        code: Alpaca's status code (``sc``), e.g. ``H`` halt, ``T`` trading.
        halted: ``code`` is in `HALT_CODES`.
    """

    symbol: str
    ts: int
    code: str
    message: str
    reason_code: str
    reason: str
    halted: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamConnected:
    """Authenticated and subscribed; data follows.

    Attributes:
        attempt: connection attempts since the previous connection (or since run() started),
            this one included: 1 means it connected on the first try.
        reconnect: an earlier connection of this run() had been established, so bars of the
            minutes in between may be missing (fetch them from history).
        subscription: Alpaca's reply, channel -> symbols (the complete current set).
    """

    attempt: int
    reconnect: bool
    subscription: dict[str, list[str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamDisconnected:
    """The connection failed or ended; the client retries in ``retry_in_s`` seconds."""

    reason: str
    retry_in_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamNotice:
    """Something the daemon should log or count; ``event`` is a stable snake_case name.

    Events: ``connection_limit``, ``stream_error``, ``protocol_error``, ``feed_silent``,
    ``subscription_incomplete``, ``bad_message``, ``unknown_message`` (once per type).
    """

    level: NoticeLevel
    event: str
    fields: dict[str, Any] = field(default_factory=dict)


DataEvent: TypeAlias = (
    StreamBar | TradingStatus | StreamConnected | StreamDisconnected | StreamNotice
)


# -- errors --------------------------------------------------------------------------------


class StreamError(SourceError):
    """The market-data stream cannot be used; fatal for the caller.

    Attributes:
        code: Alpaca's error code, when the server sent one.
    """

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class StreamAuthFailed(StreamError):
    """The server refused the keys (402). Retrying would not help."""


class StreamSubscriptionRefused(StreamError):
    """The plan or the keys do not allow this subscription (405, 409, 410, 411)."""


# -- parsing -------------------------------------------------------------------------------

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def parse_rfc3339_ns(text: str) -> int:
    """An RFC-3339 time with ``Z`` or an offset (fractions up to ns) -> UTC ns.

    Raises:
        ValueError: not such a time (a naive time is refused, not guessed).
    """
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"time {text!r} has no offset")
    delta = parsed - _EPOCH
    ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    # datetime keeps microseconds; add the text's 7th to 9th fraction digits.
    dot = text.find(".")
    if dot >= 0:
        end = dot + 1
        while end < len(text) and text[end].isdigit():
            end += 1
        digits = text[dot + 1 : end]
        if len(digits) > 6:
            ns += int(digits[6:9].ljust(3, "0"))
    return ns


@functools.lru_cache(maxsize=512)
def _cached_ns(text: str) -> int:
    return parse_rfc3339_ns(text)


def _bar_ns(value: Any) -> int:
    """A bar's time: a minute's bars (one per symbol) share it, so a string parses once."""
    return _cached_ns(value) if type(value) is str else parse_rfc3339_ns(value)


def parse_bar(msg: Mapping[str, Any]) -> Bar:
    """A bar message (T ``b`` or ``u``) as a Bar."""
    return bar_from_json(str(msg["S"]), msg)


def bar_from_json(symbol: str, msg: Mapping[str, Any]) -> Bar:
    """One of Alpaca's bar objects (``t o h l c v n vw``, stream or REST) as a Bar.

    Raises:
        KeyError, TypeError, ValueError: a field is missing or not a number.
    """
    n = msg.get("n")
    vw = msg.get("vw")
    return Bar(
        symbol=symbol,
        ts=_bar_ns(msg["t"]),
        open=float(msg["o"]),
        high=float(msg["h"]),
        low=float(msg["l"]),
        close=float(msg["c"]),
        volume=float(msg["v"]),
        trade_count=None if n is None else int(n),
        # None, not NaN: the sanity check rejects a NaN vwap but skips a missing one.
        vwap=None if vw is None else float(vw),
    )


def parse_status(msg: Mapping[str, Any]) -> TradingStatus:
    """A trading-status message (T ``s``)."""
    code = str(msg.get("sc", ""))
    return TradingStatus(
        symbol=str(msg["S"]),
        ts=parse_rfc3339_ns(msg["t"]),
        code=code,
        message=str(msg.get("sm", "")),
        reason_code=str(msg.get("rc", "")),
        reason=str(msg.get("rm", "")),
        halted=code in HALT_CODES,
    )


def subscription_of(reply: Mapping[str, Any]) -> dict[str, list[str]]:
    """A subscription reply as channel -> symbols."""
    return {
        str(k): [str(s) for s in v] for k, v in reply.items() if k != "T" and isinstance(v, list)
    }


def describe_error(e: Exception) -> str:
    """A parsing error, as a notice names it."""
    if isinstance(e, KeyError):
        return f"missing key {e}"
    return f"{type(e).__name__}: {e}"


def clip(value: Any, limit: int = 200) -> str:
    """A frame or message shortened for a notice."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
