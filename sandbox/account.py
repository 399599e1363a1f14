"""The sandbox's cash account: no margin, no shorting; orders fill at a minute's open.

Pure logic, no I/O. Each account has its own identity (a uuid4 and a number derived from it), so
every sandbox run is a new account, as a client that checks whom it talks to would see it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

from brokers.auctions import auction_refusal
from feeds.bar import Bar
from sandbox import wire
from sandbox.market import Market
from sandbox.orders import Fill, OrderError, SandboxOrder, order_from_body

QTY_STEP = Decimal("0.000000001")
_CENT = Decimal("0.01")
_ONE = Decimal(1)


@dataclass(slots=True)
class _Position:
    qty: Decimal
    cost: Decimal  # total cost basis of the shares held


def account_number(account_id: str) -> str:
    """The account number shown beside `account_id`: ``SB`` and the first ten hex digits."""
    return "SB" + uuid.UUID(account_id).hex[:10].upper()


class Account:
    """A cash account: no margin, no shorting. Orders fill at a minute's open.

    Args:
        cash: starting cash.

    Attributes:
        id: a new uuid4 per account (Alpaca's account ``id``).
        number: Alpaca's ``account_number``, derived from `id`.
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
        self.number = account_number(self.id)
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

    def submit(self, body: object, market: Market) -> SandboxOrder:
        """Validate a POST /v2/orders body and create the order (status ``new``).

        Raises:
            OrderError: what Alpaca would answer instead (422 invalid, 403 funds or shares).
        """
        created = max(market.now_ns, self._last_created_ns + 1_000)
        if isinstance(body, dict):
            refusal = auction_refusal(str(body.get("time_in_force")), market.now_ns)
            if refusal is not None:
                raise OrderError(422, 42210000, refusal)
        order = order_from_body(
            body,
            symbols=market.symbols,
            client_ids=self.by_client_id,
            created_ns=created,
            fill_from=market.played + self.fill_delay_minutes,
        )
        if order.side == "buy":
            self._check_funds(order, market)
        else:
            self._check_shares(order, market)
        self._last_created_ns = created
        self.orders[order.id] = order
        self.by_client_id[order.client_order_id] = order
        return order

    def _check_funds(self, order: SandboxOrder, market: Market) -> None:
        cost = self._cost(order, market)
        if cost < _ONE:
            raise OrderError(422, 42210000, "cost basis must be >= 1")
        buying_power = self.cash - self.reserved_cash(market)
        if cost > buying_power:
            raise OrderError(
                403,
                40310000,
                "insufficient buying power",
                buying_power=wire.dec(buying_power),
                cost_basis=wire.dec(cost.quantize(_CENT)),
            )

    def _check_shares(self, order: SandboxOrder, market: Market) -> None:
        symbol = order.symbol
        held = self.positions.get(symbol, Decimal(0))
        available = held - self.held_for_orders(symbol)
        wanted = order.qty
        if wanted is None:
            # A notional sell: shares at the reference price.
            price = market.reference_price(symbol) or _ONE
            wanted = (order.notional or Decimal(0)) / price
        if wanted > available:
            raise OrderError(
                403,
                40310000,
                f"insufficient qty available for order (requested: {wire.dec(wanted)}, "
                f"available: {wire.dec(available)})",
                available=wire.dec(available),
                existing_qty=wire.dec(held),
                held_for_orders=wire.dec(held - available),
                symbol=symbol,
            )

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

    def fill_due(
        self, index: int, bars: dict[str, Bar], ts_ns: int, *, closes_session: bool = False
    ) -> list[Fill]:
        """Fill the open orders due at minute `index`, at that minute's bars (its open).

        An `opg` order fills at the open of the first minute after it was taken (Alpaca takes
        them only before the 09:28 cut-off: that minute opens the session); a `cls` order at the
        close of the session's last minute (`closes_session`).
        """
        fills: list[Fill] = []
        for order in self.open_orders():
            bar = bars.get(order.symbol)
            if bar is None or order.fill_from > index:
                continue
            if order.time_in_force == "cls":
                if not closes_session:
                    continue
                price: Decimal | None = Decimal(repr(bar.close))
            else:
                price = self._fill_price(order, bar)
            if price is None:
                continue
            if order.qty is not None:
                qty = order.qty - order.filled_qty
            else:
                qty = ((order.notional or Decimal(0)) / price).quantize(QTY_STEP, ROUND_DOWN)
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
        """Alpaca's Account object (reference §1.4) for this cash account."""
        return wire.account_json(
            account_id=self.id,
            number=self.number,
            cash=self.cash,
            long_value=self.market_value(market),
            buying_power=self.cash - self.reserved_cash(market),
            last_equity=self.start_cash,
            created_ns=self.created_ns,
        )

    def position_json(self, symbol: str, market: Market) -> dict[str, Any]:
        """Alpaca's Position object (reference §1.5) for the shares of `symbol` held."""
        pos = self._positions[symbol]
        price = market.reference_price(symbol) or Decimal(0)
        last = market.last_bar(symbol)
        return wire.position_json(
            symbol=symbol,
            qty=pos.qty,
            available=pos.qty - self.held_for_orders(symbol),
            cost=pos.cost,
            price=price,
            lastday_price=Decimal(repr(last.open)) if last else price,
        )
