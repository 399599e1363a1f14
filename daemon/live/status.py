"""What the live daemon reports about itself: readiness, `/state`, and the summary at the stop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brokers.base import LiveBroker
from daemon.config import LoadedConfig
from daemon.engine import Engine
from daemon.live.guard import JournalGuard
from daemon.live.loop import EngineLoop
from daemon.live.market import MarketData
from daemon.live.orders import OrderPath
from daemon.live.recovery import Recovery
from daemon.recorder import CENT
from daemon.service.state import display_book, engine_state
from daemon.timeutil import iso_utc

if TYPE_CHECKING:
    from daemon.live.lifecycle import LiveDaemon


def readiness(
    *,
    started: bool,
    market: MarketData,
    loop: EngineLoop,
    guard: JournalGuard,
    broker: LiveBroker,
) -> dict[str, bool]:
    """What must hold before the daemon may trade: each name false blocks readiness.

    "backfilled": no backfill under way, and none of its bars still being fed (`loop`).
    """
    health = broker.health()
    return {
        "started": started,
        "feed": market.fresh(),
        "backfilled": not loop.slicer.backfilling and not loop.catching_up,
        "journal": guard.failed is None,
        "broker_stream": health.stream_connected,
        "reconciled": health.reconciled,
        "broker_rest": health.rest_ok,
    }


def state(
    *,
    mode: str,
    loaded: LoadedConfig,
    engine: Engine,
    guard: JournalGuard,
    market: MarketData,
    orders: OrderPath,
    recovery: Recovery,
    broker: LiveBroker,
) -> dict[str, Any]:
    """`/state`: the engine's book and limits, the feed, the broker and the journal."""
    out = engine_state(engine, loaded.settings.risk, mode=mode)
    journal = guard.journal
    out["market_open"] = market.market_open
    out["journal"] = {
        "path": str(journal.path) if journal is not None else None,
        "failed": guard.failed,
    }
    out["halted_symbols"] = sorted(orders.halted_symbols)
    out["reconciliation_differences"] = list(recovery.differences)
    out["feed"] = {
        "connected": market.connected,
        "reconnects": market.counters.reconnects,
        "backfills": market.counters.backfills,
        "seconds_since_message": market.seconds_since_message(),
    }
    health = broker.health()
    out["broker"] = {
        "stream_connected": health.stream_connected,
        "ready": health.reconciled,
        "in_flight": health.in_flight,
        "reconciliations": broker.reconciliations,
        "rest_ok": health.rest_ok,
    }
    return out


def summary(daemon: LiveDaemon, *, cancelled: int) -> dict[str, Any]:
    """summary.json of a live run: its period and figures, counters, and the ledger."""
    engine, market, orders = daemon.engine, daemon.market, daemon.orders
    counters = engine.counters
    feed = market.counters
    figures = daemon.recorder.figures
    ledger = engine.ledger
    out: dict[str, Any] = {
        "run_id": daemon.run_id,
        "mode": daemon.mode,
        "config": list(daemon.loaded.files),
        "symbols": daemon.symbols,
        "first_slice": iso_utc(figures.first_ts) if figures.first_ts is not None else None,
        "last_slice": iso_utc(figures.last_ts) if figures.last_ts is not None else None,
        "start_equity": str(ledger.start_cash.quantize(CENT)),
        "final_equity": str(ledger.equity.quantize(CENT)),
        "max_drawdown": round(figures.max_drawdown, 6),
        "sharpe": round(figures.sharpe(), 4),  # NaN (undefined) is null in JSON
        "slices": counters.slices - counters.warmup_slices,
        "warmup_slices": counters.warmup_slices,
        "warmup_bars": market.warmup_bars,
        "bars_accepted": counters.bars_accepted,
        "bars_rejected": {str(k): v for k, v in sorted(engine.rejected.items())},
        "bars_late": counters.bars_late,
        "bars_updated": counters.bars_updated,
        "backfills": feed.backfills,
        "backfilled_bars": feed.backfilled_bars,
        "feed_reconnects": feed.reconnects,
        "orders": counters.orders,
        "fills": counters.fills,
        "rejected_orders": counters.rejected_orders,
        "halted_orders": orders.halted_orders,
        "cancelled_on_stop": cancelled,
        "kill_switch": engine.risk.kill_switch,
        "ledger": display_book(ledger.snapshot()),
    }
    if not daemon.broker.read_only:
        out["orders_out"] = orders.stop_accounting(cancelled)
    return out
