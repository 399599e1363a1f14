"""One writer per journal: an exclusive flock on a file beside it, naming the holder's pid."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from portfolio.journal.schema import JournalError


def take_lock(lock_path: Path, path: Path) -> int:
    """Take the writer's exclusive lock on `lock_path` (creating its directory) and write our
    pid into it (what the next opener names); held while the returned descriptor is open."""
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise JournalError(f"journal {path}: cannot create {lock_path.parent}: {e}") from None
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise JournalError(f"journal {path}: cannot open {lock_path}: {e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise JournalError(f"journal {path} is in use by another tradingd (pid {pid})") from None
    except OSError as e:
        os.close(fd)
        raise JournalError(f"journal {path}: cannot lock {lock_path}: {e}") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError as e:
        os.close(fd)
        raise JournalError(f"journal {path}: cannot write {lock_path}: {e}") from None
    return fd
