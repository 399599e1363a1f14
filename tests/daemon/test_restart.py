"""Restarts: positions the daemon did not open, and a kill switch that stays tripped."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from daemon.live.lifecycle import LiveDaemon
from daemon.live.recovery import positions_of
from feeds.errors import ConfigError
from sandbox import Sandbox
from tests.daemon.livekit import DEADLINE_S, ENV, Session, live_config, quiet_log, start_session

TRADED = ["AAA", "BBB"]


async def buy_by_hand(box: Sandbox, symbol: str, qty: int) -> None:
    """A person's order, outside the daemon (alpaca-py against the sandbox)."""
    from alpaca.trading.client import TradingClient
    from alpaca.trading.enums import OrderSide, TimeInForce
    from alpaca.trading.requests import MarketOrderRequest

    client = TradingClient("test-key", "test-secret", raw_data=True, url_override=box.trading_url)
    order = MarketOrderRequest(
        symbol=symbol, qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
    )
    await asyncio.to_thread(client.submit_order, order)


async def first_run(tmp_path: Path, box: Sandbox) -> None:
    session = await start_session(tmp_path, box, symbols=TRADED)
    await session.step(1)
    await session.settle()
    assert await session.stop() == 0


@pytest.mark.parametrize("policy", ["adopt", "ignore", "refuse"])
async def test_positions_the_daemon_did_not_open_follow_the_policy(
    tmp_path: Path, sandbox: Sandbox, recorder: Any, policy: str
) -> None:
    await first_run(tmp_path, sandbox)
    await buy_by_hand(sandbox, "DDD", 5)
    assert await sandbox.step()  # it fills while no daemon runs
    assert sandbox.positions["DDD"] == 5

    loaded = live_config(tmp_path, sandbox, symbols=TRADED, state={"unknown_positions": policy})
    daemon = LiveDaemon(loaded, log=quiet_log(), env=ENV)
    if policy == "refuse":
        with pytest.raises(ConfigError, match="did not open \\(DDD\\)"):
            await asyncio.wait_for(daemon.run(), DEADLINE_S)
        return
    session = Session(daemon, sandbox)
    await session.started()
    assert daemon.ledger.cash == sandbox.cash
    held = positions_of(daemon.ledger)
    logged = session.log_tail(500)
    if policy == "adopt":
        assert held == {s: q for s, q in sandbox.positions.items() if q}
        assert "foreign_fill_adopted" in logged
    else:
        assert "DDD" not in held
        assert held == {s: q for s, q in sandbox.positions.items() if q and s != "DDD"}
        assert "foreign_fill_ignored" in logged
        # The cash the person spent is a difference the restart found and took from Alpaca.
        differences = daemon.state()["reconciliation_differences"]
        assert any(d.get("cash") for d in differences)
    assert await session.stop() == 0


async def test_a_tripped_kill_switch_stays_tripped_until_reset(
    tmp_path: Path, sandbox: Sandbox, recorder: Any
) -> None:
    async def run(action: str | None) -> bool:
        """One daemon run; returns whether it started with the kill switch tripped."""
        session = await start_session(tmp_path, sandbox)
        daemon = session.daemon
        tripped = daemon.engine.risk.kill_switch
        if action == "trip":
            daemon.engine.risk.latch("max_drawdown")
            await session.step(1)  # the slice's close journals the latch
            assert daemon.engine.counters.orders == 0  # and it denied the buys
        elif action == "reset":
            daemon.reset_kill_switch()
        assert await session.stop() == 0
        return tripped

    assert not await run("trip")
    assert await run(None)  # restored from the journal, not reset by a restart
    assert await run("reset")
    assert not await run(None)
