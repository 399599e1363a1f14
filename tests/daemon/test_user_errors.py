"""A user's mistake in data or config, through the command line: exit 2 and one line
`tradingd: error: <where>: <what>` on stderr, never a traceback, nothing written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from daemon.cli import main
from tests.daemon.helpers import write_daily_csv, write_yaml

ROOT = Path(__file__).resolve().parent.parent.parent
HEADER = "date,open,high,low,close,volume\n"
ROW = "2021-01-04,1,1,1,1,1\n"


def config(tmp_path: Path, data: Path, **sections: Any) -> Path:
    """A small config of one built-in strategy over `data`."""
    tree: dict[str, Any] = {
        "data": {"path": str(data), "timeframe": "1Day"},
        "strategies": {"momentum": {"params": {"lookback": 2}}},
        "run": {"start_cash": 100000},
    }
    for name, value in sections.items():
        tree[name] = {**tree.get(name, {}), **value}
    return write_yaml(tmp_path / "c.yaml", tree)


def error_line(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the command line; expect exit 2 and exactly one line on stderr; return it."""
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert "Traceback" not in captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("tradingd: error: ")
    return lines[0].removeprefix("tradingd: error: ")


def replay_error(capsys: pytest.CaptureFixture[str], tmp_path: Path, cfg: Path, *more: str) -> str:
    """`tradingd replay CFG MORE...`: its one error line; nothing was written."""
    out = tmp_path / "out"
    argv = ["replay", str(cfg), *more, "--out", str(out), "--log-level", "error"]
    message = error_line(capsys, *argv)
    assert not out.exists()
    return message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            b"date,open,high,low,close,close,volume\n2021-01-04,1,1,1,1,1,1\n",
            "column 'close' appears 2 times (columns 5, 6)",
        ),
        (HEADER.encode() + b"\x00\x01\x02" * 10, "line 2: binary data"),
        ((HEADER + "2021-01-04,1,1,1,1,1 \xe9\n").encode("latin-1"), "line 2: not UTF-8 text"),
        (
            (HEADER + ROW + "2021-01-05,1,1,1,1,1,9\n").encode(),
            "line 3: 7 fields, the header has 6",
        ),
        ((HEADER + ROW).replace(",", ";").encode(), "looks delimited by ';', not commas"),
        ((HEADER + ROW).replace(",", "\t").encode(), "looks delimited by tabs, not commas"),
    ],
    ids=["duplicate-column", "binary", "not-utf8", "ragged-row", "semicolons", "tabs"],
)
def test_a_data_file_that_cannot_be_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, expected: str
) -> None:
    data = tmp_path / "data" / "SPY.csv"
    data.parent.mkdir()
    data.write_bytes(content)
    message = replay_error(capsys, tmp_path, config(tmp_path, data.parent))
    assert message.startswith(f"{data}: {expected}")


def test_a_range_with_no_bars_names_both_ranges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data" / "SPY.csv"
    write_daily_csv(data, [100.0 + i for i in range(10)])  # 2021-01-04 .. 2021-01-15
    cfg = config(tmp_path, data.parent)
    message = replay_error(capsys, tmp_path, cfg, "--start", "1990-01-01", "--end", "1990-12-31")
    assert message == (
        f"{data.parent}: no bars in 1990-01-01 .. 1990-12-31 (the range asked); "
        "the data covers 2021-01-04 .. 2021-01-15"
    )


@pytest.mark.usefixtures("in_repo")
def test_the_sample_outside_its_years(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    message = replay_error(
        capsys,
        tmp_path,
        Path("config/base.yaml"),
        "--start",
        "1990-01-01",
        "--end",
        "1990-12-31",
    )
    assert message.startswith("data/sample/daily: no bars in 1990-01-01 .. 1990-12-31")
    assert message.endswith("the data covers 2004-08-19 .. 2013-03-01")


@pytest.mark.usefixtures("in_repo")
@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            ["config/minute.yaml", "--data", "data/sample/daily"],
            "data/sample/daily: GOOG's bars are 1 day apart, but data.timeframe is 1Min; "
            "set data.timeframe: 1Day",
        ),
    ],
    # Minute data under 1Day is no mistake: the replay aggregates it (issue 12).
    ids=["daily-under-1Min"],
)
def test_data_that_does_not_fit_the_timeframe(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, extra: list[str], expected: str
) -> None:
    out = tmp_path / "out"
    configs = [a for a in extra if a.endswith(".yaml")]
    flags = [a for a in extra if not a.endswith(".yaml")]
    message = error_line(
        capsys,
        "replay",
        "config/base.yaml",
        *configs,
        *flags,
        "--out",
        str(out),
        "--log-level",
        "error",
    )
    assert message == expected
    assert not out.exists()


@pytest.mark.parametrize(
    ("overlay", "expected"),
    [
        (
            {"run": {"start_cash": "1e27"}},
            "run.start_cash: must be greater than 0 and at most 1,000,000,000,000, got 1e27",
        ),
        (
            {"run": {"start_cash": 100.125}},
            "run.start_cash: 100.125 has more than 2 decimal places: give it to the cent",
        ),
        (
            {"strategies": {"trend": {"type": "sma_cross", "params": {"slow": 100_000_000_000}}}},
            "strategies.trend.params.slow: must be from 2 to 100,000, got 100000000000",
        ),
        (
            {"composer": {"vol_lookback": 10**9}},
            "composer.vol_lookback: must be from 2 to 100,000, got 1000000000",
        ),
        (
            {"sanity": {"jump_window": 10**12}},
            "sanity.jump_window: must be from 2 to 100,000, got 1000000000000",
        ),
        (
            {"sanity": {"stale_after_slices": 0}},
            "sanity.stale_after_slices: must be from 1 to 100,000, got 0",
        ),
        (
            {"risk": {"max_gross": float("inf")}},
            "risk.max_gross: must be a finite number greater than 0 and at most 10, got inf",
        ),
        (
            {"rebalance": {"no_trade_band": float("nan")}},
            "rebalance.no_trade_band: must be at least 0 and less than 1, got nan",
        ),
        (
            {"broker": {"slippage_bps": 20_000}},
            "broker.slippage_bps: must be at least 0 and less than 10,000, got 20000",
        ),
        ({"run": {"start": "0001-01-01"}}, "run.start: must be from 1900-01-01 to 2199-12-31"),
        ({"run": {"end": 0}}, "run.end: got the number 0: write the date as YYYY-MM-DD"),
        ({"run": {"end": "1700000000"}}, "run.end: '1700000000' is not a date: write it as"),
        ({"sanity": {"calendar": "MOON"}}, "sanity.calendar: unknown exchange calendar 'MOON'"),
    ],
    ids=[
        "cash-1e27",
        "sub-cent-cash",
        "slow-1e11",
        "vol-lookback",
        "jump-window",
        "stale-0",
        "inf",
        "nan",
        "slippage",
        "year-1",
        "end-0",
        "end-epoch-text",
        "calendar",
    ],
)
def test_check_config_refuses_what_a_replay_would_choke_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], overlay: dict[str, Any], expected: str
) -> None:
    data = tmp_path / "data" / "SPY.csv"
    write_daily_csv(data, [100.0 + i for i in range(10)])
    base = config(tmp_path, data.parent)
    bad = write_yaml(tmp_path / "bad.yaml", overlay)
    message = error_line(capsys, "check-config", str(base), str(bad))
    assert message.startswith(f"{bad}: {expected}")
    # The same refusal from a replay, before it starts.
    assert replay_error(capsys, tmp_path, base, str(bad)).startswith(f"{bad}: {expected}")


def test_check_config_checks_params_without_a_universe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No `symbols:` (every symbol of the data): the params are still checked."""
    cfg = write_yaml(
        tmp_path / "c.yaml",
        {
            "data": {"path": "anywhere"},
            "strategies": {"momentum": {"params": {"lookback": 10**11}}},
        },
    )
    assert error_line(capsys, "check-config", str(cfg)) == (
        f"{cfg}: strategies.momentum.params.lookback: must be from 1 to 100,000, got 100000000000"
    )


def test_several_problems_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_yaml(
        tmp_path / "c.yaml",
        {"data": {"path": "x"}, "strategies": {"momentum": {}}, "risk": {"max_gross": -1, "x": 1}},
    )
    message = error_line(capsys, "check-config", str(cfg))
    assert message.startswith(f"{cfg}: risk.max_gross: must be greater than 0 and at most 10")
    assert f"; {cfg}: risk.x: unknown key" in message


def test_a_section_that_is_not_a_mapping_under_a_command_line_override(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_yaml(tmp_path / "c.yaml", {"data": "somewhere", "strategies": {"momentum": {}}})
    message = replay_error(capsys, tmp_path, cfg, "--data", str(tmp_path))
    assert message == (
        f"{cfg}: data: must be a mapping of keys, not a string (the command line sets data.path)"
    )


def test_the_shipped_configs_still_pass(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("risk_aggressive", "risk_balanced", "risk_conservative"):
        configs = [str(ROOT / "config" / "base.yaml"), str(ROOT / "config" / f"{name}.yaml")]
        assert main(["check-config", *configs]) == 0
    assert (
        main(["check-config", *(str(ROOT / "config" / n) for n in ("base.yaml", "minute.yaml"))])
        == 0
    )
    capsys.readouterr()
