"""The sandbox's two websockets: trade updates (``/stream``) and market data (``/v2/{feed}``).

They speak reference/alpaca.md sections 2 and 3: the trade stream in binary frames of one JSON
object, the data stream in text frames of a JSON array (one minute's bars batched in one frame).
A data feed takes one authenticated connection at a time, as Alpaca's does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from feeds.bar import Bar
from sandbox import wire
from sandbox.auth import Keys
from sandbox.faults import FaultPlan
from sandbox.market import Market

FEEDS = ("iex", "sip", "delayed_sip", "test")
TEST_SYMBOL = "FAKEPACA"
_CHANNELS = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds")
_DATA_ERRORS = {
    400: "invalid syntax",
    401: "not authenticated",
    402: "auth failed",
    403: "already authenticated",
    404: "auth timeout",
    405: "symbol limit exceeded",
    406: "connection limit exceeded",
    407: "slow client",
    409: "insufficient subscription",
    500: "internal error",
}


@dataclass(eq=False, slots=True)
class _Socket:
    ws: web.WebSocketResponse
    transport: asyncio.BaseTransport | None
    silent: bool = False
    authenticated: bool = False

    def cut(self) -> None:
        """Close the TCP connection under the websocket: the peer sees no close frame."""
        if self.transport is not None:
            self.transport.close()


@dataclass(eq=False, slots=True)
class _DataSocket(_Socket):
    feed: str = "iex"
    subs: dict[str, dict[str, None]] = field(default_factory=dict)

    async def send(self, payload: list[dict[str, Any]]) -> None:
        if self.silent or self.ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_str(wire.dumps(payload))

    async def error(self, code: int) -> None:
        await self.send([{"T": "error", "code": code, "msg": _DATA_ERRORS.get(code, "error")}])

    def subscription(self) -> dict[str, Any]:
        out: dict[str, Any] = {"T": "subscription"}
        for channel in (*_CHANNELS, "corrections", "cancelErrors"):
            out[channel] = list(self.subs.get(channel, {}))
        return out

    def update(self, action: str, message: dict[str, Any]) -> None:
        """Apply a subscribe or unsubscribe message (trades carry corrections, cancelErrors)."""
        for channel in _CHANNELS:
            names = message.get(channel) or []
            if not isinstance(names, list):
                continue
            targets = [channel]
            if channel == "trades":
                targets += ["corrections", "cancelErrors"]
            for target in targets:
                current = self.subs.setdefault(target, {})
                for name in names:
                    symbol = str(name).upper()
                    if action == "subscribe":
                        current[symbol] = None
                    else:
                        current.pop(symbol, None)

    def wants(self, symbol: str, channel: str = "bars") -> bool:
        symbols = self.subs.get(channel, {})
        return "*" in symbols or symbol in symbols


@dataclass(eq=False, slots=True)
class _TradeSocket(_Socket):
    listening: bool = False

    async def send(self, message: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_bytes(wire.dumps(message).encode())


def _json_object(raw: str | bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return message if isinstance(message, dict) else None


class TradeStream:
    """The trade-updates websocket: authenticate, listen, then every order event.

    Attributes:
        connections: handshakes accepted.
        events: every trade_updates message sent (or that would have been, unheard).
    """

    def __init__(self, keys: Keys) -> None:
        self._keys = keys
        self._sockets: set[_TradeSocket] = set()
        self.connections = 0
        self.events: list[dict[str, Any]] = []
        self.refusing = False  # new handshakes get HTTP 503 (a trade stream that stays down)

    async def emit(self, message: dict[str, Any]) -> None:
        """Record `message` and send it to every authenticated socket listening."""
        self.events.append(message)
        for sock in list(self._sockets):
            if sock.authenticated and sock.listening:
                await sock.send(message)

    def cut_all(self) -> None:
        """Cut every socket without a close frame."""
        for sock in list(self._sockets):
            sock.cut()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The ``/stream`` handler: one connection until it closes."""
        if self.refusing:
            return web.Response(status=503, text="trade stream unavailable")
        ws = web.WebSocketResponse(timeout=1.0)
        await ws.prepare(request)
        self.connections += 1
        sock = _TradeSocket(ws, request.transport)
        self._sockets.add(sock)
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                message = _json_object(msg.data)
                if message is not None and not await self._message(sock, message):
                    break
        finally:
            self._sockets.discard(sock)
        return ws

    async def _message(self, sock: _TradeSocket, message: dict[str, Any]) -> bool:
        """Handle one client message; False when the socket was closed."""
        data = message.get("data") if isinstance(message.get("data"), dict) else {}
        assert isinstance(data, dict)
        action = message.get("action")
        if action in ("authenticate", "auth"):
            ok = self._keys.accept(data.get("key_id"), data.get("secret_key"))
            sock.authenticated = ok
            status = "authorized" if ok else "unauthorized"
            await sock.send(
                {"stream": "authorization", "data": {"status": status, "action": "authenticate"}}
            )
            if not ok:
                await sock.ws.close()
                return False
        elif action == "listen":
            if not sock.authenticated:
                await sock.send(
                    {
                        "stream": "authorization",
                        "data": {"status": "unauthorized", "action": "listen"},
                    }
                )
                return True
            streams = data.get("streams") or []
            sock.listening = isinstance(streams, list) and "trade_updates" in streams
            await sock.send(
                {
                    "stream": "listening",
                    "data": {"streams": ["trade_updates"] if sock.listening else []},
                }
            )
        return True


class DataStream:
    """The market-data websockets: one minute's bars per frame, trading statuses, faults.

    Args:
        market: whose minutes are played (and its clock, for status times).
        keys: the credentials accepted.
        plan: the armed faults (refused auth, dropped sockets).
        auth_timeout_s: how long a socket may wait before authenticating (Alpaca: 10 s).

    Attributes:
        connections: handshakes accepted.
    """

    def __init__(
        self, market: Market, keys: Keys, plan: FaultPlan, *, auth_timeout_s: float
    ) -> None:
        self._market = market
        self._keys = keys
        self._plan = plan
        self._auth_timeout_s = auth_timeout_s
        self._sockets: set[_DataSocket] = set()
        self._down_until = 0  # handshakes get 503 while fewer minutes were played
        self.connections = 0

    def cut_all(self) -> None:
        """Cut every socket without a close frame."""
        for sock in list(self._sockets):
            sock.cut()

    def silence_all(self) -> None:
        """The sockets open now send nothing more."""
        for sock in self._sockets:
            sock.silent = True

    async def broadcast(self, bars: list[Bar]) -> None:
        """Send one played minute's bars, each socket its subscribed ones in one frame."""
        drop = self._plan.take_data_drop()
        for sock in list(self._sockets):
            if not sock.authenticated:
                continue
            batch = self._batch_for(sock, bars)
            if drop is not None:
                if drop.after_bars and batch:
                    await sock.send(batch[: drop.after_bars])
                sock.cut()
            elif batch:
                await sock.send(batch)
        if drop is not None:
            self._down_until = self._market.played + drop.down_steps

    async def trading_status(self, status: dict[str, Any]) -> None:
        """Send a trading-status message to the sockets subscribed to its symbol's statuses."""
        for sock in list(self._sockets):
            if sock.authenticated and sock.wants(status["S"], "statuses"):
                await sock.send([status])

    @staticmethod
    def _batch_for(sock: _DataSocket, bars: list[Bar]) -> list[dict[str, Any]]:
        if sock.feed == "test":
            if not bars or not sock.wants(TEST_SYMBOL):
                return []
            first = min(bars, key=lambda b: b.symbol)
            return [wire.bar_json(first._replace(symbol=TEST_SYMBOL), symbol_key=True)]
        return [wire.bar_json(b, symbol_key=True) for b in bars if sock.wants(b.symbol)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The ``/v2/{feed}`` handler: greet, authenticate (by header or message), subscribe."""
        if self._market.played < self._down_until:
            return web.Response(status=503, text="service unavailable")
        ws = web.WebSocketResponse(timeout=1.0)
        await ws.prepare(request)
        self.connections += 1
        sock = _DataSocket(ws, request.transport, feed=request.match_info["feed"])
        self._sockets.add(sock)
        try:
            await sock.send([{"T": "success", "msg": "connected"}])
            headers = request.headers
            if "APCA-API-KEY-ID" in headers and not await self._auth(
                sock, headers.get("APCA-API-KEY-ID"), headers.get("APCA-API-SECRET-KEY")
            ):
                return ws
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._auth_timeout_s
            while not ws.closed:
                wait = None if sock.authenticated else max(0.0, deadline - loop.time())
                try:
                    msg = await ws.receive(timeout=wait)
                except TimeoutError:
                    await self._fail(sock, 404)
                    break
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                if not await self._message(sock, msg.data):
                    break
        finally:
            self._sockets.discard(sock)
        return ws

    async def _fail(self, sock: _DataSocket, code: int) -> None:
        await sock.error(code)
        await sock.ws.close()

    async def _auth(self, sock: _DataSocket, key: object, secret: object) -> bool:
        if sock.authenticated:
            await sock.error(403)
            return True
        refusal = self._plan.take_refusal()
        if refusal is not None:
            await self._fail(sock, refusal)
            return False
        if not self._keys.accept(key, secret):
            await self._fail(sock, 402)
            return False
        if any(s.authenticated and s.feed == sock.feed for s in self._sockets):
            await self._fail(sock, 406)
            return False
        sock.authenticated = True
        await sock.send([{"T": "success", "msg": "authenticated"}])
        return True

    async def _message(self, sock: _DataSocket, raw: str | bytes) -> bool:
        """Handle one client message; False when the socket was closed."""
        message = _json_object(raw)
        if message is None:
            await sock.error(400)
            return True
        action = message.get("action")
        if action == "auth":
            return await self._auth(sock, message.get("key"), message.get("secret"))
        if action in ("subscribe", "unsubscribe"):
            if not sock.authenticated:
                await sock.error(401)
                return True
            sock.update(action, message)
            await sock.send([sock.subscription()])
            return True
        await sock.error(400)
        return True
