"""`tradingd notify test`: one message to every configured notification target."""

from __future__ import annotations

import argparse


def notify_test_command(args: argparse.Namespace) -> int:
    """Send one test message to each target of the config's `notify:` section; print each
    target's outcome. Exit 0 when every target took it, 1 when any did not.

    Raises:
        ConfigError: no target is configured, or a target's environment variable is unset.
    """
    import asyncio
    import os

    from daemon.cli.log import command_log
    from daemon.config import load_config
    from daemon.service.notify import send_test
    from feeds.errors import ConfigError

    loaded = load_config(args.configs)
    if not loaded.settings.notify.targets:
        raise ConfigError(f"{' '.join(loaded.files)}: notify.targets: no target is configured")
    log = command_log(args, loaded.settings.log)
    results = asyncio.run(send_test(loaded.settings, os.environ, log, args.text))
    failed = 0
    for name, result in results.items():
        if result.ok:
            print(f"{name}: sent")
        else:
            failed += 1
            print(f"{name}: FAILED: {result.error}")
        log.info("notify_test", target=name, ok=result.ok, error=result.error)
    return 1 if failed else 0
