"""Alpaca's market-data websocket (stocks, v2): minute bars, updated bars and trading statuses.

Our own client rather than alpaca-py's `StockDataStream`, which calls `asyncio.run`, only logs
error frames after authentication and busy-waits before a subscription exists.

One `AlpacaDataStream` owns one socket (Alpaca allows one connection per feed and user). It
hands every event to a synchronous `sink` that only enqueues; the daemon logs, counts and acts.

Per connection: greeting ``connected`` -> ``auth`` -> ``authenticated`` -> ``subscribe`` (bars,
updatedBars, statuses) -> ``subscription`` reply -> `StreamConnected` -> data. Anything else in
that sequence is a protocol error and the client reconnects with backoff. Error frames:

    402 auth failed                               StreamAuthFailed (fatal)
    405, 409, 410, 411 (plan, scope, symbols)     StreamSubscriptionRefused (fatal)
    406 connection limit exceeded                 notice, back off >= connection_limit_backoff_s
    any other (404 auth timeout, 407 slow, 500)   notice, reconnect with backoff
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, NoReturn

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)

from feeds.alpaca_messages import (
    FEED_URLS,
    HALT_CODES,
    DataEvent,
    NoticeLevel,
    StreamAuthFailed,
    StreamBar,
    StreamConnected,
    StreamDisconnected,
    StreamError,
    StreamNotice,
    StreamSubscriptionRefused,
    TradingStatus,
    clip,
    describe_error,
    parse_bar,
    parse_status,
    subscription_of,
)

# Its events, errors and feed URLs are part of this module's surface (`from feeds.alpaca_stream
# import StreamBar, ...`), though they are defined with the parsers in feeds.alpaca_messages.
__all__ = [
    "FEED_URLS",
    "HALT_CODES",
    "AlpacaDataStream",
    "DataEvent",
    "StreamAuthFailed",
    "StreamBar",
    "StreamConnected",
    "StreamDisconnected",
    "StreamError",
    "StreamNotice",
    "StreamSubscriptionRefused",
    "TradingStatus",
]


_MAX_FRAME_BYTES = 16 * 1024 * 1024  # news-sized batches; the library default is 1 MiB
_PING_S = 20.0
_OPEN_TIMEOUT_S = 15.0
_CLOSE_TIMEOUT_S = 2.0  # stop() must return promptly even from a peer that stopped talking
_FATAL_SUBSCRIPTION = {
    405: "symbol limit exceeded",
    410: "invalid subscribe action for this feed",
    411: "insufficient scope",
}
_TOO_MANY_REQUESTS = 429


class _Reconnect(Exception):
    """Internal: end this connection and retry after at least ``floor_s``."""

    def __init__(self, reason: str, *, floor_s: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.floor_s = floor_s


# -- the client ----------------------------------------------------------------------------


class AlpacaDataStream:
    """Minute bars, updated bars and trading statuses of `symbols` from one feed.

    Args:
        url: the stream URL (`FEED_URLS[feed]`, or a sandbox's).
        feed: the feed name, for messages (``iex``, ``sip``, ``delayed_sip``, ``test``).
        symbols: the symbols to subscribe (bars, updatedBars, statuses).
        key, secret: the API keys; never part of any message or event.
        sink: called synchronously, in order, with every `DataEvent`; it must only enqueue.
        market_open: whether silence is abnormal now (the regular session is open).
        silence_s: with the market open, no message for this long -> reconnect.
        auth_timeout_s: deadline of each handshake step (greeting, auth, subscription reply).
        backoff_min_s, backoff_max_s: reconnect delay ``min(max, min * 2**n) * U(0.5, 1)``
            after the n-th consecutive failure; n restarts once a connection carried data.
        connection_limit_backoff_s: the least delay after a 406 or an HTTP 429 handshake
            (Alpaca holds a dead socket's slot for about 90 s).
        sleep: awaited for every backoff (inject a fast one in tests).
        rng: jitter source.

    Attributes:
        reconnects: StreamDisconnected events emitted.
        messages: messages received (items of the JSON arrays), control messages included.
        last_message_monotonic: `time.monotonic()` of the last frame received.
    """

    def __init__(
        self,
        *,
        url: str,
        feed: str,
        symbols: Sequence[str],
        key: str,
        secret: str,
        sink: Callable[[DataEvent], None],
        market_open: Callable[[], bool] = lambda: True,
        silence_s: float = 120.0,
        auth_timeout_s: float = 10.0,
        backoff_min_s: float = 1.0,
        backoff_max_s: float = 60.0,
        connection_limit_backoff_s: float = 90.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        wanted = list(dict.fromkeys(s.strip().upper() for s in symbols if s.strip()))
        if not wanted:
            raise ValueError("symbols is empty")
        if not key or not secret:
            raise ValueError("key and secret are required")
        for name, value in (
            ("silence_s", silence_s),
            ("auth_timeout_s", auth_timeout_s),
            ("backoff_min_s", backoff_min_s),
            ("backoff_max_s", backoff_max_s),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if backoff_max_s < backoff_min_s:
            raise ValueError("backoff_max_s must be >= backoff_min_s")
        self._url = url
        self._feed = feed
        self._symbols = wanted
        self._key = key
        self._secret = secret
        self._sink = sink
        self._market_open = market_open
        self._silence_s = silence_s
        self._auth_timeout_s = auth_timeout_s
        self._backoff_min_s = backoff_min_s
        self._backoff_max_s = backoff_max_s
        self._limit_backoff_s = connection_limit_backoff_s
        self._sleep = sleep
        self._rng = rng or random.Random()

        self.reconnects = 0
        self.messages = 0
        self.last_message_monotonic: float | None = None
        self._connected = False
        self._stopping = False
        self._running = False
        self._task: asyncio.Task[None] | None = None
        self._flowed = False  # this connection carried data after its subscription
        self._connected_this_time = False
        self._ever_connected = False
        self._unknown_types: set[str] = set()
        self._pending: list[Any] = []  # data that arrived before the subscription reply

    @property
    def connected(self) -> bool:
        """Authenticated and subscribed, and not stopped."""
        return self._connected

    async def run(self) -> None:
        """Connect, subscribe and deliver events, reconnecting, until `stop()`.

        Raises:
            StreamAuthFailed: the keys were refused.
            StreamSubscriptionRefused: the plan does not allow the feed or subscription.
            StreamError: the URL is not a websocket URL.
        """
        if self._running:
            raise RuntimeError("AlpacaDataStream.run() is already running")
        self._running = True
        # The work runs in an inner task so that the synchronous stop() can cancel it
        # (socket reads and backoff sleeps alike) without cancelling the caller's task.
        inner = asyncio.create_task(self._loop(), name=f"alpaca-data-stream-{self._feed}")
        self._task = inner
        try:
            await inner
        except asyncio.CancelledError:
            current = asyncio.current_task()
            outer_cancelled = current is not None and current.cancelling() > 0
            if self._stopping and inner.cancelled() and not outer_cancelled:
                return
            raise
        finally:
            self._connected = False
            self._task = None
            self._running = False

    def stop(self) -> None:
        """Stop: run() closes the socket, wakes from any backoff and returns. Idempotent.

        A stopped stream stays stopped (a later run() returns at once); build a new one.
        """
        self._stopping = True
        self._connected = False
        if self._task is not None and not self._task.done():
            self._task.cancel()

    # -- connection loop -------------------------------------------------------------------

    async def _loop(self) -> None:
        failures = 0
        attempt = 0
        while not self._stopping:
            attempt += 1
            self._flowed = False
            floor_s = 0.0
            try:
                await self._connection(attempt)
                reason = "connection ended"
            except _Reconnect as e:
                reason, floor_s = e.reason, e.floor_s
            except ConnectionClosed as e:
                reason = f"{self._url} closed the connection ({_close_text(e)})"
            except InvalidStatus as e:
                status = e.response.status_code
                reason = f"{self._url} refused the websocket handshake (HTTP {status})"
                if status == _TOO_MANY_REQUESTS:
                    floor_s = self._limit_backoff_s
            except InvalidURI as e:
                raise StreamError(f"market-data stream URL {self._url!r} is invalid: {e}") from e
            except TimeoutError:
                reason = f"{self._url} did not answer in time"
            except (OSError, WebSocketException) as e:
                reason = f"cannot connect to {self._url}: {type(e).__name__}: {e}"
            finally:
                self._connected = False
            if self._stop_requested():
                return
            if self._flowed:
                failures = 0
            if self._connected_this_time:
                attempt = 0
            delay = max(floor_s, self._backoff(failures))
            failures += 1
            self.reconnects += 1
            self._sink(StreamDisconnected(reason=reason, retry_in_s=delay))
            await self._sleep(delay)

    def _stop_requested(self) -> bool:
        # A method, not the attribute: stop() flips it while we await, which mypy cannot see.
        return self._stopping

    def _backoff(self, failures: int) -> float:
        base = min(self._backoff_max_s, self._backoff_min_s * 2.0 ** min(failures, 30))
        return base * self._rng.uniform(0.5, 1.0)

    async def _connection(self, attempt: int) -> None:
        self._connected_this_time = False
        self._pending = []
        # Closed explicitly with 1000 (the context manager sends 1011 on any exception,
        # stop() included): a clean close frees Alpaca's one connection slot at once.
        ws = await connect(
            self._url,
            max_size=_MAX_FRAME_BYTES,
            ping_interval=_PING_S,
            ping_timeout=_PING_S,
            open_timeout=_OPEN_TIMEOUT_S,
            close_timeout=_CLOSE_TIMEOUT_S,
        )
        try:
            await self._session(ws, attempt)
        finally:
            await ws.close()

    async def _session(self, ws: ClientConnection, attempt: int) -> None:
        greeting = await self._control(ws, "greeting")
        if greeting.get("T") != "success" or greeting.get("msg") != "connected":
            self._protocol_error("greeting", greeting)
        await ws.send(
            orjson.dumps({"action": "auth", "key": self._key, "secret": self._secret}).decode()
        )
        reply = await self._control(ws, "auth reply")
        if reply.get("T") != "success" or reply.get("msg") != "authenticated":
            self._protocol_error("auth reply", reply)
        subscribe = {
            "action": "subscribe",
            "bars": self._symbols,
            "updatedBars": self._symbols,
            "statuses": self._symbols,
        }
        await ws.send(orjson.dumps(subscribe).decode())
        reply = await self._control(ws, "subscription reply")
        if reply.get("T") != "subscription":
            self._protocol_error("subscription reply", reply)
        subscription = subscription_of(reply)
        self._check_subscription(subscription)

        self._connected = True
        self._connected_this_time = True
        reconnect = self._ever_connected
        self._ever_connected = True
        self._sink(StreamConnected(attempt=attempt, reconnect=reconnect, subscription=subscription))
        pending, self._pending = self._pending, []
        for msg in pending:
            self._dispatch(msg)
        await self._read(ws)

    async def _read(self, ws: ClientConnection) -> None:
        while True:
            try:
                # recv() is cancel-safe: a timeout loses no message.
                async with asyncio.timeout(self._silence_s):
                    frame = await ws.recv()
            except TimeoutError:
                if not self._market_open():
                    continue  # a quiet feed outside the session is normal
                self._notice(
                    "warning",
                    "feed_silent",
                    url=self._url,
                    silence_s=self._silence_s,
                    message=f"no message from {self._url} for {self._silence_s:g} s while "
                    "the market is open; reconnecting",
                )
                raise _Reconnect(
                    f"no message for {self._silence_s:g} s while the market is open"
                ) from None
            for msg in self._decode(frame, strict=False):
                self._dispatch(msg)

    async def _control(self, ws: ClientConnection, stage: str) -> dict[str, Any]:
        """The next control message (success, subscription); data before it is kept."""
        try:
            async with asyncio.timeout(self._auth_timeout_s):
                while True:
                    frame = await ws.recv()
                    for msg in self._decode(frame, strict=True):
                        kind = msg.get("T")
                        if kind == "error":
                            self._error_frame(msg)
                        if kind in ("success", "subscription"):
                            return msg
                        self._pending.append(msg)
        except TimeoutError:
            raise _Reconnect(
                f"no {stage} from {self._url} within {self._auth_timeout_s:g} s"
            ) from None

    def _decode(self, frame: str | bytes, *, strict: bool) -> list[dict[str, Any]]:
        self.last_message_monotonic = time.monotonic()
        try:
            data = orjson.loads(frame)
        except orjson.JSONDecodeError as e:
            if strict:
                self._protocol_error("message", frame)
            self._notice("warning", "bad_message", error=f"not JSON: {e}", frame=clip(frame))
            return []
        if isinstance(data, dict):
            data = [data]  # tolerated; Alpaca always sends arrays
        if not isinstance(data, list):
            if strict:
                self._protocol_error("message", data)
            self._notice("warning", "bad_message", error="not a JSON array", frame=clip(frame))
            return []
        self.messages += len(data)
        out = [m for m in data if isinstance(m, dict)]
        if len(out) != len(data):
            self._notice("warning", "bad_message", error="array item is not an object")
        return out

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("T")
        if kind in ("b", "u"):
            try:
                bar = parse_bar(msg)
            except (KeyError, TypeError, ValueError) as e:
                self._notice("warning", "bad_message", error=describe_error(e), message=clip(msg))
                return
            self._flowed = True
            self._sink(StreamBar(bar=bar, updated=kind == "u"))
        elif kind == "s":
            try:
                status = parse_status(msg)
            except (KeyError, TypeError, ValueError) as e:
                self._notice("warning", "bad_message", error=describe_error(e), message=clip(msg))
                return
            self._flowed = True
            self._sink(status)
        elif kind == "error":
            self._error_frame(msg)
        else:
            # Other channels, a repeated subscription reply, future message types: harmless.
            name = str(kind)
            if name not in self._unknown_types:
                self._unknown_types.add(name)
                self._notice("info", "unknown_message", type=name, keys=sorted(map(str, msg)))

    # -- errors ----------------------------------------------------------------------------

    def _error_frame(self, msg: Mapping[str, Any]) -> NoReturn:
        raw_code = msg.get("code")
        code = raw_code if isinstance(raw_code, int) else None
        text = self._scrub(str(msg.get("msg", "")))
        where = f"market-data stream at {self._url}"
        if code == 402:
            raise StreamAuthFailed(
                f"{where} refused the keys (402 {text or 'auth failed'}): check that "
                "APCA_API_KEY_ID/APCA_API_SECRET_KEY are valid for this account (paper and "
                "live keys differ)",
                code=code,
            )
        if code == 409:
            raise StreamSubscriptionRefused(
                f"your Alpaca plan does not include the {self._feed!r} feed (409 "
                f"{text or 'insufficient subscription'} from {self._url}); use feed 'iex' "
                "(free) or 'delayed_sip', or upgrade the plan",
                code=code,
            )
        if code in _FATAL_SUBSCRIPTION:
            raise StreamSubscriptionRefused(
                f"{where} refused the subscription to {len(self._symbols)} symbol(s) on feed "
                f"{self._feed!r} ({code} {text or _FATAL_SUBSCRIPTION[code]})",
                code=code,
            )
        if code == 406:
            self._notice(
                "warning",
                "connection_limit",
                code=code,
                url=self._url,
                retry_after_s=self._limit_backoff_s,
                message=f"{where}: connection limit exceeded (406): another connection holds "
                "the slot (another tradingd, a notebook, or a socket from a crash that Alpaca "
                f"holds for about 90 s); retrying in at least {self._limit_backoff_s:g} s",
            )
            raise _Reconnect(
                f"406 {text or 'connection limit exceeded'}", floor_s=self._limit_backoff_s
            )
        level: Literal["warning", "error"] = "warning" if code in (404, 407, 500) else "error"
        self._notice(level, "stream_error", code=code, url=self._url, message=text)
        raise _Reconnect(f"error {code} {text}".rstrip())

    def _protocol_error(self, stage: str, got: Any) -> NoReturn:
        shown = self._scrub(clip(got))
        self._notice("error", "protocol_error", url=self._url, stage=stage, got=shown)
        raise _Reconnect(f"unexpected {stage} from {self._url}: {shown}")

    def _check_subscription(self, subscription: Mapping[str, list[str]]) -> None:
        for channel in ("bars", "updatedBars", "statuses"):
            have = set(subscription.get(channel, []))
            if "*" in have:
                continue
            missing = [s for s in self._symbols if s not in have]
            if missing:
                self._notice(
                    "warning",
                    "subscription_incomplete",
                    channel=channel,
                    missing=missing,
                )

    def _notice(self, level: NoticeLevel, event: str, **fields: Any) -> None:
        self._sink(StreamNotice(level=level, event=event, fields=fields))

    def _scrub(self, text: str) -> str:
        # Server text is echoed into messages: make sure it can never carry the keys.
        for secret in (self._secret, self._key):
            text = text.replace(secret, "***")
        return text


def _close_text(e: ConnectionClosed) -> str:
    frame = e.rcvd
    if frame is None:
        return "no close frame"
    return f"code {frame.code}{' ' + frame.reason if frame.reason else ''}"
