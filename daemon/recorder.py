"""The replay's outputs: CSV files, the decision log, and the summary's raw series.

It is the engine's listener in a replay. Files that grow with the run (fills, rejected bars)
stream to disk; the per-slice equity series is kept as compact columns because the summary needs
it (drawdown, Sharpe) and is written once at the end.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import numpy as np

from brokers.orders import (
    ExecutionEvent,
    OrderCanceled,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRejected,
    SubmitOrder,
)
from composer.targets import Targets
from daemon.engine import Decision
from daemon.logs import EventLog, Level
from daemon.timeutil import iso_utc, iso_utc_array
from portfolio.events import KillSwitchTripped
from portfolio.ledger import Ledger

CENT = Decimal("0.01")


@dataclass(slots=True)
class _OrderRow:
    order: SubmitOrder
    slice_ts: int
    risk: str
    status: str = "open"
    filled_qty: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)
    detail: str = ""


@dataclass(slots=True)
class EquitySeries:
    """One entry per slice. Cash is the ledger's exact Decimal (it changes only on fills, so
    this is a reference, not a copy); equity and gross exposure are the ledger's float mirrors,
    which are exact to far below a cent and cost no Decimal arithmetic per slice."""

    ts: list[int] = field(default_factory=list)
    cash: list[Decimal] = field(default_factory=list)
    equity: list[float] = field(default_factory=list)
    gross: list[float] = field(default_factory=list)
    drawdown: list[float] = field(default_factory=list)


_ORDER_COLUMNS = [
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
_EQUITY_COLUMNS = ["time", "cash", "equity", "gross_exposure", "drawdown"]
_TERMINAL = frozenset({"filled", "rejected", "canceled"})


class Recorder:
    """Writes a run's files into `out_dir` and logs its decisions.

    Args:
        streaming: a live run: each slice's equity row and each order's row (once it ended)
            are written and flushed as they happen, so a crash keeps them and memory stays
            flat over months; nothing is kept for a summary. A replay (False) buffers them for
            its summary and writes them at the end.
    """

    def __init__(self, out_dir: Path, log: EventLog, *, streaming: bool = False) -> None:
        self.out_dir = out_dir
        self.log = log
        self.streaming = streaming
        self.series = EquitySeries()
        self._orders: dict[str, _OrderRow] = {}
        self._files: list[IO[str]] = []
        self._last_denial: dict[str, str] = {}
        self._iso_ts = -1
        self._iso_text = ""
        self._last_weights: dict[str, float] | None = None
        self._last_strategy_weights: dict[str, float] | None = None
        self.started = False

    def start(self) -> None:
        """Create the output folder and open the streamed files."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.started = True
        self._fills = self._open_csv(
            "fills.csv",
            [
                "time",
                "client_order_id",
                "symbol",
                "side",
                "qty",
                "price",
                "commission",
                "execution_id",
            ],
        )
        self._rejected = self._open_csv(
            "rejected_bars.csv", ["file", "row", "symbol", "time", "reason"]
        )
        # Composed weight per symbol and capital weight per strategy, at each rebalance that
        # changed them (the weights hold until the next row of the same name).
        self._targets = self._open_csv("targets.csv", ["time", "kind", "name", "weight"])
        if self.streaming:
            self._orders_out = self._open_csv("orders.csv", _ORDER_COLUMNS)
            self._equity_out = self._open_csv("equity.csv", _EQUITY_COLUMNS)
        self._risk = self._open_csv(
            "risk_events.csv",
            [
                "time",
                "event",
                "client_order_id",
                "symbol",
                "side",
                "requested_qty",
                "approved_qty",
                "reason",
            ],
        )

    def _open_csv(self, name: str, header: list[str]) -> Any:  # a csv writer
        handle = (self.out_dir / name).open("w", newline="", encoding="utf-8")
        self._files.append(handle)
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        return writer

    # EngineListener

    def on_slice(self, ts: int, ledger: Ledger) -> None:
        if self.streaming:
            self._equity_out.writerow(
                [
                    iso_utc(ts),
                    str(ledger.cash.quantize(CENT)),
                    f"{ledger.equity_float:.2f}",
                    f"{ledger.gross_exposure_float():.2f}",
                    f"{ledger.drawdown:.6f}",
                ]
            )
            for handle in self._files:
                handle.flush()
            return
        series = self.series
        series.ts.append(ts)
        series.cash.append(ledger.cash)
        series.equity.append(ledger.equity_float)
        series.gross.append(ledger.gross_exposure_float())
        series.drawdown.append(ledger.drawdown)

    def on_targets(self, targets: Targets) -> None:
        # The composer hands back the same dicts while nothing changed: write only changes.
        if (
            targets.weights is not self._last_weights
            or targets.strategy_weights is not self._last_strategy_weights
        ):
            self._last_weights = targets.weights
            self._last_strategy_weights = targets.strategy_weights
            when = self._iso(targets.ts)
            write = self._targets.writerow
            for symbol, weight in targets.weights.items():
                write([when, "symbol", symbol, f"{weight:.6f}"])
            for strategy, weight in targets.strategy_weights.items():
                write([when, "strategy", strategy, f"{weight:.6f}"])
        if self.log.enabled("debug"):
            self.log.debug(
                "targets",
                slice_time=iso_utc(targets.ts),
                weights=targets.weights,
                strategy_weights=targets.strategy_weights,
            )

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
            self._orders[decision.client_order_id] = _OrderRow(
                order=decision.order, slice_ts=decision.slice_ts, risk=decision.risk
            )
            self._last_denial.pop(symbol, None)
            level: Level = "info"
            name = "order_submitted"
        else:
            # A strategy that keeps asking for what the risk gate keeps denying (say, every
            # minute after the kill switch) is one warning; the repeats are debug, and every
            # one is in risk_events.csv and counted.
            reason = event.reason if event is not None else ""
            repeat = self._last_denial.get(symbol) == reason
            self._last_denial[symbol] = reason
            level = "debug" if repeat else "warning"
            name = "order_denied"
        if not self.log.enabled(level):
            return
        fields: dict[str, Any] = {
            "slice_time": self._iso(decision.slice_ts),
            "symbol": symbol,
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

    def _iso(self, ts: int) -> str:
        """ISO time of `ts`, memoized for the run of calls about one slice."""
        if ts != self._iso_ts:
            self._iso_ts, self._iso_text = ts, iso_utc(ts)
        return self._iso_text

    def on_kill_switch(self, event: KillSwitchTripped) -> None:
        self._risk.writerow(
            [
                iso_utc(event.ts),
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
            time=iso_utc(event.ts),
            reason=event.reason,
            value=round(event.value, 6),
            limit=event.limit,
            equity=str(event.equity),
        )

    def on_execution(self, event: ExecutionEvent, applied: bool) -> None:
        row = self._orders.get(event.client_order_id)
        match event:
            case OrderFilled() | OrderPartiallyFilled():
                if not applied:
                    self.log.warning(
                        "duplicate_fill_ignored",
                        client_order_id=event.client_order_id,
                        execution_id=event.execution_id,
                    )
                    return
                self._fills.writerow(
                    [
                        iso_utc(event.ts),
                        event.client_order_id,
                        event.symbol,
                        str(event.side),
                        str(event.qty),
                        str(event.price),
                        str(event.commission),
                        event.execution_id,
                    ]
                )
                if row is not None:
                    row.filled_qty += event.qty
                    row.notional += event.qty * event.price
                    row.status = "filled" if isinstance(event, OrderFilled) else "partially_filled"
                self.log.info(
                    "order_filled",
                    time=iso_utc(event.ts),
                    client_order_id=event.client_order_id,
                    symbol=event.symbol,
                    side=str(event.side),
                    qty=str(event.qty),
                    price=str(event.price),
                )
            case OrderRejected():
                if row is not None:
                    row.status, row.detail = "rejected", event.reason
                self.log.warning(
                    "order_rejected",
                    client_order_id=event.client_order_id,
                    symbol=event.symbol,
                    reason=event.reason,
                )
            case OrderCanceled():
                if row is not None:
                    row.status, row.detail = "canceled", event.reason
                self.log.info(
                    "order_canceled", client_order_id=event.client_order_id, reason=event.reason
                )
            case _:
                pass
        if self.streaming and row is not None and row.status in _TERMINAL:
            self._orders_out.writerow(_order_line(event.client_order_id, row))
            del self._orders[event.client_order_id]

    def on_stale(self, symbol: str, ts: int, stale: bool) -> None:
        self.log.warning(
            "symbol_stale" if stale else "symbol_fresh", symbol=symbol, slice_time=iso_utc(ts)
        )

    # Driver side

    def rejected_bar(self, file: str, row: int, symbol: str, time: str, reason: str) -> None:
        self._rejected.writerow([file, row, symbol, time, reason])
        if self.log.enabled("debug"):
            self.log.debug(
                "bar_rejected", file=file, row=row, symbol=symbol, time=time, reason=reason
            )

    def close(self) -> None:
        """Write the buffered files (orders, equity) and close everything."""
        if self.streaming:
            for cid, row in self._orders.items():  # still open at the stop
                self._orders_out.writerow(_order_line(cid, row))
            self._orders.clear()
        for handle in self._files:
            handle.close()
        self._files.clear()
        if self.streaming:
            return
        with (self.out_dir / "orders.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(_ORDER_COLUMNS)
            for cid, row in self._orders.items():
                writer.writerow(_order_line(cid, row))
        self._write_equity()

    def _write_equity(self) -> None:
        series = self.series
        times = iso_utc_array(np.asarray(series.ts, dtype=np.int64))
        lines = [",".join(_EQUITY_COLUMNS) + "\n"]
        # Cash changes only on fills: the series holds the same Decimal until then.
        last_cash: Decimal | None = None
        cash_text = ""
        for t, c, e, g, d in zip(
            times, series.cash, series.equity, series.gross, series.drawdown, strict=True
        ):
            if c is not last_cash:
                last_cash, cash_text = c, str(c.quantize(CENT))
            lines.append(f"{t},{cash_text},{e:.2f},{g:.2f},{d:.6f}\n")
        (self.out_dir / "equity.csv").write_text("".join(lines), encoding="utf-8")


def _order_line(cid: str, row: _OrderRow) -> list[str]:
    """One row of orders.csv."""
    order = row.order
    avg = (row.notional / row.filled_qty).quantize(Decimal("0.0001")) if row.filled_qty else ""
    return [
        iso_utc(order.ts),
        iso_utc(row.slice_ts),
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
