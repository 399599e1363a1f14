"""Issue 11's table, row by row, through `tradingd`'s entry point (`daemon.cli.main`, in-process
for speed, and the console script in a subprocess for a few): each mistake is exit 2 and one
line `tradingd: error: <where>: <what>` on stderr, no traceback, nothing written."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.cli import main
from tests.daemon.helpers import write_yaml

ROOT = Path(__file__).resolve().parent.parent.parent
_SCRIPT = Path(sys.executable).parent / "tradingd"
ENTRY = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "daemon.cli"]
BASE = "config/base.yaml"
WF = ["--train", "252d", "--test", "63d", "--workers", "1"]


def tradingd(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TRADINGD_CONTROL_TOKEN"}
    return subprocess.run(
        [*ENTRY, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def script_mistake(*argv: str) -> str:
    """Run the console script `tradingd argv`; expect exit 2 and one line on stderr."""
    done = tradingd(*argv)
    return _one_line(done.returncode, done.stderr)


def mistake(*argv: str) -> str:
    """Run `main(argv)` from the repository; expect exit 2 and one line on stderr."""
    before = Path.cwd()
    os.chdir(ROOT)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(list(argv))
    finally:
        os.chdir(before)
    return _one_line(code, err.getvalue())


def _one_line(code: int, stderr: str) -> str:
    assert code == 2, (code, stderr[-2000:])
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("tradingd: error: ")
    return lines[0].removeprefix("tradingd: error: ")


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "afile"
    path.write_text("not a folder\n")
    return path


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something else listens on (127.0.0.1)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


_UNCREATABLE = Path("/proc/tradingd-x")
needs_proc = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux's /proc")


def test_replay_out_that_is_a_file(a_file: Path) -> None:
    message = script_mistake("replay", BASE, "--out", str(a_file))
    assert message == f"command line: --out {a_file}: a file, not a folder"


def test_replay_out_under_a_file(a_file: Path) -> None:
    message = mistake("replay", BASE, "--out", str(a_file / "run"))
    assert message == f"command line: --out {a_file}/run: {a_file} is a file, not a folder"


@needs_proc
def test_replay_out_that_cannot_be_created() -> None:
    message = mistake("replay", BASE, "--out", str(_UNCREATABLE))
    assert message.startswith(f"command line: --out {_UNCREATABLE}: cannot create a folder in")


def test_walkforward_out_that_is_a_file(a_file: Path) -> None:
    message = mistake("walkforward", BASE, *WF, "--out", str(a_file))
    assert message == f"command line: --out {a_file}: a file, not a folder"


def test_walkforward_objective_is_checked_and_the_known_ones_listed(tmp_path: Path) -> None:
    message = mistake("walkforward", BASE, *WF, "--objective", "foo", "--out", str(tmp_path / "w"))
    assert message == (
        "command line: --objective foo: not a figure walk-forward can maximize; choose one of "
        "sharpe, total_return, final_equity"
    )
    assert not (tmp_path / "w").exists()


@needs_proc
def test_synth_out_that_cannot_be_created() -> None:
    message = mistake("bars", "synth", "--symbols", "A", "--sessions", "1", "--out", "/proc/x")
    assert message.startswith("command line: --out /proc/x: cannot create a folder in /proc")


def test_synth_sessions_beyond_the_calendar(tmp_path: Path) -> None:
    out = tmp_path / "syn"
    message = mistake("bars", "synth", "--symbols", "A", "--sessions", "100000", "--out", str(out))
    assert message == (
        "command line: --sessions 100000: from 2024-01-02 the NYSE calendar (to 2200) holds at "
        "most 44,000 sessions"
    )
    assert not out.exists()


def test_synth_without_a_symbol(tmp_path: Path) -> None:
    message = mistake("bars", "synth", "--symbols", ",", "--sessions", "1", "--out", str(tmp_path))
    assert message == "command line: --symbols ',': no symbol named"


def test_sandbox_port_in_use(busy_port: int) -> None:
    message = script_mistake("sandbox", "--data", "data/sample/minute", "--port", str(busy_port))
    assert f"127.0.0.1:{busy_port}" in message


def test_replay_serve_port_in_use(busy_port: int) -> None:
    message = mistake("replay", BASE, "--serve", "--port", str(busy_port))
    assert f"127.0.0.1:{busy_port}" in message


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--cash", "abc"], "command line: --cash abc: not a number"),
        (["--cash", "-5"], "command line: --cash -5: the starting cash must be greater than 0"),
        (["--warm-minutes", "-5"], "command line: --warm-minutes -5: must be 0 or more"),
        (["--port", "99999"], "command line: --port 99999: a port must be within 1..65535"),
        (["--speed", "0"], "command line: --speed 0: must be greater than 0"),
    ],
    ids=["cash-abc", "cash-negative", "warm-negative", "port-range", "speed-zero"],
)
def test_sandbox_impossible_values(argv: list[str], expected: str) -> None:
    assert mistake("sandbox", "--data", "data/sample/minute", *argv).startswith(expected)


def test_sandbox_refuses_daily_data() -> None:
    message = mistake("sandbox", "--data", "data/sample/daily", "--port", "1")
    assert "the sandbox serves 1-minute bars" in message


def test_replay_serve_port_out_of_range() -> None:
    message = mistake("replay", BASE, "--serve", "--port", "99999")
    assert message == (
        "command line: --port 99999: a port must be within 1..65535 (or 0: any free port)"
    )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["replay"], "command line: replay: the following arguments are required: CONFIG"),
        (["replay", BASE, "--speed", "abc"], "command line: replay: argument --speed: not a"),
        (["frob"], "command line: argument COMMAND: invalid choice: 'frob'"),
        ([], "command line: the following arguments are required: COMMAND"),
    ],
    ids=["missing-config", "bad-speed", "unknown-command", "no-command"],
)
def test_argparse_mistakes_are_one_line(argv: list[str], expected: str) -> None:
    assert script_mistake(*argv).startswith(expected)


def test_csv_with_a_column_twice(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "X.csv").write_text("date,open,high,low,close,close,volume\n2020-01-02,1,1,1,1,1,1\n")
    message = mistake("replay", BASE, "--data", str(data), "--symbols", "X")
    assert (
        message
        == f"{data}/X.csv: column 'close' appears 2 times (columns 5, 6): name each column once"
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (bytes(range(256)) * 4, "binary data"),
        (b"date,open,high,low,close,volume\n2020-01-02,1,1,1,1,\xe9\n", "not UTF-8 text"),
    ],
    ids=["binary", "latin1"],
)
def test_csv_that_is_not_utf8_text(tmp_path: Path, body: bytes, expected: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "X.csv").write_bytes(body)
    message = mistake("replay", BASE, "--data", str(data), "--symbols", "X")
    assert message.startswith(f"{data}/X.csv: line ")
    assert expected in message


@pytest.mark.parametrize("command", ["check-config", "replay"])
def test_start_cash_beyond_a_real_account(tmp_path: Path, command: str) -> None:
    cash = write_yaml(tmp_path / "cash.yaml", {"run": {"start_cash": 1e27}})
    message = mistake(command, BASE, str(cash))
    assert message.startswith(f"{cash}: run.start_cash: must be greater than 0 and at most")


@pytest.mark.parametrize("command", ["check-config", "replay"])
def test_a_param_that_sizes_a_buffer_beyond_a_machine(tmp_path: Path, command: str) -> None:
    slow = write_yaml(
        tmp_path / "slow.yaml",
        {"strategies": {"trend": {"type": "sma_cross", "params": {"fast": 20, "slow": 10**11}}}},
    )
    message = mistake(command, BASE, str(slow))
    assert (
        message
        == f"{slow}: strategies.trend.params.slow: must be from 2 to 100,000, got 100000000000"
    )


def test_a_range_without_bars(tmp_path: Path) -> None:
    out = tmp_path / "run"
    message = mistake(
        "replay", BASE, "--start", "1990-01-01", "--end", "1990-12-31", "--out", str(out)
    )
    assert message == (
        "data/sample/daily: no bars in 1990-01-01 .. 1990-12-31 (the range asked); the data "
        "covers 2004-08-19 .. 2013-03-01"
    )
    assert not out.exists()


def test_daily_data_under_a_minute_timeframe(tmp_path: Path) -> None:
    # Minute data under a daily timeframe is aggregated (tests/daemon/test_timeframes.py);
    # the other way round the feed cannot deliver the strategies' bars.
    overlay = tmp_path / "minute.yaml"
    overlay.write_text("data:\n  timeframe: 1Min\n")
    message = mistake("replay", BASE, str(overlay), "--out", str(tmp_path / "r"))
    assert message == (
        "data/sample/daily: GOOG's bars are 1 day apart, but data.timeframe is 1Min; set "
        "data.timeframe: 1Day"
    )
    assert not (tmp_path / "r").exists()


def test_run_out_that_is_a_file(a_file: Path) -> None:
    message = mistake("run", "config/sandbox.yaml", "--out", str(a_file))
    assert message == f"command line: --out {a_file}: a file, not a folder"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--start", "1600-01-03"],
            "command line: --start 1600-01-03: the NYSE calendar used covers the years 1900 "
            "to 2200",
        ),
        (
            ["--symbols", "A/B"],
            "command line: --symbols A/B: a symbol of bars synth names its file",
        ),
    ],
    ids=["start-before-the-calendar", "symbol-not-a-file-name"],
)
def test_synth_start_and_symbols(tmp_path: Path, argv: list[str], expected: str) -> None:
    base = {"--symbols": "A", "--sessions": "1", "--out": str(tmp_path / "syn")}
    base.update(dict(zip(argv[::2], argv[1::2], strict=True)))
    message = mistake("bars", "synth", *(x for pair in base.items() for x in pair))
    assert message.startswith(expected)
    assert not (tmp_path / "syn").exists()
