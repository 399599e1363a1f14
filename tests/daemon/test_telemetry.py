"""Telemetry: every metric family from the start, counters and histograms moving with the calls,
gauges read at scrape time, and an exposition that Prometheus's own tools accept."""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import shutil
import subprocess
import threading
from decimal import Decimal
from pathlib import Path

import prometheus_client.exposition
import pytest
from prometheus_client.parser import text_string_to_metric_families

from brokers.orders import (
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderType,
    SubmitOrder,
)
from composer.targets import Targets
from daemon.engine import Decision
from daemon.service import telemetry as telemetry_module
from daemon.service.collectors import PAUSE_EVERY, WithoutCreated
from daemon.service.metric_families import BAR_REJECT_REASONS
from daemon.service.telemetry import Telemetry
from feeds.sanity import Reason
from portfolio.events import KillSwitchTripped, OrderClipped, OrderDenied
from portfolio.ledger import Ledger
from portfolio.risk import DENY_REASONS, RiskGate, RiskSettings

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ["SPY", "QQQ"]
STRATEGIES = ["momo", "meanrev"]
TS = 1_700_000_040_000_000_000

# The contract with deploy/ (alert rules, dashboard): these families must always be exposed.
FAMILIES = {
    "tradingd_bars_received_total",
    "tradingd_bars_accepted_total",
    "tradingd_bars_rejected_total",
    "tradingd_bars_late_total",
    "tradingd_bars_updated_total",
    "tradingd_slices_decided_total",
    "tradingd_feed_connected",
    "tradingd_feed_reconnects_total",
    "tradingd_seconds_since_last_bar",
    "tradingd_orders_submitted_total",
    "tradingd_orders_filled_total",
    "tradingd_orders_rejected_total",
    "tradingd_orders_denied_total",
    "tradingd_orders_clipped_total",
    "tradingd_order_ack_seconds",
    "tradingd_order_fill_seconds",
    "tradingd_decision_latency_seconds",
    "tradingd_equity",
    "tradingd_cash",
    "tradingd_gross_exposure",
    "tradingd_net_exposure",
    "tradingd_drawdown_ratio",
    "tradingd_position_quantity",
    "tradingd_position_value",
    "tradingd_target_weight",
    "tradingd_strategy_weight",
    "tradingd_kill_switch",
    "tradingd_halted",
    "tradingd_broker_stream_up",
    "tradingd_reconciliations_total",
    "tradingd_reconciliation_differences_total",
    "tradingd_event_loop_lag_seconds",
    "tradingd_info",
    "tradingd_symbol_stale",
    "tradingd_market_open",
    "tradingd_ready",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "python_info",
}


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(clock: FakeClock | None = None) -> Telemetry:
    if clock is None:
        return Telemetry(mode="paper", symbols=SYMBOLS, strategies=STRATEGIES)
    return Telemetry(mode="paper", symbols=SYMBOLS, strategies=STRATEGIES, monotonic=clock)


def families(t: Telemetry) -> dict[str, list[tuple[dict[str, str], float]]]:
    """name (as exposed: counters with _total) -> [(labels, value)] of its main samples."""
    body, _ = t.exposition()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        name = family.name + "_total" if family.type == "counter" else family.name
        out[name] = [
            (s.labels, s.value)
            for s in family.samples
            if s.name in (family.name, family.name + "_total")
        ]
    return out


def value(t: Telemetry, name: str, **labels: str) -> float | None:
    return t.registry.get_sample_value(name, labels)


def order(cid: str, symbol: str = "SPY", qty: str = "10") -> SubmitOrder:
    return SubmitOrder(
        client_order_id=cid,
        symbol=symbol,
        side=OrderSide.BUY,
        qty=Decimal(qty),
        order_type=OrderType.MARKET,
        ts=TS,
    )


def fill(cid: str, symbol: str = "SPY", qty: str = "10", price: str = "400") -> OrderFilled:
    return OrderFilled(
        client_order_id=cid,
        symbol=symbol,
        side=OrderSide.BUY,
        qty=Decimal(qty),
        price=Decimal(price),
        commission=Decimal(0),
        ts=TS,
        execution_id=f"x-{cid}",
    )


def test_every_family_appears_before_any_event() -> None:
    exposed = families(make())
    assert set(exposed) >= FAMILIES, sorted(FAMILIES - set(exposed))
    # Per-symbol and per-strategy children exist from the start, at zero.
    received = {labels["symbol"]: v for labels, v in exposed["tradingd_bars_received_total"]}
    assert received == {"SPY": 0.0, "QQQ": 0.0}
    weights = {labels["strategy"] for labels, _ in exposed["tradingd_strategy_weight"]}
    assert weights == set(STRATEGIES)
    info = exposed["tradingd_info"]
    assert info[0][0]["mode"] == "paper"
    assert info[0][1] == 1.0
    # Prometheus-client's _created series are left out of the exposition.
    body, content_type = make().exposition()
    assert b"_created" not in body
    assert content_type.startswith("text/plain; version=0.0.4")


def test_counters_move_with_the_calls() -> None:
    t = make()
    t.bar_received("SPY")
    t.bar_received("SPY")
    t.bar_accepted("SPY", TS)
    t.bar_rejected("SPY", "price_jump")
    t.bar_late("QQQ")
    t.bar_updated("QQQ")
    t.slice_decided(0.004)
    t.feed_connected(True)
    t.feed_reconnected()
    t.order_submitted("QQQ", "c1")
    t.broker_stream(True)
    t.reconciliation(0)
    t.reconciliation(3)
    t.halted(True)
    t.market_open(True)
    t.ready(True)
    assert value(t, "tradingd_bars_received_total", symbol="SPY") == 2
    assert value(t, "tradingd_bars_accepted_total", symbol="SPY") == 1
    assert value(t, "tradingd_bars_rejected_total", symbol="SPY", reason="price_jump") == 1
    assert value(t, "tradingd_bars_late_total", symbol="QQQ") == 1
    assert value(t, "tradingd_bars_updated_total", symbol="QQQ") == 1
    assert value(t, "tradingd_slices_decided_total") == 1
    assert value(t, "tradingd_decision_latency_seconds_count") == 1
    assert value(t, "tradingd_decision_latency_seconds_bucket", le="0.005") == 1
    assert value(t, "tradingd_feed_connected") == 1
    assert value(t, "tradingd_feed_reconnects_total") == 1
    assert value(t, "tradingd_orders_submitted_total", symbol="QQQ") == 1
    assert value(t, "tradingd_broker_stream_up") == 1
    assert value(t, "tradingd_reconciliations_total") == 2
    assert value(t, "tradingd_reconciliation_differences_total") == 3
    assert value(t, "tradingd_halted") == 1
    assert value(t, "tradingd_market_open") == 1
    assert value(t, "tradingd_ready") == 1
    t.feed_connected(False)
    t.halted(False)
    assert value(t, "tradingd_feed_connected") == 0
    assert value(t, "tradingd_halted") == 0


def test_known_reasons_match_the_code_that_gives_them() -> None:
    assert set(BAR_REJECT_REASONS) == {r.value for r in Reason} | {"unknown_symbol"}
    risk_source = (ROOT / "portfolio" / "risk.py").read_text()
    given = set(
        re.findall(r'(?:_denied\(order, |reasons\.append\(|return \w+, )"(\w+)"', risk_source)
    )
    assert given == set(DENY_REASONS)


def test_labels_outside_the_known_sets_count_as_other() -> None:
    t = make()
    t.bar_received("ZZZ")
    t.bar_rejected("ZZZ", "unknown_symbol")
    t.bar_rejected("SPY", "a reason nobody defined")
    t.on_execution(
        OrderRejected(client_order_id="c", symbol="SPY", ts=TS, reason="account is blocked"), True
    )
    t.on_execution(
        OrderRejected(client_order_id="d", symbol="SPY", ts=TS, reason="trading halted: not sent"),
        True,
    )
    t.on_execution(
        OrderRejected(client_order_id="e", symbol="SPY", ts=TS, reason="not sent: timeout"), True
    )
    assert value(t, "tradingd_bars_received_total", symbol="other") == 1
    assert value(t, "tradingd_bars_rejected_total", symbol="other", reason="unknown_symbol") == 1
    assert value(t, "tradingd_bars_rejected_total", symbol="SPY", reason="other") == 1
    # The broker's message never becomes a label value.
    assert value(t, "tradingd_orders_rejected_total", reason="rejected") == 1
    assert value(t, "tradingd_orders_rejected_total", reason="halted") == 1
    assert value(t, "tradingd_orders_rejected_total", reason="not_sent") == 1
    body, _ = t.exposition()
    assert b"account is blocked" not in body


def test_histograms_observe_round_trips_from_submission() -> None:
    clock = FakeClock(1000.0)
    t = make(clock)
    t.order_submitted("SPY", "c1")
    clock.now = 1000.25
    t.on_execution(OrderAccepted(client_order_id="c1", symbol="SPY", ts=TS), True)
    clock.now = 1000.5
    # A second acknowledgement (a replayed stream event) is not a second round trip.
    t.on_execution(OrderAccepted(client_order_id="c1", symbol="SPY", ts=TS), True)
    assert value(t, "tradingd_order_ack_seconds_count") == 1
    assert value(t, "tradingd_order_ack_seconds_sum") == pytest.approx(0.25)
    clock.now = 1060.0
    t.on_execution(fill("c1"), True)
    assert value(t, "tradingd_order_fill_seconds_count") == 1
    assert value(t, "tradingd_order_fill_seconds_sum") == pytest.approx(60.0)
    assert value(t, "tradingd_order_fill_seconds_bucket", le="60.0") == 1
    assert value(t, "tradingd_order_fill_seconds_bucket", le="30.0") == 0
    assert value(t, "tradingd_orders_filled_total", symbol="SPY") == 1
    # A duplicate fill (applied=False) counts nothing.
    t.on_execution(fill("c1"), False)
    assert value(t, "tradingd_orders_filled_total", symbol="SPY") == 1
    assert value(t, "tradingd_order_fill_seconds_count") == 1
    # A fill of an order never submitted here (adopted at a restart) counts, with no round trip.
    t.on_execution(fill("old", symbol="QQQ"), True)
    assert value(t, "tradingd_orders_filled_total", symbol="QQQ") == 1
    assert value(t, "tradingd_order_fill_seconds_count") == 1
    # A canceled order's clock is dropped: its late fill would be no round trip.
    t.order_submitted("SPY", "c2")
    t.on_execution(OrderCanceled(client_order_id="c2", symbol="SPY", ts=TS), True)
    assert value(t, "tradingd_orders_canceled_total", symbol="SPY") == 1
    t.on_execution(OrderAccepted(client_order_id="c2", symbol="SPY", ts=TS), True)
    assert value(t, "tradingd_order_ack_seconds_count") == 1


def test_seconds_since_last_bar_grows_with_the_clock() -> None:
    clock = FakeClock(500.0)
    t = make(clock)
    clock.now = 530.0
    since = {labels["symbol"]: v for labels, v in families(t)["tradingd_seconds_since_last_bar"]}
    assert since == {"SPY": 30.0, "QQQ": 30.0}  # since start-up: no bar yet
    t.bar_accepted("SPY", TS)
    clock.now = 545.5
    assert value(t, "tradingd_seconds_since_last_bar", symbol="SPY") == pytest.approx(15.5)
    assert value(t, "tradingd_seconds_since_last_bar", symbol="QQQ") == pytest.approx(45.5)
    assert value(t, "tradingd_last_bar_timestamp_seconds", symbol="SPY") == TS / 1e9
    clock.now = 600.0
    assert value(t, "tradingd_seconds_since_last_bar", symbol="SPY") == pytest.approx(70.0)


def test_ledger_gauges_follow_the_ledger_at_scrape_time() -> None:
    t = make()
    ledger = Ledger(Decimal(100_000))
    ledger.apply_fill(fill("c1", qty="10", price="400"))
    ledger.mark({"SPY": 410.0})
    t.on_slice(TS, ledger)
    assert value(t, "tradingd_equity") == pytest.approx(100_100.0)
    assert value(t, "tradingd_cash") == pytest.approx(96_000.0)
    assert value(t, "tradingd_gross_exposure") == pytest.approx(4_100.0)
    assert value(t, "tradingd_net_exposure") == pytest.approx(4_100.0)
    assert value(t, "tradingd_drawdown_ratio") == 0.0
    assert value(t, "tradingd_position_quantity", symbol="SPY") == 10
    assert value(t, "tradingd_position_value", symbol="SPY") == pytest.approx(4_100.0)
    assert value(t, "tradingd_position_quantity", symbol="QQQ") == 0
    assert value(t, "tradingd_last_slice_timestamp_seconds") == TS / 1e9
    # No new event: the next scrape still reads the ledger as it is now.
    ledger.mark({"SPY": 390.0})
    assert value(t, "tradingd_equity") == pytest.approx(99_900.0)
    assert value(t, "tradingd_drawdown_ratio") == pytest.approx(200 / 100_100)


async def test_render_off_the_loop_is_the_exposition_of_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = make(FakeClock())
    ledger = Ledger(Decimal(100_000))
    ledger.apply_fill(fill("c1", qty="10", price="400"))
    ledger.mark({"SPY": 410.0})
    t.on_slice(TS, ledger)
    t.bar_accepted("SPY", TS)
    t.on_targets(Targets(ts=TS, weights={"SPY": 0.4}, strategy_weights={"momo": 1.0}))
    # The text is formatted while the loop runs: the formatter waits for a coroutine it hands
    # the loop (formatted on the loop's own thread, it would wait for itself and time out).
    loop_ran = asyncio.Event()
    format_text = prometheus_client.exposition.generate_latest

    def generate_latest(registry: object) -> bytes:
        asyncio.run_coroutine_threadsafe(_set(loop_ran), main_loop).result(timeout=10)
        return format_text(registry)  # type: ignore[arg-type]

    main_loop = asyncio.get_running_loop()
    monkeypatch.setattr(telemetry_module, "generate_latest", generate_latest)
    rendered, content_type = await t.render()
    assert loop_ran.is_set()
    monkeypatch.undo()
    assert own_lines(rendered) == own_lines(t.exposition()[0])
    assert content_type.startswith("text/plain")
    assert value(t, "tradingd_target_weight", symbol="SPY") == 0.4
    assert b'tradingd_position_quantity{symbol="SPY"} 10.0' in rendered
    # Read on the loop, then released: later scrapes read the ledger as it is then.
    ledger.mark({"SPY": 390.0})
    assert value(t, "tradingd_equity") == pytest.approx(99_900.0)


async def test_a_render_waits_at_its_pauses_while_the_loop_decides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = make(FakeClock())
    monkeypatch.setattr(telemetry_module, "_PAUSE_LIMIT_S", 60.0)
    paused = threading.Event()
    pauses = 0
    order: list[str] = []
    wait_for_loop = t._wait_for_loop

    def pause() -> None:
        nonlocal pauses
        pauses += 1
        paused.set()
        wait_for_loop()
        order.append("render resumed")

    t._wait_for_loop = pause  # type: ignore[method-assign]
    with t.deciding():
        render = asyncio.ensure_future(t.render())
        assert await asyncio.to_thread(paused.wait, 10), "the render never reached a pause"
        # The worker waits at its first pause (before the first family) until the end.
        await asyncio.sleep(0)
        assert pauses == 1
        assert not render.done()
        order.append("decision ended")
    rendered, _ = await asyncio.wait_for(render, 10)
    assert order[:2] == ["decision ended", "render resumed"]
    assert own_lines(rendered) == own_lines(t.exposition()[0])
    assert pauses > 1


def test_the_pauses_come_before_each_family_and_every_64_samples() -> None:
    t = make(FakeClock())
    pauses = 0

    def pause() -> None:
        nonlocal pauses
        pauses += 1

    sizes = []
    for family in WithoutCreated(t.registry, pause=pause).collect():
        before = pauses
        sizes.append(sum(1 for _ in family.samples))
        assert pauses - before == sizes[-1] // PAUSE_EVERY
    assert pauses == len(sizes) + sum(n // PAUSE_EVERY for n in sizes)
    assert sizes == family_sizes(t)
    assert max(sizes) > PAUSE_EVERY  # the per-sample pauses were exercised


def family_sizes(t: Telemetry) -> list[int]:
    return [len(f.samples) for f in WithoutCreated(t.registry).collect()]


async def _set(event: asyncio.Event) -> None:
    event.set()


def own_lines(body: bytes) -> list[bytes]:
    """The exposition's lines of tradingd's families (the process's own move between reads)."""
    return [line for line in body.splitlines() if b"tradingd_" in line]


def test_targets_decisions_and_kill_switch() -> None:
    t = make()
    t.on_targets(
        Targets(
            ts=TS,
            weights={"SPY": 0.4, "QQQ": -0.1},
            strategy_weights={"momo": 0.75, "meanrev": 0.25},
        )
    )
    assert value(t, "tradingd_target_weight", symbol="SPY") == 0.4
    assert value(t, "tradingd_target_weight", symbol="QQQ") == -0.1
    assert value(t, "tradingd_strategy_weight", strategy="momo") == 0.75
    denied = OrderDenied(
        client_order_id="d1",
        symbol="SPY",
        side=OrderSide.BUY,
        qty=Decimal(1),
        reason="kill_switch",
        ts=TS,
    )
    clipped = OrderClipped(
        client_order_id="c1",
        symbol="SPY",
        side=OrderSide.BUY,
        requested_qty=Decimal(10),
        approved_qty=Decimal(5),
        reason="max_weight,max_gross",
        ts=TS,
    )
    base = {"slice_ts": TS, "symbol": "SPY", "signals": {}, "target_weight": 0.4}
    t.on_decision(
        Decision(
            **base,  # type: ignore[arg-type]
            client_order_id="d1",
            current_weight=0.0,
            requested=order("d1"),
            risk="denied",
            risk_event=denied,
            order=None,
        )
    )
    t.on_decision(
        Decision(
            **base,  # type: ignore[arg-type]
            client_order_id="c1",
            current_weight=0.0,
            requested=order("c1"),
            risk="clipped",
            risk_event=clipped,
            order=order("c1", qty="5"),
        )
    )
    assert value(t, "tradingd_orders_denied_total", reason="kill_switch") == 1
    assert value(t, "tradingd_orders_clipped_total", reason="max_weight") == 1
    assert value(t, "tradingd_orders_clipped_total", reason="max_gross") == 1

    assert value(t, "tradingd_kill_switch") == 0
    t.on_kill_switch(
        KillSwitchTripped(
            ts=TS, reason="max_drawdown", equity=Decimal(80_000), value=0.2, limit=0.2
        )
    )
    assert value(t, "tradingd_kill_switch") == 1
    t.kill_switch_reset()
    assert value(t, "tradingd_kill_switch") == 0
    # Attached, the gauge follows the gate itself (an operator's reset included).
    risk = RiskGate(RiskSettings(), fractional=True)
    t.attach(risk=risk)
    risk.latch("daily_loss")
    assert value(t, "tradingd_kill_switch") == 1
    risk.reset()
    assert value(t, "tradingd_kill_switch") == 0


def test_stale_symbols() -> None:
    t = make()
    t.on_stale("QQQ", TS, True)
    assert value(t, "tradingd_symbol_stale", symbol="QQQ") == 1
    assert value(t, "tradingd_symbol_stale", symbol="SPY") == 0
    t.on_stale("QQQ", TS, False)
    assert value(t, "tradingd_symbol_stale", symbol="QQQ") == 0


async def test_measure_loop_lag_observes_each_wakeup() -> None:
    t = make()
    woken = 0
    three = asyncio.Event()

    async def sleep(seconds: float) -> None:
        nonlocal woken
        await asyncio.sleep(0)
        woken += 1
        if woken == 4:
            three.set()

    task = asyncio.create_task(t.measure_loop_lag(0.01, sleep=sleep))
    try:
        await asyncio.wait_for(three.wait(), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    count = value(t, "tradingd_event_loop_lag_seconds_count")
    assert count is not None
    assert count >= 3
    t.loop_lag(0.3)
    assert value(t, "tradingd_event_loop_lag_seconds_bucket", le="0.5") == count + 1


async def test_loop_lag_deadlines_fall_at_random_phases() -> None:
    # Evenly spaced, the timer would meet the daemon's once-a-minute work at one phase only.
    asked: list[float] = []
    twenty = asyncio.Event()

    async def sleep(seconds: float) -> None:
        asked.append(seconds)
        if len(asked) == 20:
            twenty.set()
        await asyncio.sleep(0)

    task = asyncio.create_task(make().measure_loop_lag(10.0, sleep=sleep, rng=random.Random(7)))
    try:
        await asyncio.wait_for(twenty.wait(), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # The fake sleep takes no time: each wait runs to the next deadline from the first wake-up
    # (less the loop's few microseconds), so successive waits differ by the drawn spacing.
    spacing = [b - a for a, b in itertools.pairwise(asked)]
    assert all(4.99 < s < 15.01 for s in spacing)
    assert min(spacing) < 7.5
    assert max(spacing) > 12.5


def busy(t: Telemetry) -> Telemetry:
    """Every kind of event once, so the exposition holds every kind of sample."""
    ledger = Ledger(Decimal(100_000))
    ledger.apply_fill(fill("c0"))
    ledger.mark({"SPY": 401.0})
    t.on_slice(TS, ledger)
    t.bar_received("SPY")
    t.bar_accepted("SPY", TS)
    t.bar_rejected("QQQ", "high_low_inconsistent")
    t.slice_decided(0.01)
    t.order_submitted("SPY", "c1")
    t.on_execution(OrderAccepted(client_order_id="c1", symbol="SPY", ts=TS), True)
    t.on_execution(fill("c1"), True)
    t.loop_lag(0.002)
    return t


def test_exposition_parses() -> None:
    exposed = families(busy(make()))
    assert set(exposed) >= FAMILIES
    assert exposed["tradingd_equity"][0][1] > 0


def test_promtool_accepts_the_exposition() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus): cannot lint metrics")
    for t in (make(), busy(make())):
        body, _ = t.exposition()
        result = subprocess.run(
            [promtool, "check", "metrics"], input=body, capture_output=True, check=False
        )
        assert result.returncode == 0, (result.stdout + result.stderr).decode()
        assert not result.stdout.strip(), result
        assert not result.stderr.strip(), result
