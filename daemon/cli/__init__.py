"""The `tradingd` command line.

A user's mistake (bad config, unreadable data) gets one message on stderr and exit code 2, never a
traceback. JSON logs go to stderr; stdout carries the human summary.

The rooms: `parser` (the argument table), and the commands by reason to change: `research`
(replay, walkforward, report), `live` (run, ctl, audit), `journal` (stats, compact, export),
`tools` (bars, check-config, sandbox).
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence

from daemon.cli.parser import build_parser
from feeds.errors import TradingdError

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `tradingd` command and return its exit code (2 for a user's mistake)."""
    parser = build_parser()
    try:
        # Inside the try: the sandbox's option types raise ConfigError, which argparse passes on.
        args = parser.parse_args(argv)
        code: int = args.func(args)
    except TradingdError as e:
        print(f"tradingd: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tradingd: interrupted", file=sys.stderr)
        return 130
    finally:
        if argv is None:
            # The process ends now (the console script): its last garbage collection over the
            # whole loaded stack took ~0.7 s, which a Ctrl-C'd `replay --serve` would wait for.
            # Every file is closed by then; the memory goes back with the process.
            gc.freeze()
    return code
