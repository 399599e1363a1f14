"""The trade-updates websocket client (reference section 2), on websockets' asyncio API.

It authenticates, listens to `trade_updates`, and reports what happens as signals to one
callback: `StreamUp` after each good handshake, `TradeUpdate` for each update (the `data` dict,
as Alpaca sent it), `StreamOddity` for frames it could not use, and `StreamDown` after each lost
connection or failed attempt. It reconnects by itself with jittered exponential backoff; the
adapter decides what a reconnect means (reconciliation). The stream has no replay: events sent
while it is down are lost to it.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from brokers.errors import BrokerError


class TradeStreamRefused(BrokerError):
    """The trade stream refused the keys: fatal (reconnecting would not help)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamUp:
    """Authenticated and listening; `connects` counts good handshakes, from 1."""

    connects: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamDown:
    """The connection was lost or could not be made; the next attempt is in `retry_in_s`."""

    reason: str
    retry_in_s: float
    was_up: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeUpdate:
    """One `trade_updates` message's `data` (event, order, execution_id, price, qty, ...)."""

    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamOddity:
    """A frame that was not JSON or not a known message; ignored."""

    what: str
    sample: str


StreamSignal: TypeAlias = StreamUp | StreamDown | TradeUpdate | StreamOddity

_HANDSHAKE_429_S = 90.0  # reference 7.1: a stale socket may hold the one slot ~90 s


class TradeStream:
    """One trade-updates connection per account, kept up until the task running `run` is
    cancelled.

    Args:
        url: e.g. ``wss://paper-api.alpaca.markets/stream``.
        on_signal: called on the loop for every signal, in order; an exception raised by it
            ends `run` (a bug in the caller must not be swallowed).
        backoff_min_s, backoff_max_s: the reconnect delay doubles from min to max (equal
            jitter) and restarts at min after a good handshake.
        handshake_429_s: the least wait after an HTTP 429 on the handshake.
    """

    def __init__(
        self,
        *,
        url: str,
        key: str,
        secret: str,
        on_signal: Callable[[StreamSignal], None],
        backoff_min_s: float = 1.0,
        backoff_max_s: float = 30.0,
        handshake_429_s: float = _HANDSHAKE_429_S,
        open_timeout_s: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.url = url
        self._key = key
        self._secret = secret
        self._on_signal = on_signal
        self._backoff_min_s = backoff_min_s
        self._backoff_max_s = backoff_max_s
        self._handshake_429_s = handshake_429_s
        self._open_timeout_s = open_timeout_s
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._failures = 0
        self.connected = False
        self.connects = 0

    async def run(self) -> None:
        """Connect, listen and reconnect until cancelled.

        Raises:
            TradeStreamRefused: the server answered the authentication with anything but
                ``authorized``.
        """
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus, WebSocketException

        while True:
            was_up = False
            floor_s = 0.0
            try:
                async with connect(
                    self.url, open_timeout=self._open_timeout_s, max_size=2**24
                ) as ws:
                    await self._handshake(ws)
                    was_up = True
                    self._failures = 0
                    self.connected = True
                    self.connects += 1
                    self._on_signal(StreamUp(connects=self.connects))
                    async for frame in ws:
                        self._dispatch(frame)
                reason = "closed by the server"
            except InvalidStatus as e:
                status = e.response.status_code
                reason = f"handshake refused with HTTP {status}"
                if status == 429:
                    floor_s = self._handshake_429_s
            except (WebSocketException, OSError, TimeoutError) as e:
                reason = f"{type(e).__name__}: {e}"
            finally:
                self.connected = False
            self._failures += 1
            delay = max(self._backoff(), floor_s)
            self._on_signal(StreamDown(reason=reason, retry_in_s=delay, was_up=was_up))
            await self._sleep(delay)

    async def _handshake(self, ws: Any) -> None:
        auth = {"action": "authenticate", "data": {"key_id": self._key, "secret_key": self._secret}}
        await ws.send(json.dumps(auth))
        reply = await self._expect(ws, "authorization")
        status = (reply.get("data") or {}).get("status")
        if status != "authorized":
            raise TradeStreamRefused(
                f"the trade stream at {self.url} refused the keys ({status!r}). Check that "
                "APCA_API_KEY_ID and APCA_API_SECRET_KEY belong to this environment"
            )
        await ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        ack = await self._expect(ws, "listening")
        streams = (ack.get("data") or {}).get("streams") or []
        if "trade_updates" not in streams:
            raise TradeStreamRefused(
                f"the trade stream at {self.url} did not grant trade_updates (got {streams!r})"
            )

    async def _expect(self, ws: Any, stream: str) -> dict[str, Any]:
        """The next message of `stream` within the open timeout; other messages are reported
        as oddities (nothing else is expected during the handshake)."""
        async with asyncio.timeout(self._open_timeout_s):
            while True:
                for message in self._messages(await ws.recv()):
                    if message.get("stream") == stream:
                        return message
                    self._on_signal(StreamOddity(what="handshake", sample=str(message)[:200]))

    def _dispatch(self, frame: str | bytes) -> None:
        for message in self._messages(frame):
            if message.get("stream") != "trade_updates":
                self._on_signal(StreamOddity(what="stream", sample=str(message)[:200]))
            elif isinstance(message.get("data"), dict):
                self._on_signal(TradeUpdate(data=message["data"]))
            else:  # `data: null` was seen in 2020 (reference 6.2)
                self._on_signal(StreamOddity(what="null data", sample=str(message)[:200]))

    def _messages(self, frame: str | bytes) -> list[dict[str, Any]]:
        """The JSON objects of one frame (binary or text; an object or an array of them)."""
        try:
            decoded = json.loads(frame)
        except ValueError:
            self._on_signal(StreamOddity(what="not JSON", sample=repr(frame[:200])))
            return []
        items = decoded if isinstance(decoded, list) else [decoded]
        out = [m for m in items if isinstance(m, dict)]
        if len(out) != len(items):
            self._on_signal(StreamOddity(what="not an object", sample=repr(frame[:200])))
        return out

    def _backoff(self) -> float:
        ceiling = min(self._backoff_max_s, self._backoff_min_s * 2 ** (self._failures - 1))
        return float(ceiling / 2 + self._rng.uniform(0, ceiling / 2))
