"""Quiet by default where nothing is wrong: a replay's per-order lines are debug, repeated
denials are summed up in one warning, and a log line's `time` is always the wall clock."""

from __future__ import annotations

import calendar
import io
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

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
