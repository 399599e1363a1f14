"""`tradingd journal stats|compact|export`: a journal's size, its retention, its contents out."""

from __future__ import annotations

import argparse
import time

from daemon.cli.log import command_log
from feeds.errors import ConfigError


def journal_command(args: argparse.Namespace) -> int:
    """`tradingd journal`: one of its actions on STATE_DIR."""
    from portfolio.journal import Journal, JournalReader
    from portfolio.journal.retention import compact, export, stats

    log = command_log(args)
    match args.action:
        case "stats":
            found = stats(args.state_dir)
            print(f"journal {found.path}: schema {found.schema_version}")
            print(f"  file {found.file_bytes / 1e6:.1f} MB, WAL {found.wal_bytes / 1e6:.1f} MB")
            print(
                f"  {found.segments} segments, {found.sessions} sessions"
                + (f" ({found.first_session} to {found.last_session})" if found.sessions else "")
            )
            for table, rows in sorted(found.rows.items()):
                print(f"  {table}: {rows:,} rows")
            print(f"  compacted through input {found.compacted_through}")
            print(f"  archive {found.archive_bytes / 1e6:.1f} MB")
        case "compact":
            # The writer's lock: refused while a daemon runs on this journal.
            with Journal(args.state_dir) as journal:
                done = compact(
                    journal,
                    keep_sessions=args.keep_sessions,
                    archive=not args.drop,
                    ts=time.time_ns(),
                    vacuum=not args.no_vacuum,
                )
                if done is None and not args.no_vacuum:
                    journal.vacuum()
            if done is None:
                print(f"nothing older than the last {args.keep_sessions} sessions")
            else:
                print(
                    f"moved {done.inputs:,} inputs, {done.decisions:,} decisions, "
                    f"{done.orders:,} orders, {done.fills:,} fills (through input "
                    f"{done.through_seq}) "
                    + ("dropped" if not done.files else f"to {done.files[0].parent}/")
                )
            log.info("journal_compacted", state_dir=str(args.state_dir), moved=done is not None)
        case "export":
            if args.out is None:
                raise ConfigError("command line: journal export needs --out DIR")
            after = 0
            if args.sessions is not None:
                with JournalReader.open(args.state_dir) as reader:
                    snapshots = reader.snapshots()
                if len(snapshots) > args.sessions:
                    after = snapshots[-(args.sessions + 1)].seq
            for table, path in export(args.state_dir, args.out, after_seq=after).items():
                print(f"{table}: {path}")
        case other:
            raise ConfigError(f"command line: unknown journal action {other!r}")
    return 0
