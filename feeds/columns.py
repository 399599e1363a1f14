"""Parsed bar rows held column-wise, and the array helpers the replay source cuts them with."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any

import numpy as np

from feeds.bar import Bar
from feeds.spacing import typical_spacing
from feeds.timestamps import BoolArray, F64Array, I64Array

_CHUNK = 16_384  # bars made at a time


@dataclass(slots=True)
class Columns:
    """Parsed rows of one or more files, column-wise (`feeds.replay.ReplaySource`)."""

    ts: I64Array
    symbol: I64Array  # index into the source's symbol table
    origin: I64Array
    open: F64Array
    high: F64Array
    low: F64Array
    close: F64Array
    volume: F64Array
    trade_count: I64Array
    trade_count_null: BoolArray
    vwap: F64Array
    vwap_null: BoolArray

    def take(self, index: Any) -> Columns:
        """The rows at `index` (indices or a mask)."""
        return Columns(**{name: getattr(self, name)[index] for name in Columns.__slots__})

    def bars(self, names: Any) -> Iterator[tuple[Bar, int]]:
        """(bar, origin) of each row; `names` holds the symbol of each code (numpy objects).

        Built of C iterators (chain, zip, map) over chunks of rows: no Python frame per bar.
        """
        return chain.from_iterable(
            self._chunk(names, lo, lo + _CHUNK) for lo in range(0, len(self.ts), _CHUNK)
        )

    def _chunk(self, names: Any, lo: int, hi: int) -> Iterator[tuple[Bar, int]]:
        # `tuple.__new__(Bar, row)` makes a Bar without calling a Python-level __new__ (no
        # argument parsing, no defaults): with map and zip the whole per-row loop runs in C.
        bars = map(
            tuple.__new__,
            repeat(Bar),
            zip(
                names[self.symbol[lo:hi]].tolist(),
                self.ts[lo:hi].tolist(),
                self.open[lo:hi].tolist(),
                self.high[lo:hi].tolist(),
                self.low[lo:hi].tolist(),
                self.close[lo:hi].tolist(),
                self.volume[lo:hi].tolist(),
                with_nulls(self.trade_count[lo:hi], self.trade_count_null[lo:hi]),
                with_nulls(self.vwap[lo:hi], self.vwap_null[lo:hi]),
                strict=True,
            ),
        )
        return zip(bars, self.origin[lo:hi].tolist(), strict=True)

    @staticmethod
    def empty(n: int) -> Columns:
        """`n` rows to fill (`put`)."""
        kinds: dict[str, Any] = dict.fromkeys(Columns.__slots__, np.float64)
        kinds |= dict.fromkeys(("ts", "symbol", "origin", "trade_count"), np.int64)
        kinds |= dict.fromkeys(("trade_count_null", "vwap_null"), np.bool_)
        return Columns(**{name: np.empty(n, kind) for name, kind in kinds.items()})

    def put(self, at: int, rows: Columns) -> None:
        """Copy `rows` into these from row `at` on."""
        end = at + len(rows.ts)
        for name in Columns.__slots__:
            getattr(self, name)[at:end] = getattr(rows, name)

    @staticmethod
    def concat(parts: Sequence[Columns]) -> Columns:
        """The rows of `parts`, one after another."""
        names = Columns.__slots__
        return Columns(
            **{name: np.concatenate([getattr(p, name) for p in parts]) for name in names}
        )

    @staticmethod
    def gather(parts: Sequence[Columns], index: I64Array) -> Columns:
        """The rows of `parts` (one after another) at `index`, built column by column. It
        consumes `parts`: each of their columns is emptied once copied, so that the whole
        costs one copy of the data, not two."""
        out: dict[str, Any] = {}
        for name in Columns.__slots__:
            column = np.concatenate([getattr(p, name) for p in parts])
            for p in parts:
                setattr(p, name, np.empty(0, column.dtype))  # not a view: that would keep it
            out[name] = column[index]
            del column
        return Columns(**out)


def in_range(ts: I64Array, start_ns: int | None, end_ns: int | None) -> BoolArray:
    """Which of `ts` fall in [start_ns, end_ns) (None: unbounded)."""
    keep = np.ones(len(ts), np.bool_)
    if start_ns is not None:
        keep &= ts >= start_ns
    if end_ns is not None:
        keep &= ts < end_ns
    return keep


def with_nulls(values: I64Array | F64Array, null: BoolArray) -> list[Any]:
    """`values` as a list with None where `null` is set (a fast path for no or all nulls)."""
    if not null.any():
        return values.tolist()  # type: ignore[no-any-return]
    if null.all():
        return [None] * len(values)
    out: list[Any] = values.tolist()
    for i in np.flatnonzero(null).tolist():
        out[i] = None
    return out


def replay_order(
    ts: I64Array, symbol: I64Array, file_index: I64Array, symbol_names: Sequence[str]
) -> tuple[I64Array, dict[int, int]]:
    """The permutation that puts rows in replay order, and each symbol's typical spacing.

    Replay order: all symbols merged by time, ties by symbol name; within one symbol the files'
    order is kept (a row back in time stays where it stands), except that a (file, symbol)
    stream entirely newest-first is reversed. `file_index` is each row's file, `symbol` its
    code into `symbol_names`.
    """
    # Group by symbol keeping (file, row) order; stable, so each group is the symbol's
    # stream as the files have it.
    perm = np.lexsort((file_index, symbol))
    symbol = symbol[perm]
    file_index = file_index[perm]
    ts = ts[perm]
    n = len(ts)
    if n == 0:
        return perm, {}
    starts = np.flatnonzero(
        np.r_[True, (symbol[1:] != symbol[:-1]) | (file_index[1:] != file_index[:-1])]
    )
    del file_index
    ends = np.r_[starts[1:], n]
    # A (file, symbol) stream entirely newest-first is reversed.
    for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
        seg = ts[lo:hi]
        if hi - lo > 1 and seg[0] > seg[-1] and bool(np.all(seg[1:] <= seg[:-1])):
            perm[lo:hi] = perm[lo:hi][::-1].copy()
            ts[lo:hi] = seg[::-1].copy()
    # Each symbol's stream is contiguous here: its spacing costs one pass, no sort.
    spacing = typical_spacing(ts, symbol)
    # k-way merge that leaves out-of-order rows in place: sort by (running max of the
    # symbol's ts, symbol), stable on the stream order.
    sym_starts = np.flatnonzero(np.r_[True, symbol[1:] != symbol[:-1]])
    sym_ends = np.r_[sym_starts[1:], n]
    running = ts  # in place: ts is this function's own copy
    for lo, hi in zip(sym_starts.tolist(), sym_ends.tolist(), strict=True):
        np.maximum.accumulate(ts[lo:hi], out=running[lo:hi])
    # Symbols are compared by name, not by code (codes follow file order).
    return perm[np.lexsort((name_rank(symbol_names)[symbol], running))], spacing


def name_rank(names: Sequence[str]) -> I64Array:
    """The rank of each symbol code by the symbol's name."""
    order = np.argsort(np.array(list(names), dtype=object), kind="stable")
    return np.asarray(np.argsort(order), dtype=np.int64)
