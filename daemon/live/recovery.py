"""After a restart: the engine as the journal left it, then compared with the broker's account.

Shared with the parity audit, which starts each replayed segment where the live run started it
(`restore_engine`). Positions the daemon did not open follow `state.unknown_positions`: adopt
(booked), ignore (left out of the ledger), refuse (stop, or halt once trading).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

from brokers.base import LiveBroker, PositionSnapshot, RestoredOrder
from brokers.orders import OrderFilled, OrderPartiallyFilled
from daemon.engine import Engine
from daemon.live.guard import JournalGuard
from daemon.logs import EventLog
from daemon.service.telemetry import Telemetry
from daemon.timeutil import iso_utc
from feeds.errors import ConfigError
from portfolio.journal import (
    Journal,
    JournalReader,
    JournalState,
    LedgerSnapshot,
    OrderRecord,
    positions_from_json,
    positions_to_json,
)
from portfolio.ledger import Ledger

_KEEP_DIFFERENCES = 50
Holdings = dict[str, tuple[Decimal, Decimal, Decimal]]


def _record_difference(journal: Journal, *, detail: dict[str, Any], ts: int) -> None:
    journal.difference("restart", detail, ts)


def positions_of(ledger: Ledger) -> dict[str, Decimal]:
    """The ledger's positions as symbol -> signed quantity (to compare with a broker's)."""
    return {symbol: pos.qty for symbol, pos in ledger.positions.items() if pos.qty}


def holdings(positions: Iterable[PositionSnapshot]) -> Holdings:
    """The broker's positions as the ledger holds them: (qty, average cost, last price)."""
    return {
        p.symbol: (p.qty, p.avg_entry_price, p.current_price or p.avg_entry_price)
        for p in positions
        if p.qty
    }


def restored_orders(journaled: JournalState) -> list[RestoredOrder]:
    """Every order the journal knows, as a broker adapter restores it."""
    return [
        RestoredOrder(
            client_order_id=o.client_order_id,
            symbol=o.symbol,
            side=o.side,
            qty=o.qty,
            broker_order_id=o.broker_order_id,
            filled_qty=o.filled_qty,
            filled_notional=o.filled_notional,
            terminal=o.terminal,
            ts=o.ts,
        )
        for o in journaled.orders
        if o.side is not None and o.qty is not None
    ]


def reopen_orders(engine: Engine, records: Iterable[OrderRecord]) -> None:
    """The journal's open orders back in the order book: the rebalancer counts what remains of
    each as pending until their events (replayed by reconciliation) close them."""
    for record in records:
        remaining = record.remaining()
        if remaining is not None:
            engine.order_book.on_submit(remaining)


def restore_engine(
    engine: Engine,
    ledger: LedgerSnapshot,
    *,
    kill_switch: tuple[bool, str | None],
    halted: tuple[bool, str | None],
    open_orders: Iterable[OrderRecord],
) -> None:
    """Put the engine where a live run started it: ledger, switches, open orders."""
    ledger.restore_into(engine.ledger)
    on, reason = kill_switch
    if on:
        engine.risk.latch(reason or "restored")
    if halted[0]:
        engine.halt()
    reopen_orders(engine, open_orders)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rebuilt:
    """What `rebuild_ledger` read: the segment, the snapshot it started from (None: the
    segment's start), the inputs after it (events and controls) and the fills applied."""

    segment: int
    snapshot: int | None
    inputs: int
    fills: int


def rebuild_ledger(reader: JournalReader, ledger: Ledger) -> Rebuilt:
    """Make `ledger` what the journal's last segment left: its latest snapshot (else its
    starting ledger), then the fills and adoptions journaled after it. The time taken follows
    what came after the snapshot, not the journal's length."""
    segment = reader.segments()[-1]
    snapshot = reader.last_snapshot(segment.id)
    start = snapshot.ledger if snapshot is not None else segment.ledger
    start.restore_into(ledger)
    fills = inputs = 0
    after = snapshot.seq if snapshot is not None else None
    for item in reader.book_inputs(segment.id, after_seq=after):
        inputs += 1
        match item.payload:
            case OrderFilled() | OrderPartiallyFilled() as fill:
                fills += ledger.apply_fill(fill)
            case {"action": "adopt", "cash": cash, "positions": positions}:
                ledger.adopt(Decimal(cash), positions_from_json(positions))
    return Rebuilt(
        segment=segment.id,
        snapshot=snapshot.id if snapshot is not None else None,
        inputs=inputs,
        fills=fills,
    )


class Recovery:
    """Restores the live engine from the journal and reconciles it with the broker's account.

    Args:
        policy: `state.unknown_positions` (adopt, ignore, refuse).
    """

    def __init__(
        self,
        *,
        engine: Engine,
        guard: JournalGuard,
        log: EventLog,
        telemetry: Telemetry,
        policy: str,
        symbols: list[str],
    ) -> None:
        self.engine = engine
        self.guard = guard
        self.log = log
        self.telemetry = telemetry
        self.policy = policy
        self.symbols = symbols
        self.differences: list[dict[str, Any]] = []  # the latest, for /state

    def rebuild_ledger(self, journal: Journal) -> None:
        """The ledger as the journal knows it: the last run's latest snapshot (or its starting
        ledger), then every fill and adoption journaled since; bars are never read."""
        rebuilt = rebuild_ledger(journal.reader(), self.engine.ledger)
        ledger = self.engine.ledger
        self.log.info(
            "ledger_restored",
            segment=rebuilt.segment,
            snapshot=rebuilt.snapshot,
            inputs=rebuilt.inputs,
            fills=rebuilt.fills,
            cash=str(ledger.cash),
            positions={s: str(p.qty) for s, p in sorted(ledger.positions.items())},
        )

    def restore_switches(self, journaled: JournalState) -> bool:
        """The kill switch and the halt as journaled; returns whether the kill switch is on."""
        engine = self.engine
        on, reason = journaled.kill_switch
        if on:
            engine.risk.latch(reason or "restored")
            self.log.warning("kill_switch_restored", reason=reason)
        halted, why = journaled.halted
        if halted:
            engine.halt()
            self.telemetry.halted(True)
            self.log.warning("halt_restored", reason=why)
        return on

    def reconcile_start(self, broker: LiveBroker, ts: int) -> None:
        """After a restart: compare the journal's ledger with the broker's account; record each
        difference; positions this daemon did not open are adopted, ignored or refused."""
        account = broker.account
        if account is None:
            return
        ledger = self.engine.ledger
        theirs = {p.symbol: p for p in broker.positions.values() if p.qty}
        mine = positions_of(ledger)
        differences: list[dict[str, Any]] = []
        for symbol in sorted(set(theirs) | set(mine)):
            broker_qty = theirs[symbol].qty if symbol in theirs else Decimal(0)
            if mine.get(symbol, Decimal(0)) != broker_qty:
                differences.append(
                    {
                        "symbol": symbol,
                        "ledger": str(mine.get(symbol, 0)),
                        "broker": str(broker_qty),
                    }
                )
        if account.cash != ledger.cash:
            differences.append(
                {"cash": True, "ledger": str(ledger.cash), "broker": str(account.cash)}
            )
        for difference in differences:
            self.guard.write(partial(_record_difference, detail=difference, ts=ts))
            self.log.warning("reconcile_difference", **difference)
            self.note("restart", difference, ts)
        self.telemetry.reconciliation(len(differences))
        unknown = sorted(set(theirs) - set(mine))
        if unknown and self.policy == "refuse":
            raise ConfigError(
                f"the account holds positions this daemon did not open ({', '.join(unknown)}) "
                "and state.unknown_positions is refuse: close them, or set adopt or ignore"
            )
        if not differences:
            return
        # The broker is the truth for cash and for what this daemon holds; positions it did not
        # open come in only under "adopt" ("ignore" leaves them out of the ledger).
        keep = theirs if self.policy == "adopt" else {s: p for s, p in theirs.items() if s in mine}
        positions = holdings(keep.values())
        cash = account.cash
        held = positions_to_json(positions)
        self.guard.write(lambda j: j.control("adopt", ts, cash=str(cash), positions=held))
        ledger.adopt(cash, positions)
        self.log.warning(
            "account_adopted",
            cash=str(cash),
            positions=sorted(positions),
            ignored=[s for s in unknown if s not in positions],
        )

    def adopt_account(self, broker: LiveBroker, *, restart: bool, policy: str) -> None:
        """Take the broker's account into the ledger: at a first start (restart=True: the
        session starts here) under `policy`; when following an account, at each reconcile."""
        account = broker.account
        if account is None:
            return
        positions = holdings(broker.positions.values())
        if positions and policy == "refuse":
            raise ConfigError(
                f"the account holds positions this daemon did not open ({', '.join(positions)}) "
                "and state.unknown_positions is refuse: close them, or set adopt or ignore"
            )
        ignored = sorted(positions) if policy == "ignore" else []
        if ignored:
            positions = {}
        differences = self.engine.ledger.adopt(account.cash, positions, restart=restart)
        self.log.info(
            "account_adopted",
            cash=str(account.cash),
            equity=str(account.equity),
            positions={s: str(q) for s, (q, _, _) in sorted(positions.items())},
            ignored=ignored,
            outside_universe=sorted(set(positions) - set(self.symbols)),
            differences=differences if not restart else [],
        )

    def check_positions(self, broker: LiveBroker, ts: int) -> None:
        """After a reconciliation (its missed fills applied): the ledger should hold what the
        broker holds. A difference is logged, not papered over."""
        theirs = {p.symbol: p.qty for p in broker.positions.values() if p.qty}
        mine = positions_of(self.engine.ledger)
        if theirs == mine:
            return
        difference = {
            "ledger": {s: str(q) for s, q in sorted(mine.items())},
            "broker": {s: str(q) for s, q in sorted(theirs.items())},
        }
        self.log.warning("position_difference", **difference)
        self.note("reconciliation", difference, ts)
        self.guard.write(lambda j: j.difference("reconciliation", difference, ts))

    def note(self, kind: str, detail: dict[str, Any], ts: int) -> None:
        """Keep the latest differences for /state (the journal keeps them all)."""
        self.differences.append({"kind": kind, "time": iso_utc(ts), **detail})
        del self.differences[:-_KEEP_DIFFERENCES]
