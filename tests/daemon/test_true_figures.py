"""Issue 11's true figures: money to the cent where a person reads it, one convention for an
undefined Sharpe (replay, walk-forward and report agree), reports that name the run and its
period (a live folder too) and their metrics in words."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from pathlib import Path

import numpy as np
import orjson
import pytest

from daemon.cli import main
from daemon.replay.walkforward.driver import _objective
from daemon.replay.walkforward.jobs import JobResult
from daemon.replay.walkforward.outputs import curve_figures
from daemon.research.metrics import sharpe, sharpe_of_daily
from daemon.service.state import display_book, rounded
from portfolio.ledger import Ledger
from tests.daemon.helpers import write_daily_csv, write_yaml
from tests.daemon.test_report import write_constructed


@pytest.mark.parametrize(
    ("exact", "shown"),
    [
        ("-255.5990000000000000000000007", "-255.60"),
        ("0E-9", "0.00"),
        ("-0.001", "0.00"),
        ("349.4955282112845138055222100", "349.50"),
        ("100000", "100000.00"),
    ],
)
def test_money_is_shown_to_the_cent(exact: str, shown: str) -> None:
    assert rounded(Decimal(exact)) == shown


def test_a_book_is_shown_with_money_to_the_cent_and_prices_to_the_tick() -> None:
    ledger = Ledger(Decimal(100_000))
    book = ledger.snapshot()
    book["realized_pnl"] = "96.84552821128451380552220624"
    book["cash"] = "0E-9"
    book["positions"] = {
        "BBB": {
            "qty": "110",
            "avg_cost": "60.889545454545454545",
            "realized_pnl": "-39.0000000001",
            "last_price": "61.29",
            "weight": 0.06,
        }
    }
    shown = display_book(book)
    assert (shown["realized_pnl"], shown["cash"]) == ("96.85", "0.00")
    assert shown["positions"]["BBB"] == {
        "qty": "110",
        "avg_cost": "60.8895",
        "realized_pnl": "-39.00",
        "last_price": "61.2900",
        "weight": 0.06,
    }


# -- one convention for an undefined figure ------------------------------------------------


def test_a_flat_series_has_no_sharpe_in_every_place() -> None:
    flat = [100.0, 100.0, 100.0, 100.0]
    assert math.isnan(sharpe(np.zeros(3)))
    assert math.isnan(sharpe_of_daily(flat))
    assert math.isnan(sharpe_of_daily([100.0, 101.0]))  # one return: undefined too
    rows = [(f"2024-01-0{d}T21:00:00Z", 0, 100.0) for d in (2, 3, 4, 5)]
    assert curve_figures(rows, 100.0)["sharpe"] is None


def test_walkforward_ranks_an_undefined_objective_below_every_loss() -> None:
    flat = _objective(JobResult(summary={"sharpe": None}, curve=None), "sharpe")
    nan = _objective(JobResult(summary={"sharpe": math.nan}, curve=None), "sharpe")
    losing = _objective(JobResult(summary={"sharpe": -3.5}, curve=None), "sharpe")
    assert flat == nan == -math.inf
    assert losing > flat


def test_a_replay_that_never_trades_writes_a_null_sharpe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    write_daily_csv(data / "SPY.csv", [100.0] * 30)
    cfg = write_yaml(
        tmp_path / "c.yaml",
        {
            "data": {"path": str(data), "timeframe": "1Day"},
            "strategies": {"momentum": {"params": {"lookback": 2}}},
            "run": {"start_cash": 100000},
        },
    )
    out = tmp_path / "out"
    assert main(["replay", str(cfg), "--out", str(out), "--log-level", "error"]) == 0
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["orders"] == 0
    assert summary["sharpe"] is None
    assert "sharpe n/a" in capsys.readouterr().out


# -- reports ---------------------------------------------------------------------------------


def test_report_metric_names_are_words(tmp_path: Path) -> None:
    write_constructed(tmp_path)
    assert main(["report", str(tmp_path), "--log-level", "error"]) == 0
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    names = re.findall(r'<tr><th>([^<]*)</th><td class="metric"', html)
    assert names[:3] == ["total return", "CAGR", "volatility, annualized"]
    assert "max drawdown, days" in names
    assert not [n for n in names if "_" in n]


def test_report_of_a_live_folder_names_the_run_and_its_period(tmp_path: Path) -> None:
    write_constructed(tmp_path)
    # A live run's summary: its mode, and no slice range when it stopped before the first.
    summary = orjson.loads((tmp_path / "summary.json").read_bytes())
    summary.update(mode="paper", run_id="20261206T120000Z-paper", first_slice=None)
    (tmp_path / "summary.json").write_bytes(orjson.dumps(summary))
    assert main(["report", str(tmp_path), "--log-level", "error"]) == 0
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<h1>Paper run 20261206T120000Z-paper</h1>" in html
    assert "None" not in re.search(r"<h1>.*?</p>", html, re.S).group(0)  # type: ignore[union-attr]
    assert "<p>2024-01-01T00:00:00Z to " in html
