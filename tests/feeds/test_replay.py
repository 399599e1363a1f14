"""ReplaySource: formats, layouts, timestamp forms, filters, order, errors and row problems."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from feeds.bar import NS_PER_DAY, NS_PER_MINUTE, Bar
from feeds.errors import SourceError
from feeds.replay import DataSettings, ReplaySource, RowProblem

NY = ZoneInfo("America/New_York")
HEADER = "symbol,timestamp,open,high,low,close,volume\n"


def utc_ns(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC).timestamp()) * 10**9


def ny_ns(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=NY).timestamp()) * 10**9


T0 = utc_ns(2024, 1, 2, 14, 30)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def bars(source: ReplaySource) -> list[Bar]:
    return [b for b, _ in source]


def keys(source: ReplaySource) -> list[tuple[str, int]]:
    return [(b.symbol, b.ts) for b in bars(source)]


def test_single_csv_with_symbol_column(tmp_path: Path) -> None:
    f = write(
        tmp_path / "all.csv",
        HEADER
        + "SPY,2024-01-02T14:30:00Z,1,2,0.5,1.5,100\nAAPL,2024-01-02T14:30:00Z,3,4,2.5,3.5,7\n",
    )
    src = ReplaySource(f)
    assert src.symbols == ("AAPL", "SPY")
    assert bars(src) == [
        Bar(symbol="AAPL", ts=T0, open=3.0, high=4.0, low=2.5, close=3.5, volume=7.0),
        Bar(symbol="SPY", ts=T0, open=1.0, high=2.0, low=0.5, close=1.5, volume=100.0),
    ]
    assert src.rows_read == 2
    assert src.problems == []


def test_single_parquet_with_optional_columns(tmp_path: Path) -> None:
    f = tmp_path / "all.parquet"
    table = pa.table(
        {
            "symbol": ["SPY", "SPY"],
            "timestamp": pa.array([T0, T0 + NS_PER_MINUTE], pa.timestamp("ns", tz="UTC")),
            "open": [1.0, 2.0],
            "high": [2.0, 3.0],
            "low": [0.5, 1.5],
            "close": [1.5, 2.5],
            "volume": [10, 20],
            "trade_count": pa.array([5, None], pa.int64()),
            "vwap": pa.array([1.2, None], pa.float64()),
        }
    )
    pq.write_table(table, f)
    got = bars(ReplaySource(f))
    assert [(b.trade_count, b.vwap) for b in got] == [(5, 1.2), (None, None)]
    assert [b.ts for b in got] == [T0, T0 + NS_PER_MINUTE]


def test_folder_of_csv_and_parquet_files(tmp_path: Path) -> None:
    write(
        tmp_path / "spy.csv",
        "timestamp,open,high,low,close,volume\n2024-01-02T14:31:00Z,1,1,1,1,1\n",
    )
    pq.write_table(
        pa.table(
            {
                "t": pa.array([T0], pa.timestamp("ns", tz="UTC")),
                "o": [2.0],
                "h": [2.0],
                "l": [2.0],
                "c": [2.0],
                "v": [3.0],
            }
        ),
        tmp_path / "AAPL.parquet",
    )
    write(tmp_path / "notes.txt", "ignored")
    src = ReplaySource(tmp_path)
    assert src.symbols == ("AAPL", "SPY")
    assert keys(src) == [("AAPL", T0), ("SPY", T0 + NS_PER_MINUTE)]


def test_column_names_are_case_insensitive_and_aliases_work(tmp_path: Path) -> None:
    f = write(
        tmp_path / "x.csv",
        "SYMBOL,T,O,H,L,C,V,N,VW\nSPY,2024-01-02T14:30:00Z,1,2,0.5,1.5,100,9,1.1\n",
    )
    assert bars(ReplaySource(f)) == [
        Bar(
            symbol="SPY",
            ts=T0,
            open=1.0,
            high=2.0,
            low=0.5,
            close=1.5,
            volume=100.0,
            trade_count=9,
            vwap=1.1,
        )
    ]


@pytest.mark.parametrize(
    ("text", "timezone", "expected"),
    [
        ("2024-01-02T14:30:00Z", None, T0),
        ("2024-01-02T09:30:00-05:00", None, T0),
        ("2024-01-02 15:30:00+01:00", None, T0),
        ("2024-01-02T14:30:00.5Z", None, T0 + 500_000_000),
        (str(T0 // 10**9), None, T0),  # epoch seconds
        (str(T0 // 10**6), None, T0),  # ms
        (str(T0 // 10**3), None, T0),  # us
        (str(T0), None, T0),  # ns
        ("2024-01-02 14:30:00", None, T0),  # naive: UTC by default
        ("2024-01-02 09:30:00", "America/New_York", T0),
        ("2024-01-02", None, ny_ns(2024, 1, 2)),  # date-only: NY midnight by default
        ("2024-01-02", "UTC", utc_ns(2024, 1, 2)),
    ],
)
def test_timestamp_forms(tmp_path: Path, text: str, timezone: str | None, expected: int) -> None:
    f = write(tmp_path / "x.csv", HEADER + f"SPY,{text},1,1,1,1,1\n")
    assert keys(ReplaySource(f, timezone=timezone)) == [("SPY", expected)]


@pytest.mark.parametrize(
    ("column", "timezone", "expected"),
    [
        (pa.array([T0], pa.timestamp("ns", tz="UTC")), None, T0),
        (pa.array([T0 // 1000], pa.timestamp("us", tz="America/New_York")), None, T0),
        (pa.array([T0 // 10**9], pa.timestamp("s")), None, T0),  # naive: UTC
        (pa.array([(T0 - 5 * 3600 * 10**9) // 10**9], pa.timestamp("s")), "America/New_York", T0),
        (pa.array([dt.date(2024, 1, 2)], pa.date32()), None, ny_ns(2024, 1, 2)),
        (pa.array([T0 // 10**6], pa.int64()), None, T0),  # epoch ms
        (pa.array([T0 / 10**9], pa.float64()), None, T0),  # epoch seconds as float
    ],
)
def test_parquet_time_types(
    tmp_path: Path, column: pa.Array, timezone: str | None, expected: int
) -> None:
    f = tmp_path / "SPY.parquet"
    pq.write_table(
        pa.table(
            {
                "date": column,
                "open": [1.0],
                "high": [1.0],
                "low": [1.0],
                "close": [1.0],
                "volume": [1.0],
            }
        ),
        f,
    )
    assert keys(ReplaySource(tmp_path, timezone=timezone)) == [("SPY", expected)]


def test_mixed_time_forms_parse_row_by_row(tmp_path: Path) -> None:
    f = write(
        tmp_path / "x.csv",
        HEADER
        + f"SPY,2024-01-02T14:30:00Z,1,1,1,1,1\nSPY,{(T0 + NS_PER_MINUTE) // 10**9},1,1,1,1,1\n",
    )
    assert keys(ReplaySource(f)) == [("SPY", T0), ("SPY", T0 + NS_PER_MINUTE)]


def test_unparseable_timestamp_row_becomes_a_problem(tmp_path: Path) -> None:
    f = write(
        tmp_path / "x.csv",
        HEADER + "SPY,2024-01-02T14:30:00Z,1,1,1,1,1\nSPY,yesterday,1,1,1,1,1\n"
        "SPY,2024-01-02T14:32:00Z,1,1,1,1,1\n",
    )
    src = ReplaySource(f)
    assert keys(src) == [("SPY", T0), ("SPY", T0 + 2 * NS_PER_MINUTE)]
    assert src.problems == [
        RowProblem(file=str(f), row=3, symbol="SPY", time="yesterday", reason="unparseable_time")
    ]


def test_text_price_row_becomes_a_problem_and_the_rest_load(tmp_path: Path) -> None:
    f = write(
        tmp_path / "x.csv",
        HEADER + "SPY,2024-01-02T14:30:00Z,1,1,1,1,1\nSPY,2024-01-02T14:31:00Z,1,1,1,abc,1\n"
        "SPY,2024-01-02T14:32:00Z,1,1,1,1,1\n",
    )
    src = ReplaySource(f)
    assert keys(src) == [("SPY", T0), ("SPY", T0 + 2 * NS_PER_MINUTE)]
    assert src.problems == [
        RowProblem(
            file=str(f),
            row=3,
            symbol="SPY",
            time="2024-01-02T14:31:00Z",
            reason="unparseable_value",
        )
    ]


def test_empty_price_cell_becomes_nan(tmp_path: Path) -> None:
    f = write(tmp_path / "x.csv", HEADER + "SPY,2024-01-02T14:30:00Z,1,1,1,,1\n")
    (b,) = bars(ReplaySource(f))
    assert math.isnan(b.close)


def test_describe_names_file_and_line(tmp_path: Path) -> None:
    f = write(
        tmp_path / "x.csv",
        HEADER + "SPY,2024-01-02T14:31:00Z,1,1,1,1,1\n\nAAPL,2024-01-02T14:30:00Z,1,1,1,1,1\n",
    )
    src = ReplaySource(f)
    assert [src.describe(o) for _, o in src] == [(str(f), 4), (str(f), 2)]


def test_parquet_rows_are_one_based(tmp_path: Path) -> None:
    f = tmp_path / "SPY.parquet"
    pq.write_table(
        pa.table(
            {
                "timestamp": pa.array(
                    [T0 + NS_PER_MINUTE, T0 + 2 * NS_PER_MINUTE], pa.timestamp("ns", tz="UTC")
                ),
                "open": [1.0, 1.0],
                "high": [1.0, 1.0],
                "low": [1.0, 1.0],
                "close": [1.0, 1.0],
                "volume": [1.0, 1.0],
            }
        ),
        f,
    )
    src = ReplaySource(tmp_path)
    assert [src.describe(o) for _, o in src] == [(str(f), 1), (str(f), 2)]


def test_symbol_and_time_filters(tmp_path: Path) -> None:
    rows = "".join(
        f"{s},{(T0 + i * NS_PER_MINUTE) // 10**9},1,1,1,1,1\n"
        for i in range(4)
        for s in ("SPY", "AAPL", "MSFT")
    )
    f = write(tmp_path / "x.csv", HEADER + rows)
    src = ReplaySource(
        f, symbols=["spy", "MSFT"], start_ns=T0 + NS_PER_MINUTE, end_ns=T0 + 3 * NS_PER_MINUTE
    )
    assert src.symbols == ("MSFT", "SPY")
    assert keys(src) == [
        ("MSFT", T0 + NS_PER_MINUTE),
        ("SPY", T0 + NS_PER_MINUTE),
        ("MSFT", T0 + 2 * NS_PER_MINUTE),
        ("SPY", T0 + 2 * NS_PER_MINUTE),
    ]
    assert len(src) == 4


def test_folder_symbol_filter_skips_other_files(tmp_path: Path) -> None:
    write(
        tmp_path / "SPY.csv",
        "timestamp,open,high,low,close,volume\n2024-01-02T14:30:00Z,1,1,1,1,1\n",
    )
    write(tmp_path / "BAD.csv", "this is not, a bar file\n")
    assert keys(ReplaySource(tmp_path, symbols=["SPY"])) == [("SPY", T0)]


def test_merge_order_is_time_then_symbol(tmp_path: Path) -> None:
    write(
        tmp_path / "B.csv",
        "timestamp,open,high,low,close,volume\n"
        + "".join(f"{(T0 + i * NS_PER_MINUTE) // 10**9},1,1,1,1,1\n" for i in (0, 1, 3)),
    )
    write(
        tmp_path / "A.csv",
        "timestamp,open,high,low,close,volume\n"
        + "".join(f"{(T0 + i * NS_PER_MINUTE) // 10**9},1,1,1,1,1\n" for i in (1, 2, 3)),
    )
    m = NS_PER_MINUTE
    assert keys(ReplaySource(tmp_path)) == [
        ("B", T0),
        ("A", T0 + m),
        ("B", T0 + m),
        ("A", T0 + 2 * m),
        ("A", T0 + 3 * m),
        ("B", T0 + 3 * m),
    ]


def test_descending_file_is_reversed(tmp_path: Path) -> None:
    write(
        tmp_path / "SPY.csv",
        "timestamp,open,high,low,close,volume\n"
        + "".join(f"{(T0 + i * NS_PER_MINUTE) // 10**9},1,1,1,{i + 1},1\n" for i in (2, 1, 0)),
    )
    src = ReplaySource(tmp_path)
    assert [b.close for b in bars(src)] == [1.0, 2.0, 3.0]
    assert [src.describe(o)[1] for _, o in src] == [4, 3, 2]


def test_out_of_order_row_stays_in_place_and_duplicates_stay_adjacent(tmp_path: Path) -> None:
    m = NS_PER_MINUTE
    write(
        tmp_path / "SPY.csv",
        "timestamp,open,high,low,close,volume\n"
        + "".join(f"{(T0 + i * m) // 10**9},1,1,1,1,1\n" for i in (0, 2, 1, 3, 3)),
    )
    write(
        tmp_path / "AAPL.csv",
        "timestamp,open,high,low,close,volume\n"
        + "".join(f"{(T0 + i * m) // 10**9},1,1,1,1,1\n" for i in (0, 1, 2, 3)),
    )
    assert keys(ReplaySource(tmp_path)) == [
        ("AAPL", T0),
        ("SPY", T0),
        ("AAPL", T0 + m),
        ("AAPL", T0 + 2 * m),
        ("SPY", T0 + 2 * m),
        ("SPY", T0 + m),  # went back in time: arrives where the file has it
        ("AAPL", T0 + 3 * m),
        ("SPY", T0 + 3 * m),
        ("SPY", T0 + 3 * m),
    ]


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"^.*nope\.csv: no such file"):
        ReplaySource(tmp_path / "nope.csv")


def test_folder_without_data_files(tmp_path: Path) -> None:
    write(tmp_path / "readme.txt", "x")
    with pytest.raises(SourceError, match=r"no \.csv or \.parquet"):
        ReplaySource(tmp_path)


@pytest.mark.parametrize("text", ["", HEADER])
def test_empty_file(tmp_path: Path, text: str) -> None:
    f = write(tmp_path / "x.csv", text)
    with pytest.raises(SourceError, match=rf"^{f}: empty file"):
        ReplaySource(f)


def test_missing_column_names_file_column_and_columns_found(tmp_path: Path) -> None:
    f = write(tmp_path / "x.csv", "symbol,timestamp,open,high,low,volume\nSPY,2024-01-02,1,1,1,1\n")
    with pytest.raises(
        SourceError, match=rf"^{f}: missing column 'close' \(columns found: symbol, timestamp"
    ):
        ReplaySource(f)


def test_single_file_needs_a_symbol_column(tmp_path: Path) -> None:
    f = write(tmp_path / "x.csv", "timestamp,open,high,low,close,volume\n2024-01-02,1,1,1,1,1\n")
    with pytest.raises(SourceError, match="missing column 'symbol'"):
        ReplaySource(f)


def test_unknown_symbol(tmp_path: Path) -> None:
    f = write(tmp_path / "x.csv", HEADER + "SPY,2024-01-02,1,1,1,1,1\n")
    with pytest.raises(SourceError, match=rf"^{f}: no data for symbol\(s\) QQQ"):
        ReplaySource(f, symbols=["SPY", "QQQ"])


def test_unreadable_parquet(tmp_path: Path) -> None:
    f = write(tmp_path / "SPY.parquet", "not parquet at all")
    with pytest.raises(SourceError, match=rf"^{f}: cannot read"):
        ReplaySource(f)


def test_data_settings() -> None:
    s = DataSettings(path=Path("data"), timeframe="5Min", timezone="America/Chicago")
    assert s.bar_ns() == 5 * NS_PER_MINUTE
    assert DataSettings(path=Path("d")).bar_ns() == NS_PER_DAY
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'"):
        DataSettings(path=Path("d"), timezone="Mars/Olympus")
    with pytest.raises(ValidationError):
        DataSettings(path=Path("d"), timeframe="2Min")
    with pytest.raises(ValidationError, match="Extra inputs"):
        DataSettings(path=Path("d"), tz="UTC")  # type: ignore[call-arg]


def test_symbol_outside_the_time_range_is_known_but_yields_nothing(tmp_path: Path) -> None:
    later = "2024-01-03T14:30:00Z"
    f = write(
        tmp_path / "x.csv",
        HEADER + f"SPY,2024-01-02T14:30:00Z,1,1,1,1,1\nQQQ,{later},1,1,1,1,1\n",
    )
    src = ReplaySource(f, symbols=["SPY", "QQQ"], start_ns=T0 + NS_PER_DAY)
    assert src.symbols == ("QQQ", "SPY")
    assert keys(src) == [("QQQ", T0 + NS_PER_DAY)]


def test_a_range_without_bars_names_the_range_asked_and_the_data_s(tmp_path: Path) -> None:
    f = write(
        tmp_path / "x.csv",
        HEADER + "SPY,2024-01-02,1,1,1,1,1\nSPY,2024-01-03,1,1,1,1,1\n",
    )
    with pytest.raises(SourceError) as e:
        ReplaySource(f, start_ns=ny_ns(1990, 1, 1), end_ns=ny_ns(1991, 1, 1))
    assert str(e.value) == (
        f"{f}: no bars in 1990-01-01 .. 1990-12-31 (the range asked); "
        "the data covers 2024-01-02 .. 2024-01-03"
    )
    with pytest.raises(SourceError, match=r"no bars in 2025-01-01 \.\. the last bar"):
        ReplaySource(f, start_ns=ny_ns(2025, 1, 1))
    # Without a range, a source with no bar is not an error here (its rows' problems tell).
    g = write(tmp_path / "y.csv", HEADER + "SPY,never,1,1,1,1,1\n")
    assert len(ReplaySource(g)) == 0
    with pytest.raises(SourceError, match="the data has no bar with a readable time"):
        ReplaySource(g, end_ns=ny_ns(2025, 1, 1))


def test_empty_symbol_list_is_refused(tmp_path: Path) -> None:
    f = write(tmp_path / "x.csv", HEADER + "SPY,2024-01-02T14:30:00Z,1,1,1,1,1\n")
    with pytest.raises(ValueError, match="symbols is empty"):
        ReplaySource(f, symbols=[])


def test_large_csv_loads_vectorized_and_in_order(tmp_path: Path) -> None:
    n = 40_000  # more than one iteration chunk
    rows = "".join(
        f"SPY,{(T0 + i * NS_PER_MINUTE) // 10**9},1,2,0.5,{1 + i % 7},{i}\n" for i in range(n)
    )
    src = ReplaySource(write(tmp_path / "x.csv", HEADER + rows))
    got = bars(src)
    assert [b.ts for b in got] == [T0 + i * NS_PER_MINUTE for i in range(n)]
    assert [b.close for b in got[:8]] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 1.0]
    assert got[-1].volume == n - 1


def test_all_missing_columns_are_named_at_once(tmp_path: Path) -> None:
    f = write(tmp_path / "x.csv", "date,open,high,low,volume\n2024-01-02,1,1,1,1\n")
    with pytest.raises(
        SourceError, match=r"missing columns 'symbol', 'close' \(columns found: date,"
    ):
        ReplaySource(f)


def test_bad_cells_in_a_large_file_only_affect_their_rows(tmp_path: Path) -> None:
    n = 10_000
    lines = [f"SPY,{(T0 + i * NS_PER_MINUTE) // 10**9},1,1,1,{1 + i % 3},1\n" for i in range(n)]
    lines[7_000] = f"SPY,{(T0 + 7_000 * NS_PER_MINUTE) // 10**9},1,1,1,n/a?,1\n"
    lines[9_999] = "SPY,not-a-time,1,1,1,1,1\n"
    src = ReplaySource(write(tmp_path / "x.csv", HEADER + "".join(lines)))
    got = bars(src)
    assert len(got) == n - 2
    assert [(p.row, p.reason) for p in src.problems] == [
        (7_002, "unparseable_value"),
        (10_001, "unparseable_time"),
    ]
    assert [b.close for b in got[6_999:7_001]] == [1 + 6_999 % 3, 1 + 7_001 % 3]


def test_iteration_matches_the_columns_across_chunks_and_null_patterns(tmp_path: Path) -> None:
    # 40,000 rows span three iteration chunks: the first has nulls in some rows, the second
    # none, the third only nulls; each chunk's bars must be the file's rows, nulls as None.
    n = 40_000
    first_chunk, third_chunk = range(0, 16_384), range(32_768, n)
    trade_counts = [
        None if (i in first_chunk and i % 5 == 0) or i in third_chunk else i for i in range(n)
    ]
    vwaps = [
        None if (i in first_chunk and i % 3 == 0) or i in third_chunk else i + 0.5 for i in range(n)
    ]
    f = tmp_path / "x.parquet"
    pq.write_table(
        pa.table(
            {
                "symbol": ["SPY"] * n,
                "timestamp": pa.array(
                    [T0 + i * NS_PER_MINUTE for i in range(n)], pa.timestamp("ns", tz="UTC")
                ),
                "open": [1.0 + i for i in range(n)],
                "high": [3.0 + i for i in range(n)],
                "low": [0.5 + i for i in range(n)],
                "close": [2.0 + i for i in range(n)],
                "volume": [float(i) for i in range(n)],
                "trade_count": pa.array(trade_counts, pa.int64()),
                "vwap": pa.array(vwaps, pa.float64()),
            }
        ),
        f,
    )
    src = ReplaySource(f)
    got = list(src)
    expected = [
        Bar("SPY", T0 + i * NS_PER_MINUTE, 1.0 + i, 3.0 + i, 0.5 + i, 2.0 + i, float(i), tc, vw)
        for i, (tc, vw) in enumerate(zip(trade_counts, vwaps, strict=True))
    ]
    assert [b for b, _ in got] == expected
    assert all(type(b) is Bar for b, _ in got)
    assert [src.describe(origin) for _, origin in got[:2]] == [(str(f), 1), (str(f), 2)]
    assert src.describe(got[-1][1]) == (str(f), n)


def test_missing_optional_columns_are_none(tmp_path: Path) -> None:
    f = write(tmp_path / "x.csv", HEADER + "SPY,2024-01-02T14:30:00Z,1,2,0.5,1.5,7\n")
    assert bars(ReplaySource(f)) == [Bar("SPY", T0, 1.0, 2.0, 0.5, 1.5, 7.0, None, None)]
