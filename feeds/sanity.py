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
   holidays and early closes come from the calendar; a coarser bar, aggregated from minutes,
   may end early: it starts on its timeframe's grid (from the open, or from midnight for
   clock-aligned buckets: 09:00 for hourly bars) at or before the session's last minute);
   ``"extended"``: within 04:00-20:00 local
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

import datetime as dt
import math
import operator
import sys
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from feeds.bar import NS_PER_DAY, NS_PER_MINUTE, NS_PER_SECOND, Bar
from feeds.calendar import SessionCalendar
from feeds.errors import DataError
from feeds.limits import MAX_WINDOW_BARS

_DEFAULT_CALENDAR = "XNYS"
MAX_SIGMAS = 1_000.0


class SanitySettings(BaseModel):
    """Settings of the data-sanity checks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    jump_sigmas: float = Field(default=10.0, gt=0, le=MAX_SIGMAS, allow_inf_nan=False)
    """Reject (or flag) a close-to-close log return beyond this many rolling std devs."""
    jump_window: int = Field(default=100, ge=2, le=MAX_WINDOW_BARS)
    """Number of past returns the rolling std is taken over."""
    jump_min_obs: int = Field(default=30, ge=2, le=MAX_WINDOW_BARS)
    """No jump check before this many returns of the symbol."""
    jump_action: Literal["reject", "flag"] = "reject"
    session: Literal["regular", "extended", "any"] = "regular"
    """Session a bar must lie in (intraday bars only)."""
    calendar: str = _DEFAULT_CALENDAR
    stale_after_slices: int = Field(default=10, ge=1, le=MAX_WINDOW_BARS)
    """A symbol with no accepted bar for this many slices is stale (used by the engine)."""

    @field_validator("calendar")
    @classmethod
    def _known_calendar(cls, value: str) -> str:
        if value != _DEFAULT_CALENDAR:  # the default is known: no need to load the calendars
            import exchange_calendars as xcals

            if value not in xcals.get_calendar_names():
                raise ValueError(
                    f"unknown exchange calendar {value!r} (an exchange_calendars code, e.g. XNYS)"
                )
        return value

    @model_validator(mode="after")
    def _min_obs_within_window(self) -> SanitySettings:
        if self.jump_min_obs > self.jump_window:
            raise ValueError(
                f"jump_min_obs ({self.jump_min_obs}) is above jump_window ({self.jump_window}): "
                "the jump check would never run"
            )
        return self


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


# Bounds that make the session test always pass (session "any", daily bars).
_NO_SESSION = (-(2**63), 2**63)
_MAX_FLOAT = sys.float_info.max
# Re-sum the jump window's running sums after about this many pushes (a whole number of
# windows): exact sums cost O(window) each time, so doing it rarely keeps the per-bar cost low.
_RESUM_PUSHES = 1024
# Module-level aliases: one global load instead of a module attribute lookup per call.
_log2 = math.log2
_fsum = math.fsum
_mul = operator.mul


class _SymbolState:
    """Per-symbol memory: last ts, the reference close and the ring buffer of returns.

    Returns are base-2 logs: the jump test is a ratio of a return to the window's std, so the
    base cancels out, and `math.log2` costs a fraction of `math.log` (which parses an optional
    base argument). ``limit_sq`` is the squared jump threshold (``jump_sigmas`` x the window's
    std) derived whenever a return is pushed, so that the per-bar test is ``r * r > limit_sq``
    without a sqrt; it is +inf until the window holds ``jump_min_obs`` returns.
    """

    __slots__ = (
        "candidate_close",
        "candidate_ts",
        "count",
        "last_ts",
        "limit_sq",
        "prev_close",
        "prev_ts",
        "ring",
        "slot",
        "sum",
        "sum_sq",
        "wraps",
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
        self.limit_sq = math.inf
        self.wraps = 0  # ring wraps since the sums were last re-summed


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

    __slots__ = (
        "_bar_ns",
        "_calendar",
        "_day_hi",
        "_day_lo",
        "_flag",
        "_last_start_ns",
        "_min_obs",
        "_open_ns",
        "_session",
        "_settings",
        "_sigmas_sq",
        "_states",
        "_window",
        "_wraps_per_resum",
        "flagged",
    )

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
        self._wraps_per_resum = -(-_RESUM_PUSHES // self._window)  # ceil
        self._min_obs = settings.jump_min_obs
        self._sigmas_sq = settings.jump_sigmas**2
        self._flag = settings.jump_action == "flag"
        self._states: dict[str, _SymbolState] = {}
        # Cached session of the current local day [day_lo, day_hi): the allowed bar-start
        # range [open_ns, last_start_ns] (empty when the day has no session). The per-bar test
        # is the range alone: a ts inside it is inside the cached day. With no session check
        # the range is unbounded, so that test never fails and the day is never loaded.
        self._day_lo = 0
        self._day_hi = 0
        if self._session == "any":
            self._open_ns, self._last_start_ns = _NO_SESSION
        else:
            self._open_ns, self._last_start_ns = 0, -1
        self.flagged = 0

    def check(self, bar: Bar) -> Reason | None:
        """Return the first rule `bar` breaks, or None to accept it (and remember it)."""
        # Hot: one unpack instead of attribute reads, locals only, and no calls on the common
        # path but log2 (and, every ~_RESUM_PUSHES bars of a symbol, the exact re-sum).
        sym, ts, o, h, lo, c, v, _, vw = bar
        # Rules 1-4 at once. A bar passes them only if this holds: lo > 0 and o, c within
        # [lo, h] bound every price, NaN fails every comparison, and the sum is finite only
        # if h and v are. The rare bar that fails it (a finite h + v may still overflow)
        # takes the slow path, which names the first rule broken or lets it continue.
        if not (
            lo > 0.0
            and o >= lo
            and h >= o
            and c >= lo
            and h >= c
            and v >= 0.0
            and h + v <= _MAX_FLOAT
            and (vw is None or vw - vw == 0.0)
        ):
            reason = _field_reason(bar)
            if reason is not None:
                return reason

        try:
            state = self._states[sym]
        except KeyError:
            state = self._states[sym] = _SymbolState(self._window)
        last = state.last_ts
        if ts <= last:
            return Reason.DUPLICATE if ts == last else Reason.BACKWARDS
        state.last_ts = ts

        if not (self._open_ns <= ts <= self._last_start_ns) and self._outside_session(ts):
            return Reason.OUTSIDE_SESSION

        prev = state.prev_close
        if prev == 0.0:
            state.prev_close = c
            state.prev_ts = ts
            return None
        gap = ts - state.prev_ts
        bar_ns = self._bar_ns
        r = _log2(c / prev) if gap == bar_ns else _log2_return(c, prev, gap, bar_ns)
        r_sq = r * r
        if r_sq > state.limit_sq:
            if self._flag:
                self.flagged += 1
                state.prev_close = c
                state.prev_ts = ts
                return None
            shift = self._level_shift(state, ts, c)
            if shift is None:
                return Reason.JUMP
            r = shift  # a confirmed new level: accepted and pushed like a normal return
            r_sq = r * r
        state.candidate_close = 0.0
        state.prev_close = c
        state.prev_ts = ts

        # Push r into the ring (inlined: this runs for nearly every bar).
        ring = state.ring
        slot = state.slot
        n = state.count
        window = self._window
        if n == window:
            old = ring[slot]
            total = state.sum - old + r
            total_sq = state.sum_sq - old * old + r_sq
        else:
            n += 1
            state.count = n
            total = state.sum + r
            total_sq = state.sum_sq + r_sq
        ring[slot] = r
        slot += 1
        if slot == window:
            # The ring is full at its first wrap (slot and count advance together until then).
            slot = 0
            state.wraps += 1
            if state.wraps >= self._wraps_per_resum:
                # Running sums drift with float error; re-summing them exactly every
                # _RESUM_PUSHES or so bars bounds the drift at a small amortized cost.
                state.wraps = 0
                total = _fsum(ring)
                total_sq = _fsum(map(_mul, ring, ring))
        state.slot = slot
        state.sum = total
        state.sum_sq = total_sq
        if n >= self._min_obs:
            var = (total_sq - total * total / n) / (n - 1)
            # Float error can make a tiny variance negative: then any nonzero return jumps.
            state.limit_sq = self._sigmas_sq * var if var > 0.0 else 0.0
        return None

    def _level_shift(self, state: _SymbolState, ts: int, c: float) -> float | None:
        """The return to accept if this jump confirms the previous rejected bar's level.

        Returns None (and makes this bar the candidate) when it does not.
        """
        cand = state.candidate_close
        if cand != 0.0:
            # Is this bar consistent with the previous rejected one? Then the level moved.
            r = _log2_return(c, cand, ts - state.candidate_ts, self._bar_ns)
            if r * r <= state.limit_sq:
                return r
        state.candidate_close = c
        state.candidate_ts = ts
        return None

    def _outside_session(self, ts: int) -> bool:
        """Whether `ts` is outside the allowed range, after moving the cache to its day."""
        if not (self._day_lo <= ts < self._day_hi):
            self._load_day(ts)
        return not (self._open_ns <= ts <= self._last_start_ns)

    def _load_day(self, ts: int) -> None:
        cal = self._calendar
        assert cal is not None  # set in __init__ whenever the session is checked
        regular = self._session == "regular"
        try:
            self._day_lo, self._day_hi = cal.day_window(ts)
            bounds = cal.bounds(ts) if regular else cal.extended_bounds(ts)
        except ValueError as e:
            moment = dt.datetime.fromtimestamp(ts // NS_PER_SECOND, dt.UTC)
            raise DataError(
                f"{e}; a bar at {moment:%Y-%m-%dT%H:%M:%SZ} is out of the calendar's years "
                "(sanity.session: any replays bars without a session check)"
            ) from None
        if bounds is None:
            self._open_ns, self._last_start_ns = 0, -1
        else:
            # A bucket aggregated from minutes may be shorter than the bar: the last of a
            # session (15:30 for 1Hour bars), or the first when buckets align to the clock
            # (stamped 09:00, holding 09:30-09:59). Its start is what must be in the session.
            bar_ns = self._bar_ns
            open_ns, last_ns = bounds[0], bounds[1] - NS_PER_MINUTE
            self._open_ns = open_ns - (open_ns - self._day_lo) % bar_ns
            self._last_start_ns = max(
                last_ns - (last_ns - open_ns) % bar_ns, last_ns - (last_ns - self._day_lo) % bar_ns
            )


def _field_reason(bar: Bar) -> Reason | None:
    """The first of rules 1-4 that `bar` breaks, or None."""
    _, _, o, h, lo, c, v, _, vw = bar
    # x * 0.0 is 0.0 for every finite x and NaN for NaN and +-inf.
    if o * 0.0 + h * 0.0 + lo * 0.0 + c * 0.0 + v * 0.0 != 0.0:
        return Reason.NON_FINITE
    if vw is not None and vw * 0.0 != 0.0:
        return Reason.NON_FINITE
    if o <= 0.0 or h <= 0.0 or lo <= 0.0 or c <= 0.0:
        return Reason.NON_POSITIVE_PRICE
    if h < o or h < c or lo > o or lo > c or h < lo:
        return Reason.HIGH_LOW
    if v < 0.0:
        return Reason.NEGATIVE_VOLUME
    return None


def _log2_return(c: float, prev: float, gap_ns: int, bar_ns: int) -> float:
    """log2(c / prev), over a gap of more than one bar scaled to per-bar units."""
    if gap_ns == bar_ns:
        return _log2(c / prev)
    elapsed = gap_ns / bar_ns
    return _log2(c / prev) / (math.sqrt(elapsed) if elapsed > 1.0 else 1.0)
