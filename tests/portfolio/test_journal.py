"""The journal: round trips, fill de-duplication, write-ahead, restart state, schema, lock, and
writes that fail (read-only file, full disk)."""

from __future__ import annotations

import os
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from brokers.orders import (
    ExecutionEvent,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    OrderSide,
    OrderType,
    SubmitOrder,
    TimeInForce,
)
from composer.targets import Targets
from feeds.bar import NS_PER_MINUTE, Bar
from portfolio.journal import (
    JOURNAL_FILE,
    MIGRATIONS,
    SCHEMA_VERSION,
    Journal,
    JournalError,
    JournalReader,
    LedgerSnapshot,
)
from portfolio.journal.codec import decode_targets, dumps, encode_event, encode_targets, loads
from portfolio.ledger import Ledger

T0 = 1_700_000_000 * 10**9 // NS_PER_MINUTE * NS_PER_MINUTE
SNAPSHOT = LedgerSnapshot(
    cash=Decimal("90000.50"),
    start_cash=Decimal(100000),
    high_water=Decimal("100010.25"),
    realized_pnl=Decimal("12.5"),
    positions={"AAA": (Decimal(10), Decimal("100.05"), Decimal("101.1"))},
)


def begin(journal: Journal, ts: int = T0) -> int:
    return journal.begin_segment(
        mode="paper",
        config_digest="abcd1234",
        config={"symbols": ["AAA", "BBB"], "run": {"start_cash": "100000"}},
        config_files=["config/base.yaml"],
        ledger=SNAPSHOT,
        ts=ts,
    )


def order(cid: str, symbol: str = "AAA", qty: str = "10", **kw: object) -> SubmitOrder:
    return SubmitOrder(
        client_order_id=cid,
        symbol=symbol,
        side=OrderSide.BUY,
        qty=Decimal(qty),
        order_type=OrderType.MARKET,
        ts=T0 + NS_PER_MINUTE,
        **kw,  # type: ignore[arg-type]
    )


def filled(cid: str, execution_id: str, qty: str = "10", price: str = "100.5") -> OrderFilled:
    return OrderFilled(
        client_order_id=cid,
        symbol="AAA",
        side=OrderSide.BUY,
        qty=Decimal(qty),
        price=Decimal(price),
        commission=Decimal("0.01"),
        ts=T0 + 2 * NS_PER_MINUTE,
        execution_id=execution_id,
    )


TARGETS = Targets(
    ts=T0,
    weights={"AAA": 0.5, "BBB": 0.25},
    strategy_weights={"m": 1.0},
    signals={"m": {"AAA": 1.0, "BBB": 0.5}},
    shares={"m": {"AAA": 0.5, "BBB": 0.5}},
    symbols={"m": ("AAA", "BBB")},
)


def test_targets_store_each_shared_allocation_and_symbol_list_once() -> None:
    # Two strategies on one allocation dict and one symbol tuple (as inverse vol gives them),
    # a third on its own: the text stores the shared ones once, and no contributions.
    universe = ("AAA", "BBB")
    split = {"AAA": 0.25, "BBB": 0.75}
    targets = Targets(
        ts=T0,
        weights={"AAA": 0.125, "BBB": -0.1875},
        strategy_weights={"a": 0.5, "b": 0.25, "c": 0.25},
        signals={"a": {"AAA": 1.0, "BBB": -0.5}, "b": {"AAA": 0.0, "BBB": 0.0}, "c": {"BBB": 0.0}},
        shares={"a": split, "b": split, "c": {"BBB": 1.0}},
        symbols={"a": universe, "b": universe, "c": ("BBB",)},
    )
    text = dumps(encode_targets(targets))
    assert text == (
        f'{{"ts":{T0},"weights":{{"AAA":0.125,"BBB":-0.1875}},'
        '"strategy_weights":{"a":0.5,"b":0.25,"c":0.25},'
        '"signals":{"a":{"AAA":1.0,"BBB":-0.5},"b":{"AAA":0.0,"BBB":0.0},"c":{"BBB":0.0}},'
        '"shares":[{"AAA":0.25,"BBB":0.75},{"BBB":1.0}],"shares_of":{"a":0,"b":0,"c":1},'
        '"symbols":[["AAA","BBB"],["BBB"]],"symbols_of":{"a":0,"b":0,"c":1}}'
    )
    decoded = decode_targets(loads(text))
    assert decoded == targets
    assert decoded.by_strategy == {
        "a": {"AAA": 0.125, "BBB": -0.1875},
        "b": {"AAA": 0.0, "BBB": 0.0},
        "c": {"BBB": 0.0},
    }
    assert dumps(encode_targets(decoded)) == text


def test_targets_an_older_journal_stored_with_their_contributions_still_read() -> None:
    # Before schema 5 a decision kept each strategy's contributions, not the shares.
    text = (
        f'{{"ts":{T0},"weights":{{"AAA":0.5,"BBB":0.25}},"strategy_weights":{{"m":1.0}},'
        '"by_strategy":{"m":{"AAA":0.5,"BBB":0.25}},"signals":{"m":{"AAA":1.0,"BBB":0.5}}}'
    )
    targets = decode_targets(loads(text))
    assert targets.weights == {"AAA": 0.5, "BBB": 0.25}
    assert targets.signals == {"m": {"AAA": 1.0, "BBB": 0.5}}
    assert targets.by_strategy == {"m": {"AAA": 0.5, "BBB": 0.25}}
    assert loads(dumps(encode_targets(targets))) == loads(text)


def test_an_event_is_stored_as_its_class_name_and_fields_in_order() -> None:
    # The journal's payload text: what earlier journals hold and later code must still read.
    assert dumps(encode_event(order("o2", "BBB", "0.25", limit_price=Decimal("50.01")))) == (
        '{"type":"SubmitOrder","client_order_id":"o2","symbol":"BBB","side":"buy","qty":"0.25",'
        '"order_type":"market","ts":1700000040000000000,"limit_price":"50.01",'
        '"time_in_force":"day"}'
    )
    assert dumps(encode_event(filled("o1", "e2", qty="6.5"))) == (
        '{"type":"OrderFilled","client_order_id":"o1","symbol":"AAA","side":"buy","qty":"6.5",'
        '"price":"100.5","commission":"0.01","ts":1700000100000000000,"execution_id":"e2"}'
    )


def test_every_input_kind_round_trips_in_order(tmp_path: Path) -> None:
    bars = [
        Bar("AAA", T0 - NS_PER_MINUTE, 1.0, 2.0, 0.5, 1.5, 100.0),
        Bar("AAA", T0, 100.1, 101.2, 99.3, 100.7, 1234.0, 17, 100.45),
        Bar("BBB", T0, 50.0, 50.5, 49.5, 50.25, 10.0, None, None),
        Bar("AAA", T0, 100.1, 101.2, 99.3, 100.9, 1300.0, 18, 100.5),
    ]
    events: list[ExecutionEvent] = [
        OrderAccepted(client_order_id="o1", symbol="AAA", ts=T0 + 1, broker_order_id="b-1"),
        OrderPartiallyFilled(
            client_order_id="o1",
            symbol="AAA",
            side=OrderSide.BUY,
            qty=Decimal("3.5"),
            price=Decimal("100.25"),
            commission=Decimal(0),
            ts=T0 + 2,
            execution_id="e1",
            leaves_qty=Decimal("6.5"),
        ),
        filled("o1", "e2", qty="6.5"),
        OrderCanceled(client_order_id="o2", symbol="BBB", ts=T0 + 3, reason="day over"),
        OrderRejected(client_order_id="o3", symbol="BBB", ts=T0 + 4, reason="no buying power"),
    ]
    orders = [
        order("o1"),
        order("o2", symbol="BBB", qty="0.25", limit_price=Decimal("50.01")),
        SubmitOrder(
            client_order_id="o3",
            symbol="BBB",
            side=OrderSide.SELL,
            qty=Decimal(1),
            order_type=OrderType.LIMIT,
            ts=T0 + NS_PER_MINUTE,
            limit_price=Decimal("49.99"),
            time_in_force=TimeInForce.GTC,
        ),
    ]
    with Journal(tmp_path) as journal:
        segment = begin(journal)
        journal.bar(bars[0], warmup=True)
        journal.warmup_done(T0)
        journal.bar(bars[1], warmup=False)
        journal.bar(bars[2], warmup=False)
        journal.updated_bar(bars[3])
        journal.close_slice(T0, targets=TARGETS, orders=orders)
        for event in events:
            assert journal.event(event)
        journal.control("halt", T0 + 5, who="operator")

    with JournalReader.open(tmp_path) as journal:
        inputs = list(journal.inputs(segment))
        assert [i.kind for i in inputs] == [
            "warmup_bar",
            "warmup_done",
            "bar",
            "bar",
            "updated_bar",
            "close",
            *["event"] * len(events),
            "control",
        ]
        assert [i.payload for i in inputs if i.kind.endswith("bar")] == bars
        assert [i.payload for i in inputs if i.kind == "event"] == events
        assert inputs[1].payload == {"ts": T0}
        assert inputs[5].payload == {"slice_ts": T0}
        assert inputs[-1].payload == {"action": "halt", "ts": T0 + 5, "who": "operator"}
        assert [i.seq for i in inputs] == sorted(i.seq for i in inputs)

        decision = journal.decisions(segment)[(T0, "close")]
        assert decision.targets == TARGETS
        assert decision.orders == orders

        (seg,) = journal.segments()
        assert seg.id == segment
        assert seg.ledger == SNAPSHOT
        assert seg.config == {"symbols": ["AAA", "BBB"], "run": {"start_cash": "100000"}}
        assert (seg.mode, seg.digest, seg.files, seg.ts) == (
            "paper",
            "abcd1234",
            ["config/base.yaml"],
            T0,
        )


def _rows(state_dir: Path) -> dict[str, list[tuple[object, ...]]]:
    db = sqlite3.connect(state_dir / JOURNAL_FILE)
    try:
        return {
            table: db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
            for table in ("input", "decision", "orders", "state")
        }
    finally:
        db.close()


@pytest.mark.parametrize("then", ["event", "write_behind", "close"])
def test_a_slice_closed_behind_leaves_the_file_of_a_slice_closed_at_once(
    tmp_path: Path, then: str
) -> None:
    # Closed behind, a slice's records wait in memory with the bars before them; whatever
    # writes next (an event, write_behind, the journal's close) writes them first, and a bar
    # that came after the close stays after them: the same rows in the same order.
    def run(state_dir: Path, *, behind: bool) -> None:
        with Journal(state_dir) as journal:
            begin(journal)
            journal.bar(Bar("AAA", T0, 100.0, 101.0, 99.0, 100.5, 10.0))
            journal.bar(Bar("BBB", T0, 50.0, 50.5, 49.5, 50.25, 10.0))
            journal.close_slice(T0, targets=TARGETS, orders=[], behind=behind)
            if behind:
                with JournalReader.open(state_dir) as reader:
                    assert reader.decisions(1) == {}  # nothing on disk yet
            journal.bar(Bar("AAA", T0 + NS_PER_MINUTE, 100.5, 101.0, 100.0, 100.75, 10.0))
            if then == "event":
                journal.event(filled("o1", "e1"))
            elif then == "write_behind":
                journal.write_behind()
                with JournalReader.open(state_dir) as reader:
                    assert list(reader.decisions(1)) == [(T0, "close")]
                    assert [i.kind for i in reader.inputs(1)] == ["bar", "bar", "close"]
                journal.flush()

    run(tmp_path / "at-once", behind=False)
    run(tmp_path / "behind", behind=True)
    assert _rows(tmp_path / "behind") == _rows(tmp_path / "at-once")


def test_a_slice_with_orders_is_never_closed_behind(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        begin(journal)
        journal.close_slice(T0, targets=TARGETS, orders=[order("o1")], behind=True)
        with JournalReader.open(tmp_path) as reader:  # on disk before close_slice returned
            assert reader.decisions(1)[(T0, "close")].orders == [order("o1")]
            assert reader.has_order("o1")


def test_a_second_slice_closed_behind_writes_the_first(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        begin(journal)
        journal.close_slice(T0, targets=TARGETS, orders=[], behind=True)
        journal.close_slice(T0 + NS_PER_MINUTE, targets=None, orders=[], behind=True)
        with JournalReader.open(tmp_path) as reader:
            assert [i.payload for i in reader.inputs(1)] == [{"slice_ts": T0}]
        journal.write_behind()
        with JournalReader.open(tmp_path) as reader:
            assert [i.payload for i in reader.inputs(1)] == [
                {"slice_ts": T0},
                {"slice_ts": T0 + NS_PER_MINUTE},
            ]
            assert reader.state().last_slice_ts == T0 + NS_PER_MINUTE


def test_a_fill_already_journaled_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        begin(journal)
        journal.close_slice(T0, targets=None, orders=[order("o1")])
        assert journal.event(filled("o1", "exec-1")) is True
        n_inputs = len(list(journal.reader().inputs(1)))
        assert journal.event(filled("o1", "exec-1")) is False
        assert len(list(journal.reader().inputs(1))) == n_inputs
        state = journal.reader().state()
        assert state.fills == [filled("o1", "exec-1")]
        (record,) = state.orders
        assert record.filled_qty == Decimal(10)
        assert record.filled_notional == Decimal("1005.0")
        assert (record.status, record.terminal) == ("filled", True)


def test_intents_are_readable_by_another_connection_when_close_slice_returns(
    tmp_path: Path,
) -> None:
    with Journal(tmp_path) as journal:
        begin(journal)
        journal.bar(Bar("AAA", T0, 1.0, 1.0, 1.0, 1.0, 1.0))
        journal.close_slice(T0, targets=TARGETS, orders=[order("o1"), order("o2", "BBB")])
        other = sqlite3.connect(tmp_path / JOURNAL_FILE)
        try:
            rows = other.execute(
                "SELECT client_order_id, status FROM orders ORDER BY client_order_id"
            ).fetchall()
            kinds = other.execute("SELECT kind FROM input ORDER BY seq").fetchall()
        finally:
            other.close()
        assert rows == [("o1", "intent"), ("o2", "intent")]
        assert kinds == [("bar",), ("close",)]


def test_a_restart_finds_switches_last_slice_orders_and_fills(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        begin(journal)
        journal.close_slice(T0, targets=TARGETS, orders=[order("o1"), order("o2", "BBB")])
        journal.event(OrderAccepted(client_order_id="o1", symbol="AAA", ts=T0 + 1))
        journal.event(filled("o1", "e1"))
        journal.event(OrderAccepted(client_order_id="o2", symbol="BBB", ts=T0 + 2))
        journal.set_kill_switch(True, "max_drawdown", T0 + 3)
        journal.set_halted(True, "operator", T0 + 4)
        journal.difference("position", {"symbol": "CCC", "broker": "5"}, T0 + 5)
        journal.close_slice(T0 + NS_PER_MINUTE, targets=None, orders=[])
        journal.checkpoint()

    with Journal(tmp_path) as journal:
        state = journal.reader().state()
        assert state.last_slice_ts == T0 + NS_PER_MINUTE
        assert state.kill_switch == (True, "max_drawdown")
        assert state.halted == (True, "operator")
        assert state.baseline == SNAPSHOT
        assert state.fills == [filled("o1", "e1")]
        assert state.last_event_ts == T0 + 2
        assert (state.segments, state.differences) == (1, 1)
        by_id = {o.client_order_id: o for o in state.orders}
        assert (by_id["o1"].status, by_id["o1"].terminal) == ("filled", True)
        assert (by_id["o2"].status, by_id["o2"].terminal) == ("accepted", False)
        assert by_id["o2"].slice_ts == T0

        # The next run's segment starts from what the journal held.
        second = begin(journal, T0 + 10 * NS_PER_MINUTE)
        seg = journal.reader().segments()[-1]
        assert seg.id == second
        assert seg.kill_switch == (True, "max_drawdown")
        assert seg.halted == (True, "operator")
        assert [o.client_order_id for o in seg.open_orders] == ["o2"]
        assert seg.open_orders[0] == by_id["o2"]
        journal.set_kill_switch(False, None, T0 + 11 * NS_PER_MINUTE)
        assert journal.reader().state().kill_switch == (False, None)


def test_an_event_of_an_order_never_decided_here_gets_a_row(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        begin(journal)
        assert journal.event(filled("foreign", "x9"))
        (record,) = journal.reader().state().orders
        assert record.client_order_id == "foreign"
        assert record.side is OrderSide.BUY
        assert record.qty is None
        assert record.status == "filled"


def test_a_snapshot_of_a_ledger_keeps_cash_positions_and_high_water() -> None:
    ledger = Ledger(Decimal(1000))
    ledger.apply_fill(filled("o", "e", qty="2", price="10"))
    snap = LedgerSnapshot.of(ledger)
    assert snap.cash == Decimal("979.99")
    assert snap.positions == {"AAA": (Decimal(2), Decimal(10), Decimal(10))}
    assert LedgerSnapshot.from_json(snap.to_json()) == snap


def test_a_new_file_has_the_current_schema_version(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        assert journal.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
    db = sqlite3.connect(tmp_path / JOURNAL_FILE)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_a_file_of_an_older_schema_is_migrated_keeping_its_rows(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / JOURNAL_FILE)
    db.executescript(MIGRATIONS[0])
    db.execute("INSERT INTO state (key, value) VALUES ('last_slice_ts', '42')")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with Journal(tmp_path) as journal:
        assert journal.schema_version == SCHEMA_VERSION
        assert journal.reader().state().last_slice_ts == 42
        begin(journal)
        journal.set_halted(True, "x", T0)  # the switch table came with version 2
    db = sqlite3.connect(tmp_path / JOURNAL_FILE)
    try:
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"input_segment", "orders_open", "fill_seq"} <= indexes
    finally:
        db.close()


def test_a_file_newer_than_the_code_is_refused_naming_both_versions(tmp_path: Path) -> None:
    with Journal(tmp_path):
        pass
    db = sqlite3.connect(tmp_path / JOURNAL_FILE)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    db.commit()
    db.close()
    with pytest.raises(JournalError) as err:
        Journal(tmp_path)
    message = str(err.value)
    assert f"schema version {SCHEMA_VERSION + 5}" in message
    assert f"tradingd's {SCHEMA_VERSION}" in message
    assert str(tmp_path / JOURNAL_FILE) in message
    # The refusal released the lock: the next opener hears the same reason, not "in use".
    with pytest.raises(JournalError, match="newer than"):
        Journal(tmp_path)


def test_a_second_opener_is_refused_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    first = Journal(tmp_path)
    with pytest.raises(JournalError, match=rf"in use by another tradingd \(pid {os.getpid()}\)"):
        Journal(tmp_path)
    # A reader needs no lock.
    with JournalReader.open(tmp_path) as reader:
        assert reader.state().segments == 0
    first.close()
    Journal(tmp_path).close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_a_read_only_file_gives_a_journal_error_naming_it(tmp_path: Path) -> None:
    with Journal(tmp_path):
        pass
    path = tmp_path / JOURNAL_FILE
    path.chmod(0o444)

    def open_and_write() -> None:
        with Journal(tmp_path) as journal:
            begin(journal)

    try:
        with pytest.raises(JournalError, match=str(path)):
            open_and_write()
    finally:
        path.chmod(0o644)


def test_a_full_disk_gives_a_journal_error_naming_the_file_and_keeps_the_bars(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path, max_bytes=128 * 1024)
    begin(journal)
    path = str(tmp_path / JOURNAL_FILE)

    def write_until_full() -> None:
        for minute in range(100_000):
            ts = T0 + minute * NS_PER_MINUTE
            journal.bar(Bar("AAA", ts, 1.0, 1.0, 1.0, 1.0, 1.0))
            journal.close_slice(ts, targets=TARGETS, orders=[order(f"o{minute}")])

    with pytest.raises(JournalError, match=path) as err:
        write_until_full()
    assert "full" in str(err.value)
    assert journal.failed == str(err.value)
    last_ts = journal.reader().state().last_slice_ts
    assert last_ts is not None
    # Nothing of the failed slice was written: its intent is not there; its bar is still
    # buffered for the next write.
    failed_ts = last_ts + NS_PER_MINUTE
    assert all(o.slice_ts != failed_ts for o in journal.reader().state().orders)
    assert len(journal._bars) == 1
    journal.close()


def test_a_terminal_status_sticks_when_a_late_fill_arrives(tmp_path: Path) -> None:
    late = OrderPartiallyFilled(
        client_order_id="o1",
        symbol="AAA",
        side=OrderSide.BUY,
        qty=Decimal(4),
        price=Decimal(100),
        commission=Decimal(0),
        ts=T0 + 3,
        execution_id="e-late",
        leaves_qty=Decimal(6),
    )
    with Journal(tmp_path) as journal:
        begin(journal)
        journal.close_slice(T0, targets=None, orders=[order("o1")])
        journal.event(OrderCanceled(client_order_id="o1", symbol="AAA", ts=T0 + 2))
        # A reconciliation reports a fill that happened before the cancel.
        assert journal.event(late)
        (record,) = journal.reader().state().orders
        assert (record.status, record.terminal) == ("canceled", True)
        assert record.filled_qty == Decimal(4)


def test_a_batch_of_events_writes_what_one_at_a_time_writes(tmp_path: Path) -> None:
    events: list[ExecutionEvent] = [
        OrderAccepted(client_order_id="o1", symbol="AAA", ts=T0 + 1),
        OrderCanceled(client_order_id="o2", symbol="BBB", ts=T0 + 2, reason="not sent: x"),
        OrderRejected(client_order_id="o3", symbol="AAA", ts=T0 + 3, reason="halted"),
        OrderCanceled(client_order_id="o2", symbol="BBB", ts=T0 + 4, reason="again"),
        filled("o1", "e1"),
        filled("o1", "e1"),  # the same fill twice: written once
        OrderCanceled(client_order_id="o1", symbol="AAA", ts=T0 + 5, reason="after the fill"),
        OrderCanceled(client_order_id="x9", symbol="CCC", ts=T0 + 6, reason="unknown order"),
    ]
    orders = [order("o1"), order("o2", "BBB"), order("o3")]

    def content(journal: Journal) -> list[list[tuple[object, ...]]]:
        db = journal.connection()
        return [
            db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
            for table in ("input", "orders", "fill", "state")
        ]

    with Journal(tmp_path / "one") as one, Journal(tmp_path / "batch") as batch:
        begin(one)
        begin(batch)
        one.close_slice(T0, targets=TARGETS, orders=orders)
        batch.close_slice(T0, targets=TARGETS, orders=orders)
        fresh = [one.event(e) for e in events]
        assert batch.events(events) == fresh == [True] * 5 + [False, True, True]
        assert content(batch) == content(one)
        assert batch.events([filled("o1", "e1")]) == [False]  # written before: nothing
        ended = batch.connection().execute(
            "SELECT client_order_id, symbol, status, terminal FROM orders ORDER BY rowid"
        )
        assert ended.fetchall() == [
            ("o1", "AAA", "filled", 1),  # a cancel after the fill keeps its status
            ("o2", "BBB", "canceled", 1),
            ("o3", "AAA", "rejected", 1),
            ("x9", "CCC", "canceled", 1),  # the first news of an order: its row made
        ]
