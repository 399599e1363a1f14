"""The HTML report: one self-contained document with inlined figures and checked numbers."""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path

import numpy as np
import orjson
import pytest

from daemon.config import load_config
from daemon.logs import EventLog
from daemon.replay.driver import replay
from daemon.replay.walkforward.driver import walk_forward
from daemon.research.metrics import load_closes, parse_iso_ns
from daemon.research.report.document import (
    is_walkforward,
    walkforward_symbols,
    write_report,
    write_walkforward_report,
)
from daemon.research.report.tables import monthly_returns
from feeds.errors import SourceError
from feeds.replay import ReplaySource
from tests.daemon.test_metrics import write_folder

PNG = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def write_constructed(out: Path) -> None:
    write_folder(out)  # equity 100 -> 80 -> 121 over exactly 2 years; one winning round trip
    (out / "orders.csv").write_text(
        "time,slice_time,client_order_id,symbol,side,qty,type,limit_price,risk,status,"
        "filled_qty,avg_fill_price,detail\n"
        "2024-01-01T00:00:00Z,2024-01-01T00:00:00Z,c1,A,buy,10,market,,approved,filled,10,10,\n"
        "2024-06-01T00:00:00Z,2024-06-01T00:00:00Z,c2,A,sell,10,market,,approved,filled,10,12,\n"
    )
    (out / "targets.csv").write_text(
        "time,kind,name,weight\n"
        "2024-01-01T00:00:00Z,symbol,A,0.500000\n"
        "2024-01-01T00:00:00Z,strategy,trend,1.000000\n"
        "2024-06-01T00:00:00Z,symbol,A,0.000000\n"
    )
    summary = {
        "run_id": "run-1",
        "config": ["<b>odd</b>.yaml"],
        "symbols": ["A"],
        "regimes": [["2024-01-01T00:00:00Z", "up"], ["2024-06-01T00:00:00Z", "down & out"]],
        "bars_rejected": {"non_positive_price": 2, "<jump>": 1},
    }
    (out / "summary.json").write_bytes(orjson.dumps(summary))


def metric_cells(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-name="([a-z_]+)">([^<]*)</td>', html))


def test_report_is_one_html_document_with_inlined_pngs(tmp_path: Path) -> None:
    write_constructed(tmp_path)
    path = write_report(tmp_path, prices=None)
    assert path == tmp_path / "report.html"
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("<html") == 1
    assert html.rstrip().endswith("</html>")
    images = PNG.findall(html)
    assert len(images) == 6
    assert all(base64.b64decode(i).startswith(b"\x89PNG\r\n\x1a\n") for i in images)
    # Self-contained: every image is a data URI and nothing is fetched or scripted.
    assert html.count("<img") == len(images)
    assert "<script" not in html
    assert "http://" not in html
    assert "https://" not in html


def test_metrics_table_shows_the_hand_checked_values(tmp_path: Path) -> None:
    write_constructed(tmp_path)
    cells = metric_cells(write_report(tmp_path, prices=None).read_text(encoding="utf-8"))
    assert cells["total_return"] == "21.00%"  # 121 / 100 - 1
    assert cells["cagr"] == "10.00%"  # 1.21 ** (1 / 2 years) - 1
    assert cells["max_drawdown"] == "20.00%"  # 100 -> 80
    assert cells["max_drawdown_days"] == "730.5"  # from day 0 to the recovery at the end
    assert cells["calmar"] == "0.500"  # 0.10 / 0.20
    assert cells["win_rate"] == "100.00%"  # bought 10, sold 12
    assert cells["round_trips"] == "1"
    assert cells["time_in_market"] == "33.33%"  # 1 of 3 slices with gross > 0
    assert cells["turnover"] == "1.096"  # (100 + 120) / (301 / 3) / 2 years = 1.0963


def test_report_has_benchmark_column_with_prices(tmp_path: Path) -> None:
    write_constructed(tmp_path)
    times = parse_iso_ns(["2024-01-01T00:00:00Z", "2025-12-31T12:00:00Z"])
    prices = {"A": (times, np.array([10.0, 14.4]))}  # 1.44 over 2 years: CAGR 20%
    html = write_report(tmp_path, prices=prices).read_text(encoding="utf-8")
    assert "<th>buy and hold</th>" in html
    assert "<tr><th>CAGR</th>" in html
    row = re.search(r"<tr><th>CAGR</th>.*?</tr>", html)
    assert row is not None
    assert "<td>20.00%</td>" in row.group(0)


def test_report_escapes_text_and_lists_rejections_and_trades(tmp_path: Path) -> None:
    write_constructed(tmp_path)
    html = write_report(tmp_path, prices=None).read_text(encoding="utf-8")
    assert "<b>odd</b>" not in html
    assert "&lt;b&gt;odd&lt;/b&gt;.yaml" in html
    assert "<td>&lt;jump&gt;</td><td>1</td>" in html
    assert "<td>non_positive_price</td><td>2</td>" in html
    assert "<tr><th>fills</th><td>2</td></tr>" in html
    assert "<tr><th>buys</th><td>1</td></tr>" in html
    assert "<tr><th>commissions</th><td>2.00</td></tr>" in html


def test_monthly_returns_chain_month_ends() -> None:
    times = parse_iso_ns(
        ["2024-01-02T00:00:00Z", "2024-01-31T00:00:00Z", "2024-02-15T00:00:00Z",
         "2024-02-29T00:00:00Z", "2024-04-01T00:00:00Z"]
    )  # fmt: skip
    out = monthly_returns(times, np.array([100.0, 110.0, 90.0, 99.0, 118.8]))
    # Jan: 110/100 - 1; Feb: 99/110 - 1; Apr: 118.8/99 - 1 (March has no slice)
    assert out == pytest.approx({(2024, 1): 0.1, (2024, 2): -0.1, (2024, 4): 0.2})


@pytest.mark.parametrize("name", ["summary.json", "equity.csv", "orders.csv", "targets.csv"])
def test_a_missing_file_is_named(tmp_path: Path, name: str) -> None:
    write_constructed(tmp_path)
    (tmp_path / name).unlink()
    with pytest.raises(SourceError, match=re.escape(name)):
        write_report(tmp_path, prices=None)


@pytest.mark.usefixtures("in_repo")
def test_a_real_replay_produces_a_report(tmp_path: Path) -> None:
    loaded = load_config(["config/base.yaml", "config/risk_balanced.yaml"])
    out = tmp_path / "run"
    with (tmp_path / "run.log").open("w") as log_stream:
        result = replay(loaded, out_dir=out, log=EventLog(log_stream))
    symbols = result.summary["symbols"]
    prices = load_closes(ReplaySource(Path("data/sample/daily"), symbols=symbols))
    assert sorted(prices) == sorted(symbols)
    html = write_report(out, prices=prices).read_text(encoding="utf-8")
    assert len(PNG.findall(html)) == 6
    cells = metric_cells(html)
    # The report's Sharpe is the summary's (same definition).
    assert float(cells["sharpe"]) == pytest.approx(result.summary["sharpe"], abs=1e-3)
    assert cells["max_drawdown"] == f"{result.summary['max_drawdown'] * 100:.2f}%"
    assert '<table id="monthly">' in html


# Walk-forward report


def write_walkforward(out: Path) -> None:
    """Two folds joined: equity 100 -> 80 (fold 1 starts) -> 121 over exactly 2 years."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "equity.csv").write_text(
        "time,fold,equity,drawdown\n"
        "2024-01-01T00:00:00Z,0,100.00,0.000000\n"
        "2025-01-01T00:00:00Z,1,80.00,0.200000\n"
        "2025-12-31T12:00:00Z,1,121.00,0.000000\n"
    )
    (out / "folds.csv").write_text(
        "fold,train_start,train_end,test_start,test_end,params,train_objective,test_return,"
        "test_sharpe,test_max_drawdown\n"
        '0,2023-01-02,2023-12-29,2024-01-01,2024-12-31,"{""strategies.trend.params.fast"":10}",'
        "1.25,-0.2,-1.5,0.2\n"
        '1,2024-01-02,2024-12-31,2025-01-01,2025-12-31,"{""composer.method"":""<inv>""}",'
        "0.5,0.5125,2.0,0.0\n"
    )
    summary = {
        "total_return": 0.21,
        "folds": 2,
        "train_sessions": 250,
        "test_sessions": 250,
        "first_test": "2024-01-01",
        "last_test": "2025-12-31",
        "grid_points": 2,
        "grid_skipped": 0,
        "objective": "sharpe",
        "config": ["<b>wf</b>.yaml"],
    }
    (out / "summary.json").write_bytes(orjson.dumps(summary))


def test_walkforward_report_is_one_html_document_with_inlined_pngs(tmp_path: Path) -> None:
    write_walkforward(tmp_path)
    path = write_walkforward_report(tmp_path, prices=None)
    assert path == tmp_path / "report.html"
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("<html") == 1
    assert html.rstrip().endswith("</html>")
    images = PNG.findall(html)
    assert len(images) == 3  # equity, drawdown, rolling Sharpe
    assert all(base64.b64decode(i).startswith(b"\x89PNG\r\n\x1a\n") for i in images)
    assert html.count("<img") == len(images)
    assert "<script" not in html
    assert "http://" not in html
    assert "https://" not in html
    assert "&lt;b&gt;wf&lt;/b&gt;.yaml" in html
    assert '<table id="monthly">' in html


def test_walkforward_metrics_are_the_hand_checked_values_of_the_joined_curve(
    tmp_path: Path,
) -> None:
    write_walkforward(tmp_path)
    times = parse_iso_ns(["2024-01-01T00:00:00Z", "2025-12-31T12:00:00Z"])
    prices = {"A": (times, np.array([10.0, 14.4]))}  # 1.44 over 2 years: CAGR 20%
    html = write_walkforward_report(tmp_path, prices=prices).read_text(encoding="utf-8")
    cells = metric_cells(html)
    assert cells["total_return"] == "21.00%"  # 121 / 100 - 1
    assert cells["cagr"] == "10.00%"  # 1.21 ** (1 / 2 years) - 1
    assert cells["max_drawdown"] == "20.00%"  # 100 -> 80
    assert cells["calmar"] == "0.500"  # 0.10 / 0.20
    # Daily returns -0.2 and 121 / 80 - 1 = 0.5125: mean 0.15625, std (ddof 1) 0.7125 / sqrt 2.
    assert cells["sharpe"] == f"{0.15625 / (0.7125 / math.sqrt(2)) * math.sqrt(252):.3f}"
    # A bare curve has no fills or exposure: those rows are left out, not shown as n/a.
    assert set(cells) == {
        "total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown",
        "max_drawdown_days", "calmar",
    }  # fmt: skip
    row = re.search(r"<tr><th>CAGR</th>.*?</tr>", html)
    assert row is not None
    assert "<td>20.00%</td>" in row.group(0)  # buy and hold over the same dates


def test_walkforward_folds_table_shows_each_fold(tmp_path: Path) -> None:
    write_walkforward(tmp_path)
    html = write_walkforward_report(tmp_path, prices=None).read_text(encoding="utf-8")
    table = re.search(r'<table id="folds">(.*?)</table>', html)
    assert table is not None
    rows = re.findall(r"<tr><th>(\d+)</th>(.*?)</tr>", table.group(1))
    assert [fold for fold, _ in rows] == ["0", "1"]
    cells = [re.findall(r"<td[^>]*>([^<]*)</td>", body) for _, body in rows]
    assert cells[0] == [
        "2023-01-02 to 2023-12-29",
        "2024-01-01 to 2024-12-31",
        "strategies.trend.params.fast=10",
        "1.250",
        "-20.00%",
        "-1.500",
        "20.00%",
    ]
    assert cells[1][2] == "composer.method=&quot;&lt;inv&gt;&quot;"  # escaped
    assert cells[1][4] == "51.25%"


@pytest.mark.parametrize("name", ["summary.json", "equity.csv", "folds.csv"])
def test_walkforward_report_names_a_missing_file(tmp_path: Path, name: str) -> None:
    write_walkforward(tmp_path)
    (tmp_path / name).unlink()
    with pytest.raises(SourceError, match=re.escape(name)):
        write_walkforward_report(tmp_path, prices=None)


def test_is_walkforward_tells_the_folders_apart(tmp_path: Path) -> None:
    write_walkforward(tmp_path / "wf")
    write_constructed(tmp_path / "replay")
    assert is_walkforward(tmp_path / "wf")
    assert not is_walkforward(tmp_path / "replay")


@pytest.mark.usefixtures("in_repo")
def test_a_real_walkforward_produces_a_report(tmp_path: Path) -> None:
    result = walk_forward(
        ["config/base.yaml", "config/risk_balanced.yaml"],
        train_days=120,
        test_days=60,
        overrides={("symbols",): ["SPX", "GOOG"]},
        out_dir=tmp_path / "wf",
    )
    out = result.out_dir
    assert is_walkforward(out)
    symbols = walkforward_symbols(out)
    assert sorted(symbols) == ["GOOG", "SPX"]
    prices = load_closes(ReplaySource(Path("data/sample/daily"), symbols=symbols))
    html = write_walkforward_report(out, prices=prices).read_text(encoding="utf-8")
    assert len(PNG.findall(html)) == 3
    assert "<th>buy and hold</th>" in html
    table = re.search(r'<table id="folds">(.*?)</table>', html)
    assert table is not None
    assert len(re.findall(r"<tr><th>\d+</th>", table.group(1))) == result.summary["folds"]
    # Same curve as the summary's figures (which also start from the start cash).
    cells = metric_cells(html)
    assert cells["max_drawdown"] == f"{result.summary['max_drawdown'] * 100:.2f}%"
    total = float(cells["total_return"].rstrip("%")) / 100
    assert total == pytest.approx(result.summary["total_return"], abs=1e-4)
