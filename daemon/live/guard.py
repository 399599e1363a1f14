"""No journal, no trade: every write of the live daemon goes through one guard.

A write that fails halts the engine (no order leaves without its intent on disk), logs
`journal_failed` once, and fails readiness until a write succeeds again and an operator resumes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from brokers.orders import ExecutionEvent
from daemon.config import LoadedConfig
from daemon.logs import EventLog
from portfolio.journal import Journal, JournalError, LedgerSnapshot
from portfolio.ledger import Ledger


class JournalGuard:
    """The live daemon's journal, or None when it runs without one (tests of other parts).

    Args:
        on_failed: called on every failed write (the daemon halts the engine there).
    """

    def __init__(
        self, journal: Journal | None, *, log: EventLog, on_failed: Callable[[], None]
    ) -> None:
        self.journal = journal
        self.log = log
        self.failed: str | None = None
        self._on_failed = on_failed

    def write(self, write: Callable[[Journal], Any]) -> bool:
        """Run one write; False (trading halted) when it failed."""
        journal = self.journal
        if journal is None:
            return True
        try:
            write(journal)
        except JournalError as e:
            self.broken(str(e))
            return False
        return True

    def events(self, events: Sequence[ExecutionEvent]) -> list[bool]:
        """Journal execution events (one transaction) before the ledger applies them; per
        event, False for a fill journaled before (a duplicate). While the journal is broken
        the broker's truth is still applied."""
        journal = self.journal
        if journal is None or self.failed is not None:
            return [True] * len(events)
        try:
            return journal.events(events)
        except JournalError as e:
            self.broken(str(e))
            return [True] * len(events)

    def begin_segment(self, *, mode: str, loaded: LoadedConfig, ledger: Ledger, ts: int) -> None:
        """Open this run's segment of the journal: its mode, config and starting books."""
        journal = self.journal
        assert journal is not None
        segment = journal.begin_segment(
            mode=mode,
            config_digest=loaded.digest,
            config=loaded.settings.model_dump(mode="json"),
            config_files=list(loaded.files),
            ledger=LedgerSnapshot.of(ledger),
            ts=ts,
        )
        self.log.info("journal_segment", segment=segment, path=str(journal.path))

    def has_order(self, client_order_id: str) -> bool:
        """Whether the journal holds this order's intent (an order of ours, whatever its prefix)."""
        journal = self.journal
        return journal is not None and journal.reader().has_order(client_order_id)

    def probe(self, write: Callable[[Journal], Any]) -> None:
        """A write that must succeed for trading to resume.

        Raises:
            JournalError: it failed (the guard stays broken).
        """
        journal = self.journal
        if journal is not None:
            try:
                write(journal)
            except JournalError as e:
                self.broken(str(e))
                raise
        if self.failed is not None:
            self.log.info("journal_recovered", was=self.failed)
            self.failed = None

    def broken(self, error: str) -> None:
        if self.failed is None:
            self.log.error(
                "journal_failed",
                error=error,
                action="no orders are sent until the journal can be written and trading is "
                "resumed (tradingd ctl resume) or the daemon restarted",
            )
        self.failed = error
        self._on_failed()
