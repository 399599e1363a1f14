"""write_synthetic: determinism, real sessions, consistent OHLC, and round trip through replay."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feeds.bar import NS_PER_MINUTE
from feeds.calendar import SessionCalendar
from feeds.replay import ReplaySource
from feeds.sanity import SanityChecker, SanitySettings
from feeds.synth import write_synthetic

NY = ZoneInfo("America/New_York")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_same_arguments_give_identical_bytes(tmp_path: Path, fmt: str) -> None:
    a = write_synthetic(tmp_path / "a", symbols=["SPY", "AAPL"], sessions=3, seed=1, fmt=fmt)  # type: ignore[arg-type]
    b = write_synthetic(tmp_path / "b", symbols=["SPY", "AAPL"], sessions=3, seed=1, fmt=fmt)  # type: ignore[arg-type]
    assert [p.name for p in a] == [f"SPY.{fmt}", f"AAPL.{fmt}"]
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_a_symbol_does_not_depend_on_the_others_but_on_the_seed(tmp_path: Path) -> None:
    (alone,) = write_synthetic(tmp_path / "a", symbols=["SPY"], sessions=2, seed=1)
    together = write_synthetic(tmp_path / "b", symbols=["QQQ", "SPY"], sessions=2, seed=1)
    (other_seed,) = write_synthetic(tmp_path / "c", symbols=["SPY"], sessions=2, seed=2)
    assert alone.read_bytes() == together[1].read_bytes()
    assert pq.read_table(alone)["close"] != pq.read_table(other_seed)["close"]


def test_minutes_follow_real_sessions_with_early_close(tmp_path: Path) -> None:
    (path,) = write_synthetic(
        tmp_path, symbols=["SPY"], sessions=3, seed=5, start=dt.date(2024, 11, 27)
    )
    table = pq.read_table(path)
    assert table.schema.field("timestamp").type == pa.timestamp("ns", tz="UTC")
    ts = table["timestamp"].cast(pa.int64()).to_numpy()
    local = [dt.datetime.fromtimestamp(t / 1e9, NY) for t in ts.tolist()]
    days = sorted({d.date() for d in local})
    assert days == [dt.date(2024, 11, 27), dt.date(2024, 11, 29), dt.date(2024, 12, 2)]
    counts = [sum(1 for d in local if d.date() == day) for day in days]
    assert counts == [390, 210, 390]  # 11-29 closes at 13:00
    assert local[0].time() == dt.time(9, 30)
    assert max(d for d in local if d.date() == dt.date(2024, 11, 29)).time() == dt.time(12, 59)


def test_ohlc_consistent_in_cents_and_volumes_integer(tmp_path: Path) -> None:
    (path,) = write_synthetic(tmp_path, symbols=["AAPL"], sessions=5, seed=9)
    t = {
        name: pq.read_table(path)[name].to_numpy() for name in pq.read_table(path).column_names[1:]
    }
    o, h, lo, c = t["open"], t["high"], t["low"], t["close"]
    assert np.all(h >= np.maximum(o, c))
    assert np.all(lo <= np.minimum(o, c))
    assert np.all(lo > 0)
    for prices in (o, h, lo, c):
        assert np.allclose(np.round(prices * 100), prices * 100, atol=1e-6)
    assert t["volume"].dtype == np.int64
    assert np.all(t["volume"] >= 1)
    assert np.all((t["vwap"] >= lo) & (t["vwap"] <= h))
    # U-shaped volume: the first and last half hours trade more than midday.
    minute = np.arange(len(o)) % 390
    assert (
        t["volume"][minute < 30].mean() > 1.5 * t["volume"][(minute >= 180) & (minute < 210)].mean()
    )


def test_daily_volatility_is_about_one_percent(tmp_path: Path) -> None:
    (path,) = write_synthetic(tmp_path, symbols=["SPY"], sessions=60, seed=4)
    close = pq.read_table(path)["close"].to_numpy()
    intraday = np.diff(np.log(close)).reshape(-1)
    minute_sd = np.std(intraday[(np.arange(1, len(close)) % 390) != 0])
    assert 0.006 < minute_sd * math.sqrt(390) < 0.016


def test_csv_round_trips_through_replay_and_passes_sanity(tmp_path: Path) -> None:
    write_synthetic(tmp_path / "csv", symbols=["SPY", "AAPL"], sessions=2, seed=3, fmt="csv")
    write_synthetic(tmp_path / "pq", symbols=["SPY", "AAPL"], sessions=2, seed=3)
    first = (tmp_path / "csv" / "SPY.csv").read_text().splitlines()[1]
    assert first.startswith("2024-01-02T14:30:00Z,")
    from_csv = [b for b, _ in ReplaySource(tmp_path / "csv")]
    from_pq = [b for b, _ in ReplaySource(tmp_path / "pq")]
    assert from_csv == from_pq
    assert len(from_pq) == 2 * 2 * 390
    checker = SanityChecker(SanitySettings(), bar_ns=NS_PER_MINUTE, calendar=SessionCalendar())
    assert [checker.check(b) for b in from_pq] == [None] * len(from_pq)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="sessions must be >= 1"):
        write_synthetic(Path("unused"), symbols=["SPY"], sessions=0, seed=1)
    with pytest.raises(ValueError, match="no symbols"):
        write_synthetic(Path("unused"), symbols=[], sessions=1, seed=1)
