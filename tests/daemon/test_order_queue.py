"""Orders the broker cannot take yet, and a stop that tells what became of every order: the live
daemon against the sandbox, the broker's rate limit made small so orders wait in its queue."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from daemon.live.orders import order_rate_warning, warn_order_rate
from daemon.live.recovery import positions_of, restored_orders
from daemon.logs import EventLog
from portfolio.journal import JournalReader
from sandbox import Sandbox
from tests.daemon.livekit import SYMBOLS, Session, live_config, start_session

# Few requests a minute: once start-up has used them, orders wait in the broker's queue (the
# limiter's window is a wall-clock minute, far longer than these tests).
SLOW_LIMIT = {"max_requests_per_minute": 8, "clock_poll_s": 3600}


async def exhausted(session: Session) -> None:
    """Use up what start-up left of the rate limit's window (through the daemon's own client,
    as its clock polls would)."""
    rest = session.daemon.rest
    while rest.requests_sent < SLOW_LIMIT["max_requests_per_minute"]:
        await rest.clock()


def log_events(session: Session, name: str) -> list[dict[str, Any]]:
    stream = session.daemon.log._stream
    assert isinstance(stream, io.StringIO)
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in lines if line.get("event") == name]


async def test_orders_waiting_for_the_rate_limit_are_superseded_then_accounted_for_at_the_stop(
    tmp_path: Path, sandbox: Sandbox, recorder: Any
) -> None:
    session = await start_session(tmp_path, sandbox, live=SLOW_LIMIT)
    daemon = session.daemon
    await exhausted(session)
    await session.step(1)  # buys every symbol: they wait for the limiter
    assert daemon.broker.health().unsent == len(SYMBOLS)
    await session.step(2)  # each later slice replaces them: one unsent order per symbol
    health = daemon.broker.health()
    assert health.unsent == len(SYMBOLS)
    assert daemon.engine.counters.denied_orders == 0  # no sell of what the unsent buys hold
    assert await session.stop() == 0

    assert not sandbox.order_posts  # none of them ever left
    summary = orjson.loads((daemon.out_dir / "summary.json").read_bytes())
    out = summary["orders_out"]
    assert out["sent"] == 0
    assert out["cancelled"] == 0
    assert out["never_sent_by_reason"] == {
        "superseded": 2 * len(SYMBOLS),
        "stale": 0,
        "stopped": len(SYMBOLS),
    }
    assert out["never_sent"] == 3 * len(SYMBOLS) == daemon.engine.counters.orders
    body = daemon.telemetry.exposition()[0].decode()
    assert 'tradingd_orders_not_sent_total{reason="superseded"} 8.0' in body
    assert 'tradingd_orders_not_sent_total{reason="stopped"} 4.0' in body
    [line] = log_events(session, "orders_accounted")
    assert line["never_sent"] == 3 * len(SYMBOLS)
    # The journal ended every one of them: a restart sends none.
    with JournalReader.open(tmp_path / "state") as journal:
        orders = restored_orders(journal.state())
    assert len(orders) == 3 * len(SYMBOLS)
    assert all(o.terminal for o in orders)


async def test_a_stop_with_the_trade_stream_down_reconciles_through_rest(
    tmp_path: Path, sandbox: Sandbox, recorder: Any
) -> None:
    session = await start_session(tmp_path, sandbox)
    daemon = session.daemon
    await session.step(1)  # buys go out
    await session.until(lambda: daemon.broker.health().in_flight == 0)
    sandbox.faults.drop_trade_socket(hold=True)
    await session.until(lambda: not daemon.broker.health().stream_connected)
    assert await sandbox.step()  # they fill while nobody listens
    assert await session.stop() == 0

    summary = orjson.loads((daemon.out_dir / "summary.json").read_bytes())
    ledger = summary["ledger"]
    assert {s: Decimal(p["qty"]) for s, p in ledger["positions"].items()} == {
        s: q for s, q in sandbox.positions.items() if q
    }
    assert Decimal(ledger["cash"]) == sandbox.cash
    assert sandbox.positions  # the buys did fill


async def test_fills_are_booked_through_rest_while_the_trade_stream_stays_down(
    tmp_path: Path, sandbox: Sandbox, recorder: Any
) -> None:
    session = await start_session(tmp_path, sandbox)
    daemon = session.daemon
    await session.step(1)
    await session.until(lambda: daemon.broker.health().in_flight == 0)
    sandbox.faults.drop_trade_socket(hold=True)
    await session.until(lambda: not daemon.broker.health().stream_connected)
    assert await sandbox.step()
    held = {s: q for s, q in sandbox.positions.items() if q}
    assert held
    await session.until(lambda: positions_of(daemon.ledger) == held)
    assert not daemon.broker.health().stream_connected  # booked from REST, not the stream
    assert daemon.ledger.cash == sandbox.cash
    sandbox.faults.restore_trade_socket()
    await session.until(lambda: daemon.broker.health().reconciled)
    assert await session.stop() == 0
    assert positions_of(daemon.ledger) == held  # nothing booked twice


def test_a_universe_the_rate_limit_cannot_rebalance_each_minute_is_warned_of(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    loaded = live_config(
        tmp_path,
        sandbox,
        live={"max_requests_per_minute": 3},
        strategies={"m": {"type": "momentum", "params": {"lookback": 3}}},
    )
    stream = io.StringIO()
    warn_order_rate(loaded.settings, SYMBOLS, "paper", EventLog(stream, level="debug"))
    [line] = [orjson.loads(x) for x in stream.getvalue().splitlines()]
    assert line["event"] == "order_rate_above_limit"
    assert line["orders_per_rebalance_max"] == 4
    assert line["requests_per_rebalance_allowed"] == 3
    assert line["level"] == "warning"
    # Rebalancing every 5 minutes, 3 requests a minute send 15 orders: no warning.
    assert (
        order_rate_warning(symbols=4, every="minutes", minutes=5, max_requests_per_minute=3) is None
    )
    quiet = io.StringIO()
    warn_order_rate(loaded.settings, SYMBOLS, "sim", EventLog(quiet, level="debug"))
    assert quiet.getvalue() == ""


def test_a_daily_strategy_has_a_day_to_send_its_orders() -> None:
    # 500 symbols on 1Day bars, every slice: 190 requests a minute send them well within a day.
    assert (
        order_rate_warning(
            symbols=500, every="slice", minutes=None, max_requests_per_minute=190, bar_minutes=1440
        )
        is None
    )
    # The same universe on minute bars cannot.
    assert order_rate_warning(
        symbols=500, every="slice", minutes=None, max_requests_per_minute=190
    ) == {
        "symbols": 500,
        "rebalance_every": "slice",
        "orders_per_rebalance_max": 500,
        "requests_per_rebalance_allowed": 190,
        "max_requests_per_minute": 190,
    }
