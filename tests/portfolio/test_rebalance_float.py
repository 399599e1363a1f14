"""The rebalancer's float pre-check against its exact Decimal rule, on random and boundary cases.

`no_trade_in_float` may only answer "no order" where `exact_trade` proposes none; anything it
cannot settle goes the exact way, so the rebalancer's orders are the exact rule's.
"""

from __future__ import annotations

import random
from decimal import ROUND_DOWN, Decimal

from hypothesis import example, given, settings
from hypothesis import strategies as st

from portfolio.trade_rule import exact_trade, no_trade_in_float, whole_target

D = Decimal
WHOLE = D(1)
FRACTION = D("1e-9")
SLACK = 1e-12


def float_target_and_error(
    target_w: float, equity: Decimal, px: float, mirror_rel: float
) -> tuple[float, float]:
    """The unrounded target quantity in floats and its error bound, as the rebalancer computes
    them: the float equity is the exact one off by `mirror_rel` (as the ledger's float mirror
    may be)."""
    equity_f = float(equity) * (1.0 + mirror_rel)
    equity_err = abs(equity_f - float(equity)) + 2.0**-52 * abs(float(equity))
    t = target_w * equity_f / px
    return t, abs(t) * (SLACK + equity_err / abs(equity_f)) if equity_f else 0.0


def exact_target(target_w: float, equity: Decimal, px: float) -> Decimal:
    """The exact rule's target quantity in whole shares."""
    return (D(repr(target_w)) * equity / D(repr(px))).quantize(WHOLE, rounding=ROUND_DOWN)


def decide(
    target_w: float,
    equity: Decimal,
    px: float,
    held: Decimal | None,
    pending: Decimal | None,
    *,
    whole: bool,
    min_notional: Decimal,
    mirror_rel: float = 0.0,
) -> tuple[bool, bool]:
    """(the float check's "no order", the exact rule's "no order"), as the rebalancer asks.

    The float equity is the exact one off by `mirror_rel`, with the error bound the rebalancer
    would pass (`float_target_and_error`).
    """
    t, t_err = float_target_and_error(target_w, equity, px, mirror_rel)
    fast = no_trade_in_float(
        t,
        t_err,
        px,
        held=held,
        held_f=0.0 if held is None else float(held),
        pending=pending,
        whole=whole,
        min_notional_f=float(min_notional) * (1.0 - 4 * SLACK),
    )
    current = D(0) if pending is None else pending
    if held is not None:
        current += held
    exact = exact_trade(
        target_w,
        equity,
        D(repr(px)),
        current,
        quantum=WHOLE if whole else FRACTION,
        min_notional=min_notional,
    )
    return fast, exact is None


def quantity(fractional: bool) -> st.SearchStrategy[Decimal]:
    whole = st.integers(min_value=-200_000, max_value=200_000).map(D)
    if not fractional:
        return whole
    return st.integers(min_value=-(10**14), max_value=10**14).map(lambda n: D(n).scaleb(-9))


WEIGHTS = st.one_of(
    st.floats(min_value=-2.0, max_value=2.0, allow_nan=False).filter(lambda w: w != 0.0),
    st.sampled_from([0.3, 0.1, 0.5, 1.0, -0.25, 1e-7, 0.30000000000000004]),
)
PRICES = st.one_of(
    st.integers(min_value=1, max_value=10_000_000).map(lambda c: c / 100),  # the cent grid
    st.floats(min_value=1e-4, max_value=1e6, allow_nan=False),
)
EQUITIES = st.integers(min_value=-(10**9), max_value=10**12).map(lambda c: D(c).scaleb(-2))
MIRROR = st.sampled_from([0.0, 0.0, 1e-16, -3e-16, 2e-15, -1e-13, 1e-10])
# Cases put exactly on a whole share (k shares at px_cents), then nudged a hair either side.
SHARES = st.integers(min_value=-100_000, max_value=100_000)
PRICE_CENTS = st.integers(min_value=1, max_value=1_000_000)
BOUNDARY_WEIGHTS = st.sampled_from([0.3, 0.25, 0.5, 1.0, 1 / 3, -0.4, 0.07])
NUDGES = st.sampled_from([D(0), D("0.01"), D("-0.01"), D("1e-12"), D("-1e-12")])
NOTIONALS = st.one_of(
    st.sampled_from([D(0), D(1), D(100), D(500)]),
    st.integers(min_value=0, max_value=10**7).map(lambda c: D(c).scaleb(-2)),
)


@settings(max_examples=1500, deadline=None)
@given(
    target_w=WEIGHTS,
    equity=EQUITIES,
    px=PRICES,
    whole=st.booleans(),
    data=st.data(),
    min_notional=NOTIONALS,
    mirror_rel=MIRROR,
)
@example(0.5, D(100_000), 100.0, True, None, D(0), 0.0)  # exactly 500 shares: the rounding edge
def test_the_float_check_says_no_order_only_where_the_exact_rule_proposes_none(
    target_w: float,
    equity: Decimal,
    px: float,
    whole: bool,
    data: st.DataObject | None,
    min_notional: Decimal,
    mirror_rel: float,
) -> None:
    held = pending = None
    if data is not None:
        held = data.draw(st.none() | quantity(not whole).filter(bool))
        pending = data.draw(st.none() | quantity(not whole).filter(bool))
    fast, exact = decide(
        target_w,
        equity,
        px,
        held,
        pending,
        whole=whole,
        min_notional=min_notional,
        mirror_rel=mirror_rel,
    )
    assert not fast or exact


@settings(max_examples=1500, deadline=None)
@given(
    k=SHARES,
    px_cents=PRICE_CENTS,
    target_w=BOUNDARY_WEIGHTS,
    nudge=NUDGES,
    held_offset=st.sampled_from([0, 1, -1, 2]),
    held_hair=st.sampled_from([D(0), D(0), D("1e-12"), D("-1e-12")]),
    notional_offset=st.sampled_from([None, D(0), D("0.01"), D("-0.01")]),
    pending=st.sampled_from([None, D(1), D(-1), D("0.5")]),
    whole=st.booleans(),
    mirror_rel=MIRROR,
)
def test_right_at_the_boundaries_the_float_check_never_disagrees(
    k: int,
    px_cents: int,
    target_w: float,
    nudge: Decimal,
    held_offset: int,
    held_hair: Decimal,
    notional_offset: Decimal | None,
    pending: Decimal | None,
    whole: bool,
    mirror_rel: float,
) -> None:
    """Equity chosen so the unrounded target is k shares (then a hair either side); the held
    quantity k or next to it (or a hair off, below a float's resolution); min notional exactly
    the trade's notional or a cent either side."""
    px = px_cents / 100
    price = D(repr(px))
    equity = D(k) * price / D(repr(target_w)) + nudge
    held: Decimal | None = D(k + held_offset) + held_hair - (pending or 0)
    if not held:
        held = None
    current = (pending or D(0)) + (held or D(0))
    notional = abs(exact_target(target_w, equity, px) - current) * price
    min_notional = D(100) if notional_offset is None else max(D(0), notional + notional_offset)
    fast, exact = decide(
        target_w,
        equity,
        px,
        held,
        pending,
        whole=whole,
        min_notional=min_notional,
        mirror_rel=mirror_rel,
    )
    assert not fast or exact


def float_target(target_w: float, equity: Decimal, px: float, mirror_rel: float) -> int | None:
    """`whole_target` as the rebalancer asks it (the float equity off by `mirror_rel`)."""
    return whole_target(*float_target_and_error(target_w, equity, px, mirror_rel))


@settings(max_examples=2000, deadline=None)
@given(target_w=WEIGHTS, equity=EQUITIES, px=PRICES, mirror_rel=MIRROR)
@example(0.5, D(100_000), 100.0, 0.0)  # exactly 500 shares
@example(0.5, D("99999.99"), 100.0, 0.0)  # a hair below: 499
def test_a_whole_share_target_settled_in_floats_is_the_exact_rules(
    target_w: float, equity: Decimal, px: float, mirror_rel: float
) -> None:
    settled = float_target(target_w, equity, px, mirror_rel)
    if settled is not None:
        assert D(settled) == exact_target(target_w, equity, px)


@settings(max_examples=1500, deadline=None)
@given(
    k=SHARES,
    px_cents=PRICE_CENTS,
    target_w=BOUNDARY_WEIGHTS,
    nudge=NUDGES,
    mirror_rel=MIRROR,
)
def test_right_at_a_whole_share_the_float_target_is_exact_or_unsettled(
    k: int, px_cents: int, target_w: float, nudge: Decimal, mirror_rel: float
) -> None:
    """Equity chosen so the unrounded target is k shares, then a hair either side."""
    px = px_cents / 100
    equity = D(k) * D(repr(px)) / D(repr(target_w)) + nudge
    settled = float_target(target_w, equity, px, mirror_rel)
    if settled is not None:
        assert D(settled) == exact_target(target_w, equity, px)


def test_the_float_check_settles_nearly_every_ordinary_no_change() -> None:
    """The point of it: a symbol held at its target settles in floats, except near an edge."""
    rng = random.Random(7)
    settled = unchanged = 0
    for _ in range(20_000):
        px = rng.randint(1_000, 50_000) / 100
        equity = D(rng.randint(10**6, 10**9)).scaleb(-2)
        target_w = rng.choice([0.3, 0.25, 0.1, 0.5])
        target = exact_target(target_w, equity, px)
        held = target + rng.choice([0, 0, 0, 1, -1])
        for min_notional in (D(0), D(100)):
            fast, exact = decide(
                target_w,
                equity,
                px,
                held or None,
                None,
                whole=True,
                min_notional=min_notional,
                mirror_rel=rng.choice([0.0, 3e-16, -1e-15]),
            )
            assert not fast or exact
            if exact:
                unchanged += 1
                settled += fast
    assert unchanged > 20_000
    assert settled / unchanged > 0.999
