"""When the open slice closes, and how bars the stream missed come back: pure, no I/O.

A slice (every symbol's bar of one timestamp) closes when every symbol has reported, when a bar
of a later timestamp arrives, or `grace_s` after its first bar arrived, but never while the data
stream is down or a backfill runs: after a (re)connect the missed bars are fetched from the
historical endpoint and merged, in time order, with what the stream delivered meanwhile, before
any slice after the gap closes. The driver owns the engine and the I/O; this keeps the rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from feeds.bar import Bar

_ALWAYS = -(2**63)


@dataclass(frozen=True, slots=True)
class Merged:
    """A backfill merged with the bars buffered while it ran, in (time, symbol) order.

    Attributes:
        added: bars that came from the backfill (not seen before).
        buffered: bars the stream delivered while the backfill ran.
    """

    bars: list[Bar]
    added: int
    buffered: int


class Slicer:
    """The slice rule's state: the first timestamp not yet seen, the grace deadline, and the
    backfill under way (with the stream's bars held meanwhile).

    Args:
        bar_ns: the bar length (a minute for Alpaca's stream).
        grace_s: how long after its first bar an incomplete slice closes anyway.
    """

    def __init__(self, *, bar_ns: int, grace_s: float) -> None:
        self.bar_ns = bar_ns
        self.grace_s = grace_s
        self.next_ts: int | None = None  # the first timestamp the engine has not seen
        self.grace_at: float | None = None  # monotonic deadline of the open slice
        self.backfilling = False
        self._held: list[Bar] = []

    # -- the open slice -------------------------------------------------------------------------

    def resume_after(self, ts: int) -> None:
        """Bars up to `ts` were seen (warm-up, or the last slice decided before a restart)."""
        self.next_ts = ts + self.bar_ns

    def seen(self, ts: int) -> None:
        """A bar at `ts` went into the engine's open slice."""
        if self.next_ts is None or ts >= self.next_ts:
            self.next_ts = ts + self.bar_ns

    def arm(self, now: float) -> None:
        """The open slice is incomplete: close it `grace_s` from now unless it completes."""
        if self.grace_at is None:
            self.grace_at = now + self.grace_s

    def closed(self) -> None:
        self.grace_at = None

    def due(self, now: float) -> bool:
        """The grace period of the open slice has passed."""
        return self.grace_at is not None and now >= self.grace_at

    # -- gaps and backfill ----------------------------------------------------------------------

    def begin_backfill(self, open_slice_ts: int | None) -> int | None:
        """Start a backfill after a (re)connect; returns the first timestamp to fetch, or None
        when there is nothing to fetch from (no bar seen yet) or one is under way."""
        start = open_slice_ts if open_slice_ts is not None else self.next_ts
        if start is None or self.backfilling:
            return None
        self.backfilling = True
        self._held = []
        return start

    def hold(self, bar: Bar) -> bool:
        """Keep a streamed bar aside while a backfill runs; False when none runs."""
        if not self.backfilling:
            return False
        self._held.append(bar)
        return True

    def end_backfill(
        self,
        fetched: Sequence[Bar],
        *,
        open_slice_ts: int | None,
        open_symbols: Iterable[str],
    ) -> Merged:
        """The backfill's bars at or after the open slice (or the first unseen timestamp), then
        the held stream bars, each (symbol, timestamp) once, in time order."""
        held, self._held = self._held, []
        self.backfilling = False
        seen: set[tuple[str, int]] = (
            {(s, open_slice_ts) for s in open_symbols} if open_slice_ts is not None else set()
        )
        floor = open_slice_ts if open_slice_ts is not None else (self.next_ts or _ALWAYS)
        merged: list[Bar] = []
        added = 0
        for bar in fetched:
            key = (bar.symbol, bar.ts)
            if bar.ts >= floor and key not in seen:
                seen.add(key)
                merged.append(bar)
                added += 1
        for bar in held:
            key = (bar.symbol, bar.ts)
            if key not in seen:
                seen.add(key)
                merged.append(bar)
        merged.sort(key=lambda b: (b.ts, b.symbol))
        return Merged(bars=merged, added=added, buffered=len(held))
