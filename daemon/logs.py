"""Structured logs: one JSON object per line (orjson) on stderr, or text for a person.

stdout stays free for the human summary of a command. The log is passed down through
constructors; there is no global logger configuration.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal, TextIO

import orjson

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_WRITE_AT_ONCE = LEVELS["warning"]  # lines this loud are never held (`EventLog.held`)
Level = Literal["debug", "info", "warning", "error"]


class EventLog:
    """Writes events: `log.info("order_submitted", symbol="SPY", client_order_id=...)`.

    Each line is written and flushed as it is logged, except info and debug lines inside
    `held()`.
    """

    def __init__(
        self, stream: TextIO | None = None, *, level: Level = "info", fmt: str = "json"
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._min = LEVELS[level]
        self._json = fmt == "json"
        self._held: list[str] | None = None  # lines logged inside `held()`, not written yet
        self._holder = 0  # the thread that holds them (other threads' lines are not held)
        self._second = (-1, "")  # the last wall-clock second formatted, and its text

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Write the info and debug lines logged inside (a slice's decision: one or two per
        order, hundreds) in one write and flush at the end, in their order, instead of one
        each. A warning or an error is written at once, after the lines held before it; a
        kill -9 inside loses at most the info lines since (the journal has what they say).
        Nested: the outermost writes. Only the lines of the thread that holds are held.
        """
        if self._held is not None:
            yield
            return
        lines: list[str] = []
        self._holder = threading.get_ident()
        self._held = lines
        try:
            yield
        finally:
            self._held = None
            if lines:
                self._write("".join(lines))

    def enabled(self, level: Level) -> bool:
        return LEVELS[level] >= self._min

    def log(self, level: Level, event: str, **fields: Any) -> None:
        if LEVELS[level] < self._min:
            return
        wall = self._wall()
        if "time" in fields:
            # A line's `time` is always the wall clock when it was written; a caller's time is a
            # market time, and keeps its own field.
            fields["market_time"] = fields.pop("time")
        if self._json:
            record = {"time": wall, "level": level, "event": event, **fields}
            line = orjson.dumps(record, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        else:
            parts = " ".join(f"{k}={_text(v)}" for k, v in fields.items())
            line = f"{wall} {level.upper():7} {event} {parts}".rstrip()
        held = self._held
        if held is None or threading.get_ident() != self._holder:
            self._write(line + "\n")
            return
        held.append(line + "\n")
        if LEVELS[level] >= _WRITE_AT_ONCE:
            # A warning or an error is on disk before the code goes on (the next step may be
            # the process's end): with the lines held before it, in order.
            self._write("".join(held))
            held.clear()

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()

    def _wall(self) -> str:
        """The wall clock as `_iso` writes it; the second's text is formatted once."""
        wall_s = time.time()
        second = int(wall_s)
        cached = self._second
        if cached[0] != second:
            cached = self._second = (second, _iso(second)[:-5])
        return f"{cached[1]}.{int(wall_s % 1 * 1000):03d}Z"

    def debug(self, event: str, **fields: Any) -> None:
        self.log("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self.log("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.log("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self.log("error", event, **fields)


def _iso(wall_s: float) -> str:
    tm = time.gmtime(wall_s)
    return time.strftime("%Y-%m-%dT%H:%M:%S", tm) + f".{int(wall_s % 1 * 1000):03d}Z"


def _text(value: Any) -> str:
    if isinstance(value, dict | list):
        return orjson.dumps(value, default=str).decode()
    return str(value)
