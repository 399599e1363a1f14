"""Checkpoints of a journal's WAL off the writer's thread.

A checkpoint copies the WAL's pages into the database file and syncs it: a few milliseconds
when little is there, tens or hundreds on a busy disk. The live daemon runs it on a worker
thread, on a connection of its own, so that its event loop (and a slice's decision) never waits
for it; SQLite lets the writer append to the WAL meanwhile (PASSIVE: it never waits for a
reader or the writer).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from portfolio.journal.schema import JournalError


class Checkpointer:
    """PASSIVE checkpoints of the journal at `path`, safe to run from any one thread at a time.

    The connection opens at the first `run` and closes at `close`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def run(self) -> None:
        """Move what the WAL holds into the file, as far as readers allow.

        Raises:
            JournalError: the file could not be opened or checkpointed.
        """
        with self._lock:
            try:
                if self._db is None:
                    self._db = sqlite3.connect(
                        self.path, isolation_level=None, check_same_thread=False
                    )
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as e:
                raise JournalError(f"journal {self.path}: checkpoint failed: {e}") from None

    def close(self) -> None:
        """Close the connection (after a `run` under way ends). Idempotent."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
