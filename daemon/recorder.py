"""A run's output files, written the same way by a replay and by a live session.

The recorder is the engine's listener for outputs. Every file streams as the run goes, so a
crash keeps what was written and memory does not grow with the run:

- equity.csv: a row per slice; fills.csv, risk_events.csv, targets.csv, rejected_bars.csv: a
  row per event;
- orders.csv: a row per order in the order orders were decided, written once the order (and
  every order decided before it) has ended; orders still open at the end are written then, with
  the status they have.

What the summary needs of the whole series (first and last slice, the deepest drawdown, the
last equity of each New York day for Sharpe) is kept as it streams. A live run flushes every
file at each slice; a replay lets the OS buffer them (the same rows, far fewer system calls).
"""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, TypeAlias, assert_never

import orjson

from brokers.orders import (
    ExecutionEvent,
    Fill,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    SubmitOrder,
)
from composer.targets import Targets
from daemon.engine import Decision
from daemon.logs import EventLog, Level
from daemon.research.metrics import SeriesFigures
from daemon.run_files import (
    EQUITY_COLUMNS,
    FILL_COLUMNS,
    ORDER_COLUMNS,
    RISK_COLUMNS,
    TERMINAL,
    cut_partial_line,
    plain_names,
    plain_row,
)
from daemon.timeutil import IsoFormatter
from portfolio.events import KillSwitchTripped
from portfolio.ledger import Ledger

# Opens one of a run's files for writing by its name ("equity.csv"): where the files go when
# they do not go into `out_dir` (memory, for a replay from Python that writes nothing to disk).
Opener: TypeAlias = Callable[[str], IO[str]]
CENT = Decimal("0.01")
# An order still open when this many later orders are waiting is written as it stands, so one
# stuck order cannot hold every later row in memory.
MAX_PENDING_ROWS = 10_000


@dataclass(slots=True)
class _OrderRow:
    order: SubmitOrder
    slice_ts: int
    risk: str
    status: str = "open"
    filled_qty: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)
    detail: str = ""


class Recorder:
    """Writes a run's files into `out_dir` and logs its decisions.

    Args:
        flush_each_slice: flush every file after each slice (a live run: a crash keeps all but
            the slice under way, whose targets rows `defer_targets` may put off); a replay
            leaves the buffering to the OS.
        quiet: a replay's logging: each order's lines (submitted, filled, canceled) at debug
            (the files hold every one), and a denial warned once per symbol and reason, the
            rest counted in one `orders_denied` warning at `close`.
        opener: open each file (and summary.json) with this instead of in `out_dir`, which is
            then neither created nor written.
    """

    def __init__(
        self,
        out_dir: Path,
        log: EventLog,
        *,
        flush_each_slice: bool = False,
        quiet: bool = False,
        opener: Opener | None = None,
    ) -> None:
        self.out_dir = out_dir
        self.opener = opener
        self.log = log
        self.flush_each_slice = flush_each_slice
        self.quiet = quiet
        self._order_level: Level = "debug" if quiet else "info"
        self._denied: dict[tuple[str, str], int] = {}
        self.figures = SeriesFigures()
        self._rows: dict[str, _OrderRow] = {}
        self._pending: deque[str] = deque()  # client order ids in decision order, not written
        self._files: list[IO[str]] = []
        self._last_denial: dict[str, str] = {}
        self._iso = IsoFormatter()
        self._cash: Decimal | None = None
        self._cash_text = ""
        self._last_weights: dict[str, float] | None = None
        self._last_strategy_weights: dict[str, float] | None = None
        self._targets_due: Targets | None = None
        # A live run's engine loop sets it, and calls `write_due_targets` once the slice's
        # orders are on their way.
        self.defer_targets = False
        self.started = False

    def start(self, *, journaled_fills: Callable[[], Sequence[Fill]] | None = None) -> None:
        """Create the output folder and open the files.

        Args:
            journaled_fills: reads a live run's journal's fills, in order (only when needed).
                A fills.csv this folder already has (a restart with the same `--out`) is then
                kept, and the fills it lacks (booked just before a kill, say) are appended,
                each once.
        """
        if self.opener is None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.started = True
        fills = self.out_dir / "fills.csv"
        if journaled_fills is not None and self.opener is None and fills.exists():
            self._fills = self._open_csv("fills.csv", FILL_COLUMNS, keep=True)
            self._append_missing(fills, journaled_fills())
        else:
            self._fills = self._open_csv("fills.csv", FILL_COLUMNS)
        self._fills_file = self._files[-1]
        self._rejected = self._open_csv(
            "rejected_bars.csv", ["file", "row", "symbol", "time", "reason"]
        )
        # Composed weight per symbol and capital weight per strategy, at each rebalance that
        # changed them (the weights hold until the next row of the same name).
        self._targets = self._open_csv("targets.csv", ["time", "kind", "name", "weight"])
        self._targets_file = self._files[-1]
        self._orders_out = self._open_csv("orders.csv", ORDER_COLUMNS)
        self._orders_write = self._files[-1].write
        self._equity_out = self._open_csv("equity.csv", EQUITY_COLUMNS)
        self._equity_write = self._files[-1].write
        self._risk = self._open_csv("risk_events.csv", RISK_COLUMNS)
        if self.flush_each_slice:
            self.flush()  # the headers: a kill -9 before the first slice leaves no empty file

    def _open_csv(self, name: str, header: list[str], *, keep: bool = False) -> Any:
        """A csv writer on a new file, or (keep) on the end of the file there."""
        path = self.out_dir / name
        if keep:
            cut_partial_line(path)
        fresh = not keep or path.stat().st_size == 0
        if self.opener is not None:
            handle = self.opener(name)
        else:
            handle = path.open("a" if keep else "w", newline="", encoding="utf-8")
        self._files.append(handle)
        writer = csv.writer(handle, lineterminator="\n")
        if fresh:
            writer.writerow(header)
        return writer

    def _append_missing(self, path: Path, journaled: Sequence[Fill]) -> None:
        """Append the journal's fills that fills.csv lacks, in the journal's order."""
        with path.open(newline="", encoding="utf-8") as handle:
            written = {row.get("execution_id") for row in csv.DictReader(handle)}
        missing = [f for f in journaled if f.execution_id not in written]
        for fill in missing:
            self._fill_row(fill)
        self._files[-1].flush()
        if missing:
            self.log.warning("fills_restored", file=str(path), fills=len(missing))

    def flush(self) -> None:
        for handle in self._files:
            handle.flush()

    # EngineListener

    def on_slice(self, ts: int, ledger: Ledger) -> None:
        cash = ledger.cash
        if cash is not self._cash:  # cash changes only on fills: the same Decimal until then
            self._cash, self._cash_text = cash, str(cash.quantize(CENT))
        equity = ledger.equity_float
        drawdown = ledger.drawdown
        # One string, as csv.writer would write it (no field needs quoting): every slice.
        self._equity_write(
            f"{self._iso(ts)},{self._cash_text},{equity:.2f},"
            f"{ledger.gross_exposure_float():.2f},{drawdown:.6f}\n"
        )
        self.figures.add(ts, equity, drawdown)
        if self.flush_each_slice:
            self.flush()

    def on_targets(self, targets: Targets) -> None:
        # The composer hands back the same dicts while nothing changed: write only changes.
        if (
            targets.weights is self._last_weights
            and targets.strategy_weights is self._last_strategy_weights
        ):
            return
        self._last_weights = targets.weights
        self._last_strategy_weights = targets.strategy_weights
        if self.log.enabled("debug"):
            self.log.debug(
                "targets",
                slice_time=self._iso(targets.ts),
                weights=targets.weights,
                strategy_weights=targets.strategy_weights,
            )
        if not self.defer_targets:
            self._write_targets(targets)
            return
        # Live: the rows (500 symbols: ~25 KB to format and write, and a write can wait on
        # the disk) are not part of the decision; they keep their order in the file.
        self.write_due_targets()
        self._targets_due = targets

    def write_due_targets(self) -> None:
        """Write the rows of the targets `defer_targets` put off, if not written yet."""
        targets = self._targets_due
        if targets is None:
            return
        self._targets_due = None
        self._write_targets(targets)
        if self.flush_each_slice:
            self._targets_file.flush()

    def _write_targets(self, targets: Targets) -> None:
        when = self._iso(targets.ts)
        weights = targets.weights
        if plain_names(weights):
            # One string per rebalance, as csv.writer would write it (no field needs quoting):
            # a quarter of the cost of a writerow per symbol (500 symbols: ~0.4 -> ~0.1 ms).
            self._targets_file.write(
                "".join([f"{when},symbol,{s},{w:.6f}\n" for s, w in weights.items()])
            )
        else:
            for symbol, weight in weights.items():
                self._targets.writerow([when, "symbol", symbol, f"{weight:.6f}"])
        for strategy, weight in targets.strategy_weights.items():
            self._targets.writerow([when, "strategy", strategy, f"{weight:.6f}"])

    def on_decision(self, decision: Decision) -> None:
        requested = decision.requested
        event = decision.risk_event
        symbol = decision.symbol
        if event is not None:
            approved = decision.order.qty if decision.order is not None else Decimal(0)
            self._risk.writerow(
                [
                    self._iso(requested.ts),
                    decision.risk,
                    requested.client_order_id,
                    symbol,
                    requested.side.value,
                    requested.qty,
                    approved,
                    event.reason,
                ]
            )
        if decision.order is not None:
            cid = decision.client_order_id
            self._rows[cid] = _OrderRow(
                order=decision.order, slice_ts=decision.slice_ts, risk=decision.risk
            )
            self._pending.append(cid)
            self._last_denial.pop(symbol, None)
            level: Level = self._order_level
            name = "order_submitted"
        else:
            # A strategy that keeps asking for what the risk gate keeps denying (say, every
            # minute after the kill switch) is one warning; the repeats are debug, and every
            # one is in risk_events.csv and counted.
            reason = event.reason if event is not None else ""
            repeat = self._last_denial.get(symbol) == reason
            self._last_denial[symbol] = reason
            if self.quiet:
                # A replay: once per symbol and reason; `close` sums up the rest.
                seen = self._denied.get((symbol, reason), 0)
                self._denied[(symbol, reason)] = seen + 1
                repeat = seen > 0
            level = "debug" if repeat else "warning"
            name = "order_denied"
        if self.log.enabled(level):
            self._log_decision(level, name, decision)

    def _log_decision(self, level: Level, name: str, decision: Decision) -> None:
        requested = decision.requested
        event = decision.risk_event
        fields: dict[str, Any] = {
            "slice_time": self._iso(decision.slice_ts),
            "symbol": decision.symbol,
            "client_order_id": decision.client_order_id,
            "signals": decision.signals,
            "target_weight": round(decision.target_weight, 6),
            "current_weight": round(decision.current_weight, 6),
            "side": requested.side.value,
            "qty": str(requested.qty),
            "risk": decision.risk,
        }
        if event is not None:
            fields["risk_reason"] = event.reason
        if decision.order is not None:
            fields["approved_qty"] = str(decision.order.qty)
        self.log.log(level, name, **fields)

    def on_kill_switch(self, event: KillSwitchTripped) -> None:
        when = self._iso(event.ts)
        self._risk.writerow(
            [
                when,
                "kill_switch",
                "",
                "",
                "",
                "",
                "",
                f"{event.reason}: {event.value:.4f} >= {event.limit:.4f}",
            ]
        )
        self.log.warning(
            "kill_switch_tripped",
            market_time=when,
            reason=event.reason,
            value=round(event.value, 6),
            limit=event.limit,
            equity=str(event.equity),
        )

    def on_execution(self, event: ExecutionEvent, applied: bool) -> None:
        cid = event.client_order_id
        row = self._rows.get(cid)
        match event:
            case OrderFilled() | OrderPartiallyFilled():
                if not applied:
                    self.log.warning(
                        "duplicate_fill_ignored",
                        client_order_id=cid,
                        execution_id=event.execution_id,
                    )
                    return
                self._on_fill(event, row)
            case OrderRejected():
                if row is not None:
                    row.status, row.detail = "rejected", event.reason
                self.log.warning(
                    "order_rejected", client_order_id=cid, symbol=event.symbol, reason=event.reason
                )
            case OrderCanceled():
                if row is not None:
                    row.status, row.detail = "canceled", event.reason
                self.log.log(
                    self._order_level, "order_canceled", client_order_id=cid, reason=event.reason
                )
            case OrderAccepted():
                pass
            case _:
                assert_never(event)
        if row is not None and row.status in TERMINAL:
            self._write_ended()

    def _fill_row(self, event: Fill) -> str:
        """Write one row of fills.csv; returns the fill's time as written."""
        when = self._iso(event.ts)
        self._fills.writerow(
            [
                when,
                event.client_order_id,
                event.symbol,
                str(event.side),
                str(event.qty),
                str(event.price),
                str(event.commission),
                event.execution_id,
            ]
        )
        return when

    def _on_fill(self, event: OrderFilled | OrderPartiallyFilled, row: _OrderRow | None) -> None:
        when = self._fill_row(event)
        if self.flush_each_slice:
            # Live: on disk as it is booked (the journal has it; a kill must not lose the row).
            self._fills_file.flush()
        if row is not None:
            row.filled_qty += event.qty
            row.notional += event.qty * event.price
            row.status = "filled" if isinstance(event, OrderFilled) else "partially_filled"
        if self.log.enabled(self._order_level):
            self.log.log(
                self._order_level,
                "order_filled",
                market_time=when,
                client_order_id=event.client_order_id,
                symbol=event.symbol,
                side=str(event.side),
                qty=str(event.qty),
                price=str(event.price),
            )

    def _write_ended(self) -> None:
        """Write the rows of every order, in decision order, up to the first still open."""
        pending, rows = self._pending, self._rows
        while pending and (rows[pending[0]].status in TERMINAL or len(pending) > MAX_PENDING_ROWS):
            cid = pending.popleft()
            self._write_order(cid, rows.pop(cid))

    def _write_order(self, cid: str, row: _OrderRow) -> None:
        fields = self._order_line(cid, row)
        line = plain_row(fields)
        if line is None:
            self._orders_out.writerow(fields)
        else:
            self._orders_write(line)

    def on_stale(self, symbol: str, ts: int, stale: bool) -> None:
        self.log.warning(
            "symbol_stale" if stale else "symbol_fresh", symbol=symbol, slice_time=self._iso(ts)
        )

    # Driver side

    def rejected_bar(self, file: str, row: int, symbol: str, time: str, reason: str) -> None:
        self._rejected.writerow([file, row, symbol, time, reason])
        if self.log.enabled("debug"):
            self.log.debug(
                "bar_rejected", file=file, row=row, symbol=symbol, time=time, reason=reason
            )

    def close(self) -> None:
        """Write the orders still open (with their status now) and close every file."""
        repeats = sum(self._denied.values()) - len(self._denied)
        if repeats > 0:
            by_reason: dict[str, int] = {}
            for (_, reason), count in sorted(self._denied.items()):
                by_reason[reason] = by_reason.get(reason, 0) + count
            self.log.warning(
                "orders_denied",
                denied=sum(by_reason.values()),
                by_reason=by_reason,
                symbols=sorted({symbol for symbol, _ in self._denied}),
                detail="each warned once above; every one is in risk_events.csv",
            )
        self.write_due_targets()
        for cid in self._pending:
            self._write_order(cid, self._rows[cid])
        self._pending.clear()
        self._rows.clear()
        for handle in self._files:
            handle.close()
        self._files.clear()

    def write_summary(self, summary: dict[str, Any]) -> None:
        """summary.json, written last: a folder without it is a run that did not finish."""
        data = orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        if self.opener is not None:
            with self.opener("summary.json") as handle:
                handle.write(data.decode())
            return
        # Written whole, then renamed into place: never a partial summary after a kill -9.
        path = self.out_dir / "summary.json"
        partial = path.with_suffix(".json.partial")
        partial.write_bytes(data)
        partial.replace(path)

    def _order_line(self, cid: str, row: _OrderRow) -> list[str]:
        """One row of orders.csv."""
        order = row.order
        avg = (row.notional / row.filled_qty).quantize(Decimal("0.0001")) if row.filled_qty else ""
        return [
            self._iso(order.ts),
            self._iso(row.slice_ts),
            cid,
            order.symbol,
            str(order.side),
            str(order.qty),
            str(order.order_type),
            "" if order.limit_price is None else str(order.limit_price),
            row.risk,
            row.status,
            str(row.filled_qty),
            str(avg),
            row.detail,
        ]
