"""The event log of a command: its flags over the config's `log:` section."""

from __future__ import annotations

import argparse

from daemon.logs import EventLog
from daemon.settings import LogSettings


def command_log(args: argparse.Namespace, settings: LogSettings | None = None) -> EventLog:
    """The event log: command-line flags win over the config's `log:` section."""
    configured = settings or LogSettings()
    return EventLog(
        level=args.log_level or configured.level, fmt=args.log_format or configured.format
    )
