"""Parsed bar rows held column-wise, and the array helpers the replay source cuts them with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from feeds.timestamps import BoolArray, F64Array, I64Array


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
        return Columns(
            ts=self.ts[index],
            symbol=self.symbol[index],
            origin=self.origin[index],
            open=self.open[index],
            high=self.high[index],
            low=self.low[index],
            close=self.close[index],
            volume=self.volume[index],
            trade_count=self.trade_count[index],
            trade_count_null=self.trade_count_null[index],
            vwap=self.vwap[index],
            vwap_null=self.vwap_null[index],
        )

    @staticmethod
    def concat(parts: Sequence[Columns]) -> Columns:
        """The rows of `parts`, one after another."""
        return Columns(
            **{
                name: np.concatenate([getattr(p, name) for p in parts])
                for name in Columns.__slots__
            }
        )


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
