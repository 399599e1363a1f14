"""Data files that cannot be read as bars: one `SourceError` naming the file, line or column."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feeds.errors import SourceError
from feeds.replay import ReplaySource

HEADER = "date,open,high,low,close,volume\n"
ROW = "2021-01-04,1,1,1,1,1\n"


def source_error(path: Path, content: bytes) -> str:
    """The message ReplaySource raises for a folder holding `content` as SPY's file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    with pytest.raises(SourceError) as e:
        ReplaySource(path.parent)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ")


def test_a_column_named_twice(tmp_path: Path) -> None:
    f = tmp_path / "SPY.csv"
    text = "date,open,high,low,close,close,volume\n2021-01-04,1,1,1,1,1,1\n"
    assert source_error(f, text.encode()) == (
        "column 'close' appears 2 times (columns 5, 6): name each column once"
    )
    # Names match as the reader matches them: trimmed, any case; aliases are other names.
    text = "date,open,high,low, Close,close,volume\n2021-01-04,1,1,1,1,1,1\n"
    assert "column 'close' appears 2 times" in source_error(f, text.encode())


def test_an_unused_column_may_repeat(tmp_path: Path) -> None:
    f = tmp_path / "SPY.csv"
    f.write_text("date,open,high,low,close,volume,note,note\n2021-01-04,1,1,1,1,1,a,b\n")
    assert len(ReplaySource(tmp_path)) == 1


def test_a_parquet_column_named_twice(tmp_path: Path) -> None:
    f = tmp_path / "SPY.parquet"
    names = ["date", "open", "high", "low", "close", "volume", "CLOSE"]
    table = pa.Table.from_arrays([pa.array(["2021-01-04"])] + [pa.array([1.0])] * 6, names=names)
    pq.write_table(table, f)
    with pytest.raises(SourceError, match=rf"^{f}: column 'close' appears 2 times \(columns 5, 7"):
        ReplaySource(tmp_path)


def test_binary_data(tmp_path: Path) -> None:
    message = source_error(tmp_path / "SPY.csv", HEADER.encode() + b"\x00\x01\x02\xff" * 8)
    assert message == "line 2: binary data (a NUL byte at offset 32), not a CSV text file"


def test_text_that_is_not_utf8(tmp_path: Path) -> None:
    latin1 = (HEADER + "2021-01-04,1,1,1,1,1\n2021-01-05,1,1,1,1,1 caf\xe9\n").encode("latin-1")
    message = source_error(tmp_path / "SPY.csv", latin1)
    assert message == "line 3: not UTF-8 text (byte 0xe9 at offset 77); save the file as UTF-8"


def test_random_bytes_are_refused_whole(tmp_path: Path) -> None:
    message = source_error(tmp_path / "SPY.csv", bytes(range(128, 256)) * 4)
    assert message.startswith("line 1: not UTF-8 text")


def test_a_utf8_bom_is_fine(tmp_path: Path) -> None:
    (tmp_path / "SPY.csv").write_bytes(b"\xef\xbb\xbf" + (HEADER + ROW).encode())
    assert len(ReplaySource(tmp_path)) == 1


@pytest.mark.parametrize(
    ("rows", "line", "fields"),
    [
        (ROW + "2021-01-05,1,1,1,1,1,7\n", 3, "7 fields"),
        (ROW + "2021-01-05,1,1\n", 3, "3 fields"),
        (ROW + "\n\n2021-01-05,1,1,1,1,1,7,8\n", 5, "8 fields"),  # blank lines still count
        (ROW + "   \n", 3, "1 field"),
    ],
    ids=["long", "short", "after-blank-lines", "spaces-only"],
)
def test_a_ragged_row_names_its_line(tmp_path: Path, rows: str, line: int, fields: str) -> None:
    message = source_error(tmp_path / "SPY.csv", (HEADER + rows).encode())
    assert message.startswith(f"line {line}: {fields}, the header has 6 (")


@pytest.mark.parametrize(
    ("delimiter", "name"),
    [(";", "';'"), ("\t", "tabs"), ("|", "'|'")],
    ids=["semicolon", "tab", "pipe"],
)
def test_another_delimiter_is_named(tmp_path: Path, delimiter: str, name: str) -> None:
    text = (HEADER + ROW).replace(",", delimiter)
    message = source_error(tmp_path / "SPY.csv", text.encode())
    assert message.startswith(f"looks delimited by {name}, not commas (header: 'date")
    assert message.endswith("tradingd reads comma-separated files")


def test_semicolons_with_decimal_commas(tmp_path: Path) -> None:
    text = "date;open;high;low;close;volume\n2021-01-04;1,5;1,5;1,5;1,5;1\n"
    assert "looks delimited by ';'" in source_error(tmp_path / "SPY.csv", text.encode())


def test_a_header_with_a_newline_in_a_name_stays_one_line(tmp_path: Path) -> None:
    text = 'date,open,high,low,"clo\nse",volume\n2021-01-04,1,1,1,1,1\n'
    message = source_error(tmp_path / "SPY.csv", text.encode())
    assert "missing column 'close'" in message
    assert "clo\\nse" in message


def test_a_blank_line_before_the_header(tmp_path: Path) -> None:
    (tmp_path / "SPY.csv").write_text("\n" + HEADER + ROW + "2021-01-05,x,1,1,1,1\n")
    source = ReplaySource(tmp_path)
    assert len(source) == 1
    assert [p.row for p in source.problems] == [4]


@pytest.mark.parametrize(
    ("name", "shown"), [("a\0b", "a\\x00b"), ("a\nb", "a\\nb")], ids=["nul", "newline"]
)
def test_a_path_with_control_characters(tmp_path: Path, name: str, shown: str) -> None:
    with pytest.raises(SourceError) as e:
        ReplaySource(tmp_path / name)
    assert str(e.value) == f"{tmp_path}/{shown}: no such file or folder"


@pytest.mark.parametrize("when", ["2263-01-01", "1600-01-01", "9999-12-31T23:59:59+14:00"])
def test_a_time_beyond_int64_ns_is_a_row_problem(tmp_path: Path, when: str) -> None:
    (tmp_path / "SPY.csv").write_text(f"{HEADER}{ROW}{when},1,1,1,1,1\n")
    source = ReplaySource(tmp_path)
    assert len(source) == 1
    assert [(p.row, p.reason) for p in source.problems] == [(3, "unparseable_time")]


def test_lone_carriage_returns_end_lines(tmp_path: Path) -> None:
    """Old Mac line ends (a lone \\r) end lines for the header as for the reader."""
    assert source_error(tmp_path / "SPY.csv", b"\ropen,high,low,close,volume\n") == (
        "empty file (no data rows)"
    )
    (tmp_path / "SPY.csv").write_bytes((HEADER + ROW).replace("\n", "\r").encode())
    assert len(ReplaySource(tmp_path)) == 1
