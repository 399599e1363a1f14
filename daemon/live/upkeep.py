"""The journal's upkeep while the daemon runs: off the hot path, on the market clock's polls.

Each poll (every `live.clock_poll_s`) moves the WAL into the file (a PASSIVE checkpoint: cheap
when little is there), so the WAL stays small without the hot path paying for a sync; the live
daemon runs it on a worker thread (`background`), as its sync took up to 0.2 s of the event loop
on a busy disk. When the
clock says the market has closed after being open, the session is over: a snapshot of the
ledger and the switches goes into the journal (a restart reads only what comes after it), then
`state.retention` moves what is older than the kept sessions out of the file.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from daemon.engine import Engine
from daemon.live.guard import JournalGuard
from daemon.logs import EventLog
from daemon.settings import RetentionSettings
from portfolio.journal import JournalError, LedgerSnapshot
from portfolio.journal.checkpointer import Checkpointer
from portfolio.journal.retention import compact

_NEW_YORK = ZoneInfo("America/New_York")


def session_of(ts: int) -> str:
    """The New York date of `ts` (UTC ns), as the journal names sessions: YYYY-MM-DD."""
    return dt.datetime.fromtimestamp(ts / 1e9, tz=_NEW_YORK).date().isoformat()


class Upkeep:
    """Checkpoints, session snapshots and retention of the live daemon's journal.

    Call `on_clock` from the daemon's task (between inputs): the snapshot must see the ledger
    as every journaled input left it.

    Args:
        background: checkpoint on a worker thread (call `on_clock` on a running event loop,
            and `stop` before the journal closes); else on the caller's thread.
    """

    def __init__(
        self,
        *,
        engine: Engine,
        guard: JournalGuard,
        retention: RetentionSettings,
        log: EventLog,
        background: bool = False,
    ) -> None:
        self.engine = engine
        self.guard = guard
        self.retention = retention
        self.log = log
        self.snapshots = 0
        self.background = background
        self._was_open: bool | None = None
        self._checkpointer: Checkpointer | None = None
        self._checkpointing: asyncio.Future[None] | None = None

    def on_clock(self, *, market_open: bool, ts: int) -> None:
        """A market clock was read: checkpoint; snapshot and compact at a session's close."""
        journal = self.guard.journal
        if journal is None or journal.segment is None:
            return
        if self._was_open and not market_open:
            self.session_closed(ts)
        self._was_open = market_open
        if self.background:
            self._checkpoint_on_thread(journal.path)
            return
        try:
            journal.checkpoint()
        except JournalError as e:
            self.log.warning("journal_checkpoint_failed", error=str(e))

    def _checkpoint_on_thread(self, path: Path) -> None:
        running = self._checkpointing
        if running is not None and not running.done():
            return  # the last one is still at it: it moves what this one would
        checkpointer = self._checkpointer
        if checkpointer is None or checkpointer.path != path:
            if checkpointer is not None:
                checkpointer.close()
            checkpointer = self._checkpointer = Checkpointer(path)
        self._checkpointing = asyncio.ensure_future(asyncio.to_thread(checkpointer.run))
        self._checkpointing.add_done_callback(self._checkpointed)

    def _checkpointed(self, done: asyncio.Future[None]) -> None:
        if done.cancelled():
            return
        error = done.exception()
        if isinstance(error, JournalError):
            self.log.warning("journal_checkpoint_failed", error=str(error))
        elif error is not None:
            raise error

    async def stop(self) -> None:
        """Wait for a checkpoint under way, then close its connection."""
        if self._checkpointing is not None:
            await asyncio.wait({self._checkpointing})
        if self._checkpointer is not None:
            self._checkpointer.close()

    def session_closed(self, ts: int) -> None:
        """Snapshot the ledger (a failed write halts trading, as every journal write does),
        then apply the retention (a failure there is logged: nothing is lost by it)."""
        session = session_of(ts)
        ledger = LedgerSnapshot.of(self.engine.ledger)
        if not self.guard.write(lambda j: j.snapshot(ledger=ledger, session=session, ts=ts)):
            return
        self.snapshots += 1
        self.log.info("journal_snapshot", session=session)
        keep = self.retention.sessions
        journal = self.guard.journal
        if keep is None or journal is None:
            return
        try:
            done = compact(
                journal, keep_sessions=keep, archive=self.retention.archive == "parquet", ts=ts
            )
        except JournalError as e:
            self.log.error("journal_compaction_failed", error=str(e))
            return
        if done is not None:
            self.log.info(
                "journal_compacted",
                through_seq=done.through_seq,
                inputs=done.inputs,
                decisions=done.decisions,
                orders=done.orders,
                files=[str(p) for p in done.files],
            )
