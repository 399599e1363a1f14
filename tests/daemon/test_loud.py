"""Safe to leave unattended (issue 10, points 5 and 9): a journal knows its account, an emptied
journal is noticed, a bug stops the daemon loudly, flatten ids are unique per call, fills.csv
keeps every booked fill, and a position sold for leaving the universe says why."""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import sys
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from brokers.orders import OrderFilled, OrderRejected, OrderSide, SubmitOrder
from daemon.config import load_config
from daemon.live.controls import Controls
from daemon.live.guard import JournalGuard
from daemon.live.lifecycle import LiveDaemon
from daemon.live.loop import Fatal
from daemon.live.tasks import DaemonTasks, TaskFailures
from daemon.logs import EventLog
from daemon.recorder import Recorder
from daemon.replay.audit import audit
from daemon.service.telemetry import Telemetry
from daemon.wiring import build_engine
from portfolio.journal import Journal, JournalReader
from sandbox import Sandbox
from tests.daemon.helpers import always_long_config, write_yaml
from tests.daemon.livekit import (
    DATA,
    DEADLINE_S,
    ENV,
    ROOT,
    DaemonProcess,
    Session,
    live_config,
    quiet_log,
    start_session,
)
from tests.daemon.test_audit import (
    SYMBOLS as AUDIT_SYMBOLS,
)
from tests.daemon.test_audit import (
    WARMUP_MINUTES,
    Driver,
    minute_bars,
    minute_config,
)
from tests.daemon.test_drills import BUSY, config_file, decided, settle

BUGGY = textwrap.dedent(
    """
    import os
    from pathlib import Path
    from typing import ClassVar
    from pydantic import BaseModel, ConfigDict
    from composer.strategy import Strategy, strategy
    from feeds.bar import Bar

    class Params(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")

    @strategy("buggy", params=Params)
    class Buggy(Strategy[Params]):
        \"\"\"Fully long until the test arms it; then every bar hits a bug.\"\"\"

        armed: ClassVar[bool] = False

        @property
        def warmup_bars(self) -> int:
            return 0

        def on_bar(self, bar: Bar) -> None:
            flag = os.environ.get("BUGGY_ARMED")
            if Buggy.armed or (flag is not None and Path(flag).exists()):
                raise ZeroDivisionError("a bug planted by the test")
            self.signals[bar.symbol] = 1.0
    """
)


@pytest.fixture
def buggy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A third-party strategy package with a bug the test arms, installed for real (an entry
    point in `tradingd.strategies`), registered as "buggy"."""
    site = tmp_path / "buggy-site"
    site.mkdir()
    (site / "buggy_strategy.py").write_text(BUGGY)
    info = site / "buggy_strategy-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: buggy-strategy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[tradingd.strategies]\nbuggy = buggy_strategy:Buggy\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "buggy_strategy", raising=False)
    import buggy_strategy  # type: ignore[import-not-found]

    return buggy_strategy.Buggy


def records(daemon: LiveDaemon) -> list[dict[str, Any]]:
    stream = daemon.log._stream
    assert isinstance(stream, io.StringIO)
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def events(daemon: LiveDaemon, name: str) -> list[dict[str, Any]]:
    return [r for r in records(daemon) if r["event"] == name]


# -- loud failures ------------------------------------------------------------------------------


async def test_a_bug_in_the_engine_stops_the_daemon_logged_counted_exit_1(
    tmp_path: Path, sandbox: Sandbox, buggy: Any
) -> None:
    loaded = live_config(tmp_path, sandbox, strategies={"b": {"type": "buggy"}})
    daemon = LiveDaemon(loaded, log=quiet_log(), env=ENV)
    session = Session(daemon, sandbox)
    await session.started()
    buggy.armed = True
    try:
        assert await sandbox.step()
        code = await asyncio.wait_for(session.task, DEADLINE_S)
    finally:
        buggy.armed = False
    assert code == 1
    [failed] = events(daemon, "task_failed")
    assert failed["level"] == "error"
    assert failed["task"] == "engine"
    assert failed["error_type"] == "builtins.ZeroDivisionError"
    assert "a bug planted by the test" in failed["traceback"]
    assert "in on_bar" in failed["traceback"]
    counted = daemon.telemetry.registry.get_sample_value(
        "tradingd_task_failures_total", {"task": "engine"}
    )
    assert counted == 1
    [stopped] = events(daemon, "daemon_stopped")
    assert stopped["failed_tasks"] == ["engine"]
    assert (daemon.out_dir / "summary.json").exists()  # the stop still ran in full


@pytest.mark.slow
async def test_tradingd_run_exits_1_with_the_traceback_as_json_after_a_bug(
    tmp_path: Path, sandbox: Sandbox, buggy: Any
) -> None:
    live_config(tmp_path, sandbox, strategies={"b": {"type": "buggy"}})
    flag = tmp_path / "armed"
    env = {"PYTHONPATH": str(tmp_path / "buggy-site"), "BUGGY_ARMED": str(flag)}
    daemon = DaemonProcess(tmp_path / "paper.yaml", tmp_path / "out", env=env)
    await daemon.start()
    flag.touch()
    assert await sandbox.step()
    assert await daemon.wait_exit() == 1, daemon.tail()
    failed = await daemon.wait_event("task_failed")
    assert failed["level"] == "error"
    assert failed["task"] == "engine"
    assert "ZeroDivisionError: a bug planted by the test" in failed["traceback"]
    stopped = await daemon.wait_event("daemon_stopped")
    assert stopped["failed_tasks"] == ["engine"]
    assert not any(e["event"] == "unparsed" for e in daemon.events)  # every line is JSON


async def test_a_task_that_fails_posts_its_name_and_errors_at_the_stop_are_logged() -> None:
    stream = io.StringIO()
    telemetry = Telemetry(mode="paper", symbols=["AAA"], strategies=["s"])
    failures = TaskFailures(log=EventLog(stream), telemetry=telemetry)
    posted: list[Fatal] = []
    tasks = DaemonTasks(failures, posted.append)
    started = asyncio.Event()

    async def clock() -> None:
        raise KeyError("a clock bug")

    async def stubborn() -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("a bug on the way out") from None

    tasks.spawn(clock(), "clock")
    tasks.spawn(stubborn(), "watchdog")
    await started.wait()
    async with asyncio.timeout(DEADLINE_S):
        while not posted:
            await asyncio.sleep(0)
    assert posted[0].task == "clock"
    assert isinstance(posted[0].error, KeyError)
    assert not tasks.alive()
    failures.report("clock", posted[0].error, action="the daemon stops (exit 1)")

    await tasks.stop()

    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [(r["event"], r["task"]) for r in lines] == [
        ("task_failed", "clock"),
        ("task_failed", "watchdog"),  # the clock's error is not logged twice
    ]
    assert "a bug on the way out" in lines[1]["traceback"]
    assert all(r["level"] == "error" for r in lines)
    for task in ("clock", "watchdog"):
        labels = {"task": task}
        assert telemetry.registry.get_sample_value("tradingd_task_failures_total", labels) == 1


def test_a_bug_in_a_control_is_reported_and_raised(tmp_path: Path, recorder: Any) -> None:
    tree = always_long_config(tmp_path)
    loaded = load_config([str(write_yaml(tmp_path / "c.yaml", tree))])
    engine, _ = build_engine(loaded, ["AAA"], Recorder(tmp_path / "out", quiet_log()))
    bugs: list[Exception] = []

    def send(orders: list[SubmitOrder]) -> None:
        raise AttributeError("a bug in the send path")

    controls = Controls(
        engine,
        telemetry=Telemetry(mode="paper", symbols=["AAA", "BBB"], strategies=["long"]),
        log=quiet_log(),
        send=send,
        on_bug=bugs.append,
    )
    with pytest.raises(AttributeError):
        controls.apply("flatten", 1_700_000_000_500_000_000)
    assert [type(e) for e in bugs] == [AttributeError]


# -- the account a journal belongs to -----------------------------------------------------------


async def test_a_journal_of_another_account_is_refused_whatever_the_clocks_say(
    tmp_path: Path, sandbox: Sandbox, recorder: Any
) -> None:
    session = await start_session(tmp_path, sandbox)
    await session.step(2)
    await session.settle()
    assert await session.stop() == 0
    with JournalReader.open(tmp_path / "state") as reader:
        first = reader.account()
        segments = len(reader.segments())
    assert first is not None
    assert first.account_id == sandbox.account.id
    # A new session whose clock is later than the journal's last slice: the old guard took it
    # for a restart (old positions restored, the cash difference adopted).
    later = Sandbox(DATA, speed=None, warm_minutes=200, key="test-key", secret="test-secret")
    await later.start()
    try:
        live_config(tmp_path, later)  # rewrites paper.yaml with the new session's URLs
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "daemon.cli",
            "run",
            str(tmp_path / "paper.yaml"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**ENV, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "site-packages")},
            cwd=ROOT,
        )
        _, err = await asyncio.wait_for(process.communicate(), DEADLINE_S)
        code = process.returncode
        assert not later.order_posts
    finally:
        await later.close()
    message = [line for line in err.decode().splitlines() if line.startswith("tradingd: error:")]
    assert code == 2, err.decode()[-2000:]
    assert len(message) == 1
    assert sandbox.account.number in message[0]
    assert sandbox.account.id in message[0]
    assert later.account.number in message[0]
    assert later.account.id in message[0]
    with JournalReader.open(tmp_path / "state") as reader:
        assert reader.account() == first
        assert len(reader.segments()) == segments  # nothing of the other account written


async def test_an_emptied_journal_beside_earlier_trading_is_a_warning(
    tmp_path: Path, sandbox: Sandbox, recorder: Any
) -> None:
    session = await start_session(tmp_path, sandbox)
    assert not events(session.daemon, "journal_empty_after_trading")  # a true first start
    await session.step(2)
    await session.settle()
    assert await session.stop() == 0
    first_out = session.daemon.out_dir
    shutil.rmtree(tmp_path / "state")

    again = await start_session(tmp_path, sandbox)
    try:
        [warning] = events(again.daemon, "journal_empty_after_trading")
    finally:
        assert await again.stop() == 0
    assert warning["level"] == "warning"
    assert warning["traded_in"] == [str(first_out)]
    assert warning["folders"] == 1


# -- flatten ids ----------------------------------------------------------------------------------


def test_two_flattens_in_one_second_both_act_and_audit_the_same(tmp_path: Path) -> None:
    loaded = minute_config(tmp_path)
    state_dir = tmp_path / "state"
    bars = minute_bars(5, WARMUP_MINUTES + 8)
    with Journal(state_dir) as journal:
        driver = Driver(loaded, journal)
        driver.begin(bars[WARMUP_MINUTES][0].ts)
        for row in bars[:WARMUP_MINUTES]:
            for bar in row:
                driver.bar(bar, warmup=True)
        driver.close()
        journal.warmup_done(bars[WARMUP_MINUTES][0].ts)
        engine = driver.engine
        engine.trade_from_ts = -(2**63)
        for m in range(WARMUP_MINUTES, WARMUP_MINUTES + 6):
            for bar in bars[m]:
                driver.bar(bar)
            orders = driver.close()
            opens = {b.symbol: b.open for b in bars[m + 1]}
            driver.fill_all(orders, opens, bars[m + 1][0].ts)
        assert engine.ledger.positions
        sent: list[list[SubmitOrder]] = []
        controls = Controls(
            engine,
            telemetry=Telemetry(mode="paper", symbols=AUDIT_SYMBOLS, strategies=["mom"]),
            log=quiet_log(),
            send=sent.append,
            guard=JournalGuard(journal, log=quiet_log(), on_failed=lambda: None),
        )
        now = bars[WARMUP_MINUTES + 6][0].ts + 20 * 10**9  # mid-minute
        first = controls.flatten(now)["orders"]
        for order in sent[0]:  # the broker refuses them all
            driver.event(
                OrderRejected(
                    client_order_id=order.client_order_id,
                    symbol=order.symbol,
                    ts=now,
                    reason="refused",
                )
            )
        second = controls.flatten(now + 1_000_000)["orders"]  # a millisecond later
        driver.fill_all(sent[1], opens, now + 2_000_000)
    assert first
    assert sorted(o.symbol for o in sent[1]) == sorted(o.symbol for o in sent[0])
    assert not set(first) & set(second), "the second flatten reused the first's ids"
    assert engine.ledger.positions == {}

    result = audit(state_dir)

    assert result.differences == []


# -- fills.csv ------------------------------------------------------------------------------------


def _fill(n: int) -> OrderFilled:
    return OrderFilled(
        client_order_id=f"c-{n}",
        symbol="AAA",
        side=OrderSide.BUY,
        qty=Decimal(1),
        price=Decimal("10.5"),
        commission=Decimal(0),
        ts=1_700_000_000_000_000_000 + n * 10**9,
        execution_id=f"x-{n}",
    )


def test_a_live_fill_is_on_disk_as_soon_as_it_is_booked(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "out", quiet_log(), flush_each_slice=True)
    rec.start()
    rec.on_execution(_fill(1), True)
    rows = (tmp_path / "out" / "fills.csv").read_text().splitlines()
    assert len(rows) == 2
    assert rows[1].endswith(",x-1")
    rec.close()


def test_a_restart_appends_the_fills_the_file_lacks_once(tmp_path: Path) -> None:
    out = tmp_path / "out"
    rec = Recorder(out, quiet_log(), flush_each_slice=True)
    rec.start(journaled_fills=list)
    for n in (1, 2, 3):
        rec.on_execution(_fill(n), True)
    rec.close()
    whole = (out / "fills.csv").read_text()
    lines = whole.splitlines(keepends=True)
    # A kill after fill 2 was journaled: its row half written, fill 3's not at all.
    (out / "fills.csv").write_text("".join(lines[:2]) + lines[2][:9])

    again = Recorder(out, quiet_log(), flush_each_slice=True)
    again.start(journaled_fills=lambda: [_fill(1), _fill(2), _fill(3)])
    again.close()
    assert (out / "fills.csv").read_text() == whole

    third = Recorder(out, quiet_log(), flush_each_slice=True)
    third.start(journaled_fills=lambda: [_fill(1), _fill(2), _fill(3)])
    third.close()
    assert (out / "fills.csv").read_text() == whole  # nothing appended twice


async def test_a_restart_with_the_same_out_restores_the_missing_fills(
    tmp_path: Path, sandbox: Sandbox, recorder: Any
) -> None:
    out = tmp_path / "run"
    daemon = LiveDaemon(live_config(tmp_path, sandbox), log=quiet_log(), env=ENV, out_dir=out)
    session = Session(daemon, sandbox)
    await session.started()
    await session.step(2)
    await session.settle()
    assert await session.stop() == 0
    with open(out / "fills.csv", newline="") as handle:
        booked = list(csv.DictReader(handle))
    assert booked
    (out / "fills.csv").write_text(
        (out / "fills.csv").read_text().splitlines(keepends=True)[0]
    )  # the header only: every row lost

    again = LiveDaemon(live_config(tmp_path, sandbox), log=quiet_log(), env=ENV, out_dir=out)
    resumed = Session(again, sandbox)
    await resumed.started()
    assert await resumed.stop() == 0
    with open(out / "fills.csv", newline="") as handle:
        restored = list(csv.DictReader(handle))
    assert [r["execution_id"] for r in restored] == [r["execution_id"] for r in booked]
    assert restored == booked


@pytest.mark.slow
async def test_kill_9_and_restarts_into_one_out_keep_every_journaled_fill_once(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    config = config_file(tmp_path, sandbox, strategies=BUSY)
    out = tmp_path / "out"
    first = DaemonProcess(config, out, env={"TRADINGD_CRASH_AT": "after_fill:3"})
    await first.start()
    for _ in range(12):
        assert await sandbox.step()
        if not await decided(first, sandbox.last_minute_ns or 0):
            break
    assert await first.wait_exit() == -9, first.tail()
    again = DaemonProcess(config, out)
    await again.start()
    for _ in range(3):
        assert await sandbox.step()
        assert await decided(again, sandbox.last_minute_ns or 0)
    await settle(again, sandbox)
    assert await again.terminate() == 0, again.tail()
    with JournalReader.open(tmp_path / "state") as reader:
        journaled = [f.execution_id for f in reader.state().fills]
    with open(out / "fills.csv", newline="") as handle:
        written = [row["execution_id"] for row in csv.DictReader(handle)]
    assert len(journaled) > 3
    assert sorted(written) == sorted(journaled)  # every fill once, across the kill


# -- leaving the universe -------------------------------------------------------------------------


async def test_a_position_sold_for_leaving_the_universe_says_why(
    tmp_path: Path, sandbox: Sandbox, recorder: Any
) -> None:
    session = await start_session(tmp_path, sandbox)
    await session.step(2)
    await session.settle()
    held = {s for s, p in session.daemon.ledger.positions.items() if p.qty}
    assert await session.stop() == 0
    assert {"CCC", "DDD"} <= held

    smaller = await start_session(tmp_path, sandbox, symbols=["AAA", "BBB"])
    try:
        await smaller.step(1)
        await smaller.settle()
        lines = events(smaller.daemon, "position_leaves_universe")
        ledger = smaller.daemon.ledger
        assert not any(ledger.positions[s].qty for s in ("CCC", "DDD") if s in ledger.positions)
    finally:
        assert await smaller.stop() == 0
    assert sorted(r["symbol"] for r in lines) == ["CCC", "DDD"]
    assert all(r["level"] == "info" for r in lines)
    assert all("not in the universe" in r["reason"] for r in lines)
