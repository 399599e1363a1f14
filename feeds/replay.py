"""Historical bars from CSV or Parquet files, merged in time order for replay.

A source is one file with a ``symbol`` column, or a folder of per-symbol files (``SPY.csv``,
``AAPL.parquet``; the symbol is the upper-cased file stem unless a ``symbol`` column says
otherwise). Column names are case-insensitive:

    time      the first of ``timestamp``, ``date``, ``time``, ``datetime``, ``t``
    prices    ``open high low close`` (or ``o h l c``), ``volume`` (or ``v``), required
    optional  ``trade_count`` (or ``n``), ``vwap`` (or ``vw``)

Time forms are those of `feeds.timestamps`. Every file is read when the source is opened:
problems with a whole file raise `SourceError`; a row whose time or a value cannot be parsed
becomes a `RowProblem` and the other rows still load. Empty price cells become NaN, which the
sanity check rejects.

Memory: when each file holds one symbol (a folder of per-symbol files, the usual layout) and
no stream is newest-first, the source streams. Opening it reads the files a batch at a time
(for Parquet files of number columns, only the time column) to note the problems, symbols,
span, spacing and the range's rows; iterating reads them again, a batch at a time, and merges
the symbols in replay order as it goes (`feeds.merge`). What it holds is a few batches, not
the history. Other layouts are read whole, once.

Order: all symbols merged by time, ties by symbol. Within one symbol the file's order is kept,
so a row that goes back in time arrives where it stands and the sanity check rejects it; only a
stream entirely in descending time order (newest first) is reversed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, field_validator

from feeds.bar import Bar
from feeds.columns import Columns, in_range, name_rank, replay_order
from feeds.datafile import (
    data_files,
    file_schema,
    read_batches,
    read_table,
    table_slices,
)
from feeds.days import describe_range, describe_span
from feeds.errors import SourceError
from feeds.merge import merge_streams, running_max
from feeds.rows import ROW_BITS, ROW_MASK, VALUES, RowParser, RowProblem, one_array
from feeds.spacing import SAMPLE_GAPS, check_spacing, typical_spacing
from feeds.timeframes import TIMEFRAME_NS, Timeframe, bar_spacing_ns
from feeds.timestamps import BoolArray, I64Array

__all__ = ["DataSettings", "ReplaySource", "RowProblem", "Timeframe"]
# Rows read at a time when streaming: what the source holds is a few batches per symbol.
_BATCH = 8192
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
class _FilePart:
    """One file's share of a streamed symbol: where to read it, and which of its rows (by row
    number) the range keeps, so that a second read skips the rest unparsed."""

    index: int
    path: Path
    stem: str | None
    labels: dict[str, str]
    checked: tuple[str, ...]  # the columns whose parse decides which rows make bars
    first_row: int
    last_row: int


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
        reusable: keep the whole parse so that `window` can cut other ranges from it.
        batch_rows: rows read at a time when streaming.

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
        batch_rows: int = _BATCH,
    ) -> None:
        if timezone is not None:
            _check_zone(timezone)
        self._timezone = timezone
        self._wanted = None if symbols is None else {s.strip().upper() for s in symbols}
        if self._wanted is not None and not self._wanted:
            raise ValueError("symbols is empty: pass None to keep every symbol")
        self._path = path
        self._batch_rows = batch_rows
        self._rows: Columns | None = None  # the range's rows, parsed whole
        self._parts: dict[int, list[_FilePart]] | None = None  # symbol code -> its files
        self._count = 0
        self._spacing: dict[int, int] = {}  # symbol code -> typical gap (`spacing`)
        self._every: Columns | None = None
        files = data_files(path, self._wanted)
        self._parser = RowParser(timezone, self._wanted)
        self._files: list[str] = []
        if not reusable:
            self._parts = self._scan(files, start_ns, end_ns)
        if not reusable and self._parts is None:
            # Several symbols in one file, or a stream newest-first: read whole.
            self._parser = RowParser(timezone, self._wanted)
            self._files = []
            self._count = 0
            self._spacing = {}
        if self._parts is None:
            parts = [self._load(i, f, stem) for i, (f, stem) in enumerate(files)]
        self._symbol_table = self._parser.symbol_table
        found = {self._symbol_table[c] for c in self._parser.present}
        if self._wanted is not None:
            missing = sorted(self._wanted - found)
            if missing:
                raise SourceError(f"{path}: no data for symbol(s) {', '.join(missing)}")
        self.symbols: tuple[str, ...] = tuple(sorted(found))
        self.rows_read = self._parser.rows_read
        self._symbol_names = np.array([*self._symbol_table, ""], dtype=object)
        if self._parts is not None:
            self._settle(start_ns, end_ns, timeframe)
            return
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
            self._rows = rows
            self._settle(start_ns, end_ns, timeframe)

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
        self._rows = every
        self._settle(start_ns, end_ns, timeframe)

    def _settle(
        self, start_ns: int | None, end_ns: int | None, timeframe: Timeframe | None
    ) -> None:
        """Take the range's problems; check the range and the spacing."""
        self._start_ns, self._end_ns = start_ns, end_ns
        if self._rows is not None:
            self._count = len(self._rows.ts)
        self.problems = [
            p
            for p, ts in self._parser.problems
            if ts is None or bool(in_range(np.array([ts], np.int64), start_ns, end_ns)[0])
        ]
        if self._count == 0 and (start_ns is not None or end_ns is not None):
            raise SourceError(
                f"{self._path}: no bars in {describe_range(start_ns, end_ns)} (the range "
                f"asked); the data {describe_span(self._parser.span)}"
            )
        if timeframe is not None:
            check_spacing(str(self._path), self.spacing(), timeframe)

    def hold(self) -> ReplaySource:
        """Read the range's rows into memory (once), so that the source can be iterated again
        without reading the files: for several replays of one range. Returns self."""
        if self._rows is None:
            held = Columns.empty(self._count)
            at = 0
            for window in self._windows():
                held.put(at, window)
                at += len(window.ts)
            self._rows, self._parts = held, None
        return self

    def spacing(self) -> dict[str, int]:
        """Symbol -> the typical gap between its bars, in ns (`feeds.spacing.typical_spacing`)."""
        return {self._symbol_table[code]: gap for code, gap in self._spacing.items()}

    def describe(self, origin: int) -> tuple[str, int]:
        """(file path as given, row number) of the row a bar came from."""
        return self._files[origin >> ROW_BITS], origin & ROW_MASK

    def __len__(self) -> int:
        """Number of bars the iteration yields."""
        return self._count

    def spacing_ns(self) -> int | None:
        """The spacing of the bars the iteration yields (`feeds.timeframes.bar_spacing_ns`):
        1 minute for minute files, 1 day for daily ones; None with fewer than two bars of a
        symbol."""
        windows = list(self._windows())
        if not windows:
            return None
        ts = np.concatenate([w.ts for w in windows])
        return bar_spacing_ns(ts, np.concatenate([w.symbol for w in windows]))

    def times(self) -> I64Array:
        """The bars' times in ns, in no particular order: reads no more of the files than it
        takes to know which rows make bars."""
        if self._parts is None:
            return self.timestamps()
        ts = [np.empty(0, np.int64)]
        for parts in self._parts.values():
            ts.extend(rows.ts for rows, _ in self._stream(parts, checked_only=True))
        return np.concatenate(ts)

    def timestamps(self) -> I64Array:
        """The bars' times in ns, in replay order, without making the bars (read-only)."""
        ts = np.concatenate([np.empty(0, np.int64), *(w.ts for w in self._windows())])
        ts.flags.writeable = False
        return ts

    def __iter__(self) -> Iterator[tuple[Bar, int]]:
        """Yield (bar, origin) in replay order; `describe(origin)` names the source row."""
        names = self._symbol_names
        return chain.from_iterable(rows.bars(names) for rows in self._windows())

    def _windows(self) -> Iterator[Columns]:
        """The rows in replay order, a window at a time."""
        if self._rows is not None:
            if len(self._rows.ts):
                yield self._rows
            return
        assert self._parts is not None
        codes = sorted(self._parts)
        rank = name_rank(self._symbol_table)
        yield from merge_streams(
            [self._stream(self._parts[c]) for c in codes], [int(rank[c]) for c in codes]
        )

    # -- streaming ---------------------------------------------------------------------------

    def _scan(
        self, files: list[tuple[Path, str | None]], start_ns: int | None, end_ns: int | None
    ) -> dict[int, list[_FilePart]] | None:
        """First read of every file, a batch at a time: note the problems, symbols and span,
        count the range's rows and take each symbol's spacing. Each symbol's files, or None
        when the files cannot be streamed (a file with rows of several symbols, a stream
        newest-first)."""
        parts: dict[int, list[_FilePart]] = {}
        samples: dict[int, list[I64Array]] = {}
        for index, (path, stem) in enumerate(files):
            name = str(path)
            self._files.append(name)
            schema = file_schema(path)
            table = lines = None
            if schema is None:
                table, lines = read_table(path)
                names, n = table.column_names, table.num_rows
            else:
                names, types, n = schema
            if n == 0:
                raise SourceError(f"{name}: empty file (no data rows)")
            labels = self._parser.labels(path, names, stem)
            # Number columns cannot fail to parse: the first read needs only times and symbols.
            numeric = schema is not None and all(
                pa.types.is_integer(types[c]) or pa.types.is_floating(types[c])
                for label, c in labels.items()
                if label in VALUES
            )
            read = [c for label, c in labels.items() if not numeric or label not in VALUES]
            batches = (
                read_batches(path, read, self._batch_rows)
                if table is None or lines is None
                else table_slices(table, lines, read, self._batch_rows)
            )
            code = first_row = last_row = first_ts = last_ts = None
            rising = False
            for batch, rows in batches:
                parsed, keep = self._parse(
                    name, batch, labels=labels, stem=stem, rows=rows, index=index, record=True
                )
                inside = keep & in_range(parsed.ts, start_ns, end_ns)
                if not inside.any():
                    continue
                symbols = parsed.symbol[inside]
                if (code is not None and int(symbols[0]) != code) or bool(
                    (symbols != symbols[0]).any()
                ):
                    return None
                code = int(symbols[0])
                ts = parsed.ts[inside]
                rising = rising or bool((ts[1:] > ts[:-1]).any())
                rising = rising or (last_ts is not None and int(ts[0]) > last_ts)
                first_ts = int(ts[0]) if first_ts is None else first_ts
                last_ts = int(ts[-1])
                picked = rows[inside]
                first_row = int(picked[0]) if first_row is None else first_row
                last_row = int(picked[-1])
                self._count += len(ts)
                held = samples.setdefault(code, [])
                room = SAMPLE_GAPS + 1 - sum(len(s) for s in held)
                if room > 0:
                    held.append(ts[:room].copy())
            del table, lines
            if code is None:
                continue
            assert first_row is not None
            assert last_row is not None
            assert first_ts is not None
            assert last_ts is not None
            if not rising and first_ts > last_ts:
                return None  # newest-first: the whole-read path reverses it
            parts.setdefault(code, []).append(
                _FilePart(
                    index=index,
                    path=path,
                    stem=stem,
                    labels=labels,
                    checked=tuple(read),
                    first_row=first_row,
                    last_row=last_row,
                )
            )
        for code, held in samples.items():
            ts = np.concatenate(held)
            self._spacing.update(typical_spacing(ts, np.full(len(ts), code, np.int64)))
        return parts

    def _stream(
        self, parts: list[_FilePart], *, checked_only: bool = False
    ) -> Iterator[tuple[Columns, I64Array]]:
        """One symbol's rows in the range, in stream order, a batch at a time, with the
        running maximum of their times (`feeds.merge`). With `checked_only`, only the columns
        that decide which rows make bars are read (the others are NaN)."""
        start_ns, end_ns = self._start_ns, self._end_ns
        carry: int | None = None
        for part in parts:
            name = self._files[part.index]
            columns = list(part.checked if checked_only else part.labels.values())
            for batch, rows in read_batches(part.path, columns, self._batch_rows):
                if rows[-1] < part.first_row:
                    continue
                if rows[0] > part.last_row:
                    break
                parsed, keep = self._parse(
                    name,
                    batch,
                    labels=part.labels,
                    stem=part.stem,
                    rows=rows,
                    index=part.index,
                    record=False,
                )
                keep &= in_range(parsed.ts, start_ns, end_ns)
                if not keep.any():
                    continue
                kept = parsed if bool(keep.all()) else parsed.take(keep)
                running = running_max(kept.ts, carry)
                carry = int(running[-1])
                yield kept, running

    def _parse(
        self,
        name: str,
        batch: Any,
        *,
        labels: dict[str, str],
        stem: str | None,
        rows: I64Array,
        index: int,
        record: bool,
    ) -> tuple[Columns, BoolArray]:
        present = set(batch.column_names)
        columns = {label: one_array(batch.column(c)) for label, c in labels.items() if c in present}
        return self._parser.parse(
            name, columns, stem=stem, rows=rows, file_index=index, record=record
        )

    # -- loading whole ---------------------------------------------------------------------

    def _load(self, file_index: int, path: Path, stem: str | None) -> Columns:
        name = str(path)
        self._files.append(name)
        table, lines = read_table(path)
        n = table.num_rows
        if n == 0:
            raise SourceError(f"{name}: empty file (no data rows)")
        labels = self._parser.labels(path, table.column_names, stem)
        rows = np.arange(1, n + 1, dtype=np.int64) if lines is None else lines
        parsed, keep = self._parse(
            name, table, labels=labels, stem=stem, rows=rows, index=file_index, record=True
        )
        # Most files have no bad row: no copy of every column then.
        return parsed if bool(keep.all()) else parsed.take(keep)

    # -- ordering --------------------------------------------------------------------------

    def _order(self, rows: Columns) -> Columns:
        return rows.take(self._order_index(rows.ts, rows.symbol, rows.origin))

    def _order_index(self, ts: I64Array, symbol: I64Array, origin: I64Array) -> I64Array:
        """The permutation that puts rows of these keys in replay order (sets `_spacing`)."""
        perm, self._spacing = replay_order(ts, symbol, origin >> ROW_BITS, self._symbol_table)
        return perm


def _check_zone(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown time zone {value!r}") from e
