"""The cash account: its identity per sandbox, fills at the open, no shorting."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

import aiohttp

from feeds.calendar import SessionCalendar
from sandbox import Account, Market, Sandbox
from sandbox.account import account_number
from tests.sandbox.kit import DATA, KEY, SECRET


async def test_each_sandbox_is_a_new_account_with_its_own_id_and_number(
    http: aiohttp.ClientSession,
) -> None:
    seen: list[tuple[str, str]] = []
    for _ in range(2):
        sb = Sandbox(DATA, symbols=["AAA"], key=KEY, secret=SECRET)
        await sb.start()
        try:
            async with http.get(f"{sb.trading_url}/v2/account") as r:
                first = await r.json()
            async with http.get(f"{sb.trading_url}/v2/account") as r:
                again = await r.json()
        finally:
            await sb.close()
        assert uuid.UUID(first["id"]).version == 4
        assert re.fullmatch(r"SB[0-9A-F]{10}", first["account_number"])
        assert first["account_number"] == account_number(first["id"])
        assert (again["id"], again["account_number"]) == (first["id"], first["account_number"])
        seen.append((first["id"], first["account_number"]))
    assert seen[0][0] != seen[1][0]
    assert seen[0][1] != seen[1][1]


def market(warm_minutes: int = 3) -> Market:
    return Market(
        DATA, symbols=["AAA"], start=None, warm_minutes=warm_minutes, calendar=SessionCalendar()
    )


def test_a_notional_buy_fills_whole_nanoshares_and_a_sell_never_goes_short() -> None:
    m = market()
    account = Account(Decimal(1_000))
    buy = {"symbol": "AAA", "side": "buy", "type": "market", "time_in_force": "day"}
    account.submit({**buy, "notional": "100"}, m)
    bars = m.next_bars()
    (fill,) = account.fill_due(m.played, bars, m.minutes[m.played])
    open_ = Decimal(repr(bars["AAA"].open))
    assert fill.qty == (Decimal(100) / open_).quantize(Decimal("0.000000001"), "ROUND_DOWN")
    assert account.cash == Decimal(1_000) - fill.qty * open_
    assert account.position_cost("AAA") == fill.qty * open_
    m.advance()

    sell = {"symbol": "AAA", "side": "sell", "type": "market", "time_in_force": "day"}
    account.submit({**sell, "qty": str(fill.qty)}, m)
    assert account.held_for_orders("AAA") == fill.qty
    (sold,) = account.fill_due(m.played, m.next_bars(), m.minutes[m.played])
    assert sold.position_qty == 0
    assert account.positions == {}
    assert account.open_orders() == []


def test_the_account_json_values_cash_and_positions() -> None:
    m = market()
    account = Account(Decimal(10_000))
    order = {"symbol": "AAA", "side": "buy", "type": "market", "time_in_force": "day", "qty": "2"}
    account.submit(order, m)
    reserved = account.reserved_cash(m)
    assert reserved == 2 * (m.reference_price("AAA") or 0)
    body = account.account_json(m)
    assert body["id"] == account.id
    assert body["account_number"] == account.number
    assert Decimal(body["buying_power"]) == Decimal(10_000) - reserved
    assert body["cash"] == "10000"
