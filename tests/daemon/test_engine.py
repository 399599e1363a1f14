"""The engine core driven by hand, as a live driver would drive it: late bars, staleness."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from brokers.orders import ExecutionEvent
from composer.targets import Targets
from daemon.config import load_config
from daemon.engine import Decision
from daemon.logs import EventLog
from daemon.replay.driver import replay
from daemon.wiring import build_engine
from feeds.bar import NS_PER_DAY, Bar
from feeds.errors import InvariantViolation
from portfolio.events import KillSwitchTripped
from portfolio.ledger import Ledger
from tests.daemon.helpers import always_long_config, write_daily_csv, write_yaml

DAY0 = 1_609_736_400_000_000_000  # 2021-01-04 00:00 America/New_York


class Collect:
    """An EngineListener that keeps what it is told."""

    def __init__(self) -> None:
        self.slices: list[int] = []
        self.stale: list[tuple[str, int, bool]] = []
        self.decisions: list[Decision] = []

    def on_slice(self, ts: int, ledger: Ledger) -> None:
        self.slices.append(ts)

    def on_targets(self, targets: Targets) -> None:
        pass

    def on_decision(self, decision: Decision) -> None:
        self.decisions.append(decision)

    def on_kill_switch(self, event: KillSwitchTripped) -> None:
        pass

    def on_execution(self, event: ExecutionEvent, applied: bool) -> None:
        pass

    def on_stale(self, symbol: str, ts: int, stale: bool) -> None:
        self.stale.append((symbol, ts, stale))


def bar(symbol: str, day: int, close: float = 100.0) -> Bar:
    return Bar(
        symbol=symbol,
        ts=DAY0 + day * NS_PER_DAY,
        open=close,
        high=close + 1,
        low=close - 1,
        close=close,
        volume=1000.0,
    )


@pytest.fixture
def engine_and_listener(tmp_path: Path, recorder: Any) -> tuple[Any, Collect]:
    tree = always_long_config(tmp_path)
    tree["sanity"] = {"stale_after_slices": 3}
    loaded = load_config([str(write_yaml(tmp_path / "c.yaml", tree))])
    listener = Collect()
    engine, _ = build_engine(loaded, ["AAA", "BBB"], listener)
    recorder.seen.clear()
    return engine, listener


def test_a_late_bar_marks_but_no_strategy_sees_it(
    engine_and_listener: tuple[Any, Collect], recorder: Any
) -> None:
    engine, _ = engine_and_listener
    assert engine.on_bar(bar("AAA", 0)) is None
    engine.close_slice()
    assert engine.on_bar(bar("AAA", 1)) is None
    # BBB's bar of day 0 arrives after the day-0 slice was decided
    assert engine.on_bar(bar("BBB", 0, close=42.0)) is None
    assert engine.counters.bars_late == 1
    assert engine.last_close["BBB"] == 42.0
    assert [b.symbol for b in recorder.seen] == ["AAA", "AAA"]


def test_a_late_bar_with_no_slice_open_does_not_reopen_a_decided_slice(
    engine_and_listener: tuple[Any, Collect], recorder: Any
) -> None:
    engine, listener = engine_and_listener
    engine.on_bar(bar("AAA", 0))
    engine.close_slice()
    # Live: the slice closed on the grace period; BBB's bar of it comes with none open.
    assert engine.on_bar(bar("BBB", 0, close=43.0)) is None
    assert engine.slice_ts is None
    assert engine.counters.bars_late == 1
    assert engine.last_close["BBB"] == 43.0
    assert listener.slices == [DAY0]
    assert [b.symbol for b in recorder.seen] == ["AAA"]


def test_an_updated_bar_replaces_the_close_or_marks_after_the_decision(
    engine_and_listener: tuple[Any, Collect], recorder: Any
) -> None:
    engine, _ = engine_and_listener
    engine.on_bar(bar("AAA", 0, close=100.0))
    assert not engine.slice_complete
    engine.on_bar(bar("BBB", 0, close=50.0))
    assert engine.slice_complete
    # A correction while the slice is open replaces the close the decision uses.
    assert engine.on_updated_bar(bar("AAA", 0, close=101.0)) is False
    engine.close_slice()
    assert engine.last_close["AAA"] == 101.0
    # After the decision it only marks (and is counted).
    assert engine.on_updated_bar(bar("BBB", 0, close=51.0)) is True
    assert engine.last_close["BBB"] == 51.0
    assert engine.counters.bars_updated == 1
    assert len(recorder.seen) == 2  # strategies never see corrections


def test_the_driver_must_close_a_slice_before_a_later_bar(
    engine_and_listener: tuple[Any, Collect],
) -> None:
    engine, _ = engine_and_listener
    engine.on_bar(bar("AAA", 0))
    with pytest.raises(InvariantViolation):
        engine.on_bar(bar("AAA", 1))


def test_a_symbol_without_bars_is_reported_stale_then_fresh(
    engine_and_listener: tuple[Any, Collect],
) -> None:
    engine, listener = engine_and_listener
    for day in range(6):
        engine.on_bar(bar("AAA", day))
        if day in (0, 5):
            engine.on_bar(bar("BBB", day))
        engine.close_slice()
    assert listener.stale == [
        ("BBB", DAY0 + 3 * NS_PER_DAY, True),
        ("BBB", DAY0 + 5 * NS_PER_DAY, False),
    ]
    assert engine.stale_symbols == frozenset()


def test_a_symbol_outside_the_universe_is_quarantined(
    engine_and_listener: tuple[Any, Collect],
) -> None:
    engine, _ = engine_and_listener
    assert engine.on_bar(bar("ZZZ", 0)) == "unknown_symbol"
    assert engine.rejected == {"unknown_symbol": 1}
    assert engine.bars_in == 1


def _fill_all(engine: Any, broker: Any, day: int) -> None:
    """Hand the engine's orders to the simulated broker and fill them at `day`'s bars."""
    for symbol in ("AAA", "BBB"):
        broker.on_bar(bar(symbol, day))
    engine.on_events(broker.poll_events())


def test_halt_decides_but_orders_nothing_until_resumed(tmp_path: Path, recorder: Any) -> None:
    loaded = load_config([str(write_yaml(tmp_path / "c.yaml", always_long_config(tmp_path)))])
    engine, _ = build_engine(loaded, ["AAA", "BBB"], Collect())
    engine.halt()
    engine.on_bar(bar("AAA", 0))
    engine.on_bar(bar("BBB", 0))
    assert engine.close_slice() == []
    assert engine.last_targets is not None
    assert engine.last_targets.weights["AAA"] > 0
    engine.resume()
    engine.on_bar(bar("AAA", 1))
    engine.on_bar(bar("BBB", 1))
    assert {o.symbol for o in engine.close_slice()} == {"AAA", "BBB"}


def test_flatten_closes_every_position_and_halts(tmp_path: Path, recorder: Any) -> None:
    loaded = load_config([str(write_yaml(tmp_path / "c.yaml", always_long_config(tmp_path)))])
    engine, broker = build_engine(loaded, ["AAA", "BBB"], Collect())
    for symbol in ("AAA", "BBB"):
        engine.on_bar(bar(symbol, 0))
        broker.on_bar(bar(symbol, 0))  # the broker prices orders from the bars it saw
    for order in engine.close_slice():
        broker.submit(order)
    _fill_all(engine, broker, 1)
    held = {s: p.qty for s, p in engine.ledger.positions.items()}
    assert set(held) == {"AAA", "BBB"}

    orders = engine.flatten(DAY0 + NS_PER_DAY + 60 * 10**9)  # a minute's first second
    assert engine.halted
    assert {(o.symbol, o.side.value, o.qty) for o in orders} == {
        (s, "sell", q) for s, q in held.items()
    }
    assert all((o.ts // 10**9) % 60 == 1 for o in orders)
    for order in orders:
        broker.submit(order)
    _fill_all(engine, broker, 2)
    assert engine.ledger.positions == {}


def test_resetting_the_kill_switch_rebases_drawdown(tmp_path: Path, recorder: Any) -> None:
    loaded = load_config([str(write_yaml(tmp_path / "c.yaml", always_long_config(tmp_path)))])
    engine, _ = build_engine(loaded, ["AAA", "BBB"], Collect())
    engine.risk.latch("max_drawdown")
    engine.ledger.drawdown = 0.3
    engine.reset_kill_switch()
    assert not engine.risk.kill_switch
    assert engine.risk.kill_reason is None
    assert engine.ledger.drawdown == 0.0
    assert engine.ledger.high_water == engine.ledger.equity


def leveraged_config(data: Path, *, risk_gross: float) -> dict[str, Any]:
    """Three symbols, each targeted at 0.5 (composer gross 1.5) on a margin account, whole
    shares, with the risk gate's `max_gross` below the composer's."""
    tree = always_long_config(data, max_weight=0.6, max_gross=risk_gross)
    tree["composer"] = {"method": "static", "strategy_weights": {"long": 1.5}, "max_gross": 1.5}
    tree["rebalance"] = {"min_trade_notional": 0, "no_trade_band": 0.0, "fractional": False}
    return tree


def test_three_half_buys_in_one_flat_slice_stay_within_max_gross(
    tmp_path: Path, recorder: Any
) -> None:
    loaded = load_config(
        [str(write_yaml(tmp_path / "c.yaml", leveraged_config(tmp_path, risk_gross=1.0)))]
    )
    listener = Collect()
    symbols = ["AAA", "BBB", "CCC"]
    engine, broker = build_engine(loaded, symbols, listener)
    for symbol in symbols:
        engine.on_bar(bar(symbol, 0))
        broker.on_bar(bar(symbol, 0))
    orders = engine.close_slice()
    assert [(d.symbol, d.risk) for d in listener.decisions] == [
        ("AAA", "approved"),
        ("BBB", "approved"),
        ("CCC", "denied"),
    ]
    assert listener.decisions[2].risk_event is not None
    assert listener.decisions[2].risk_event.reason == "max_gross"
    for order in orders:
        broker.submit(order)
    for symbol in symbols:
        broker.on_bar(bar(symbol, 1))
    engine.on_events(broker.poll_events())
    ledger = engine.ledger
    assert ledger.gross_exposure == Decimal(100_000)
    assert ledger.gross_exposure <= ledger.equity


def test_a_margin_replay_never_exceeds_the_risk_gross_after_its_fills(
    tmp_path: Path, recorder: Any
) -> None:
    """Every slice wants 1.5x gross; the gate allows 0.8x. Prices fall and open at the last
    close, so each fill happens at its decision's price and the gross can only drift down
    between decisions: every equity row must be within 0.8x equity (to the cent of the row)."""
    data = tmp_path / "data"
    days = 30
    for symbol, start, step in (("AAA", 100.0, 1.0), ("BBB", 50.0, 0.5), ("CCC", 20.0, 0.2)):
        write_daily_csv(data / f"{symbol}.csv", [round(start - step * i, 2) for i in range(days)])
    tree = leveraged_config(data, risk_gross=0.8)
    loaded = load_config([str(write_yaml(tmp_path / "c.yaml", tree))])
    out = tmp_path / "out"
    result = replay(loaded, out_dir=out, log=EventLog(io.StringIO()))
    assert result.summary["orders"] > days  # it traded on most slices, not only the first
    with (out / "equity.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == days
    ratios = [float(r["gross_exposure"]) / float(r["equity"]) for r in rows]
    for row, ratio in zip(rows, ratios, strict=True):
        assert float(row["gross_exposure"]) <= 0.8 * float(row["equity"]) + 0.01, (row, ratio)
    assert max(ratios) > 0.79  # the limit binds: the test would see a breach


def test_a_lower_target_does_not_sell_back_an_open_buy(tmp_path: Path, recorder: Any) -> None:
    tree = always_long_config(tmp_path)
    tree["rebalance"] = {"min_trade_notional": 0, "no_trade_band": 0.0, "fractional": False}
    loaded = load_config([str(write_yaml(tmp_path / "c.yaml", tree))])
    listener = Collect()
    engine, _ = build_engine(loaded, ["AAA"], listener)
    engine.on_bar(bar("AAA", 0, close=100.0))
    assert [(o.side.value, o.qty) for o in engine.close_slice()] == [("buy", Decimal(1000))]
    # The buy has not filled yet; at 101 the target is 990 shares.
    engine.on_bar(bar("AAA", 1, close=101.0))
    assert engine.close_slice() == []
    assert [d.risk for d in listener.decisions] == ["approved"]  # no no_short denial
