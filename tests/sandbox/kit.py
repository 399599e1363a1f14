"""What the sandbox tests share: the data, the keys, websocket clients, an order body."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from sandbox import Sandbox

DATA = Path(__file__).resolve().parents[2] / "data" / "sample" / "minute"
KEY, SECRET = "sandbox-key", "sandbox-secret"
HEADERS = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}


async def recv_json(ws: Any) -> Any:
    """The next frame of `ws` as JSON (10 s at most)."""
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


async def data_socket(sb: Sandbox, bars: list[str], feed: str = "iex") -> Any:
    """A market-data client, authenticated and subscribed to the bars of `bars`."""
    ws = await connect(sb.data_stream_url(feed))
    assert await recv_json(ws) == [{"T": "success", "msg": "connected"}]
    await ws.send(json.dumps({"action": "auth", "key": KEY, "secret": SECRET}))
    assert await recv_json(ws) == [{"T": "success", "msg": "authenticated"}]
    await ws.send(json.dumps({"action": "subscribe", "bars": bars}))
    reply = await recv_json(ws)
    assert reply[0]["T"] == "subscription"
    return ws


async def trade_socket(sb: Sandbox) -> Any:
    """A trade-updates client, authenticated and listening."""
    ws = await connect(sb.trade_stream_url)
    auth = {"action": "authenticate", "data": {"key_id": KEY, "secret_key": SECRET}}
    await ws.send(json.dumps(auth))
    frame = await asyncio.wait_for(ws.recv(), 10)
    assert isinstance(frame, bytes)  # the trade stream sends binary frames
    assert json.loads(frame)["data"]["status"] == "authorized"
    await ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
    assert (await recv_json(ws))["stream"] == "listening"
    return ws


def order_body(client_order_id: str, qty: str = "3", side: str = "buy") -> dict[str, Any]:
    """A market day order for AAA."""
    return {
        "symbol": "AAA",
        "qty": qty,
        "side": side,
        "type": "market",
        "time_in_force": "day",
        "client_order_id": client_order_id,
    }


def write_bars(path: Path, first: dt.datetime, step: dt.timedelta, count: int) -> Path:
    """A CSV of `count` bars of one symbol, `step` apart from `first` (UTC)."""
    lines = ["timestamp,open,high,low,close,volume"]
    for i in range(count):
        ts = (first + i * step).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{ts},{100 + i},{101 + i},{99 + i},{100.5 + i},1000")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
