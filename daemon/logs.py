"""Structured logs: one JSON object per line (orjson) on stderr, or text for a person.

stdout stays free for the human summary of a command. The log is passed down through
constructors; there is no global logger configuration.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Literal, TextIO

import orjson

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
Level = Literal["debug", "info", "warning", "error"]


class EventLog:
    """Writes events: `log.info("order_submitted", symbol="SPY", client_order_id=...)`."""

    def __init__(
        self, stream: TextIO | None = None, *, level: Level = "info", fmt: str = "json"
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._min = LEVELS[level]
        self._json = fmt == "json"

    def enabled(self, level: Level) -> bool:
        return LEVELS[level] >= self._min

    def log(self, level: Level, event: str, **fields: Any) -> None:
        if LEVELS[level] < self._min:
            return
        wall = time.time()
        if "time" in fields:
            # A line's `time` is always the wall clock when it was written; a caller's time is a
            # market time, and keeps its own field.
            fields["market_time"] = fields.pop("time")
        if self._json:
            record = {"time": _iso(wall), "level": level, "event": event, **fields}
            line = orjson.dumps(record, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        else:
            parts = " ".join(f"{k}={_text(v)}" for k, v in fields.items())
            line = f"{_iso(wall)} {level.upper():7} {event} {parts}".rstrip()
        self._stream.write(line + "\n")
        self._stream.flush()

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
