"""The commands of a live daemon: `run` it, steer it with `ctl`, `audit` its journal."""

from __future__ import annotations

import argparse

import yaml

from daemon.cli.log import command_log
from daemon.cli.options import out_folder
from daemon.config import load_config


def run_command(args: argparse.Namespace) -> int:
    """`tradingd run`: the daemon on Alpaca (or sim, or track) until SIGINT or SIGTERM."""
    import asyncio
    import os
    import sys

    from daemon.live.lifecycle import LiveDaemon
    from daemon.memory import freeze_heap, thaw_heap

    if args.out is not None:
        out_folder("--out", args.out)
    loaded = load_config(args.configs)
    log = command_log(args, loaded.settings.log)
    daemon = LiveDaemon(
        loaded,
        log=log,
        env=os.environ,
        allow_live=args.live,
        out_dir=args.out,
        install_signals=True,
    )
    # The modules and the configuration live for the run: frozen now, before the event loop
    # runs, the collection that ends the warm-up (`freeze_heap` again) walks only what the
    # start-up built since.
    freeze_heap()
    # Worker threads (the warm-up's history fetch, sorts, checkpoints) hand the interpreter back
    # to the event loop's thread within 1 ms of its asking, not the default 5: each time the loop
    # blocks and wakes during a fetch it waited up to 5 ms, and a lag sample saw 10-11 ms.
    sys.setswitchinterval(0.001)
    try:
        code = asyncio.run(daemon.run())
    finally:
        thaw_heap()  # the daemon's stop thaws it too; this covers a run that never started
    print(f"tradingd run ({daemon.mode}): stopped; wrote {daemon.out_dir}/")
    return code


def ctl_command(args: argparse.Namespace) -> int:
    """`tradingd ctl`: one call to a running daemon's control plane; 1 when it refuses."""
    import os

    from daemon.service.ctl import ctl

    status, body = ctl(args.action, url=args.url, token=os.environ.get("TRADINGD_CONTROL_TOKEN"))
    print(yaml.safe_dump(body, sort_keys=False), end="")
    return 0 if status < 400 else 1


def audit_command(args: argparse.Namespace) -> int:
    """`tradingd audit`: the parity audit of a journal; 1 when any decision differs."""
    from daemon.replay.audit import audit, describe

    since = args.since.isoformat() if args.since is not None else None
    result = audit(args.state_dir, config_override=args.config, since=since, sessions=args.sessions)
    for line in describe(result):
        print(line)
    command_log(args).info(
        "audit_finished",
        state_dir=str(args.state_dir),
        slices=result.slices,
        differences=len(result.differences),
    )
    return 0 if not result.differences else 1
