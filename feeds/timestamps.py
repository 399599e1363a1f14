"""Turning source columns into UTC ns timestamps and float values, vectorized where possible.

Accepted time forms:
    - ISO-8601 with an offset or ``Z``: an instant.
    - Epoch numbers, unit by magnitude: seconds < 1e11 <= ms < 1e14 <= us < 1e17 <= ns.
    - Naive date-times: local time in `timezone` (UTC when None).
    - Date-only values: 00:00 local time in `timezone` (America/New_York when None).
    - Parquet timestamp (with or without zone) and date columns, by the same rules.

Each parser first tries one vectorized pyarrow cast for the whole column; if that fails it
parses row by row and reports the rows it could not parse instead of failing the file.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

I64Array: TypeAlias = np.ndarray[Any, np.dtype[np.int64]]
F64Array: TypeAlias = np.ndarray[Any, np.dtype[np.float64]]
BoolArray: TypeAlias = np.ndarray[Any, np.dtype[np.bool_]]

DATE_ONLY_ZONE = "America/New_York"
NAIVE_ZONE = "UTC"

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
_OFFSET = re.compile(r"(Z|z|[+-]\d{2}(:?\d{2})?)$")
# Epoch unit by magnitude: (upper bound of |value|, ns per unit).
_SECONDS_BELOW = 1e11
_MILLIS_BELOW = 1e14
_MICROS_BELOW = 1e17
_I64_MAX = 2**63 - 1
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ValueError)
_BLOCK = 4096


def parse_times(column: pa.Array, timezone: str | None) -> tuple[I64Array, BoolArray]:
    """Parse a time column to UTC ns.

    Args:
        column: the source column (string, timestamp, date or number).
        timezone: zone of naive values; None for the defaults of the module docstring.

    Returns:
        (ts_ns, ok): ``ok[i]`` is False where row i could not be parsed (ts_ns is 0 there).
    """
    typ = column.type
    n = len(column)
    if pa.types.is_timestamp(typ):
        if typ.tz is None:
            column = pc.assume_timezone(
                column.cast(pa.timestamp(typ.unit)),
                timezone or NAIVE_ZONE,
                ambiguous="earliest",
                nonexistent="earliest",
            )
        return _from_timestamps(column.cast(pa.timestamp("ns", tz="UTC")))
    if pa.types.is_date(typ):
        naive = column.cast(pa.date32()).cast(pa.timestamp("ns"))
        return _from_timestamps(_localize(naive, timezone or DATE_ONLY_ZONE))
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        return _from_epoch(column)
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        text = pc.utf8_trim_whitespace(column)
        try:
            return _strings_vectorized(text, timezone)
        except _CAST_ERRORS:
            pass
        # Some row does not fit: retry block by block, row by row only inside failing blocks.
        ts = np.zeros(n, np.int64)
        ok = np.zeros(n, np.bool_)
        for lo in range(0, n, _BLOCK):
            block = text.slice(lo, _BLOCK)
            hi = lo + len(block)
            try:
                ts[lo:hi], ok[lo:hi] = _strings_vectorized(block, timezone)
                continue
            except _CAST_ERRORS:
                pass
            for i, raw in enumerate(block.to_pylist(), start=lo):
                value = None if raw is None else parse_time_text(raw, timezone)
                if value is not None:
                    ts[i] = value
                    ok[i] = True
        return ts, ok
    return np.zeros(n, np.int64), np.zeros(n, np.bool_)


def parse_time_text(text: str, timezone: str | None) -> int | None:
    """Parse one time value (any form of the module docstring); None if it is not a time."""
    text = text.strip()
    if _NUMBER.fullmatch(text):
        try:
            value = int(text)
        except ValueError:
            value = float(text)  # type: ignore[assignment]
        return _epoch_ns(value)
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        is_date = _DATE_ONLY.fullmatch(text) is not None
        zone = timezone or (DATE_ONLY_ZONE if is_date else NAIVE_ZONE)
        parsed = parsed.replace(tzinfo=ZoneInfo(zone))
    delta = parsed - _EPOCH
    ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    # datetime keeps microseconds; keep sub-microsecond digits of the text if there are any.
    frac = re.search(r"\.(\d{7,9})", text)
    if frac is not None:
        ns += int(frac.group(1).ljust(9, "0")[6:9])
    # A date beyond 1677..2262 has no int64 ns timestamp: not a time this reader can keep.
    return ns if -_I64_MAX <= ns <= _I64_MAX else None


def parse_numbers(column: pa.Array) -> tuple[F64Array, BoolArray, BoolArray]:
    """Parse a numeric column to float64.

    Returns:
        (values, ok, null): empty cells are NaN with ``null`` True (not a problem); cells that
        are not numbers have ``ok`` False.
    """
    n = len(column)
    typ = column.type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        column = pc.utf8_trim_whitespace(column)
    null = numpy_of(column.is_null(), pa.bool_())
    try:
        values = numpy_of(column, pa.float64(), math.nan)
        return values, np.ones(n, np.bool_), null
    except _CAST_ERRORS:
        pass
    # Some cell is not a number: retry block by block, row by row only inside failing blocks.
    values = np.full(n, math.nan, np.float64)
    ok = np.ones(n, np.bool_)
    for lo in range(0, n, _BLOCK):
        block = column.slice(lo, _BLOCK)
        hi = lo + len(block)
        try:
            values[lo:hi] = numpy_of(block, pa.float64(), math.nan)
            continue
        except _CAST_ERRORS:
            pass
        for i, raw in enumerate(block.to_pylist(), start=lo):
            if raw is None:
                continue
            try:
                values[i] = float(raw)
            except (TypeError, ValueError):
                ok[i] = False
    return values, ok, null


def _strings_vectorized(text: pa.Array, timezone: str | None) -> tuple[I64Array, BoolArray]:
    valid = text.drop_null()
    if len(valid) == 0:
        return np.zeros(len(text), np.int64), np.zeros(len(text), np.bool_)
    first = str(valid[0].as_py())
    if _NUMBER.fullmatch(first):
        try:
            number = text.cast(pa.int64())
        except pa.ArrowInvalid:
            number = text.cast(pa.float64())
        return _from_epoch(number)
    if _DATE_ONLY.fullmatch(first):
        naive = text.cast(pa.date32()).cast(pa.timestamp("ns"))
        return _from_timestamps(_localize(naive, timezone or DATE_ONLY_ZONE))
    if _OFFSET.search(first):
        return _from_timestamps(text.cast(pa.timestamp("ns", tz="UTC")))
    # A naive date-time column: a date-only value mixed in would take the wrong default zone.
    if pc.any(pc.equal(pc.utf8_length(text), 10)).as_py():
        raise ValueError("mixed date-only and date-time values")
    naive = text.cast(pa.timestamp("ns"))
    return _from_timestamps(_localize(naive, timezone or NAIVE_ZONE))


def _localize(naive: pa.Array, zone: str) -> pa.Array:
    if zone == "UTC":
        return naive.cast(pa.timestamp("ns", tz="UTC"))
    # Ambiguous or skipped local times (DST changes, at night) take the earlier instant.
    return pc.assume_timezone(naive, zone, ambiguous="earliest", nonexistent="earliest")


def numpy_of(array: pa.Array, kind: pa.DataType, fill: float = 0) -> Any:
    """`array` cast to `kind` (int64, float64 or bool) as a new numpy array, nulls as `fill`.

    Read from the Arrow buffers: pyarrow's own conversion, and its scalars (``fill_null``),
    import pandas, ~70 MB of memory for a process that needs none (a walk-forward's parent,
    whose pages its forked workers share).
    """
    bools = pa.types.is_boolean(kind)
    array = array.cast(pa.uint8() if bools else kind)
    n = len(array)
    dtype = np.dtype(np.uint8 if bools else np.int64 if pa.types.is_integer(kind) else np.float64)
    if n == 0:
        return np.zeros(0, np.bool_ if bools else dtype)
    data = np.frombuffer(array.buffers()[1], dtype, count=n, offset=array.offset * dtype.itemsize)
    out = data.astype(np.bool_) if bools else data.copy()
    if array.null_count:
        bits = np.unpackbits(np.frombuffer(array.buffers()[0], np.uint8), bitorder="little")
        out[~bits[array.offset : array.offset + n].astype(np.bool_)] = fill
    return out


def _from_timestamps(column: pa.Array) -> tuple[I64Array, BoolArray]:
    ok = numpy_of(column.is_valid(), pa.bool_())
    ts = numpy_of(column, pa.int64())
    return ts, ok


def _from_epoch(column: pa.Array) -> tuple[I64Array, BoolArray]:
    ok = numpy_of(column.is_valid(), pa.bool_())
    if pa.types.is_integer(column.type):
        raw_int = numpy_of(column, pa.int64())
        magnitude = np.abs(raw_int.astype(np.float64))
        mult = _multipliers(magnitude)
        ok &= magnitude * mult < _I64_MAX
        ts = np.where(ok, raw_int, 0) * mult
    else:
        raw = numpy_of(column, pa.float64())
        magnitude = np.abs(raw)
        mult = _multipliers(magnitude)
        with np.errstate(invalid="ignore"):
            ok &= np.isfinite(raw) & (magnitude * mult < _I64_MAX)
        ts = np.round(np.where(ok, raw, 0.0) * mult).astype(np.int64)
    return ts.astype(np.int64), ok


def _multipliers(magnitude: F64Array) -> I64Array:
    return np.where(
        magnitude < _SECONDS_BELOW,
        1_000_000_000,
        np.where(
            magnitude < _MILLIS_BELOW, 1_000_000, np.where(magnitude < _MICROS_BELOW, 1_000, 1)
        ),
    ).astype(np.int64)


def _epoch_ns(value: float) -> int | None:
    magnitude = abs(value)
    if not math.isfinite(magnitude):
        return None
    if magnitude < _SECONDS_BELOW:
        mult = 1_000_000_000
    elif magnitude < _MILLIS_BELOW:
        mult = 1_000_000
    elif magnitude < _MICROS_BELOW:
        mult = 1_000
    else:
        mult = 1
    if magnitude * mult >= _I64_MAX:
        return None
    if isinstance(value, int):
        return value * mult
    return round(value * mult)
