"""Alpaca's Trading API JSON, read into the adapter's types.

Tolerant by design: unknown keys and enum values are ignored (statuses are kept as Alpaca's
strings), money is Decimal, and timestamps may carry ET offsets and nanosecond fractions.
A missing required field raises KeyError or ValueError; the REST client translates those.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from brokers.base import AccountSnapshot, PositionSnapshot
from brokers.orders import OrderSide

_NY = ZoneInfo("America/New_York")
_TS = re.compile(r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:?\d{2})?")


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderSnapshot:
    """An order as Alpaca last reported it. `filled_qty` and `filled_avg_price` are cumulative;
    `qty` is None for notional orders. `status` is Alpaca's string (unknown values kept)."""

    broker_order_id: str
    client_order_id: str
    symbol: str
    side: OrderSide
    qty: Decimal | None
    filled_qty: Decimal
    filled_avg_price: Decimal | None
    status: str
    order_type: str
    limit_price: Decimal | None
    created_at_ns: int
    updated_at_ns: int
    time_in_force: str = ""
    filled_at_ns: int | None = None
    submitted_at: str = ""  # verbatim, to page `GET /v2/orders` by moving `after`


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketClock:
    """Alpaca's market clock; all times UTC ns."""

    ts: int
    is_open: bool
    next_open: int
    next_close: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """One trading day: its regular open and close (America/New_York attached here), UTC ns."""

    day: dt.date
    open_ns: int
    close_ns: int


def parse_ts(text: str) -> int:
    """RFC-3339 (Z or an offset, up to nanosecond fractions) to UTC ns; naive means UTC."""
    m = _TS.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"not an RFC-3339 time: {text!r}")
    offset = m[3] or "+00:00"
    if offset in ("Z", "z"):
        offset = "+00:00"
    elif ":" not in offset:
        offset = f"{offset[:3]}:{offset[3:]}"
    whole = dt.datetime.fromisoformat(m[1].replace(" ", "T") + offset)
    frac = int((m[2] or "0")[:9].ljust(9, "0"))
    return int(whole.timestamp()) * 1_000_000_000 + frac


def format_ts(ns: int) -> str:
    """UTC ns to RFC-3339 with microseconds (rounded down), as Alpaca's query filters take."""
    secs, rem = divmod(ns, 1_000_000_000)
    base = dt.datetime.fromtimestamp(secs, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{rem // 1000:06d}Z"


def parse_order(raw: Mapping[str, Any]) -> OrderSnapshot:
    """An Order object (REST or inside a trade update) to an OrderSnapshot."""
    created = opt_ts(raw.get("created_at")) or 0
    filled_at = opt_ts(raw.get("filled_at"))
    return OrderSnapshot(
        broker_order_id=str(raw["id"]),
        client_order_id=str(raw.get("client_order_id") or raw["id"]),
        symbol=str(raw["symbol"]),
        side=OrderSide(str(raw["side"]).lower()),
        qty=opt_decimal(raw.get("qty")),
        filled_qty=opt_decimal(raw.get("filled_qty")) or Decimal(0),
        filled_avg_price=opt_decimal(raw.get("filled_avg_price")),
        status=str(raw.get("status", "")),
        order_type=str(raw.get("type") or raw.get("order_type") or ""),
        limit_price=opt_decimal(raw.get("limit_price")),
        created_at_ns=created,
        updated_at_ns=opt_ts(raw.get("updated_at")) or filled_at or created,
        time_in_force=str(raw.get("time_in_force") or ""),
        filled_at_ns=filled_at,
        submitted_at=str(raw.get("submitted_at") or raw.get("created_at") or ""),
    )


def parse_orders(raw: Any) -> list[OrderSnapshot]:
    """A list of Order objects (GET /v2/orders)."""
    if not isinstance(raw, list):
        raise TypeError(f"expected a list of orders, got {type(raw).__name__}")
    return [parse_order(o) for o in raw]


def parse_account(raw: Mapping[str, Any]) -> AccountSnapshot:
    """An Account object to an AccountSnapshot (blocked if any of Alpaca's block flags is set)."""
    return AccountSnapshot(
        cash=_dec_req(raw, "cash"),
        equity=_dec_req(raw, "equity"),
        buying_power=_dec_req(raw, "buying_power"),
        status=str(raw.get("status", "")),
        trading_blocked=bool(raw.get("trading_blocked"))
        or bool(raw.get("trade_suspended_by_user"))
        or bool(raw.get("account_blocked")),
        account_id=str(raw.get("id", "")),
        account_number=str(raw.get("account_number", "")),
    )


def parse_clock(raw: Mapping[str, Any]) -> MarketClock:
    """A Clock object (ET offsets) to a MarketClock."""
    return MarketClock(
        ts=parse_ts(raw["timestamp"]),
        is_open=bool(raw.get("is_open")),
        next_open=parse_ts(raw["next_open"]),
        next_close=parse_ts(raw["next_close"]),
    )


def parse_session(raw: Mapping[str, Any]) -> Session:
    """A Calendar row ("HH:MM" New York wall times, no zone) to a Session."""
    day = dt.date.fromisoformat(str(raw["date"]))
    return Session(day=day, open_ns=_ny_ns(day, raw["open"]), close_ns=_ny_ns(day, raw["close"]))


def parse_position(raw: Mapping[str, Any]) -> PositionSnapshot:
    """A Position object to a PositionSnapshot (qty signed by `side` if Alpaca sent it
    unsigned)."""
    qty = _dec_req(raw, "qty")
    if str(raw.get("side", "")).lower() == "short" and qty > 0:
        qty = -qty
    return PositionSnapshot(
        symbol=str(raw["symbol"]),
        qty=qty,
        avg_entry_price=opt_decimal(raw.get("avg_entry_price")) or Decimal(0),
        market_value=opt_decimal(raw.get("market_value")),
        current_price=opt_decimal(raw.get("current_price")),
    )


def opt_decimal(value: Any) -> Decimal | None:
    """A JSON number or string as a Decimal; None for null or an empty string."""
    if value is None or value == "":
        return None
    return Decimal(str(value))


def _dec_req(raw: Mapping[str, Any], key: str) -> Decimal:
    value = opt_decimal(raw.get(key))
    if value is None:
        raise KeyError(key)
    return value


def opt_ts(value: Any) -> int | None:
    """An RFC-3339 time as UTC ns; None for null or an empty string."""
    return parse_ts(value) if isinstance(value, str) and value else None


def wire(value: Decimal) -> str:
    """A Decimal as a plain JSON string (no exponent, no float artefacts)."""
    return format(value.normalize(), "f")


def _ny_ns(day: dt.date, hhmm: Any) -> int:
    text = str(hhmm)
    hour, minute = (int(text[:2]), int(text[-2:]))
    local = dt.datetime.combine(day, dt.time(hour, minute), tzinfo=_NY)
    return int(local.timestamp()) * 1_000_000_000
