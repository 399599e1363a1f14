"""Rows of a data file parsed into `Columns`, and what the parse met on the way: the symbols,
the time span, the rows that could not become bars (`feeds.replay.ReplaySource`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from feeds.columns import Columns
from feeds.datafile import check_unique_columns
from feeds.errors import SourceError, printable
from feeds.sanity import Reason
from feeds.timestamps import F64Array, I64Array, numpy_of, parse_numbers, parse_times

TIME_NAMES = ("timestamp", "date", "time", "datetime", "t")
REQUIRED = (
    ("open", ("open", "o")),
    ("high", ("high", "h")),
    ("low", ("low", "l")),
    ("close", ("close", "c")),
    ("volume", ("volume", "v")),
)
OPTIONAL = (("trade_count", ("trade_count", "n")), ("vwap", ("vwap", "vw")))
VALUES = tuple(label for label, _ in REQUIRED + OPTIONAL)
# origin = file_index << ROW_BITS | row: cheap to carry per bar, decoded only when reported.
ROW_BITS = 40
ROW_MASK = (1 << ROW_BITS) - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class RowProblem:
    """A source row that could not become a bar.

    Attributes:
        file: the file path as given.
        row: CSV line number (header is line 1) or 1-based Parquet row.
        symbol: the row's symbol.
        time: the raw text of the row's time value.
        reason: a `Reason` value (``unparseable_time`` or ``unparseable_value``).
    """

    file: str
    row: int
    symbol: str
    time: str
    reason: str


def one_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column as one array (a table's columns come in chunks)."""
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


class RowParser:
    """Parses tables of rows into `Columns` with a symbol table shared by all the files.

    Args:
        timezone: zone of naive timestamps (`feeds.replay.DataSettings`).
        wanted: the symbols kept (upper-case); None keeps all.

    Attributes:
        symbol_table: symbol of each code.
        present: codes with rows (after the symbol filter).
        span: first and last time of those rows.
        rows_read: data rows read.
        problems: every row problem met with its time (None: the time is the problem).
    """

    def __init__(self, timezone: str | None, wanted: set[str] | None) -> None:
        self._timezone = timezone
        self._wanted = wanted
        self.symbol_table: list[str] = []
        self._symbol_codes: dict[str, int] = {}
        self.present: set[int] = set()
        self.span: tuple[int, int] | None = None
        self.rows_read = 0
        self.problems: list[tuple[RowProblem, int | None]] = []

    def labels(self, path: Path, names: Sequence[str], stem: str | None) -> dict[str, str]:
        """Which of a file's columns (`names`) holds what: label -> column name.

        Raises:
            SourceError: a column named twice; required columns missing (all named).
        """
        # Resolve every column first, so that one message names all the missing ones.
        wanted = [("timestamp", TIME_NAMES, True), ("symbol", ("symbol",), stem is None)]
        wanted += [(label, names, True) for label, names in REQUIRED]
        wanted += [(label, names, False) for label, names in OPTIONAL]
        check_unique_columns(path, names, only=[c for _, ns, _ in wanted for c in ns])
        by_lower = {c.strip().lower(): c for c in names}
        found: dict[str, str] = {}
        missing = []
        for label, options, required in wanted:
            match = next((by_lower[c] for c in options if c in by_lower), None)
            if match is not None:
                found[label] = match
            elif required:
                missing.append(repr(label))
        if missing:
            shown = ", ".join(printable(c) for c in names)
            what = "column" if len(missing) == 1 else "columns"
            raise SourceError(
                f"{path}: missing {what} {', '.join(missing)} (columns found: {shown})"
            )
        return found

    def parse(
        self,
        name: str,
        columns: Mapping[str, pa.Array],
        *,
        stem: str | None,
        rows: I64Array,
        file_index: int,
        record: bool,
    ) -> tuple[Columns, np.ndarray]:
        """Parse rows given as label -> column; (every row parsed, which rows make bars).

        Without value columns in `columns` the values are not parsed (all taken as valid and
        NaN): for a first look at files whose value columns are numbers, which cannot fail.
        With `record`, the rows' symbols, span and problems are noted (a second parse of the
        same rows leaves it off).
        """
        n = len(rows)
        time_col = columns["timestamp"]
        codes = self._codes_of(columns.get("symbol"), stem, n)
        ts, ok_time = parse_times(time_col, self._timezone)
        values: dict[str, F64Array] = {}
        ok_values = np.ones(n, np.bool_)
        nulls: dict[str, np.ndarray] = {}
        skip_values = not any(label in columns for label in VALUES)
        # Views of one value for absent columns: no memory per row.
        absent, all_null = np.broadcast_to(np.float64(np.nan), (n,)), np.broadcast_to(True, (n,))
        for label in VALUES:
            col = columns.get(label)
            if col is None:
                values[label], nulls[label] = absent, all_null
                continue
            values[label], ok, nulls[label] = parse_numbers(col)
            ok_values &= ok

        keep = ok_time & ok_values
        if self._wanted is not None:
            wanted_codes = [self._symbol_codes[s] for s in self._wanted if s in self._symbol_codes]
            keep_symbol = np.isin(codes, np.array(wanted_codes, dtype=np.int64))
        else:
            keep_symbol = np.ones(n, np.bool_)
        if record:
            self.rows_read += n
            if "symbol" in columns:
                self.present.update(np.unique(codes[keep_symbol]).tolist())
            elif keep_symbol.any():
                self.present.add(int(codes[0]))  # one symbol: the file's
            timed = ts[keep_symbol & ok_time]
            if len(timed):
                lo, hi = int(timed.min()), int(timed.max())
                span = self.span
                self.span = (lo, hi) if span is None else (min(lo, span[0]), max(hi, span[1]))
            bad = keep_symbol & ~keep
            if bad.any():
                self._record_problems(
                    name,
                    time_col=time_col,
                    codes=codes,
                    rows=rows,
                    bad=np.flatnonzero(bad),
                    ok_time=ok_time,
                    ts=ts,
                )
        keep &= keep_symbol

        if skip_values:
            tc, tc_null = np.broadcast_to(np.int64(0), (n,)), nulls["trade_count"]
        else:
            raw_tc = values["trade_count"]
            tc_null = nulls["trade_count"] | ~np.isfinite(raw_tc)
            tc = np.where(tc_null, 0, np.nan_to_num(raw_tc)).astype(np.int64)
        parsed = Columns(
            ts=ts,
            symbol=codes,
            origin=(np.int64(file_index) << ROW_BITS) | rows,
            open=values["open"],
            high=values["high"],
            low=values["low"],
            close=values["close"],
            volume=values["volume"],
            trade_count=tc,
            trade_count_null=tc_null,
            vwap=values["vwap"],
            vwap_null=nulls["vwap"],
        )
        return parsed, keep

    def code(self, symbol: str) -> int:
        """The code of `symbol` (given one the first time it is met)."""
        code = self._symbol_codes.get(symbol)
        if code is None:
            code = self._symbol_codes[symbol] = len(self.symbol_table)
            self.symbol_table.append(symbol)
        return code

    def _codes_of(self, sym_col: pa.Array | None, stem: str | None, n: int) -> I64Array:
        if sym_col is None:
            assert stem is not None
            return np.full(n, self.code(stem), np.int64)
        encoded = sym_col.cast(pa.string()).dictionary_encode()
        mapping = []
        for raw in encoded.dictionary.to_pylist():
            text = (raw or "").strip().upper() or stem or ""
            mapping.append(self.code(text))
        # Null symbol cells take the file's stem (folder) or the empty symbol.
        table = np.array([*mapping, self.code(stem or "")], dtype=np.int64)
        indices = numpy_of(encoded.indices, pa.int64(), len(mapping))
        return np.asarray(table[indices], dtype=np.int64)

    def _record_problems(
        self,
        name: str,
        *,
        time_col: pa.Array,
        codes: I64Array,
        rows: I64Array,
        bad: I64Array,
        ok_time: np.ndarray,
        ts: I64Array,
    ) -> None:
        raw_times = time_col.take(pa.array(bad)).to_pylist()
        for i, raw in zip(bad.tolist(), raw_times, strict=True):
            problem = RowProblem(
                file=name,
                row=int(rows[i]),
                symbol=self.symbol_table[int(codes[i])],
                time="" if raw is None else str(raw),
                reason=(Reason.UNPARSEABLE_VALUE if ok_time[i] else Reason.UNPARSEABLE_TIME).value,
            )
            self.problems.append((problem, int(ts[i]) if ok_time[i] else None))
