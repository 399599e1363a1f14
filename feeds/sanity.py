"""Data-sanity checks: every bar passes here before anything decides on it.

`SanityChecker.check` returns the first rule a bar breaks, or None to accept it. The rules, in
the order they are applied:

1. ``non_finite``: open, high, low, close or volume (or vwap, when present) is NaN or infinite.
2. ``non_positive_price``: open, high, low or close is <= 0.
3. ``high_low_inconsistent``: high < max(open, close), low > min(open, close), or high < low.
4. ``negative_volume``: volume < 0.
5. ``duplicate``: the bar's ts equals the last ts seen for its symbol; ``time_backwards``: it is
   earlier. The last ts is advanced by every bar that got past rules 1-4, even one rejected by a
   later rule, so a repeat of a bar rejected as a price jump is still a duplicate.
6. ``outside_session`` (intraday bars only, ``bar_ns`` < 1 day): with ``session="regular"`` the
   interval [ts, ts + bar_ns) must lie within the regular session of its exchange-local date
   (minute bars: 09:30 <= ts and ts + 1 min <= close, so the 15:59 bar is in and 16:00 is out;
   holidays and early closes come from the calendar); ``"extended"``: within 04:00-20:00 local
   on session days; ``"any"``: no check. Daily bars are never checked against the session.
7. ``price_jump``: the close-to-close log return against the previous accepted close of the
   symbol, divided by sqrt(elapsed bars) so that overnight and weekend gaps are measured in
   per-bar units, exceeds ``jump_sigmas`` times the standard deviation of the previous
   ``jump_window`` such returns. No check before ``jump_min_obs`` returns. A rejected return
   does not enter the window and does not move the previous close, so a single bad spike is
   rejected and the next normal bar is compared with the bar before the spike. Two consecutive
   jumps to a consistent new level (the second bar is not a jump against the first) confirm a
   real level shift: the second bar is accepted and becomes the reference, so one gap never
   locks a symbol out. With ``jump_action="flag"`` a jump is accepted and counted in
   ``flagged``; the bar becomes the previous close but its return stays out of the window.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from feeds.bar import NS_PER_DAY, Bar
from feeds.calendar import SessionCalendar


class SanitySettings(BaseModel):
    """Settings of the data-sanity checks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    jump_sigmas: float = Field(default=10.0, gt=0)
    """Reject (or flag) a close-to-close log return beyond this many rolling std devs."""
    jump_window: int = Field(default=100, ge=2)
    """Number of past returns the rolling std is taken over."""
    jump_min_obs: int = Field(default=30, ge=2)
    """No jump check before this many returns of the symbol."""
    jump_action: Literal["reject", "flag"] = "reject"
    session: Literal["regular", "extended", "any"] = "regular"
    """Session a bar must lie in (intraday bars only)."""
    calendar: str = "XNYS"
    stale_after_slices: int = Field(default=10, ge=1)
    """A symbol with no accepted bar for this many slices is stale (used by the engine)."""


class Reason(StrEnum):
    """Why a bar or a source row was rejected."""

    NON_FINITE = "non_finite"
    NON_POSITIVE_PRICE = "non_positive_price"
    HIGH_LOW = "high_low_inconsistent"
    NEGATIVE_VOLUME = "negative_volume"
    DUPLICATE = "duplicate"
    BACKWARDS = "time_backwards"
    JUMP = "price_jump"
    OUTSIDE_SESSION = "outside_session"
    UNPARSEABLE_TIME = "unparseable_time"
    UNPARSEABLE_VALUE = "unparseable_value"


class _SymbolState:
    """Per-symbol memory: last ts, the reference close and the ring buffer of returns."""

    __slots__ = (
        "candidate_close",
        "candidate_ts",
        "count",
        "last_ts",
        "prev_close",
        "prev_ts",
        "ring",
        "since_recompute",
        "slot",
        "sum",
        "sum_sq",
    )

    def __init__(self, window: int) -> None:
        self.last_ts = -(2**63)
        self.prev_close = 0.0  # 0.0: no accepted bar yet
        self.prev_ts = 0
        self.candidate_close = 0.0  # close of the last jump-rejected bar, 0.0 if none
        self.candidate_ts = 0
        self.ring = [0.0] * window
        self.slot = 0
        self.count = 0
        self.sum = 0.0
        self.sum_sq = 0.0
        self.since_recompute = 0


class SanityChecker:
    """Applies the rules of the module docstring, keeping per-symbol state.

    Args:
        settings: the thresholds and the session rule.
        bar_ns: the bar interval; intraday (< 1 day) bars get the session check.
        calendar: the session calendar; None builds one from ``settings.calendar`` when the
            session check needs it.

    Attributes:
        flagged: jumps accepted because ``jump_action`` is ``"flag"``.
    """

    def __init__(
        self, settings: SanitySettings, *, bar_ns: int, calendar: SessionCalendar | None
    ) -> None:
        if bar_ns <= 0:
            raise ValueError(f"bar_ns must be > 0, got {bar_ns}")
        self._settings = settings
        self._bar_ns = bar_ns
        self._session = settings.session if bar_ns < NS_PER_DAY else "any"
        if calendar is None and self._session != "any":
            calendar = SessionCalendar(settings.calendar)
        self._calendar = calendar
        self._window = settings.jump_window
        self._min_obs = settings.jump_min_obs
        self._sigmas = settings.jump_sigmas
        self._flag = settings.jump_action == "flag"
        self._states: dict[str, _SymbolState] = {}
        # Cached session window of the current local day: [day_lo, day_hi) and the allowed
        # bar-start range [open_ns, last_start_ns] (empty when the day has no session).
        self._day_lo = 0
        self._day_hi = 0
        self._open_ns = 0
        self._last_start_ns = -1
        self.flagged = 0

    def check(self, bar: Bar) -> Reason | None:
        """Return the first rule `bar` breaks, or None to accept it (and remember it)."""
        o = bar.open
        h = bar.high
        lo = bar.low
        c = bar.close
        v = bar.volume
        # x * 0.0 is 0.0 for every finite x and NaN for NaN and +-inf.
        if o * 0.0 + h * 0.0 + lo * 0.0 + c * 0.0 + v * 0.0 != 0.0:
            return Reason.NON_FINITE
        vwap = bar.vwap
        if vwap is not None and vwap * 0.0 != 0.0:
            return Reason.NON_FINITE
        if o <= 0.0 or h <= 0.0 or lo <= 0.0 or c <= 0.0:
            return Reason.NON_POSITIVE_PRICE
        if h < o or h < c or lo > o or lo > c or h < lo:
            return Reason.HIGH_LOW
        if v < 0.0:
            return Reason.NEGATIVE_VOLUME

        state = self._states.get(bar.symbol)
        if state is None:
            state = self._states[bar.symbol] = _SymbolState(self._window)
        ts = bar.ts
        if ts <= state.last_ts:
            return Reason.DUPLICATE if ts == state.last_ts else Reason.BACKWARDS
        state.last_ts = ts

        if self._session != "any":
            if not (self._day_lo <= ts < self._day_hi):
                self._load_day(ts)
            if not (self._open_ns <= ts <= self._last_start_ns):
                return Reason.OUTSIDE_SESSION

        prev = state.prev_close
        if prev == 0.0:
            state.prev_close = c
            state.prev_ts = ts
            return None
        elapsed = (ts - state.prev_ts) / self._bar_ns
        scale = math.sqrt(elapsed) if elapsed > 1.0 else 1.0
        r = math.log(c / prev) / scale
        n = state.count
        if n >= self._min_obs:
            s = state.sum
            var = (state.sum_sq - s * s / n) / (n - 1)
            # Float error can make a tiny variance negative.
            limit = self._sigmas * math.sqrt(var) if var > 0.0 else 0.0
            if abs(r) > limit:
                return self._on_jump(state, ts, c)
        state.candidate_close = 0.0
        self._push(state, r)
        state.prev_close = c
        state.prev_ts = ts
        return None

    def _on_jump(self, state: _SymbolState, ts: int, c: float) -> Reason | None:
        if self._flag:
            self.flagged += 1
            state.prev_close = c
            state.prev_ts = ts
            return None
        cand = state.candidate_close
        if cand != 0.0:
            # Is this bar consistent with the previous rejected one? Then the level moved.
            elapsed = (ts - state.candidate_ts) / self._bar_ns
            r = math.log(c / cand) / (math.sqrt(elapsed) if elapsed > 1.0 else 1.0)
            n = state.count
            s = state.sum
            var = (state.sum_sq - s * s / n) / (n - 1)
            if abs(r) <= (self._sigmas * math.sqrt(var) if var > 0.0 else 0.0):
                state.candidate_close = 0.0
                self._push(state, r)
                state.prev_close = c
                state.prev_ts = ts
                return None
        state.candidate_close = c
        state.candidate_ts = ts
        return Reason.JUMP

    def _push(self, state: _SymbolState, r: float) -> None:
        ring = state.ring
        slot = state.slot
        if state.count == self._window:
            old = ring[slot]
            state.sum -= old
            state.sum_sq -= old * old
        else:
            state.count += 1
        ring[slot] = r
        state.sum += r
        state.sum_sq += r * r
        slot += 1
        state.slot = 0 if slot == self._window else slot
        state.since_recompute += 1
        if state.since_recompute >= self._window:
            # Running sums drift with float error; re-summing once per window keeps them
            # exact at O(1) amortized cost.
            state.since_recompute = 0
            live = ring if state.count == self._window else ring[: state.count]
            state.sum = math.fsum(live)
            state.sum_sq = math.fsum(x * x for x in live)

    def _load_day(self, ts: int) -> None:
        cal = self._calendar
        assert cal is not None  # set in __init__ whenever the session is checked
        self._day_lo, self._day_hi = cal.day_window(ts)
        regular = self._session == "regular"
        bounds = cal.bounds(ts) if regular else cal.extended_bounds(ts)
        if bounds is None:
            self._open_ns, self._last_start_ns = 0, -1
        else:
            self._open_ns = bounds[0]
            self._last_start_ns = bounds[1] - self._bar_ns
