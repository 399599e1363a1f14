"""One data file (CSV or Parquet) read whole into an Arrow table, or a `SourceError` saying why
it cannot be: the message names the file and, where there is one, the line or the column.

What a CSV must be: UTF-8 text (a BOM is allowed), comma-separated, a header line naming the
columns once each, and every row as many fields as the header. A file that is binary, in another
encoding, delimited by ``;`` or tabs, or ragged is refused whole, before any row is parsed.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from feeds.errors import SourceError, printable
from feeds.timestamps import I64Array

_OTHER_DELIMITERS = {";": "';'", "\t": "tabs", "|": "'|'"}
_SUFFIXES = (".csv", ".parquet")
_SHOWN = 60  # characters of a bad line quoted in a message


def read_table(path: Path) -> tuple[pa.Table, I64Array | None]:
    """Read a whole file, every CSV column as text.

    Returns:
        (table, lines): for a CSV, the line number of each row (the header is line 1); None
        for Parquet (its rows are numbered from 1).

    Raises:
        SourceError: the file cannot be read, or is not a CSV of the form above.
    """
    try:
        if path.suffix.lower() == ".parquet":
            # ParquetFile, not pq.read_table: that goes through pyarrow.dataset, which loads
            # pandas (0.13 s) for what is here one file read whole.
            with pq.ParquetFile(path) as parquet:
                return parquet.read(), None
        data = path.read_bytes()
    except (OSError, pa.ArrowException) as e:
        raise SourceError(f"{path}: cannot read: {_one_line(str(e))}") from e
    if not data.strip():
        raise SourceError(f"{path}: empty file")
    text = _text(path, data)
    header_line = _header_line(text)
    try:
        header = next(csv.reader([header_line]), [])
    except csv.Error as e:
        raise SourceError(f"{path}: the header line: {e}") from None
    _check_delimiter(path, header_line, header)
    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=True,
            ),
        )
    except pa.ArrowException as e:
        _raise_ragged(path, text, len(header))
        raise SourceError(f"{path}: cannot read CSV: {_one_line(str(e))}") from e
    starts_blank = data.removeprefix(b"\xef\xbb\xbf")[:1] in (b"\n", b"\r")
    if b"\n\n" in data or b"\n\r\n" in data or starts_blank:
        # Blank lines are skipped by the reader: map rows to their real line numbers.
        numbers = [i + 1 for i, line in enumerate(data.split(b"\n")) if line.strip(b"\r") != b""]
        lines = np.array(numbers[1 : table.num_rows + 1], dtype=np.int64)
    else:
        lines = np.arange(2, table.num_rows + 2, dtype=np.int64)
    return table, lines


def read_batches(
    path: Path, columns: Sequence[str], batch_rows: int
) -> Iterator[tuple[Any, I64Array]]:
    """Read a file `batch_rows` rows at a time: (table or record batch of `columns`, the row
    number of each row: CSV line numbers, 1-based Parquet rows).

    A Parquet file is decoded batch by batch, so that memory stays bounded by the batch, not
    the file; a CSV is read whole (`read_table`) and handed out in slices.

    Raises:
        SourceError: as `read_table`.
    """
    if path.suffix.lower() != ".parquet":
        table, lines = read_table(path)
        assert lines is not None
        yield from table_slices(table, lines, columns, batch_rows)
        return
    first = 1
    try:
        # One thread: the decoding threads' own heaps would keep more memory than they save
        # time on a few columns.
        reader = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
        for batch in reader.iter_batches(
            batch_size=batch_rows, columns=list(columns), use_threads=False
        ):
            yield batch, np.arange(first, first + batch.num_rows, dtype=np.int64)
            first += batch.num_rows
    except (OSError, pa.ArrowException) as e:
        raise SourceError(f"{path}: cannot read: {_one_line(str(e))}") from e


def table_slices(
    table: pa.Table, lines: I64Array, columns: Sequence[str], batch_rows: int
) -> Iterator[tuple[pa.Table, I64Array]]:
    """A table read whole, `batch_rows` rows at a time, as `read_batches` hands them out."""
    table = table.select(list(columns))
    for lo in range(0, table.num_rows, batch_rows):
        yield table.slice(lo, batch_rows), lines[lo : lo + batch_rows]


def file_schema(path: Path) -> tuple[list[str], dict[str, pa.DataType], int] | None:
    """(column names, their types, rows) of a Parquet file from its footer; None for a CSV
    (its columns are all text and known only by reading it).

    Raises:
        SourceError: the file cannot be read.
    """
    if path.suffix.lower() != ".parquet":
        return None
    try:
        meta = pq.ParquetFile(path)
        schema = meta.schema_arrow
        rows = meta.metadata.num_rows
    except (OSError, pa.ArrowException) as e:
        raise SourceError(f"{path}: cannot read: {_one_line(str(e))}") from e
    return list(schema.names), {f.name: f.type for f in schema}, rows


def data_files(path: Path, wanted: set[str] | None) -> list[tuple[Path, str | None]]:
    """The data files of `path` (a file, or a folder's .csv and .parquet files in name order)
    with their symbol stems (None for a single file). With `wanted`, other symbols' files are
    left out unless they may carry a ``symbol`` column.

    Raises:
        SourceError: the path is missing or unreadable, or the folder has no data file.
    """
    try:
        if not path.exists():
            raise SourceError(f"{printable(str(path))}: no such file or folder")
        if path.is_file():
            return [(path, None)]
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _SUFFIXES)
    except (OSError, ValueError) as e:  # a name the OS refuses, a folder we may not list
        raise SourceError(f"{printable(str(path))}: cannot read: {e}") from None
    if not files:
        raise SourceError(f"{path}: folder has no .csv or .parquet files")
    stems = [(f, f.stem.strip().upper()) for f in files]
    if wanted is not None:
        # Skip other symbols' files unread, unless they may carry a `symbol` column.
        stems = [(f, s) for f, s in stems if s in wanted or has_symbol_column(f)]
    return list(stems)


def has_symbol_column(path: Path) -> bool:
    """Whether the file's header names a ``symbol`` column (True when unsure: the real read
    then reports the problem)."""
    try:
        if path.suffix.lower() == ".parquet":
            names = pq.read_schema(path).names
        else:
            with path.open(newline="", encoding="utf-8-sig") as f:
                names = next(csv.reader(f), [])
    except (OSError, pa.ArrowException, UnicodeDecodeError, csv.Error, ValueError):
        return True
    return any(n.strip().lower() == "symbol" for n in names)


def check_unique_columns(path: Path, names: Sequence[str], *, only: Iterable[str] = ()) -> None:
    """Refuse a column named twice (names compared as the reader matches them: trimmed and
    case-insensitive). With `only`, just those names count.

    Raises:
        SourceError: naming the column and its positions (1-based).
    """
    keys = [n.strip().lower() for n in names]
    wanted = set(only)
    counts = Counter(k for k in keys if not wanted or k in wanted)
    twice = [k for k, c in counts.items() if c > 1]
    if twice:
        first = twice[0]
        where = ", ".join(str(i + 1) for i, k in enumerate(keys) if k == first)
        raise SourceError(
            f"{path}: column {first!r} appears {counts[first]} times (columns {where}): "
            "name each column once"
        )


def _text(path: Path, data: bytes) -> str:
    """The file as text, or a SourceError for binary data or bytes that are not UTF-8."""
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise SourceError(
            f"{path}: line {line}: binary data (a NUL byte at offset {nul}), not a CSV text file"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise SourceError(
            f"{path}: line {line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
            f"{e.start}); save the file as UTF-8"
        ) from None


def _header_line(text: str) -> str:
    """The first non-blank line: the reader skips blank lines before the header too."""
    # Lines end at \n, \r\n or a lone \r, as for the reader.
    for line in io.StringIO(text, newline=None):
        if line.strip():
            return line.rstrip("\r\n")
    return ""


def _check_delimiter(path: Path, header_line: str, header: Sequence[str]) -> None:
    """A header that splits into more fields on another delimiter than on commas."""
    for delimiter, name in _OTHER_DELIMITERS.items():
        if header_line.count(delimiter) >= len(header):
            raise SourceError(
                f"{path}: looks delimited by {name}, not commas (header: "
                f"{_shown(header_line)}); tradingd reads comma-separated files"
            )


def _raise_ragged(path: Path, text: str, width: int) -> None:
    """Raise naming the first row whose field count differs from the header's, if any."""
    reader = csv.reader(io.StringIO(text, newline=""))
    seen_header = False
    try:
        for row in reader:
            if not row:
                continue  # a blank line, which the reader skips too
            if not seen_header:
                seen_header = True
                continue
            if len(row) != width:
                fields = f"{len(row)} field" + ("" if len(row) == 1 else "s")
                raise SourceError(
                    f"{path}: line {reader.line_num}: {fields}, the header has {width} "
                    f"({_shown(','.join(row))})"
                )
    except csv.Error as e:
        raise SourceError(f"{path}: line {reader.line_num}: {e}") from None


def _shown(text: str) -> str:
    """`text` quoted, cut short, with its control characters escaped (tabs show as \\t)."""
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")


def _one_line(text: str) -> str:
    return " ".join(text.split())
