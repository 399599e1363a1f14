"""State of the sandbox (the local Alpaca stand-in): the virtual market and the cash account.

Pure logic, no I/O: `sandbox.server` serves it over Alpaca's wire protocols. JSON shapes follow
reference/alpaca.md sections 1-4; money and quantities are Decimal and go out as strings.
"""

from __future__ import annotations

import bisect
import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from brokers.ticks import tick_size
from feeds.bar import NS_PER_MINUTE, NS_PER_SECOND, Bar
from feeds.calendar import SessionCalendar
from feeds.days import local_midnight_ns
from feeds.replay import ReplaySource

NY = "America/New_York"
_QTY_STEP = Decimal("0.000000001")
_CENT = Decimal("0.01")
_ONE = Decimal(1)
_ASSET_NS = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")
OPEN_STATUSES = frozenset({"new", "accepted", "partially_filled", "pending_new"})


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


class Market:
    """The bars to play and the virtual clock over them.

    Minutes are the bars' distinct timestamps in order. Minutes ``[0, played)`` are in the past:
    served by the historical endpoint, never streamed again.

    Args:
        data: a file or folder `ReplaySource` reads.
        symbols: keep only these symbols; None keeps all.
        start: first exchange-local date to play; None: from the first bar.
        warm_minutes: minutes already in the past at start.

    Raises:
        SourceError: the data cannot be read.
        ValueError: no bars, or more warm minutes than there are minutes.
    """

    def __init__(
        self,
        data: Path,
        *,
        symbols: Sequence[str] | None,
        start: dt.date | None,
        warm_minutes: int,
        calendar: SessionCalendar,
    ) -> None:
        self.calendar = calendar
        start_ns = None if start is None else local_midnight_ns(start, NY)
        source = ReplaySource(data, symbols=symbols, start_ns=start_ns)
        self.symbols: tuple[str, ...] = source.symbols
        self.minutes: list[int] = []
        self.by_minute: list[list[Bar]] = []
        self.by_symbol: dict[str, list[Bar]] = {s: [] for s in self.symbols}
        for bar, _ in source:
            if not self.minutes or self.minutes[-1] != bar.ts:
                self.minutes.append(bar.ts)
                self.by_minute.append([])
            self.by_minute[-1].append(bar)
            self.by_symbol[bar.symbol].append(bar)
        self.ts_by_symbol = {s: [b.ts for b in bars] for s, bars in self.by_symbol.items()}
        if not self.minutes:
            raise ValueError(f"{data}: no bars to play")
        if not 0 <= warm_minutes <= len(self.minutes):
            raise ValueError(
                f"warm_minutes must be within 0..{len(self.minutes)}, got {warm_minutes}"
            )
        self.played = warm_minutes
        self.now_ns = (
            self.minutes[warm_minutes - 1] + NS_PER_MINUTE if warm_minutes else self.minutes[0]
        )

    @property
    def exhausted(self) -> bool:
        """Whether every minute was played."""
        return self.played >= len(self.minutes)

    @property
    def last_minute_ns(self) -> int | None:
        """Start of the last minute in the past, None before the first."""
        return self.minutes[self.played - 1] if self.played else None

    def visible_end_ns(self) -> int:
        """Bars starting before this time are history (played or warm)."""
        return self.minutes[self.played] if not self.exhausted else self.minutes[-1] + 1

    def next_bars(self) -> dict[str, Bar]:
        """The bars of the next minute to play, by symbol (empty when exhausted)."""
        if self.exhausted:
            return {}
        return {b.symbol: b for b in self.by_minute[self.played]}

    def advance(self) -> list[Bar]:
        """Play the next minute: it becomes the past and `now_ns` its end. Returns its bars."""
        bars = self.by_minute[self.played]
        self.now_ns = self.minutes[self.played] + NS_PER_MINUTE
        self.played += 1
        return bars

    def last_bar(self, symbol: str) -> Bar | None:
        """The latest bar of `symbol` already in the past."""
        times = self.ts_by_symbol.get(symbol)
        if not times:
            return None
        i = bisect.bisect_left(times, self.visible_end_ns())
        return self.by_symbol[symbol][i - 1] if i else None

    def reference_price(self, symbol: str) -> Decimal | None:
        """Last close in the past, else the next open (to estimate an order's cost)."""
        bar = self.last_bar(symbol)
        if bar is not None:
            return Decimal(repr(bar.close))
        times = self.ts_by_symbol.get(symbol)
        if times:
            return Decimal(repr(self.by_symbol[symbol][0].open))
        return None

    def history(self, symbol: str, start_ns: int, end_ns: int) -> list[Bar]:
        """Past bars of `symbol` with start_ns <= t <= end_ns, in time order."""
        times = self.ts_by_symbol.get(symbol, [])
        end = min(end_ns + 1, self.visible_end_ns())
        lo = bisect.bisect_left(times, start_ns)
        hi = bisect.bisect_left(times, end)
        return self.by_symbol[symbol][lo:hi] if lo < hi else []


# -- orders and the account -----------------------------------------------------------------


class OrderError(Exception):
    """An order request Alpaca would refuse: the HTTP status and the JSON body to answer."""

    def __init__(self, status: int, code: int, message: str, **extra: str) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"code": code, "message": message, **extra}


@dataclass(slots=True, kw_only=True)
class SandboxOrder:
    """One order as the sandbox keeps it; `to_json` gives Alpaca's Order object."""

    id: str
    client_order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    qty: Decimal | None
    notional: Decimal | None
    limit_price: Decimal | None
    extended_hours: bool
    created_ns: int
    fill_from: int  # index of the first minute whose open may fill it
    status: str = "new"
    updated_ns: int = 0
    filled_ns: int | None = None
    canceled_ns: int | None = None
    filled_qty: Decimal = Decimal(0)
    filled_avg_price: Decimal | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        """Whether the order can still fill or be canceled."""
        return self.status in OPEN_STATUSES

    def to_json(self) -> dict[str, Any]:
        """Alpaca's Order object (every key of reference §1.3)."""
        return {
            "id": self.id,
            "client_order_id": self.client_order_id,
            "created_at": rfc3339(self.created_ns),
            "updated_at": rfc3339(self.updated_ns or self.created_ns),
            "submitted_at": rfc3339(self.created_ns),
            "filled_at": None if self.filled_ns is None else rfc3339(self.filled_ns),
            "expired_at": None,
            "expires_at": None,
            "canceled_at": None if self.canceled_ns is None else rfc3339(self.canceled_ns),
            "failed_at": None,
            "replaced_at": None,
            "replaced_by": None,
            "replaces": None,
            "asset_id": asset_id(self.symbol),
            "symbol": self.symbol,
            "asset_class": "us_equity",
            "notional": None if self.notional is None else dec(self.notional),
            "qty": None if self.qty is None else dec(self.qty),
            "filled_qty": dec(self.filled_qty),
            "filled_avg_price": (
                None if self.filled_avg_price is None else dec(self.filled_avg_price)
            ),
            "order_class": "",
            "order_type": self.type,
            "type": self.type,
            "side": self.side,
            "time_in_force": self.time_in_force,
            "limit_price": None if self.limit_price is None else dec(self.limit_price),
            "stop_price": None,
            "status": self.status,
            "extended_hours": self.extended_hours,
            "legs": None,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
            "position_intent": "buy_to_open" if self.side == "buy" else "sell_to_close",
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Fill:
    """One execution the account made."""

    order: SandboxOrder
    price: Decimal
    qty: Decimal
    position_qty: Decimal
    ts_ns: int


@dataclass(slots=True)
class _Position:
    qty: Decimal
    cost: Decimal  # total cost basis of the shares held


def _decimal(body: dict[str, Any], key: str) -> Decimal | None:
    raw = body.get(key)
    if raw is None or raw == "":
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise OrderError(422, 40010000, f"invalid {key} {raw}") from None
    if not value.is_finite():
        raise OrderError(422, 40010000, f"invalid {key} {raw}")
    return value


def _decimals(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


class Account:
    """A cash account: no margin, no shorting. Orders fill at a minute's open.

    Args:
        cash: starting cash.
    """

    def __init__(self, cash: Decimal) -> None:
        self.start_cash = cash
        self.cash = cash
        self._positions: dict[str, _Position] = {}
        self.orders: dict[str, SandboxOrder] = {}
        self.by_client_id: dict[str, SandboxOrder] = {}
        self.fill_delay_minutes = 0
        self._last_created_ns = 0
        self.id = str(uuid.uuid4())
        self.created_ns = 0

    @property
    def positions(self) -> dict[str, Decimal]:
        """Quantity held per symbol (flat symbols absent)."""
        return {s: p.qty for s, p in self._positions.items()}

    def position_cost(self, symbol: str) -> Decimal:
        """Cost basis of the shares of `symbol` held."""
        pos = self._positions.get(symbol)
        return Decimal(0) if pos is None else pos.cost

    def open_orders(self) -> list[SandboxOrder]:
        """Open orders, oldest first."""
        return [o for o in self.orders.values() if o.is_open]

    def reserved_cash(self, market: Market) -> Decimal:
        """Cash that open buy orders may spend (estimated at their limit or the last close)."""
        total = Decimal(0)
        for o in self.open_orders():
            if o.side == "buy":
                total += self._cost(o, market)
        return total

    def held_for_orders(self, symbol: str) -> Decimal:
        """Shares of `symbol` that open sell orders may take."""
        return sum(
            (o.qty or Decimal(0)) - o.filled_qty
            for o in self.open_orders()
            if o.side == "sell" and o.symbol == symbol
        ) or Decimal(0)

    def _cost(self, order: SandboxOrder, market: Market) -> Decimal:
        if order.notional is not None:
            return order.notional
        price = order.limit_price or market.reference_price(order.symbol) or Decimal(0)
        return ((order.qty or Decimal(0)) - order.filled_qty) * price

    def submit(self, body: dict[str, Any], market: Market) -> SandboxOrder:
        """Validate a POST /v2/orders body and create the order (status ``new``).

        Raises:
            OrderError: what Alpaca would answer instead (422 invalid, 403 funds or shares).
        """
        if not isinstance(body, dict):
            raise OrderError(422, 40010000, "request body must be a JSON object")
        symbol = str(body.get("symbol") or "").upper()
        if not symbol:
            raise OrderError(422, 40010000, "symbol is required")
        if symbol not in market.symbols:
            raise OrderError(422, 42210000, f'asset "{symbol}" not found')
        side = body.get("side")
        if side not in ("buy", "sell"):
            raise OrderError(422, 40010000, f"invalid side {side}")
        kind = body.get("type") or body.get("order_type")
        if kind not in ("market", "limit"):
            raise OrderError(422, 40010000, f"invalid order type {kind} (sandbox: market, limit)")
        tif = body.get("time_in_force")
        if tif not in ("day", "gtc", "opg", "cls", "ioc", "fok"):
            raise OrderError(422, 40010000, f"invalid time_in_force {tif}")
        qty = _decimal(body, "qty")
        notional = _decimal(body, "notional")
        if (qty is None) == (notional is None):
            raise OrderError(422, 40010000, "exactly one of qty or notional is required")
        if qty is not None and (qty <= 0 or _decimals(qty) > 9):
            raise OrderError(422, 40010000, f"invalid qty {body['qty']}")
        if notional is not None and (notional <= 0 or _decimals(notional) > 2):
            raise OrderError(422, 40010000, f"invalid notional {body['notional']}")
        limit = _decimal(body, "limit_price")
        if kind == "limit":
            if limit is None or limit <= 0:
                raise OrderError(422, 40010000, "limit_price is required for limit orders")
            if _decimals(limit) > _decimals(tick_size(limit)):
                raise OrderError(
                    422,
                    42210000,
                    f"invalid limit_price {body['limit_price']}. sub-penny increment does not "
                    "fulfill minimum pricing criteria",
                )
        elif limit is not None:
            raise OrderError(422, 40010000, "limit_price is only for limit orders")
        client_id = body.get("client_order_id") or str(uuid.uuid4())
        if not isinstance(client_id, str) or len(client_id) > 128:
            raise OrderError(422, 40010000, "client_order_id must be no more than 128 characters")
        if client_id in self.by_client_id:
            raise OrderError(422, 40010001, "client_order_id must be unique")
        created = max(market.now_ns, self._last_created_ns + 1_000)
        order = SandboxOrder(
            id=str(uuid.uuid4()),
            client_order_id=client_id,
            symbol=symbol,
            side=side,
            type=kind,
            time_in_force=tif,
            qty=qty,
            notional=notional,
            limit_price=limit,
            extended_hours=bool(body.get("extended_hours", False)),
            created_ns=created,
            fill_from=market.played + self.fill_delay_minutes,
        )
        if side == "buy":
            cost = self._cost(order, market)
            if cost < _ONE:
                raise OrderError(422, 42210000, "cost basis must be >= 1")
            buying_power = self.cash - self.reserved_cash(market)
            if cost > buying_power:
                raise OrderError(
                    403,
                    40310000,
                    "insufficient buying power",
                    buying_power=dec(buying_power),
                    cost_basis=dec(cost.quantize(_CENT)),
                )
        else:
            held = self.positions.get(symbol, Decimal(0))
            available = held - self.held_for_orders(symbol)
            wanted = qty if qty is not None else None
            if wanted is None:
                # A notional sell: shares at the reference price.
                price = market.reference_price(symbol) or _ONE
                wanted = (notional or Decimal(0)) / price
            if wanted > available:
                raise OrderError(
                    403,
                    40310000,
                    f"insufficient qty available for order (requested: {dec(wanted)}, "
                    f"available: {dec(available)})",
                    available=dec(available),
                    existing_qty=dec(held),
                    held_for_orders=dec(held - available),
                    symbol=symbol,
                )
        self._last_created_ns = created
        self.orders[order.id] = order
        self.by_client_id[client_id] = order
        return order

    def cancel(self, order: SandboxOrder, now_ns: int) -> None:
        """Cancel an open order.

        Raises:
            OrderError: 422 when the order is no longer cancelable.
        """
        if not order.is_open:
            raise OrderError(422, 42210000, f"order is not cancelable (status: {order.status})")
        order.status = "canceled"
        order.canceled_ns = order.updated_ns = max(now_ns, order.created_ns)

    def delay_fills(self, minutes: int, played: int) -> None:
        """Open and future orders fill `minutes` later than they otherwise would."""
        self.fill_delay_minutes = minutes
        for o in self.open_orders():
            o.fill_from = max(o.fill_from, played + minutes)

    def fill_due(self, index: int, bars: dict[str, Bar], ts_ns: int) -> list[Fill]:
        """Fill the open orders due at minute `index`, at that minute's bars (its open)."""
        fills: list[Fill] = []
        for order in self.open_orders():
            bar = bars.get(order.symbol)
            if bar is None or order.fill_from > index:
                continue
            price = self._fill_price(order, bar)
            if price is None:
                continue
            if order.qty is not None:
                qty = order.qty - order.filled_qty
            else:
                qty = ((order.notional or Decimal(0)) / price).quantize(_QTY_STEP, ROUND_DOWN)
            if order.side == "sell":
                # A cash account never goes short: sell at most what is held.
                qty = min(qty, self.positions.get(order.symbol, Decimal(0)))
            if qty <= 0:
                continue
            self._book(order.symbol, order.side, qty, price)
            order.filled_qty += qty
            order.filled_avg_price = price
            order.status = "filled"
            order.filled_ns = order.updated_ns = max(ts_ns, order.created_ns)
            fills.append(
                Fill(
                    order=order,
                    price=price,
                    qty=qty,
                    position_qty=self.positions.get(order.symbol, Decimal(0)),
                    ts_ns=order.filled_ns,
                )
            )
        return fills

    @staticmethod
    def _fill_price(order: SandboxOrder, bar: Bar) -> Decimal | None:
        open_ = Decimal(repr(bar.open))
        if order.type == "market" or order.limit_price is None:
            return open_
        limit = order.limit_price
        if order.side == "buy":
            return min(open_, limit) if Decimal(repr(bar.low)) <= limit else None
        return max(open_, limit) if Decimal(repr(bar.high)) >= limit else None

    def _book(self, symbol: str, side: str, qty: Decimal, price: Decimal) -> None:
        pos = self._positions.setdefault(symbol, _Position(Decimal(0), Decimal(0)))
        if side == "buy":
            self.cash -= qty * price
            pos.cost += qty * price
            pos.qty += qty
        else:
            self.cash += qty * price
            pos.cost -= pos.cost * qty / pos.qty if pos.qty else Decimal(0)
            pos.qty -= qty
        if pos.qty == 0:
            del self._positions[symbol]

    # -- JSON views --------------------------------------------------------------------------

    def market_value(self, market: Market) -> Decimal:
        """Positions marked at their last close."""
        return sum(
            (q * (market.reference_price(s) or Decimal(0)) for s, q in self.positions.items()),
            Decimal(0),
        )

    def account_json(self, market: Market) -> dict[str, Any]:
        """Alpaca's Account object (reference §1.4) for a cash account."""
        long_value = self.market_value(market)
        equity = self.cash + long_value
        buying_power = self.cash - self.reserved_cash(market)
        return {
            "id": self.id,
            "account_number": "SANDBOX001",
            "status": "ACTIVE",
            "crypto_status": "INACTIVE",
            "currency": "USD",
            "cash": dec(self.cash),
            "equity": dec(equity),
            "last_equity": dec(self.start_cash),
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
            "created_at": rfc3339(self.created_ns),
            "options_approved_level": 0,
            "options_trading_level": 0,
        }

    def position_json(self, symbol: str, market: Market) -> dict[str, Any]:
        """Alpaca's Position object (reference §1.5)."""
        pos = self._positions[symbol]
        price = market.reference_price(symbol) or Decimal(0)
        last = market.last_bar(symbol)
        value = pos.qty * price
        pl = value - pos.cost
        plpc = dec((pl / pos.cost).quantize(Decimal("0.0001"))) if pos.cost else "0"
        return {
            "asset_id": asset_id(symbol),
            "symbol": symbol,
            "exchange": "NASDAQ",
            "asset_class": "us_equity",
            "asset_marginable": False,
            "qty": dec(pos.qty),
            "qty_available": dec(pos.qty - self.held_for_orders(symbol)),
            "side": "long",
            "avg_entry_price": dec(pos.cost / pos.qty),
            "market_value": dec(value),
            "cost_basis": dec(pos.cost),
            "unrealized_pl": dec(pl),
            "unrealized_plpc": plpc,
            "unrealized_intraday_pl": dec(pl),
            "unrealized_intraday_plpc": plpc,
            "current_price": dec(price),
            "lastday_price": dec(Decimal(repr(last.open)) if last else price),
            "change_today": "0",
        }


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
        "order": order.to_json(),
        "timestamp": rfc3339(ts_ns),
    }
    if execution is not None:
        data["price"] = dec(execution.price)
        data["qty"] = dec(execution.qty)
        data["position_qty"] = dec(execution.position_qty)
    return {"stream": "trade_updates", "data": data}
