"""Historical bars from CSV or Parquet files, merged in time order for replay.

A source is one file with a ``symbol`` column, or a folder of per-symbol files (``SPY.csv``,
``AAPL.parquet``; the symbol is the upper-cased file stem unless a ``symbol`` column says
otherwise). Column names are case-insensitive:

    time      the first of ``timestamp``, ``date``, ``time``, ``datetime``, ``t``
    prices    ``open high low close`` (or ``o h l c``), ``volume`` (or ``v``), required
    optional  ``trade_count`` (or ``n``), ``vwap`` (or ``vw``)

Time forms are those of `feeds.timestamps`. Every file is parsed when the source is opened:
problems with a whole file raise `SourceError`; a row whose time or a value cannot be parsed
becomes a `RowProblem` and the other rows still load. Empty price cells become NaN, which the
sanity check rejects.

Order: all symbols merged by time, ties by symbol. Within one symbol the file's order is kept,
so a row that goes back in time arrives where it stands and the sanity check rejects it; only a
stream entirely in descending time order (newest first) is reversed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, field_validator

from feeds.bar import Bar
from feeds.columns import Columns, in_range, replay_order, with_nulls
from feeds.datafile import check_unique_columns, has_symbol_column, read_table
from feeds.days import describe_range, describe_span
from feeds.errors import SourceError, printable
from feeds.sanity import Reason
from feeds.spacing import check_spacing
from feeds.timeframes import TIMEFRAME_NS, Timeframe, bar_spacing_ns
from feeds.timestamps import BoolArray, F64Array, I64Array, numpy_of, parse_numbers, parse_times

__all__ = ["DataSettings", "ReplaySource", "RowProblem", "Timeframe"]
_TIME_NAMES = ("timestamp", "date", "time", "datetime", "t")
_REQUIRED = (
    ("open", ("open", "o")),
    ("high", ("high", "h")),
    ("low", ("low", "l")),
    ("close", ("close", "c")),
    ("volume", ("volume", "v")),
)
_OPTIONAL = (("trade_count", ("trade_count", "n")), ("vwap", ("vwap", "vw")))
_SUFFIXES = (".csv", ".parquet")
# origin = file_index << _ROW_BITS | row: cheap to carry per bar, decoded only when reported.
_ROW_BITS = 40
_ROW_MASK = (1 << _ROW_BITS) - 1
_CHUNK = 16_384
_KEYS = ("ts", "symbol", "origin")  # the columns that decide the replay order


class DataSettings(BaseModel):
    """Where replayed bars come from.

    Attributes:
        path: a CSV/Parquet file with a ``symbol`` column, or a folder of per-symbol files.
        timeframe: the bar interval of the data.
        timezone: zone of naive timestamps; None: America/New_York for date-only values and
            UTC for naive date-times.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path
    timeframe: Timeframe = "1Day"
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            _check_zone(value)
        return value

    def bar_ns(self) -> int:
        """The bar interval in ns."""
        return TIMEFRAME_NS[self.timeframe]


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


class ReplaySource:
    """Bars of historical files, merged in time order.

    Args:
        path: a file with a ``symbol`` column or a folder of per-symbol files.
        symbols: keep only these symbols (case-insensitive); None keeps all.
        start_ns: keep bars starting at or after this time.
        end_ns: keep bars starting before this time.
        timezone: zone of naive timestamps (see `DataSettings`).
        timeframe: the configured bar interval; when given, bars spaced otherwise are refused
            (`feeds.spacing.check_spacing`).
        reusable: keep the whole parse so that `window` can cut other ranges from it (a
            walk-forward worker parses its data once for all its jobs).

    Raises:
        SourceError: the path is missing; a folder has no .csv/.parquet file; a file is empty,
            unreadable, not a comma-separated UTF-8 text, ragged, or lacks a required column or
            names one twice; a requested symbol is in no file; `start_ns`/`end_ns` leave no
            bar (the message names both ranges); the bars do not fit `timeframe`. The message
            starts with the file path.

    Attributes:
        symbols: the symbols the files have rows of (after the symbol filter, before the time
            filter), sorted.
        problems: the rows that could not become bars.
        rows_read: data rows read from the files, before any filter.
    """

    def __init__(
        self,
        path: Path,
        *,
        symbols: Sequence[str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        timezone: str | None = None,
        timeframe: Timeframe | None = None,
        reusable: bool = False,
    ) -> None:
        if timezone is not None:
            _check_zone(timezone)
        self._timezone = timezone
        self._wanted = None if symbols is None else {s.strip().upper() for s in symbols}
        if self._wanted is not None and not self._wanted:
            raise ValueError("symbols is empty: pass None to keep every symbol")
        self._start_ns = start_ns
        self._end_ns = end_ns
        self.problems: list[RowProblem] = []
        self.rows_read = 0
        self._files: list[str] = []
        self._symbol_table: list[str] = []
        self._symbol_codes: dict[str, int] = {}
        self._present: set[int] = set()  # codes with rows (after the symbol filter)
        self._span: tuple[int, int] | None = None  # first and last time of those rows
        self._spacing: dict[int, int] = {}  # symbol code -> typical gap (`spacing`)

        self._path = path
        # Every row problem with its time (None: the time itself is the problem), whatever the
        # range: a range keeps those in it (`_cut`).
        self._all_problems: list[tuple[RowProblem, int | None]] = []
        parts = [self._load(i, f, stem) for i, (f, stem) in enumerate(self._list_files(path))]
        found = {self._symbol_table[c] for c in self._present}
        if self._wanted is not None:
            missing = sorted(self._wanted - found)
            if missing:
                raise SourceError(f"{path}: no data for symbol(s) {', '.join(missing)}")
        self.symbols: tuple[str, ...] = tuple(sorted(found))
        self._symbol_names = np.array([*self._symbol_table, ""], dtype=object)
        # Order by the three key columns alone, then copy each column once, in that order,
        # freeing the file's column as it goes: the parse holds about one copy of the data.
        ts, symbol, origin = (np.concatenate([getattr(p, k) for p in parts]) for k in _KEYS)
        ranged = start_ns is not None or end_ns is not None
        keep = np.flatnonzero(in_range(ts, start_ns, end_ns)) if ranged and not reusable else None
        if keep is not None:
            ts, symbol, origin = ts[keep], symbol[keep], origin[keep]
        perm = self._order_index(ts, symbol, origin)
        del ts, symbol, origin
        rows = Columns.gather(parts, perm if keep is None else keep[perm])
        del parts
        # Kept when reusable, in replay order: a window of ordered rows orders as the same rows
        # read with that range would (each stream keeps its order; the merge is by time).
        self._every = rows if reusable else None
        if reusable:
            self._cut(rows, start_ns, end_ns, timeframe)
        else:
            self._settle(rows, start_ns, end_ns, timeframe)

    def window(
        self, start_ns: int | None, end_ns: int | None, timeframe: Timeframe | None = None
    ) -> ReplaySource:
        """The same files over another range, without reading or parsing them again: the
        source it gives is the one `ReplaySource(path, start_ns=..., end_ns=...)` would be.
        Needs a source made with ``reusable=True``.

        Raises:
            SourceError: as the constructor, for the range and the spacing.
        """
        if self._every is None:
            raise ValueError("window() needs a source made with reusable=True")
        view = copy.copy(self)
        view._every = None  # the view does not hand out further windows
        view._cut(self._every, start_ns, end_ns, timeframe)
        return view

    def _cut(
        self,
        every: Columns,
        start_ns: int | None,
        end_ns: int | None,
        timeframe: Timeframe | None,
    ) -> None:
        """Keep the rows of `every` (in replay order, `_spacing` its spacing) in
        [start_ns, end_ns)."""
        if start_ns is not None or end_ns is not None:
            every = self._order(every.take(in_range(every.ts, start_ns, end_ns)))
        self._settle(every, start_ns, end_ns, timeframe)

    def _settle(
        self,
        rows: Columns,
        start_ns: int | None,
        end_ns: int | None,
        timeframe: Timeframe | None,
    ) -> None:
        """Take `rows` (the range's, in replay order) and the range's problems; check both."""
        self._start_ns, self._end_ns = start_ns, end_ns
        self._rows = rows
        self.problems = [
            p
            for p, ts in self._all_problems
            if ts is None or bool(in_range(np.array([ts], np.int64), start_ns, end_ns)[0])
        ]
        if len(rows.ts) == 0 and (start_ns is not None or end_ns is not None):
            raise SourceError(
                f"{self._path}: no bars in {describe_range(start_ns, end_ns)} (the range "
                f"asked); the data {describe_span(self._span)}"
            )
        if timeframe is not None:
            check_spacing(str(self._path), self.spacing(), timeframe)

    def spacing(self) -> dict[str, int]:
        """Symbol -> the typical gap between its bars, in ns (`feeds.spacing.typical_spacing`)."""
        return {self._symbol_table[code]: gap for code, gap in self._spacing.items()}

    def describe(self, origin: int) -> tuple[str, int]:
        """(file path as given, row number) of the row a bar came from."""
        return self._files[origin >> _ROW_BITS], origin & _ROW_MASK

    def __len__(self) -> int:
        """Number of bars the iteration yields."""
        return len(self._rows.ts)

    def spacing_ns(self) -> int | None:
        """The spacing of the bars the iteration yields (`feeds.timeframes.bar_spacing_ns`):
        1 minute for minute files, 1 day for daily ones; None with fewer than two bars of a
        symbol."""
        return bar_spacing_ns(self._rows.ts, self._rows.symbol)

    def timestamps(self) -> I64Array:
        """The bars' times in ns, in replay order, without making the bars (read-only)."""
        ts = self._rows.ts.view()
        ts.flags.writeable = False
        return ts

    def __iter__(self) -> Iterator[tuple[Bar, int]]:
        """Yield (bar, origin) in replay order; `describe(origin)` names the source row."""
        rows = self._rows
        names = self._symbol_names
        total = len(rows.ts)
        # `tuple.__new__(Bar, row)` makes a Bar without calling a Python-level __new__ (no
        # argument parsing, no defaults): with map and zip the whole per-row loop runs in C.
        make = tuple.__new__
        for lo in range(0, total, _CHUNK):
            hi = min(lo + _CHUNK, total)
            bars = map(
                make,
                repeat(Bar),
                zip(
                    names[rows.symbol[lo:hi]].tolist(),
                    rows.ts[lo:hi].tolist(),
                    rows.open[lo:hi].tolist(),
                    rows.high[lo:hi].tolist(),
                    rows.low[lo:hi].tolist(),
                    rows.close[lo:hi].tolist(),
                    rows.volume[lo:hi].tolist(),
                    with_nulls(rows.trade_count[lo:hi], rows.trade_count_null[lo:hi]),
                    with_nulls(rows.vwap[lo:hi], rows.vwap_null[lo:hi]),
                    strict=True,
                ),
            )
            yield from zip(bars, rows.origin[lo:hi].tolist(), strict=True)

    # -- loading ---------------------------------------------------------------------------

    def _list_files(self, path: Path) -> list[tuple[Path, str | None]]:
        try:
            if not path.exists():
                raise SourceError(f"{printable(str(path))}: no such file or folder")
            if path.is_file():
                return [(path, None)]
            files = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _SUFFIXES
            )
        except (OSError, ValueError) as e:  # a name the OS refuses, a folder we may not list
            raise SourceError(f"{printable(str(path))}: cannot read: {e}") from None
        if not files:
            raise SourceError(f"{path}: folder has no .csv or .parquet files")
        stems = [(f, f.stem.strip().upper()) for f in files]
        if self._wanted is not None:
            # Skip other symbols' files unread, unless they may carry a `symbol` column.
            stems = [(f, s) for f, s in stems if s in self._wanted or has_symbol_column(f)]
        return list(stems)

    def _load(self, file_index: int, path: Path, stem: str | None) -> Columns:
        name = str(path)
        self._files.append(name)
        table, lines = read_table(path)
        n = table.num_rows
        if n == 0:
            raise SourceError(f"{name}: empty file (no data rows)")
        self.rows_read += n
        # Resolve every column first, so that one message names all the missing ones.
        wanted = [("timestamp", _TIME_NAMES, True), ("symbol", ("symbol",), stem is None)]
        wanted += [(label, names, True) for label, names in _REQUIRED]
        wanted += [(label, names, False) for label, names in _OPTIONAL]
        check_unique_columns(path, table.column_names, only=[c for _, ns, _ in wanted for c in ns])
        by_lower = {c.strip().lower(): c for c in table.column_names}
        columns: dict[str, pa.Array] = {}
        missing = []
        for label, names, required in wanted:
            match = next((by_lower[c] for c in names if c in by_lower), None)
            if match is not None:
                columns[label] = table.column(match).combine_chunks()
            elif required:
                missing.append(repr(label))
        if missing:
            found = ", ".join(printable(c) for c in table.column_names)
            what = "column" if len(missing) == 1 else "columns"
            raise SourceError(
                f"{name}: missing {what} {', '.join(missing)} (columns found: {found})"
            )

        time_col = columns["timestamp"]
        codes = self._symbol_codes_of(columns.get("symbol"), stem, n)
        ts, ok_time = parse_times(time_col, self._timezone)
        values: dict[str, F64Array] = {}
        ok_values = np.ones(n, np.bool_)
        nulls: dict[str, BoolArray] = {}
        for label, _ in _REQUIRED + _OPTIONAL:
            col = columns.get(label)
            if col is None:
                values[label] = np.full(n, np.nan)
                nulls[label] = np.ones(n, np.bool_)
                continue
            values[label], ok, nulls[label] = parse_numbers(col)
            ok_values &= ok

        keep = ok_time & ok_values
        if self._wanted is not None:
            wanted_codes = [self._symbol_codes[s] for s in self._wanted if s in self._symbol_codes]
            keep_symbol = np.isin(codes, np.array(wanted_codes, dtype=np.int64))
        else:
            keep_symbol = np.ones(n, np.bool_)
        self._present.update(np.unique(codes[keep_symbol]).tolist())
        timed = ts[keep_symbol & ok_time]
        if len(timed):
            lo, hi = int(timed.min()), int(timed.max())
            self._span = (
                (lo, hi) if self._span is None else (min(lo, self._span[0]), max(hi, self._span[1]))
            )
        bad = keep_symbol & ~keep
        if bad.any():
            self._record_problems(
                name,
                time_col=time_col,
                codes=codes,
                lines=lines,
                bad=np.flatnonzero(bad),
                ok_time=ok_time,
                ts=ts,
            )
        keep &= keep_symbol

        tc = values["trade_count"]
        tc_null = nulls["trade_count"] | ~np.isfinite(tc)
        row_numbers = np.arange(1, n + 1, dtype=np.int64) if lines is None else lines
        parsed = Columns(
            ts=ts,
            symbol=codes,
            origin=(np.int64(file_index) << _ROW_BITS) | row_numbers,
            open=values["open"],
            high=values["high"],
            low=values["low"],
            close=values["close"],
            volume=values["volume"],
            trade_count=np.where(tc_null, 0, np.nan_to_num(tc)).astype(np.int64),
            trade_count_null=tc_null,
            vwap=values["vwap"],
            vwap_null=nulls["vwap"],
        )
        # Most files have no bad row: no copy of every column then.
        return parsed if bool(keep.all()) else parsed.take(keep)

    def _symbol_codes_of(self, sym_col: pa.Array | None, stem: str | None, n: int) -> I64Array:
        if sym_col is None:
            assert stem is not None
            return np.full(n, self._code(stem), np.int64)
        encoded = sym_col.cast(pa.string()).dictionary_encode()
        mapping = []
        for raw in encoded.dictionary.to_pylist():
            text = (raw or "").strip().upper() or stem or ""
            mapping.append(self._code(text))
        # Null symbol cells take the file's stem (folder) or the empty symbol.
        table = np.array([*mapping, self._code(stem or "")], dtype=np.int64)
        indices = np.asarray(numpy_of(encoded.indices, len(mapping)), dtype=np.int64)
        return np.asarray(table[indices], dtype=np.int64)

    def _code(self, symbol: str) -> int:
        code = self._symbol_codes.get(symbol)
        if code is None:
            code = self._symbol_codes[symbol] = len(self._symbol_table)
            self._symbol_table.append(symbol)
        return code

    def _record_problems(
        self,
        name: str,
        *,
        time_col: pa.Array,
        codes: I64Array,
        lines: I64Array | None,
        bad: I64Array,
        ok_time: BoolArray,
        ts: I64Array,
    ) -> None:
        raw_times = time_col.take(pa.array(bad)).to_pylist()
        for i, raw in zip(bad.tolist(), raw_times, strict=True):
            problem = (
                RowProblem(
                    file=name,
                    row=i + 1 if lines is None else int(lines[i]),
                    symbol=self._symbol_table[int(codes[i])],
                    time="" if raw is None else str(raw),
                    reason=(
                        Reason.UNPARSEABLE_VALUE if ok_time[i] else Reason.UNPARSEABLE_TIME
                    ).value,
                ),
                int(ts[i]) if ok_time[i] else None,
            )
            self._all_problems.append(problem)

    # -- ordering --------------------------------------------------------------------------

    def _order(self, rows: Columns) -> Columns:
        return rows.take(self._order_index(rows.ts, rows.symbol, rows.origin))

    def _order_index(self, ts: I64Array, symbol: I64Array, origin: I64Array) -> I64Array:
        """The permutation that puts rows of these keys in replay order (sets `_spacing`)."""
        perm, self._spacing = replay_order(ts, symbol, origin >> _ROW_BITS, self._symbol_table)
        return perm


def _check_zone(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown time zone {value!r}") from e
