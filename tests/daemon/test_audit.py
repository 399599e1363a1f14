"""The parity audit: a journal written by driving the engine as the live driver does replays to
zero differences; a bar changed in the file afterwards is found at the slice it changed."""

from __future__ import annotations

import random
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from brokers.orders import ExecutionEvent, OrderAccepted, OrderFilled, SubmitOrder
from daemon.config import LoadedConfig, load_config
from daemon.engine import Engine
from daemon.replay.audit import TargetsListener, audit, describe
from daemon.wiring import build_engine
from feeds.bar import NS_PER_MINUTE, Bar
from portfolio.journal import JOURNAL_FILE, Journal, JournalReader, LedgerSnapshot
from portfolio.ledger import Ledger
from tests.daemon.helpers import write_yaml

SYMBOLS = ["AAA", "BBB", "CCC"]
T0 = 1_704_205_800 * 10**9  # 2024-01-02 14:30 UTC, a session's open
WARMUP_MINUTES = 6
TRADE_MINUTES = 25


def minute_config(tmp_path: Path) -> LoadedConfig:
    tree = {
        "symbols": SYMBOLS,
        "data": {"path": str(tmp_path / "unused"), "timeframe": "1Min"},
        "sanity": {"session": "any"},
        "strategies": {"mom": {"type": "momentum", "params": {"lookback": 3}}},
        "composer": {"method": "equal", "max_gross": 1.0, "rebalance": {"every": "slice"}},
        "rebalance": {"min_trade_notional": 0, "no_trade_band": 0.0, "fractional": True},
        "risk": {"max_weight": 1.0, "max_gross": 1.0},
        "run": {"start_cash": 100000},
    }
    return load_config([str(write_yaml(tmp_path / "live.yaml", tree))])


def minute_bars(seed: int, minutes: int) -> list[list[Bar]]:
    return walk_bars(random.Random(seed), dict.fromkeys(SYMBOLS, 100.0), T0, minutes)


def walk_bars(
    rng: random.Random, prices: dict[str, float], start_ns: int, minutes: int
) -> list[list[Bar]]:
    """`minutes` rows of one-minute bars of SYMBOLS from `start_ns`, a random walk from (and
    updating) `prices`."""
    out = []
    for m in range(minutes):
        ts = start_ns + m * NS_PER_MINUTE
        row = []
        for symbol in SYMBOLS:
            old = prices[symbol]
            new = prices[symbol] = round(old * (1 + rng.gauss(0, 0.004)), 2)
            row.append(
                Bar(symbol, ts, old, max(old, new) + 0.01, min(old, new) - 0.01, new, 500.0, 9)
            )
        out.append(row)
    return out


class Driver:
    """Drives an engine and writes the journal exactly as the live driver does: each input
    journaled right before the engine sees it, each close journaled before its orders go out,
    each broker event journaled before the engine applies it."""

    def __init__(self, loaded: LoadedConfig, journal: Journal) -> None:
        self.listener = TargetsListener()
        self.engine: Engine
        self.engine, _ = build_engine(loaded, SYMBOLS, self.listener, trade_from_ts=2**63 - 1)
        self.journal = journal
        self.loaded = loaded

    def begin(self, ts: int) -> None:
        self.journal.begin_segment(
            mode="paper",
            config_digest=self.loaded.digest,
            config=self.loaded.settings.model_dump(mode="json"),
            config_files=list(self.loaded.files),
            ledger=LedgerSnapshot.of(self.engine.ledger),
            ts=ts,
        )

    def bar(self, bar: Bar, *, warmup: bool = False) -> None:
        engine = self.engine
        if engine.slice_ts is not None and bar.ts > engine.slice_ts:
            self.close()
        self.journal.bar(bar, warmup=warmup)
        engine.on_bar(bar)

    def close(self) -> list[SubmitOrder]:
        engine = self.engine
        slice_ts = engine.slice_ts
        assert slice_ts is not None
        self.listener.targets = None
        orders = engine.close_slice()
        self.journal.close_slice(slice_ts, targets=self.listener.targets, orders=orders)
        return orders

    def event(self, event: ExecutionEvent) -> None:
        if self.journal.event(event):
            self.engine.on_events([event])

    def fill_all(self, orders: list[SubmitOrder], price_of: dict[str, float], ts: int) -> None:
        """The broker accepts and fills every order at the given prices (the next opens)."""
        for order in orders:
            self.event(
                OrderAccepted(client_order_id=order.client_order_id, symbol=order.symbol, ts=ts)
            )
        for order in orders:
            fill = OrderFilled(
                client_order_id=order.client_order_id,
                symbol=order.symbol,
                side=order.side,
                qty=order.qty,
                price=Decimal(str(price_of[order.symbol])),
                commission=Decimal(0),
                ts=ts,
                execution_id=f"x-{order.client_order_id}",
            )
            self.event(fill)
            self.event(fill)  # the stream and a reconciliation both report it: written once


def run_session(state_dir: Path, loaded: LoadedConfig, seed: int) -> int:
    """Two segments (a restart in the middle) of warm-up and trading; returns orders sent."""
    bars = minute_bars(seed, WARMUP_MINUTES + 2 * TRADE_MINUTES)
    sent = 0
    carried: Ledger | None = None
    for part in range(2):
        with Journal(state_dir) as journal:
            driver = Driver(loaded, journal)
            if carried is not None:
                # The restart adopts the broker's account (here: the ledger the first run left).
                driver.engine.ledger.adopt(
                    carried.cash,
                    {s: (p.qty, p.avg_cost, p.last_price) for s, p in carried.positions.items()},
                    restart=True,
                )
            first = WARMUP_MINUTES + part * TRADE_MINUTES
            driver.begin(bars[first][0].ts)
            for row in bars[first - WARMUP_MINUTES : first]:
                for bar in row:
                    driver.bar(bar, warmup=True)
            driver.close()
            journal.warmup_done(bars[first][0].ts)
            driver.engine.trade_from_ts = -(2**63)
            flattened: int | None = None
            for m in range(first, first + TRADE_MINUTES):
                row = bars[m]
                for bar in row:
                    driver.bar(bar)
                if m == first + 4:
                    journal.updated_bar(row[0]._replace(close=row[0].close + 0.05))
                    driver.engine.on_updated_bar(row[0]._replace(close=row[0].close + 0.05))
                if m == first + 8:
                    journal.control("halt", row[0].ts + 30 * 10**9)
                    driver.engine.halt()
                if m == first + 10:
                    journal.control("resume", row[0].ts + 30 * 10**9)
                    driver.engine.resume()
                orders = driver.close()
                if flattened is not None and m == flattened + 2:
                    journal.control("resume", row[0].ts + 30 * 10**9)
                    driver.engine.resume()
                sent += len(orders)
                if m + 1 < len(bars):
                    opens = {b.symbol: b.open for b in bars[m + 1]}
                    driver.fill_all(orders, opens, bars[m + 1][0].ts)
                    if flattened is None and m >= first + 18 and driver.engine.ledger.positions:
                        # An operator's flatten between slices: journaled with its orders
                        # before they go out.
                        flatten_ts = bars[m + 1][0].ts + 20 * 10**9
                        flat = driver.engine.flatten(flatten_ts)
                        flattened = m
                        journal.control("flatten", flatten_ts, orders=flat)
                        sent += len(flat)
                        driver.fill_all(flat, opens, flatten_ts)
            assert flattened is not None, "the session should hold something to flatten"
            carried = driver.engine.ledger
    return sent


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_clean_session_audits_to_zero_differences(tmp_path: Path, seed: int) -> None:
    loaded = minute_config(tmp_path)
    state_dir = tmp_path / "state"
    sent = run_session(state_dir, loaded, seed)
    assert sent > 0

    result = audit(state_dir)

    assert result.differences == []
    assert result.segments == 2
    assert result.orders == sent
    assert result.slices == 2 * (WARMUP_MINUTES + TRADE_MINUTES)
    assert result.skipped == []
    assert describe(result)[0].endswith("0 differences")


def test_a_bar_changed_in_the_journal_is_found_at_its_slice(tmp_path: Path) -> None:
    loaded = minute_config(tmp_path)
    state_dir = tmp_path / "state"
    run_session(state_dir, loaded, seed=7)
    planted_ts = T0 + (WARMUP_MINUTES + 12) * NS_PER_MINUTE
    db = sqlite3.connect(state_dir / JOURNAL_FILE)
    with db:
        changed = db.execute(
            "UPDATE input SET close = close * 1.005 "
            "WHERE kind = 'bar' AND symbol = 'AAA' AND ts = ? AND segment = 1",
            (planted_ts,),
        ).rowcount
    db.close()
    assert changed == 1

    result = audit(state_dir)

    assert result.differences, "the planted difference was not found"
    first = result.differences[0]
    assert (first.segment, first.slice_ts) == (1, planted_ts)
    assert first.kind in {"targets", "order"}
    # Nothing before the planted bar differs, and the second segment (its own inputs) is clean.
    assert all(d.slice_ts >= planted_ts for d in result.differences)
    assert all(d.segment == 1 for d in result.differences)
    assert any(f"slice {planted_ts}" in line for line in describe(result)[1:])


def test_an_order_missing_from_the_journal_is_reported(tmp_path: Path) -> None:
    loaded = minute_config(tmp_path)
    state_dir = tmp_path / "state"
    run_session(state_dir, loaded, seed=11)
    with JournalReader.open(state_dir) as journal:
        decided = [d for d in journal.decisions(2).values() if d.orders]
    victim = decided[3]
    db = sqlite3.connect(state_dir / JOURNAL_FILE)
    with db:
        db.execute(
            "UPDATE decision SET orders = '[]' WHERE segment = 2 AND slice_ts = ?",
            (victim.slice_ts,),
        )
    db.close()

    result = audit(state_dir)

    missing = [d for d in result.differences if d.kind == "order"]
    assert {d.replay[0] for d in missing} == {o.client_order_id for o in victim.orders}
    assert all(d.live is None and d.slice_ts == victim.slice_ts for d in missing)
    assert len(result.differences) == len(missing)


def test_a_slice_whose_bars_were_not_journaled_is_a_missing_slice(tmp_path: Path) -> None:
    loaded = minute_config(tmp_path)
    state_dir = tmp_path / "state"
    run_session(state_dir, loaded, seed=5)
    gone_ts = T0 + (WARMUP_MINUTES + TRADE_MINUTES + 3) * NS_PER_MINUTE
    db = sqlite3.connect(state_dir / JOURNAL_FILE)
    with db:
        db.execute("DELETE FROM input WHERE kind = 'bar' AND ts = ?", (gone_ts,))
    db.close()

    result = audit(state_dir)

    assert result.differences[0].kind == "missing_slice"
    assert (result.differences[0].segment, result.differences[0].slice_ts) == (2, gone_ts)
    assert all(d.slice_ts >= gone_ts and d.segment == 2 for d in result.differences)
