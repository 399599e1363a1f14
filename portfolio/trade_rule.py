"""The rebalancer's rule for one symbol: the exact one in Decimal (`exact_trade`), and the
float pre-check that settles most "no order" cases and whole-share targets without it
(`no_trade_in_float`, `whole_target`), never deciding otherwise than the exact rule."""

from __future__ import annotations

import math
from decimal import ROUND_DOWN, Decimal

_ZERO = Decimal(0)
# The float pre-check (`no_trade_in_float`): its floats are within ~1e-15 (relative) of the
# exact values; within this relative slack of a boundary, the exact path decides.
SLACK = 1e-12
_FRACTION_F = 1e-9 * (1.0 + SLACK)  # at least the Decimal quantum 1e-9
# Beyond this many shares the pre-check steps aside (floats lose whole shares near 2**53).
_MAX_FLOAT_QTY = 1e15


def exact_trade(
    target_w: float,
    equity: Decimal,
    price: Decimal,
    current: Decimal,
    *,
    quantum: Decimal,
    min_notional: Decimal,
) -> tuple[Decimal, Decimal] | None:
    """The exact rule for a non-zero target weight: (target quantity, delta), or None for no
    order (the quantity does not change, or the trade is below `min_notional`).

    The target quantity is `target_w` x `equity` / `price`, rounded toward zero to `quantum`.
    """
    target_qty = (Decimal(repr(target_w)) * equity / price).quantize(quantum, rounding=ROUND_DOWN)
    delta = trade_to(target_qty, current, price, min_notional)
    return None if delta is None else (target_qty, delta)


def trade_to(
    target_qty: Decimal, current: Decimal, price: Decimal, min_notional: Decimal
) -> Decimal | None:
    """The signed trade from `current` to `target_qty`, or None for no order (no change, or
    a trade below `min_notional` that does not close the position)."""
    delta = target_qty - current
    if not delta:
        return None
    if target_qty and abs(delta) * price < min_notional:
        return None
    return delta


def whole_target(t: float, t_err: float) -> int | None:
    """The exact target quantity in whole shares (`exact_trade`'s, rounded toward zero) when
    the float `t` settles it: None when a rounding boundary lies within `t_err` of `t` (or `t`
    is out of the floats' whole-share range), and the exact path decides.

    Args:
        t: the unrounded target quantity in floats (see `no_trade_in_float`).
        t_err: an upper bound of its error against the exact value.
    """
    if not (abs(t) < _MAX_FLOAT_QTY and t_err < _MAX_FLOAT_QTY):  # NaN, inf: not here
        return None
    k = math.trunc(t - t_err)
    return k if k == math.trunc(t + t_err) else None


def no_trade_in_float(
    t: float,
    t_err: float,
    px: float,
    *,
    held: Decimal | None,
    held_f: float,
    pending: Decimal | None,
    whole: bool,
    min_notional_f: float,
) -> bool:
    """True only when `exact_trade` surely returns None, decided in floats.

    False means "not settled here" (an order, or too close to a boundary to tell): the caller
    takes the exact path. Beyond `t_err`, the floats here are within a few units in the last
    place of what `exact_trade` computes in Decimal (~1e-15 relative); a case within `SLACK`
    (1e-12, relative) of a boundary (the rounding of the quantity, `min_notional`, a zero
    change) is left to the exact path, so the answer never differs from it.

    Args:
        t: the unrounded target quantity in floats, target_w x equity_f / px.
        t_err: an upper bound of |t - target_w x equity / price| (the exact value), at least
            `SLACK` x |t|.
        px: the price (`exact_trade` prices at Decimal(repr(px))).
        held: the held quantity (None: nothing held); held_f its float (0.0 if None).
        pending: the signed open quantity, or None.
        whole: quantities are whole shares (else multiples of 1e-9).
        min_notional_f: float(min_trade_notional) x (1 - 4 x SLACK).
    """
    if not (abs(t) < _MAX_FLOAT_QTY and t_err < _MAX_FLOAT_QTY):  # NaN, inf: not here
        return False
    pending_f = 0.0 if pending is None else float(pending)
    current_f = held_f + pending_f
    err = SLACK * (abs(held_f) + abs(pending_f))  # bounds |current_f - the exact current|
    if whole:
        k = whole_target(t, t_err)
        if k is None:
            return False  # the rounding to a whole share is too close to call
        # k is the exact target quantity; delta = k - current.
        delta_f = k - current_f
        err += SLACK * (abs(k) + abs(delta_f))
        if k and (abs(delta_f) + err) * px < min_notional_f:
            return True  # below min notional (or no change at all)
        if abs(delta_f) <= err:
            # Maybe no change: decide it exactly (no min notional, or a target of 0 shares).
            current = _ZERO if pending is None else pending
            if held is not None:
                current += held
            return current == k
        return False
    # Fractional: the target rounds by less than one quantum; it is surely non-zero when
    # |t| is at least two quanta, and then only min notional can stop the trade.
    if abs(t) - t_err < 2 * _FRACTION_F:
        return False
    d_f = t - current_f
    bound = abs(d_f) * (1.0 + SLACK) + t_err + err + _FRACTION_F
    return bound * px < min_notional_f
