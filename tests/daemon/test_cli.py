"""The command line as a user runs it: exit codes, messages, files written."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from daemon.cli import main
from daemon.replay.driver import progress_bar
from tests.daemon.helpers import always_long_config, write_daily_csv, write_yaml

SUMMARY_KEYS = {
    "bars_in",
    "bars_accepted",
    "bars_rejected",
    "slices",
    "orders",
    "fills",
    "denied_orders",
    "start_equity",
    "final_equity",
    "total_return",
    "max_drawdown",
    "sharpe",
    "wall_seconds",
    "bars_per_second",
}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.usefixtures("in_repo")
def test_replay_of_the_shipped_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code, stdout, err = run(
        capsys,
        "replay",
        "config/base.yaml",
        "config/risk_balanced.yaml",
        "--out",
        str(out),
        "--log-level",
        "debug",
    )
    assert code == 0, err
    for name in ("summary.json", "orders.csv", "fills.csv", "equity.csv", "rejected_bars.csv"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary.keys() >= SUMMARY_KEYS
    assert summary["bars_in"] == 4 * 2148
    assert summary["bars_accepted"] + sum(summary["bars_rejected"].values()) == summary["bars_in"]
    assert summary["orders"] > 0
    assert summary["fills"] > 0
    with (out / "equity.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == summary["slices"]
    assert abs(float(rows[-1]["equity"]) - float(summary["final_equity"])) <= 0.01
    assert "wrote" in stdout
    # stderr carries JSON log lines only, and at debug every order carries its decision trace
    events = [json.loads(line) for line in err.splitlines()]
    submitted = [e for e in events if e["event"] == "order_submitted"]
    assert len(submitted) == summary["orders"]
    trace_keys = {"slice_time", "symbol", "client_order_id", "signals", "target_weight", "risk"}
    assert trace_keys <= submitted[0].keys()
    assert set(submitted[0]["signals"]) == {"trend", "momentum", "reversion", "breakout"}


@pytest.mark.usefixtures("in_repo")
def test_replay_with_a_report_and_the_report_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code, stdout, err = run(
        capsys,
        "replay",
        "config/base.yaml",
        "--out",
        str(out),
        "--report",
        "--symbols",
        "SPX,GOOG",
        "--start",
        "2010-01-01",
    )
    assert code == 0, err
    assert f"report {out / 'report.html'}" in stdout
    (out / "report.html").unlink()
    code, stdout, err = run(capsys, "report", str(out))
    assert code == 0, err
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5
    assert "buy and hold" in html
    code, _, err = run(capsys, "report", str(tmp_path / "nothing"))
    assert code == 2
    assert str(tmp_path / "nothing" / "summary.json") in err


@pytest.mark.usefixtures("in_repo")
def test_walkforward_with_a_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "wf"
    code, stdout, err = run(
        capsys,
        "walkforward",
        "config/base.yaml",
        "--train",
        "250d",
        "--test",
        "250d",
        "--symbols",
        "SPX,GOOG",
        "--grid",
        "config/walkforward_grid.yaml",
        "--workers",
        "1",
        "--out",
        str(out),
        "--report",
        "--log-level",
        "warning",
    )
    assert code == 0, err
    assert "4 grid points, serial x 1" in stdout
    summary = json.loads((out / "summary.json").read_text())
    with (out / "folds.csv").open() as f:
        # 2,148 sessions: 7 full test windows after the first training window, and a short one
        assert len(list(csv.DictReader(f))) == summary["folds"] == 8
    html = (out / "report.html").read_text()
    assert "buy and hold" in html
    assert html.count("data:image/png;base64,") == 3


@pytest.mark.usefixtures("in_repo")
def test_check_config_prints_the_resolved_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run(capsys, "check-config", "config/base.yaml", "config/risk_aggressive.yaml")
    assert code == 0
    assert "max_gross: 1.5" in stdout
    assert stdout.startswith("# resolved from: config/base.yaml config/risk_aggressive.yaml")


@pytest.mark.usefixtures("in_repo")
def test_a_config_error_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write_yaml(tmp_path / "risk.yaml", {"risk": {"max_drawdown": -0.1}})
    code, stdout, err = run(capsys, "check-config", "config/base.yaml", str(bad))
    assert code == 2
    assert stdout == ""
    assert "Traceback" not in err
    assert err.strip().splitlines() == [
        f"tradingd: error: {bad}: risk.max_drawdown: must be greater than 0 and less than 1, "
        "got -0.1"
    ]


@pytest.mark.usefixtures("in_repo")
def test_unknown_strategy_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_yaml(tmp_path / "s.yaml", {"strategies": {"x": {"type": "nope"}}})
    code, _, err = run(capsys, "replay", "config/base.yaml", str(bad), "--out", str(tmp_path / "o"))
    assert code == 2
    assert f"{bad}: strategies.x.type: unknown strategy 'nope'" in err
    assert not (tmp_path / "o").exists()  # nothing misleading written


def _config_for(tmp_path: Path, data: Path) -> Path:
    return write_yaml(tmp_path / "c.yaml", always_long_config(data))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("", "empty"),
        ("date,open,high,low,close,volume\n", "empty"),
        ("date,open,high,low,volume\n2021-01-04,1,1,1,1\n", "close"),
    ],
    ids=["missing-file", "empty-file", "header-only", "missing-column"],
)
@pytest.mark.usefixtures("recorder")
def test_unreadable_data_exits_2_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, expected: str
) -> None:
    data = tmp_path / "data" / "SPY.csv"
    if content is not None:
        data.parent.mkdir()
        data.write_text(content)
    config = _config_for(tmp_path, data)
    code, _, err = run(capsys, "replay", str(config), "--out", str(tmp_path / "o"))
    assert code == 2, err
    assert "Traceback" not in err
    message = err.strip().splitlines()[-1]
    assert message.startswith("tradingd: error: ")
    assert str(data) in message
    assert expected in message.lower()
    assert not (tmp_path / "o").exists()


@pytest.mark.usefixtures("recorder")
def test_bad_rows_are_quarantined_and_the_run_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data" / "SPY.csv"
    write_daily_csv(data, [100 + i for i in range(30)])
    lines = data.read_text().splitlines()
    lines[5] = lines[5].replace(lines[5].split(",")[4], "abc")  # text in close, line 6
    lines[9] = "not-a-date," + ",".join(lines[9].split(",")[1:])  # line 10
    data.write_text("\n".join(lines) + "\n")
    config = _config_for(tmp_path, data.parent)
    out = tmp_path / "o"
    code, _, err = run(capsys, "replay", str(config), "--out", str(out))
    assert code == 0, err
    with (out / "rejected_bars.csv").open() as f:
        rejected = {(r["file"], r["row"]): r for r in csv.DictReader(f)}
    assert rejected[(str(data), "6")]["reason"] == "unparseable_value"
    assert rejected[(str(data), "10")]["reason"] == "unparseable_time"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bars_in"] == 30
    assert summary["bars_accepted"] == 28
    assert summary["bars_rejected"] == {"unparseable_time": 1, "unparseable_value": 1}


def test_bars_synth_is_deterministic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("a", "b"):
        code, _, err = run(
            capsys,
            "bars",
            "synth",
            "--symbols",
            "AAA,BBB",
            "--sessions",
            "3",
            "--seed",
            "7",
            "--out",
            str(tmp_path / name),
            "--format",
            "csv",
        )
        assert code == 0, err
    for sym in ("AAA", "BBB"):
        assert (tmp_path / "a" / f"{sym}.csv").read_bytes() == (
            tmp_path / "b" / f"{sym}.csv"
        ).read_bytes()


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bars", "synth", "--symbols", "A", "--sessions", "0", "--out", "x"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("tradingd: error: command line: bars synth: argument --sessions: ")
    assert "must be greater than 0" in err
    assert len(err.splitlines()) == 1


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_shows_only_on_a_terminal() -> None:
    assert progress_bar(io.StringIO()) is None
    terminal = FakeTerminal()
    show = progress_bar(terminal)
    assert show is not None
    show(50, 200)
    show(200, 200)
    text = terminal.getvalue()
    assert "25.0%" in text
    assert text.endswith("100.0% 200 bars\n")


@pytest.mark.usefixtures("in_repo")
def test_the_config_sets_the_log_level_and_the_flag_wins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quiet = write_yaml(tmp_path / "quiet.yaml", {"log": {"level": "error"}})
    args = ["replay", "config/base.yaml", str(quiet), "--symbols", "SPX", "--start", "2012-06-01"]
    code, _, err = run(capsys, *args, "--out", str(tmp_path / "a"))
    assert code == 0
    assert err == ""
    code, _, err = run(capsys, *args, "--out", str(tmp_path / "b"), "--log-level", "info")
    assert code == 0
    assert '"event":"replay_started"' in err
