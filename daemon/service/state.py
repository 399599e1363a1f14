"""What `/state` shows: the engine's book, targets, limits and switches, as JSON-ready data."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from daemon.engine import Engine
from daemon.timeutil import iso_utc
from portfolio.risk import RiskSettings

_CENT = Decimal("0.01")
_PRICE = Decimal("0.0001")
# The ledger's fields shown to a person: money to the cent, prices to a hundredth of a cent.
_BOOK_MONEY = (
    "cash",
    "equity",
    "realized_pnl",
    "unrealized_pnl",
    "commissions",
    "high_water",
    "gross_exposure",
    "net_exposure",
)
_POSITION_MONEY = ("realized_pnl",)
_POSITION_PRICES = ("avg_cost", "last_price")


def rounded(value: Decimal | str, step: Decimal = _CENT) -> str:
    """`value` to `step` (a cent by default) as text: never `0E-9`, `-0.00` or 28 digits.

    The books stay exact; only what a person reads (/state, `ctl status`, summaries) is rounded.
    """
    exact = Decimal(value)
    if not exact.is_finite():
        return str(exact)
    out = exact.quantize(step)
    return str(out if out != 0 else abs(out))


def display_book(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A ledger's `snapshot()` with its money to the cent and its prices to the tick."""
    out = dict(snapshot)
    for key in _BOOK_MONEY:
        if key in out:
            out[key] = rounded(out[key])
    positions = {}
    for symbol, position in snapshot.get("positions", {}).items():
        shown = dict(position)
        for key in _POSITION_MONEY:
            shown[key] = rounded(shown[key])
        for key in _POSITION_PRICES:
            shown[key] = rounded(shown[key], _PRICE)
        positions[symbol] = shown
    out["positions"] = positions
    return out


def engine_state(engine: Engine, risk: RiskSettings, *, mode: str) -> dict[str, Any]:
    """Positions, open orders, the latest targets, risk limits and their use, switches.

    Call it on the thread that owns the engine (the HTTP handler of the live daemon runs on the
    same event loop; a paced replay snapshots it between slices).
    """
    ledger = engine.ledger
    equity = ledger.equity
    targets = engine.last_targets
    positions = display_book(ledger.snapshot())["positions"]
    weights = [abs(p["weight"]) for p in positions.values()]
    gross = float(ledger.gross_exposure / equity) if equity > 0 else 0.0
    start = engine.risk.day_start_equity
    day_loss = float((start - equity) / start) if start > 0 else 0.0
    return {
        "mode": mode,
        "last_slice": iso_utc(engine.last_decided_ts) if engine.last_decided_ts >= 0 else None,
        "halted": engine.halted,
        "kill_switch": {"tripped": engine.risk.kill_switch, "reason": engine.risk.kill_reason},
        "account": {
            "equity": rounded(equity),
            "cash": rounded(ledger.cash),
            "gross_exposure": rounded(ledger.gross_exposure),
            "net_exposure": rounded(ledger.net_exposure),
            "realized_pnl": rounded(ledger.realized_pnl),
            "unrealized_pnl": rounded(ledger.unrealized_pnl()),
            "commissions": rounded(ledger.commissions),
            "high_water": rounded(ledger.high_water),
            "drawdown": ledger.drawdown,
        },
        "positions": positions,
        "open_orders": [
            {
                "client_order_id": o.client_order_id,
                "symbol": o.symbol,
                "side": str(o.side),
                "qty": str(o.qty),
                "remaining": str(o.remaining),
                "accepted": o.accepted,
                "time": iso_utc(o.ts),
            }
            for o in engine.order_book.open_orders.values()
        ],
        "targets": None
        if targets is None
        else {
            "time": iso_utc(targets.ts),
            "composed": targets.weights,
            "strategy_weights": targets.strategy_weights,
            "by_strategy": targets.by_strategy,
            "signals": targets.signals,
        },
        "risk": {
            "max_weight": {"limit": risk.max_weight, "used": max(weights, default=0.0)},
            "max_gross": {"limit": risk.max_gross, "used": gross},
            "max_drawdown": {"limit": risk.max_drawdown, "used": ledger.drawdown},
            "daily_loss_limit": {"limit": risk.daily_loss_limit, "used": max(day_loss, 0.0)},
            "max_order_notional": rounded(risk.max_order_notional),
            "allow_short": risk.allow_short,
            "on_kill": risk.on_kill,
        },
        "stale_symbols": sorted(engine.stale_symbols),
        "counters": {
            "slices": engine.counters.slices - engine.counters.warmup_slices,
            "orders": engine.counters.orders,
            "fills": engine.counters.fills,
            "denied": engine.counters.denied_orders,
            "rejected": engine.counters.rejected_orders,
        },
    }
