"""`tradingd sandbox` as a user runs it: every mistake in its inputs is one line and exit 2,
found before anything listens."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from daemon.cli import main
from tests.sandbox.kit import DATA

DAILY = DATA.parent / "daily"


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run `tradingd sandbox ARGV`; assert exit 2 with one error line, return that line."""
    code = main(["sandbox", "--data", str(DATA), "--log-level", "error", *argv])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""  # it never listened: no addresses printed
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("tradingd: error: ")
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--cash", "abc"], "--cash abc: not a number"),
        (["--cash", "0"], "--cash 0: the starting cash must be greater than 0"),
        (["--cash", "-5"], "--cash -5: the starting cash must be greater than 0"),
        (["--warm-minutes", "-5"], "--warm-minutes -5: must be 0 or more"),
        (["--warm-minutes", "1.5"], "--warm-minutes 1.5: not a whole number"),
        (["--speed", "0"], "--speed 0: must be greater than 0 (market minutes per wall minute)"),
        (["--speed", "-2"], "--speed -2: must be greater than 0 (market minutes per wall minute)"),
        (["--port", "0"], "--port 0: a port must be within 1..65535"),
        (["--port", "65536"], "--port 65536: a port must be within 1..65535"),
        (["--port", "http"], "--port http: not a whole number"),
    ],
)
def test_a_bad_option_names_itself(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    assert refused(capsys, *argv) == f"tradingd: error: command line: {says}"


def test_daily_data_names_the_file_and_the_spacing(capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(capsys, "--data", str(DAILY))
    assert line.startswith(f"tradingd: error: {DAILY}/")
    assert ".csv: bars 1 day apart; the sandbox serves 1-minute bars" in line


def test_more_warm_minutes_than_the_data_hold(capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(capsys, "--warm-minutes", "999999")
    assert line.startswith(f"tradingd: error: {DATA}: 999999 warm minutes asked for")


def test_missing_data_names_the_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused(capsys, "--data", str(tmp_path / "nowhere"))
    assert line.startswith(f"tradingd: error: {tmp_path / 'nowhere'}")


def test_a_port_in_use_says_which_and_that_something_listens(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = refused(capsys, "--port", str(port))
    assert line == (
        f"tradingd: error: port {port}: something else listens on 127.0.0.1:{port}; "
        "stop it or choose another port"
    )
