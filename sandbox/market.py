"""The sandbox's virtual market: the bars to play and the clock over them.

Pure logic, no I/O beyond reading the data once: the clock moves only when the sandbox plays a
minute.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from feeds.bar import NS_PER_DAY, NS_PER_MINUTE, NS_PER_SECOND, Bar
from feeds.calendar import SessionCalendar
from feeds.days import local_midnight_ns
from feeds.errors import ConfigError
from feeds.replay import ReplaySource

NY = "America/New_York"
_UNITS = ((NS_PER_DAY, "day"), (3600 * NS_PER_SECOND, "hour"), (NS_PER_MINUTE, "minute"))


def spacing_text(ns: int) -> str:
    """A bar spacing for a person: ``1 day``, ``5 minutes``, ``30 seconds``."""
    for unit, name in _UNITS:
        if ns % unit == 0:
            count = ns // unit
            return f"{count} {name}{'s' if count != 1 else ''}"
    seconds = ns / NS_PER_SECOND
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"


class Market:
    """The bars to play and the virtual clock over them.

    Minutes are the bars' distinct timestamps in order. Minutes ``[0, played)`` are in the past:
    served by the historical endpoint, never streamed again.

    Args:
        data: a file or folder `ReplaySource` reads: one-minute bars.
        symbols: keep only these symbols; None keeps all.
        start: first exchange-local date to play; None: from the first bar.
        warm_minutes: minutes already in the past at start.

    Raises:
        SourceError: the data cannot be read.
        ConfigError: no bars, bars not one minute apart (the message names the file and the
            spacing found), or more warm minutes than there are minutes.
    """

    def __init__(
        self,
        data: Path,
        *,
        symbols: Sequence[str] | None,
        start: dt.date | None,
        warm_minutes: int,
        calendar: SessionCalendar,
    ) -> None:
        self.calendar = calendar
        # The calendar learns its zone only once built: the clock needs it from the start.
        self.tz: dt.tzinfo = ZoneInfo(NY)
        start_ns = None if start is None else local_midnight_ns(start, NY)
        source = ReplaySource(data, symbols=symbols, start_ns=start_ns)
        self.symbols: tuple[str, ...] = source.symbols
        self.minutes: list[int] = []
        self.by_minute: list[list[Bar]] = []
        self.by_symbol: dict[str, list[Bar]] = {s: [] for s in self.symbols}
        # The smallest step between minutes, and where a bar that far from the previous one
        # came from: anything but one minute is not minute data.
        step_ns, step_origin = 0, 0
        for bar, origin in source:
            if not self.minutes or self.minutes[-1] != bar.ts:
                gap = bar.ts - self.minutes[-1] if self.minutes else 0
                if gap > 0 and (step_ns == 0 or gap < step_ns):
                    step_ns, step_origin = gap, origin
                self.minutes.append(bar.ts)
                self.by_minute.append([])
            self.by_minute[-1].append(bar)
            self.by_symbol[bar.symbol].append(bar)
        self.ts_by_symbol = {s: [b.ts for b in bars] for s, bars in self.by_symbol.items()}
        if not self.minutes:
            raise ConfigError(f"{data}: no bars to play")
        if step_ns not in (0, NS_PER_MINUTE):
            file, _ = source.describe(step_origin)
            raise ConfigError(
                f"{file}: bars {spacing_text(step_ns)} apart; the sandbox serves 1-minute bars "
                "(give it minute data)"
            )
        if not 0 <= warm_minutes <= len(self.minutes):
            raise ConfigError(
                f"{data}: {warm_minutes} warm minutes asked for, but the data hold "
                f"{len(self.minutes)} minutes (0..{len(self.minutes)})"
            )
        self.played = warm_minutes
        self.now_ns = (
            self.minutes[warm_minutes - 1] + NS_PER_MINUTE if warm_minutes else self.minutes[0]
        )

    @property
    def exhausted(self) -> bool:
        """Whether every minute was played."""
        return self.played >= len(self.minutes)

    @property
    def last_minute_ns(self) -> int | None:
        """Start of the last minute in the past, None before the first."""
        return self.minutes[self.played - 1] if self.played else None

    def visible_end_ns(self) -> int:
        """Bars starting before this time are history (played or warm)."""
        return self.minutes[self.played] if not self.exhausted else self.minutes[-1] + 1

    def next_bars(self) -> dict[str, Bar]:
        """The bars of the next minute to play, by symbol (empty when exhausted)."""
        if self.exhausted:
            return {}
        return {b.symbol: b for b in self.by_minute[self.played]}

    def advance(self) -> list[Bar]:
        """Play the next minute: it becomes the past and `now_ns` its end. Returns its bars."""
        bars = self.by_minute[self.played]
        self.now_ns = self.minutes[self.played] + NS_PER_MINUTE
        self.played += 1
        return bars

    def last_bar(self, symbol: str) -> Bar | None:
        """The latest bar of `symbol` already in the past."""
        times = self.ts_by_symbol.get(symbol)
        if not times:
            return None
        i = bisect.bisect_left(times, self.visible_end_ns())
        return self.by_symbol[symbol][i - 1] if i else None

    def reference_price(self, symbol: str) -> Decimal | None:
        """Last close in the past, else the next open (to estimate an order's cost)."""
        bar = self.last_bar(symbol)
        if bar is not None:
            return Decimal(repr(bar.close))
        times = self.ts_by_symbol.get(symbol)
        if times:
            return Decimal(repr(self.by_symbol[symbol][0].open))
        return None

    def history(self, symbol: str, start_ns: int, end_ns: int) -> list[Bar]:
        """Past bars of `symbol` with start_ns <= t <= end_ns, in time order."""
        times = self.ts_by_symbol.get(symbol, [])
        end = min(end_ns + 1, self.visible_end_ns())
        lo = bisect.bisect_left(times, start_ns)
        hi = bisect.bisect_left(times, end)
        return self.by_symbol[symbol][lo:hi] if lo < hi else []
