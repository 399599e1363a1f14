"""What a run's CSV files hold (their columns) and the small text helpers the recorder writes
them with."""

from __future__ import annotations

import functools
from pathlib import Path

ORDER_COLUMNS = [
    "time",
    "slice_time",
    "client_order_id",
    "symbol",
    "side",
    "qty",
    "type",
    "limit_price",
    "risk",
    "status",
    "filled_qty",
    "avg_fill_price",
    "detail",
]
EQUITY_COLUMNS = ["time", "cash", "equity", "gross_exposure", "drawdown"]
FILL_COLUMNS = [
    "time",
    "client_order_id",
    "symbol",
    "side",
    "qty",
    "price",
    "commission",
    "execution_id",
]
RISK_COLUMNS = [
    "time",
    "event",
    "client_order_id",
    "symbol",
    "side",
    "requested_qty",
    "approved_qty",
    "reason",
]
TERMINAL = frozenset({"filled", "rejected", "canceled"})


_CSV_SPECIAL = frozenset(',"\r\n')


@functools.lru_cache(maxsize=64)
def _plain_keys(keys: frozenset[str]) -> bool:
    return not any(_CSV_SPECIAL.intersection(k) for k in keys)


def plain_names(weights: dict[str, float]) -> bool:
    """Whether no key of `weights` needs quoting in a CSV field (cached per key set)."""
    return _plain_keys(frozenset(weights))


def plain_row(fields: list[str]) -> str | None:
    """The row as `csv.writer(..., lineterminator="\\n")` writes it, when no field needs
    quoting (no comma, quote or line break in any); None when one does (write it with the
    writer then). A third of a `writerow`: a slice of 400 orders writes 400 rows."""
    line = ",".join(fields)
    if (
        not line
        or line.count(",") != len(fields) - 1
        or '"' in line
        or "\r" in line
        or "\n" in line
    ):
        return None  # (an empty line: the writer quotes a lone empty field)
    return line + "\n"


def cut_partial_line(path: Path) -> None:
    """Drop an unfinished last line (a write cut by a kill) so appended rows start clean."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)
