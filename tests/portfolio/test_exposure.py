"""The gate's float exposure: checks with it decide exactly as the exact Decimal sum does."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from brokers.orders import OrderSide, SubmitOrder
from portfolio.exposure import Exposure
from portfolio.ledger import Ledger
from portfolio.order_book import OrderBook
from portfolio.risk import RiskGate, RiskSettings
from tests.portfolio.factories import fill, market

D = Decimal
SYMBOLS = ["AAA", "BBB", "CCC", "DDD", "EEE"]

QTY = st.one_of(
    st.integers(min_value=1, max_value=5_000).map(D),
    st.integers(min_value=1, max_value=5 * 10**12).map(lambda n: D(n).scaleb(-9)),
)
PRICE = st.one_of(
    st.integers(min_value=100, max_value=100_000).map(lambda c: c / 100),
    st.floats(min_value=0.5, max_value=2_000, allow_nan=False),
)
HOLDING = st.tuples(st.sampled_from(SYMBOLS), st.sampled_from(["buy", "sell"]), QTY, PRICE)
ORDER = st.tuples(st.sampled_from(SYMBOLS), st.sampled_from(["buy", "sell"]), QTY)


@settings(max_examples=400, deadline=None)
@given(
    holdings=st.lists(HOLDING, max_size=6),
    opened=st.lists(ORDER, max_size=4),
    orders=st.lists(ORDER, min_size=1, max_size=12),
    marks=st.dictionaries(st.sampled_from(SYMBOLS), PRICE),
    max_gross=st.sampled_from([0.3, 0.5, 1.0, 1.5, 3.0]),
    max_weight=st.sampled_from([0.2, 0.6, 2.0]),
    allow_short=st.booleans(),
    fractional=st.booleans(),
)
def test_a_check_with_the_float_exposure_decides_as_the_exact_sum(
    holdings: list[tuple[str, str, Decimal, float]],
    opened: list[tuple[str, str, Decimal]],
    orders: list[tuple[str, str, Decimal]],
    marks: dict[str, float],
    max_gross: float,
    max_weight: float,
    allow_short: bool,
    fractional: bool,
) -> None:
    """One rebalance as the engine runs it (each approved order submitted before the next
    check), once with the exposure and once without: the same orders and events. Some
    symbols have open orders but no price; leverage, shorts and fractions included."""
    ledger = Ledger(D(100_000))
    for n, (symbol, side, qty, price) in enumerate(holdings):
        ledger.apply_fill(
            fill(OrderSide(side), str(qty), repr(price), symbol=symbol, execution_id=f"h{n}")
        )
    ledger.mark(marks)
    limits = RiskSettings(
        max_gross=max_gross,
        max_weight=max_weight,
        allow_short=allow_short,
        max_order_notional=D(10**9),
    )
    books = OrderBook(), OrderBook()
    for book in books:
        for n, (symbol, side, qty) in enumerate(opened):
            book.on_submit(market(OrderSide(side), str(qty), symbol=symbol, cid=f"o{n}"))
    fast_book, exact_book = books
    exposure = Exposure(ledger, marks, fast_book.open_qty())
    gate = RiskGate(limits, fractional=fractional)
    for n, (symbol, side, qty) in enumerate(orders):
        order: SubmitOrder = market(OrderSide(side), str(qty), symbol=symbol, cid=f"c{n}")
        fast = gate.check(order, ledger, marks, fast_book.open_qty(), exposure)
        exact = gate.check(order, ledger, marks, exact_book.open_qty())
        assert fast == exact
        approved, _ = fast
        if approved is not None:
            fast_book.on_submit(approved)
            exposure.refresh(symbol)
            exact_book.on_submit(approved)


def test_an_order_that_fills_the_room_exactly_is_decided_by_the_exact_sum() -> None:
    ledger = Ledger(D(100_000))
    prices = {"AAA": 100.0, "BBB": 100.0}
    book = OrderBook()
    book.on_submit(market(OrderSide.BUY, 500, symbol="AAA", cid="a"))
    exposure = Exposure(ledger, prices, book.open_qty())
    gate = RiskGate(RiskSettings(max_gross=1.0, max_weight=0.6), fractional=False)
    # 500 more of BBB is exactly 1.0x: the floats cannot tell, the exact sum allows it.
    assert not exposure.surely_within("BBB", 50_000.0, 100_000.0)
    order = market(OrderSide.BUY, 500, symbol="BBB", cid="b")
    assert gate.check(order, ledger, prices, book.open_qty(), exposure) == (order, None)
    assert exposure.surely_within("BBB", 49_999.0, 100_000.0)
