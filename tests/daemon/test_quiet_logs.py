"""Quiet by default where nothing is wrong: a replay's per-order lines are debug, repeated
denials are summed up in one warning, and a log line's `time` is always the wall clock."""

from __future__ import annotations

import calendar
import io
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from daemon import logs
from daemon.cli import main
from daemon.logs import EventLog


def events(err: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in err.splitlines()]


@pytest.mark.usefixtures("in_repo")
def test_a_default_replay_of_the_sample_prints_two_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["replay", "config/base.yaml", "config/risk_balanced.yaml"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    quiet = events(capsys.readouterr().err)
    assert [e["event"] for e in quiet] == ["replay_started", "replay_finished"]
    # --log-level debug brings every order back.
    assert main([*args, "--out", str(tmp_path / "b"), "--log-level", "debug"]) == 0
    loud = Counter(e["event"] for e in events(capsys.readouterr().err))
    assert loud["order_submitted"] == loud["order_filled"] > 100


@pytest.mark.usefixtures("in_repo")
def test_repeated_denials_are_summed_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["replay", "config/base.yaml", "config/risk_conservative.yaml", "--symbols", "SPX"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    warnings = [e for e in events(capsys.readouterr().err) if e["level"] == "warning"]
    assert [e["event"] for e in warnings] == ["order_denied", "orders_denied"]
    summary = orjson.loads((tmp_path / "a" / "summary.json").read_bytes())
    assert warnings[1]["denied"] == summary["denied_orders"] > 100
    assert warnings[1]["by_reason"] == {"max_weight": summary["denied_orders"]}


def test_a_line_time_is_the_wall_clock() -> None:
    stream = io.StringIO()
    log = EventLog(stream, level="info")
    before = time.time()
    log.info("order_filled", time="2004-08-19T13:30:00Z", symbol="SPY")
    record = orjson.loads(stream.getvalue())
    assert record["market_time"] == "2004-08-19T13:30:00Z"
    written = calendar.timegm(time.strptime(str(record["time"])[:19], "%Y-%m-%dT%H:%M:%S"))
    assert abs(written - before) < 60


class _Counting(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_info_lines_logged_while_held_are_written_together_and_in_order() -> None:
    stream = _Counting()
    log = EventLog(stream, level="info")

    def decide() -> None:
        with log.held():
            log.info("order_submitted", n=1)
            with log.held():  # nested: the outermost writes
                log.info("order_submitted", n=2)
            log.debug("below the level", n=0)
            assert stream.writes == 0
            assert stream.getvalue() == ""
            # A warning is written at once, after what is held (a crash may follow it).
            log.warning("crash_injected", n=3)
            assert stream.writes == 1
            assert [e["n"] for e in events(stream.getvalue())] == [1, 2, 3]
            log.info("order_canceled", n=4)
            raise RuntimeError("a decision fails: what it logged is still written")

    with pytest.raises(RuntimeError):
        decide()
    assert stream.writes == 2
    assert [e["n"] for e in events(stream.getvalue())] == [1, 2, 3, 4]
    log.info("after", n=5)  # one write a line again
    assert stream.writes == 3


def test_a_line_time_is_formatted_as_before_within_and_across_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    walls = [1_700_000_000.0, 1_700_000_000.25, 1_700_000_000.9996, 1_700_000_001.001, 86_399.5]
    now = iter(walls)
    monkeypatch.setattr(time, "time", lambda: next(now))  # what `daemon.logs` reads
    stream = io.StringIO()
    log = EventLog(stream, level="info")
    for _ in walls:
        log.info("tick")
    assert [e["time"] for e in events(stream.getvalue())] == [logs._iso(w) for w in walls]


def test_another_threads_lines_are_not_held() -> None:
    stream = io.StringIO()
    log = EventLog(stream, level="info")
    with log.held():
        log.info("held", n=1)
        worker = threading.Thread(target=log.info, args=("from_a_worker",), kwargs={"n": 2})
        worker.start()
        worker.join()
        assert [e["n"] for e in events(stream.getvalue())] == [2]
    assert [e["n"] for e in events(stream.getvalue())] == [2, 1]
