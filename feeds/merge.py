"""Per-symbol streams of parsed rows merged in replay order, a window at a time.

Replay order (`feeds.columns.replay_order`) sorts rows by (running maximum of the symbol's
time, symbol name), keeping each symbol's stream order. That key never decreases along a
stream, so the streams can be merged as they are read: rows whose key is below the smallest
key any stream may still bring are final. Memory is bounded by the streams' batches, not by
the length of the data.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from feeds.columns import Columns
from feeds.timestamps import I64Array


@dataclass(slots=True)
class _Buffer:
    """Rows read from one stream and not yet handed out, with their merge keys."""

    rows: Columns
    running: I64Array  # running maximum of the stream's times (non-decreasing)


def running_max(ts: I64Array, carry: int | None) -> I64Array:
    """The running maximum of `ts`, continuing from `carry` (the previous batch's last)."""
    out = np.maximum.accumulate(ts)
    if carry is not None and len(out):
        np.maximum(out, carry, out=out)
    return out


def merge_streams(
    streams: Sequence[Iterator[tuple[Columns, I64Array]]], ranks: Sequence[int]
) -> Iterator[Columns]:
    """Merge `streams` in replay order, a window of rows at a time.

    Args:
        streams: one per symbol, each yielding non-empty (rows, running) batches in stream
            order, `running` the running maximum of the stream's times (`running_max`).
        ranks: each stream's symbol rank by name (ties of the running time go to the lower).
    """
    buffers: list[_Buffer | None] = [None] * len(streams)
    order = sorted(range(len(streams)), key=lambda i: ranks[i])
    live = set(range(len(streams)))

    def refill(i: int) -> None:
        batch = next(streams[i], None)
        if batch is None:
            live.discard(i)
            return
        held = buffers[i]
        buffers[i] = (
            _Buffer(*batch)
            if held is None
            else _Buffer(
                Columns.concat([held.rows, batch[0]]), np.concatenate([held.running, batch[1]])
            )
        )

    for i in range(len(streams)):
        refill(i)
    while True:
        # Nothing below `bound` can come from a stream still being read.
        lasts = [int(b.running[-1]) for i in live if (b := buffers[i]) is not None]
        bound = min(lasts, default=None)
        pieces: list[Columns] = []
        keys: list[I64Array] = []
        for i in order:
            held = buffers[i]
            if held is None:
                continue
            cut = (
                len(held.running)
                if bound is None
                else int(np.searchsorted(held.running, bound, side="left"))
            )
            if cut == 0:
                continue
            pieces.append(held.rows.take(slice(0, cut)))
            keys.append(held.running[:cut])
            rest = len(held.running) - cut
            buffers[i] = (
                None if rest == 0 else _Buffer(held.rows.take(slice(cut, None)), held.running[cut:])
            )
        if len(pieces) == 1:
            yield pieces[0]
        elif pieces:
            # The pieces are in rank order and each is sorted: a stable sort by time alone
            # gives (time, rank, stream order), and finds the sorted runs cheaply.
            perm = np.argsort(np.concatenate(keys), kind="stable")
            yield Columns.concat(pieces).take(perm)
        if bound is None:
            return
        for i in [i for i in live if (b := buffers[i]) is not None and b.running[-1] == bound]:
            refill(i)
