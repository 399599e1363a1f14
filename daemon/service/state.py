"""What `/state` shows: the engine's book, targets, limits and switches, as JSON-ready data."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from daemon.engine import Engine
from daemon.timeutil import iso_utc
from portfolio.risk import RiskSettings

_CENT = Decimal("0.01")
_PRICE = Decimal("0.0001")


def engine_state(engine: Engine, risk: RiskSettings, *, mode: str) -> dict[str, Any]:
    """Positions, open orders, the latest targets, risk limits and their use, switches.

    Call it on the thread that owns the engine (the HTTP handler of the live daemon runs on the
    same event loop; a paced replay snapshots it between slices).
    """
    ledger = engine.ledger
    equity = ledger.equity
    targets = engine.last_targets
    positions = ledger.snapshot()["positions"]
    for position in positions.values():
        # Average costs divide: show them to a hundredth of a cent, as a person reads them.
        position["avg_cost"] = str(Decimal(position["avg_cost"]).quantize(_PRICE))
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
            "equity": str(equity),
            "cash": str(ledger.cash),
            "gross_exposure": str(ledger.gross_exposure),
            "net_exposure": str(ledger.net_exposure),
            "realized_pnl": str(ledger.realized_pnl),
            "unrealized_pnl": str(ledger.unrealized_pnl().quantize(_CENT)),
            "high_water": str(ledger.high_water),
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
            "max_order_notional": str(risk.max_order_notional),
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
