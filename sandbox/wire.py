"""Alpaca's JSON shapes as the sandbox writes them (reference/alpaca.md sections 1-4).

Pure functions, no I/O. Money and quantities are Decimal and go out as strings; times are UTC
RFC-3339 with ``Z``, except the clock's, which carry New York's offset.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from feeds.bar import NS_PER_SECOND, Bar

if TYPE_CHECKING:
    from sandbox.orders import Fill, SandboxOrder

_ASSET_NS = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")


def dumps(value: Any) -> str:
    """Compact JSON (no spaces), as Alpaca's streams and errors send it."""
    return json.dumps(value, separators=(",", ":"))


def rfc3339(ts_ns: int) -> str:
    """UTC RFC-3339 with ``Z``; nanosecond digits only when the time has a fraction."""
    seconds, frac = divmod(ts_ns, NS_PER_SECOND)
    text = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{frac:09d}Z" if frac else f"{text}Z"


def local_iso(ts_ns: int, tz: dt.tzinfo) -> str:
    """RFC-3339 in the exchange's zone with its offset (how /v2/clock stamps times)."""
    return dt.datetime.fromtimestamp(ts_ns / NS_PER_SECOND, tz).isoformat()


def dec(value: Decimal) -> str:
    """A Decimal as Alpaca writes numbers: a plain string, no exponent, no trailing zeros."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def asset_id(symbol: str) -> str:
    """A stable asset uuid per symbol."""
    return str(uuid.uuid5(_ASSET_NS, symbol))


def bar_json(bar: Bar, *, symbol_key: bool = False, kind: str = "b") -> dict[str, Any]:
    """A bar as the stream (``symbol_key``: with ``T`` and ``S``) or the REST API sends it."""
    out: dict[str, Any] = {}
    if symbol_key:
        out["T"] = kind
        out["S"] = bar.symbol
    out.update(
        o=bar.open,
        h=bar.high,
        l=bar.low,
        c=bar.close,
        v=int(bar.volume),
        t=rfc3339(bar.ts),
        n=bar.trade_count if bar.trade_count is not None else 0,
        vw=bar.vwap if bar.vwap is not None else bar.close,
    )
    return out


def asset_json(symbol: str) -> dict[str, Any]:
    """Alpaca's Asset object (reference §1.6) for a symbol the sandbox trades."""
    return {
        "id": asset_id(symbol),
        "class": "us_equity",
        "exchange": "NASDAQ",
        "symbol": symbol,
        "name": f"{symbol} Sandbox Inc. Common Stock",
        "status": "active",
        "tradable": True,
        "marginable": True,
        "shortable": False,
        "easy_to_borrow": True,
        "fractionable": True,
        "maintenance_margin_requirement": 30,
        "min_order_size": "0.000000001",
        "min_trade_increment": "0.000000001",
        "price_increment": "0.01",
        "attributes": ["fractional_eh_enabled"],
    }


def account_json(
    *,
    account_id: str,
    number: str,
    cash: Decimal,
    long_value: Decimal,
    buying_power: Decimal,
    last_equity: Decimal,
    created_ns: int,
) -> dict[str, Any]:
    """Alpaca's Account object (reference §1.4) for a cash account."""
    equity = cash + long_value
    return {
        "id": account_id,
        "account_number": number,
        "status": "ACTIVE",
        "crypto_status": "INACTIVE",
        "currency": "USD",
        "cash": dec(cash),
        "equity": dec(equity),
        "last_equity": dec(last_equity),
        "buying_power": dec(buying_power),
        "regt_buying_power": dec(buying_power),
        "non_marginable_buying_power": dec(buying_power),
        "options_buying_power": "0",
        "portfolio_value": dec(equity),
        "long_market_value": dec(long_value),
        "short_market_value": "0",
        "initial_margin": "0",
        "maintenance_margin": "0",
        "last_maintenance_margin": "0",
        "sma": "0",
        "multiplier": "1",
        "accrued_fees": "0",
        "pending_transfer_in": "0",
        "pending_transfer_out": "0",
        "trading_blocked": False,
        "transfers_blocked": False,
        "account_blocked": False,
        "trade_suspended_by_user": False,
        "shorting_enabled": False,
        "created_at": rfc3339(created_ns),
        "options_approved_level": 0,
        "options_trading_level": 0,
    }


def position_json(
    *,
    symbol: str,
    qty: Decimal,
    available: Decimal,
    cost: Decimal,
    price: Decimal,
    lastday_price: Decimal,
) -> dict[str, Any]:
    """Alpaca's Position object (reference §1.5) for a long position marked at `price`."""
    value = qty * price
    pl = value - cost
    plpc = dec((pl / cost).quantize(Decimal("0.0001"))) if cost else "0"
    return {
        "asset_id": asset_id(symbol),
        "symbol": symbol,
        "exchange": "NASDAQ",
        "asset_class": "us_equity",
        "asset_marginable": False,
        "qty": dec(qty),
        "qty_available": dec(available),
        "side": "long",
        "avg_entry_price": dec(cost / qty),
        "market_value": dec(value),
        "cost_basis": dec(cost),
        "unrealized_pl": dec(pl),
        "unrealized_plpc": plpc,
        "unrealized_intraday_pl": dec(pl),
        "unrealized_intraday_plpc": plpc,
        "current_price": dec(price),
        "lastday_price": dec(lastday_price),
        "change_today": "0",
    }


def _opt(value: Decimal | None) -> str | None:
    return None if value is None else dec(value)


def _opt_time(ts_ns: int | None) -> str | None:
    return None if ts_ns is None else rfc3339(ts_ns)


def order_json(order: SandboxOrder) -> dict[str, Any]:
    """Alpaca's Order object (every key of reference §1.3)."""
    return {
        "id": order.id,
        "client_order_id": order.client_order_id,
        "created_at": rfc3339(order.created_ns),
        "updated_at": rfc3339(order.updated_ns or order.created_ns),
        "submitted_at": rfc3339(order.created_ns),
        "filled_at": _opt_time(order.filled_ns),
        "expired_at": None,
        "expires_at": None,
        "canceled_at": _opt_time(order.canceled_ns),
        "failed_at": None,
        "replaced_at": None,
        "replaced_by": None,
        "replaces": None,
        "asset_id": asset_id(order.symbol),
        "symbol": order.symbol,
        "asset_class": "us_equity",
        "notional": _opt(order.notional),
        "qty": _opt(order.qty),
        "filled_qty": dec(order.filled_qty),
        "filled_avg_price": _opt(order.filled_avg_price),
        "order_class": "",
        "order_type": order.type,
        "type": order.type,
        "side": order.side,
        "time_in_force": order.time_in_force,
        "limit_price": _opt(order.limit_price),
        "stop_price": None,
        "status": order.status,
        "extended_hours": order.extended_hours,
        "legs": None,
        "trail_percent": None,
        "trail_price": None,
        "hwm": None,
        "position_intent": "buy_to_open" if order.side == "buy" else "sell_to_close",
    }


def order_event(
    event: str,
    order: SandboxOrder,
    ts_ns: int,
    *,
    execution: Fill | None = None,
) -> dict[str, Any]:
    """A trade_updates message (reference §2); fills carry price, qty and position_qty."""
    data: dict[str, Any] = {
        "event": event,
        "execution_id": str(uuid.uuid4()),
        "order": order_json(order),
        "timestamp": rfc3339(ts_ns),
    }
    if execution is not None:
        data["price"] = dec(execution.price)
        data["qty"] = dec(execution.qty)
        data["position_qty"] = dec(execution.position_qty)
    return {"stream": "trade_updates", "data": data}


def unknown_event(last_order: SandboxOrder | None, timestamp: str) -> dict[str, Any]:
    """A trade_updates message of a type no client knows, with extra keys (a fault to send)."""
    data: dict[str, Any] = {
        "event": "sandbox_unknown_event",
        "execution_id": "00000000-0000-4000-8000-000000000000",
        "timestamp": timestamp,
        "reason": "CORPORATE_ACTION",
        "sandbox_extra": {"nested": [1, 2, 3]},
    }
    if last_order is not None:
        order = order_json(last_order)
        order["subtag"] = "sandbox"
        data["order"] = order
    return {"stream": "trade_updates", "data": data}
