"""Orders as the sandbox keeps them, and the checks Alpaca makes on an order request.

`order_from_body` refuses what Alpaca refuses about the request itself (reference/alpaca.md §1.3:
fields, increments, a duplicate client_order_id); the account then checks funds and shares.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from brokers.ticks import tick_size

OPEN_STATUSES = frozenset({"new", "accepted", "partially_filled", "pending_new"})
_TIME_IN_FORCE = ("day", "gtc", "opg", "cls", "ioc", "fok")


class OrderError(Exception):
    """An order request Alpaca would refuse: the HTTP status and the JSON body to answer."""

    def __init__(self, status: int, code: int, message: str, **extra: str) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"code": code, "message": message, **extra}


@dataclass(slots=True, kw_only=True)
class SandboxOrder:
    """One order as the sandbox keeps it; `sandbox.wire.order_json` gives Alpaca's Order."""

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

    @property
    def is_open(self) -> bool:
        """Whether the order can still fill or be canceled."""
        return self.status in OPEN_STATUSES


@dataclass(frozen=True, slots=True, kw_only=True)
class Fill:
    """One execution the account made."""

    order: SandboxOrder
    price: Decimal
    qty: Decimal
    position_qty: Decimal
    ts_ns: int


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


def _amounts(body: dict[str, Any]) -> tuple[Decimal | None, Decimal | None]:
    """(qty, notional): exactly one, positive, in Alpaca's increments."""
    qty = _decimal(body, "qty")
    notional = _decimal(body, "notional")
    if (qty is None) == (notional is None):
        raise OrderError(422, 40010000, "exactly one of qty or notional is required")
    if qty is not None and (qty <= 0 or _decimals(qty) > 9):
        raise OrderError(422, 40010000, f"invalid qty {body['qty']}")
    if notional is not None and (notional <= 0 or _decimals(notional) > 2):
        raise OrderError(422, 40010000, f"invalid notional {body['notional']}")
    return qty, notional


def _limit_price(body: dict[str, Any], kind: str) -> Decimal | None:
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
    return limit


def order_from_body(
    body: object,
    *,
    symbols: Collection[str],
    client_ids: Collection[str],
    created_ns: int,
    fill_from: int,
) -> SandboxOrder:
    """A new order (status ``new``) from a POST /v2/orders body, checked as Alpaca checks it.

    Args:
        symbols: the symbols the sandbox trades.
        client_ids: the client_order_ids already taken.
        created_ns: the order's creation time.
        fill_from: index of the first minute whose open may fill it.

    Raises:
        OrderError: the 422 Alpaca would answer.
    """
    if not isinstance(body, dict):
        raise OrderError(422, 40010000, "request body must be a JSON object")
    symbol = str(body.get("symbol") or "").upper()
    if not symbol:
        raise OrderError(422, 40010000, "symbol is required")
    if symbol not in symbols:
        raise OrderError(422, 42210000, f'asset "{symbol}" not found')
    side = body.get("side")
    if side not in ("buy", "sell"):
        raise OrderError(422, 40010000, f"invalid side {side}")
    kind = body.get("type") or body.get("order_type")
    if kind not in ("market", "limit"):
        raise OrderError(422, 40010000, f"invalid order type {kind} (sandbox: market, limit)")
    tif = body.get("time_in_force")
    if tif not in _TIME_IN_FORCE:
        raise OrderError(422, 40010000, f"invalid time_in_force {tif}")
    qty, notional = _amounts(body)
    limit = _limit_price(body, kind)
    client_id = body.get("client_order_id") or str(uuid.uuid4())
    if not isinstance(client_id, str) or len(client_id) > 128:
        raise OrderError(422, 40010000, "client_order_id must be no more than 128 characters")
    if client_id in client_ids:
        raise OrderError(422, 40010001, "client_order_id must be unique")
    return SandboxOrder(
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
        created_ns=created_ns,
        fill_from=fill_from,
    )
