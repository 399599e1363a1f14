"""What the journal stores, and how: events, orders, targets, ledger snapshots, positions and the
account's identity, to and from JSON-ready data.

Decimals are written as strings (never floats: a quantity or a price reads back equal), enums as
their values, events and orders as their class name and fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import orjson

from brokers.orders import (
    ExecutionEvent,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderSide,
    OrderType,
    SubmitOrder,
    TimeInForce,
)
from composer.targets import Targets
from portfolio.ledger import Ledger

_V = TypeVar("_V")


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountIdentity:
    """The broker account a journal belongs to, stored once (`Journal.set_account`).

    Attributes:
        account_id: the broker's id of the account (Alpaca: a UUID).
        account_number: the account number the broker shows its owner.
        base_url: the trading API's base URL (paper and live accounts live at different ones).
    """

    account_id: str
    account_number: str
    base_url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerSnapshot:
    """The ledger at the start of a segment: what a replay of the segment starts from.

    Attributes:
        positions: symbol -> (signed qty, average cost, last price).
    """

    cash: Decimal
    start_cash: Decimal
    high_water: Decimal
    realized_pnl: Decimal
    positions: dict[str, tuple[Decimal, Decimal, Decimal]] = field(default_factory=dict)

    @classmethod
    def of(cls, ledger: Ledger) -> LedgerSnapshot:
        return cls(
            cash=ledger.cash,
            start_cash=ledger.start_cash,
            high_water=ledger.high_water,
            realized_pnl=ledger.realized_pnl,
            positions={
                s: (p.qty, p.avg_cost, p.last_price) for s, p in sorted(ledger.positions.items())
            },
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "cash": str(self.cash),
            "start_cash": str(self.start_cash),
            "high_water": str(self.high_water),
            "realized_pnl": str(self.realized_pnl),
            "positions": positions_to_json(self.positions),
        }

    def restore_into(self, ledger: Ledger) -> None:
        """Make `ledger` this snapshot again (a restart, or an audit of the run it began)."""
        ledger.adopt(self.cash, self.positions, restart=True)
        ledger.start_cash = self.start_cash
        ledger.realized_pnl = self.realized_pnl
        ledger.restore_high_water(self.high_water)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LedgerSnapshot:
        return cls(
            cash=Decimal(data["cash"]),
            start_cash=Decimal(data["start_cash"]),
            high_water=Decimal(data["high_water"]),
            realized_pnl=Decimal(data["realized_pnl"]),
            positions=positions_from_json(data["positions"]),
        )


def positions_to_json(
    positions: Mapping[str, tuple[Decimal, Decimal, Decimal]],
) -> dict[str, list[str]]:
    """Positions as the journal writes them: symbol -> [qty, average cost, last price]."""
    return {s: [str(q), str(a), str(p)] for s, (q, a, p) in sorted(positions.items())}


def positions_from_json(
    data: Mapping[str, Sequence[str]],
) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
    """The inverse of `positions_to_json`."""
    return {s: (Decimal(q), Decimal(a), Decimal(p)) for s, (q, a, p) in data.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRecord:
    """One order's row: its intent and what the broker said since.

    Attributes:
        status: intent | accepted | partially_filled | filled | canceled | rejected.
        side, qty, order_type, slice_ts: None for an order this journal never decided (an
            event arrived for it first).
        filled_notional: sum of qty * price over its fills.
    """

    client_order_id: str
    symbol: str
    side: OrderSide | None
    qty: Decimal | None
    order_type: OrderType | None
    limit_price: Decimal | None
    slice_ts: int | None
    ts: int
    status: str
    broker_order_id: str | None
    filled_qty: Decimal
    filled_notional: Decimal
    terminal: bool

    def remaining(self) -> SubmitOrder | None:
        """What is still open of this order, as the order book holds it after a restart; None
        when it ended, or was never decided here (an event came first)."""
        if self.terminal or self.side is None or self.qty is None or self.order_type is None:
            return None
        if self.qty <= self.filled_qty:
            return None
        return SubmitOrder(
            client_order_id=self.client_order_id,
            symbol=self.symbol,
            side=self.side,
            qty=self.qty - self.filled_qty,
            order_type=self.order_type,
            ts=self.ts,
            limit_price=self.limit_price,
        )


# The field names of an order record, in order: also the columns the reader selects.
ORDER_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(OrderRecord))


def encode_order_record(record: OrderRecord) -> dict[str, Any]:
    """An order record as JSON-ready data (the open orders a segment began with)."""
    return {name: getattr(record, name) for name in ORDER_FIELDS}


def decode_order_record(data: Mapping[str, Any]) -> OrderRecord:
    """The inverse of `encode_order_record`; also reads a row of the orders table by name."""

    def dec(value: str | None) -> Decimal | None:
        return None if value is None else Decimal(value)

    return OrderRecord(
        client_order_id=data["client_order_id"],
        symbol=data["symbol"],
        side=None if data["side"] is None else OrderSide(data["side"]),
        qty=dec(data["qty"]),
        order_type=None if data["order_type"] is None else OrderType(data["order_type"]),
        limit_price=dec(data["limit_price"]),
        slice_ts=data["slice_ts"],
        ts=data["ts"],
        status=data["status"],
        broker_order_id=data["broker_order_id"],
        filled_qty=Decimal(data["filled_qty"]),
        filled_notional=Decimal(data["filled_notional"]),
        terminal=bool(data["terminal"]),
    )


def intent_row(order: SubmitOrder) -> tuple[Any, ...]:
    """An order's intent as the orders table holds it: client_order_id, symbol, side, qty,
    order_type, limit_price, time_in_force, ts."""
    return (
        order.client_order_id,
        order.symbol,
        order.side.value,
        str(order.qty),
        order.order_type.value,
        None if order.limit_price is None else str(order.limit_price),
        order.time_in_force.value,
        order.ts,
    )


_EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        OrderAccepted,
        OrderFilled,
        OrderPartiallyFilled,
        OrderCanceled,
        OrderRejected,
        SubmitOrder,
    )
}
_DECIMAL_FIELDS = frozenset({"qty", "price", "commission", "leaves_qty", "limit_price"})
_ENUM_FIELDS: dict[str, type[Any]] = {
    "side": OrderSide,
    "order_type": OrderType,
    "time_in_force": TimeInForce,
}
_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in _EVENT_TYPES.values()
}


def encode_event(event: ExecutionEvent | SubmitOrder) -> dict[str, Any]:
    """An event or order as JSON-ready data: its class name and fields (Decimals as strings)."""
    cls = type(event)
    out: dict[str, Any] = {"type": cls.__name__}
    for name in _FIELD_NAMES[cls]:
        value = getattr(event, name)
        out[name] = str(value) if isinstance(value, Decimal) else value
    return out


def decode_event(data: dict[str, Any]) -> Any:
    """The inverse of `encode_event`: the same class with equal fields."""
    cls = _EVENT_TYPES[data["type"]]
    kwargs: dict[str, Any] = {}
    for name in _FIELD_NAMES[cls]:
        if name not in data:
            continue
        value = data[name]
        if value is not None:
            if name in _DECIMAL_FIELDS:
                value = Decimal(value)
            elif name in _ENUM_FIELDS:
                value = _ENUM_FIELDS[name](value)
        kwargs[name] = value
    return cls(**kwargs)


def encode_targets(targets: Targets) -> dict[str, Any]:
    """Composed targets as JSON-ready data.

    The shares and the symbol lists are stored once each however many strategies share them
    (`shares_of`, `symbols_of`: strategy id -> index). The contributions are not stored:
    `Targets.by_strategy` computes them from the strategy weights, signals and shares (targets
    decoded from an older journal, which stored them, are written back in that form).
    """
    data: dict[str, Any] = {
        "ts": targets.ts,
        "weights": targets.weights,
        "strategy_weights": targets.strategy_weights,
        "signals": targets.signals,
    }
    if targets.recorded is not None:
        data["by_strategy"] = targets.recorded
        return data
    data["shares"], data["shares_of"] = _indexed(targets.shares)
    data["symbols"], data["symbols_of"] = _indexed(targets.symbols)
    return data


def decode_targets(data: dict[str, Any]) -> Targets:
    """The inverse of `encode_targets`; reads the older form (contributions stored) too."""
    common = {
        "ts": data["ts"],
        "weights": data["weights"],
        "strategy_weights": data["strategy_weights"],
        "signals": data["signals"],
    }
    if "by_strategy" in data:
        return Targets(**common, recorded=data["by_strategy"])
    shares = data["shares"]
    symbols = [tuple(syms) for syms in data["symbols"]]
    return Targets(
        **common,
        shares={sid: shares[i] for sid, i in data["shares_of"].items()},
        symbols={sid: symbols[i] for sid, i in data["symbols_of"].items()},
    )


def _indexed(by_sid: Mapping[str, _V]) -> tuple[list[_V], dict[str, int]]:
    """The distinct values (by identity, in first-seen order) and each key's index in them."""
    values: list[_V] = []
    index_of: dict[int, int] = {}
    of: dict[str, int] = {}
    for sid, value in by_sid.items():
        i = index_of.get(id(value))
        if i is None:
            i = index_of[id(value)] = len(values)
            values.append(value)
        of[sid] = i
    return values, of


def dumps(value: Any) -> str:
    """JSON text as the journal stores it (Decimals as strings)."""
    return orjson.dumps(value, default=_default).decode()


def loads(text: str | bytes) -> Any:
    """The inverse of `dumps` (Decimals stay strings: the decoders above convert them)."""
    return orjson.loads(text)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot journal a {type(value).__name__}")
