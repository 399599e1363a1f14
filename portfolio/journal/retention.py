"""Retention: what the journal keeps, what moves out of it, and how big it is.

The journal's inputs (bars, closes, events, controls) and decisions grow with every session;
the snapshots (one per session close) make the old ones unnecessary for a restart, which reads
only what came after the last snapshot. `compact` keeps the inputs and decisions after the
snapshot `keep_sessions` sessions back and moves the older ones out: into compressed Parquet
files beside the journal (`STATE_DIR/archive/`), or nowhere (dropped). Orders that ended before
that snapshot go with them, and their fills. Segments, snapshots, switches, differences and the
counters stay (they are small and the audit and the restart need them).

An audit of the kept range gives the answer it gave before compaction: it starts at a kept
snapshot, warmed by the kept bars before it (see `daemon.replay.audit`).

Deleting rows frees pages inside the file for the next writes (the file stops growing); only a
VACUUM (`vacuum=True`, what `tradingd journal compact` does with the daemon stopped) gives the
space back to the file system.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from portfolio.journal.schema import SNAPSHOT_VERSION, JournalError
from portfolio.journal.writer import Journal

ARCHIVE_DIR = "archive"
_TABLES = ("input", "decision", "orders", "fill")


@dataclass(frozen=True, slots=True, kw_only=True)
class Compaction:
    """What one compaction moved out of the journal.

    Attributes:
        segment, through_seq: the boundary: every input up to `through_seq` (of `segment` and
            the segments before it) is gone from the file.
        files: the Parquet files written (none when dropped).
    """

    segment: int
    through_seq: int
    inputs: int
    decisions: int
    orders: int
    fills: int
    files: list[Path]


def compact(
    journal: Journal,
    *,
    keep_sessions: int,
    archive: bool,
    ts: int,
    vacuum: bool = False,
) -> Compaction | None:
    """Move out of the journal what is older than its last `keep_sessions` sessions.

    Idempotent: nothing to move (fewer snapshots than that, or moved already) returns None.
    The Parquet files are written (and renamed into place) before the rows are deleted in one
    transaction: a crash between the two leaves the rows, and the next run writes the same
    files again.

    Raises:
        JournalError: the journal cannot be read or written, or the archive cannot be.
    """
    reader = journal.reader()
    if reader.schema_version < SNAPSHOT_VERSION or keep_sessions < 1:
        return None
    snapshots = reader.snapshots()
    if len(snapshots) <= keep_sessions:
        return None
    boundary = snapshots[-(keep_sessions + 1)]
    done = reader.compacted()
    after = done[1] if done is not None else 0
    if boundary.seq <= after:
        return None
    db = journal.connection()
    where = _where(db, segment=boundary.segment, seq=boundary.seq, ts=boundary.ts)
    files: list[Path] = []
    if archive:
        folder = journal.state_dir / ARCHIVE_DIR
        for table in _TABLES:
            path = folder / f"{table}-{after + 1:012d}-{boundary.seq:012d}.parquet"
            if _export(db, table, where[table], path, journal.path):
                files.append(path)
    counts: dict[str, int] = {}
    with journal.transaction("compaction") as tx:
        for table in ("fill", "orders", "decision", "input"):  # fills before their orders
            sql, params = where[table]
            counts[table] = tx.execute(f"DELETE FROM {table} WHERE {sql}", params).rowcount  # noqa: S608
        for key, value in (
            ("compacted_segment", boundary.segment),
            ("compacted_seq", boundary.seq),
        ):
            tx.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, str(value)))
        tx.execute(
            "INSERT INTO archive (through_seq, through_slice_ts, inputs, decisions, orders, "
            "path, ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                boundary.seq,
                boundary.last_slice_ts,
                counts["input"],
                counts["decision"],
                counts["orders"],
                str(journal.state_dir / ARCHIVE_DIR) if files else None,
                ts,
            ),
        )
    if vacuum:
        journal.vacuum()
    return Compaction(
        segment=boundary.segment,
        through_seq=boundary.seq,
        inputs=counts["input"],
        decisions=counts["decision"],
        orders=counts["orders"],
        fills=counts["fill"],
        files=files,
    )


def _where(
    db: sqlite3.Connection, *, segment: int, seq: int, ts: int
) -> dict[str, tuple[str, tuple[Any, ...]]]:
    """Each table's rows older than the boundary, as (WHERE clause, parameters)."""
    # A decision is keyed by its slice (or a flatten's control ts): those of the boundary's
    # segment up to the last close or control it covers go; every one of earlier segments too.
    (last_ts,) = db.execute(
        "SELECT max(ts) FROM input WHERE segment = ? AND seq <= ? AND kind IN ('close', 'control')",
        (segment, seq),
    ).fetchone()
    old_orders = "terminal = 1 AND ts < ?"
    return {
        "input": ("seq <= ?", (seq,)),
        "decision": (
            "segment < ? OR (segment = ? AND slice_ts <= ?)",
            (segment, segment, -(2**63) if last_ts is None else last_ts),
        ),
        "orders": (old_orders, (ts,)),
        "fill": (
            f"client_order_id IN (SELECT client_order_id FROM orders WHERE {old_orders})",  # noqa: S608
            (ts,),
        ),
    }


def _export(
    db: sqlite3.Connection,
    table: str,
    where: tuple[str, tuple[Any, ...]],
    path: Path,
    journal_path: Path,
) -> bool:
    """Write `table`'s rows matching `where` to a zstd Parquet file (temp name, then renamed);
    False (no file) when there are none."""
    sql, params = where
    try:
        cursor = db.execute(f"SELECT * FROM {table} WHERE {sql}", params)  # noqa: S608
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    except sqlite3.Error as e:
        raise JournalError(f"journal {journal_path}: cannot read {table}: {e}") from None
    if not rows:
        return False
    columns = {name: [row[i] for row in rows] for i, name in enumerate(names)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".parquet.partial")
        pq.write_table(pa.table(columns), partial, compression="zstd")
        os.replace(partial, path)
    except (OSError, pa.ArrowException) as e:
        raise JournalError(
            f"journal {journal_path}: cannot archive {table} to {path}: {e}"
        ) from None
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalStats:
    """How big the journal is and what it holds.

    Attributes:
        rows: rows per table; sessions: snapshots taken (one per session close).
        wal_bytes: the write-ahead log beside the file (0 when checkpointed).
        compacted_through: the last input seq moved out (0: never compacted).
    """

    path: Path
    file_bytes: int
    wal_bytes: int
    schema_version: int
    rows: dict[str, int]
    segments: int
    sessions: int
    first_session: str | None
    last_session: str | None
    compacted_through: int
    archive_bytes: int


def stats(state_dir: Path) -> JournalStats:
    """The journal's size and contents, read-only (beside a running daemon too).

    Raises:
        JournalError: there is no journal or it cannot be read.
    """
    from portfolio.journal.reader import JournalReader

    with JournalReader.open(state_dir) as reader:
        rows = reader.counts()
        snapshots = reader.snapshots()
        compacted = reader.compacted()
        path = reader.path
        version = reader.schema_version
    wal = path.with_name(path.name + "-wal")
    folder = Path(state_dir) / ARCHIVE_DIR
    return JournalStats(
        path=path,
        file_bytes=path.stat().st_size,
        wal_bytes=wal.stat().st_size if wal.exists() else 0,
        schema_version=version,
        rows=rows,
        segments=rows.get("segment", 0),
        sessions=len(snapshots),
        first_session=snapshots[0].session if snapshots else None,
        last_session=snapshots[-1].session if snapshots else None,
        compacted_through=compacted[1] if compacted is not None else 0,
        archive_bytes=sum(p.stat().st_size for p in folder.glob("*.parquet"))
        if folder.is_dir()
        else 0,
    )


def export(state_dir: Path, out_dir: Path, *, after_seq: int = 0) -> dict[str, Path]:
    """Write the journal's inputs after `after_seq`, and the decisions, orders and fills, as
    zstd Parquet files in `out_dir` (read-only: beside a running daemon too).

    Returns:
        Each table written and its file (a table with no rows gets none).

    Raises:
        JournalError: the journal cannot be read or a file cannot be written.
    """
    from portfolio.journal.reader import JournalReader

    wheres: dict[str, tuple[str, tuple[Any, ...]]] = {
        "input": ("seq > ?", (after_seq,)),
        "decision": ("1", ()),
        "orders": ("1", ()),
        "fill": ("seq > ?", (after_seq,)),
    }
    written: dict[str, Path] = {}
    with JournalReader.open(state_dir) as reader:
        db = reader.connection()
        for table, where in wheres.items():
            path = Path(out_dir) / f"{table}.parquet"
            if _export(db, table, where, path, reader.path):
                written[table] = path
    return written
