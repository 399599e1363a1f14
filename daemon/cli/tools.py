"""The tools around the daemon: `bars synth`, `bars download`, `check-config`, `sandbox`."""

from __future__ import annotations

import argparse
import contextlib
import re

import yaml

from daemon.cli.log import command_log
from daemon.cli.options import out_folder
from daemon.config import load_config, redacted
from feeds.errors import ConfigError, printable

_FILE_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,15}$")
FIRST_SYNTH_YEAR = 1900
LAST_SYNTH_YEAR = 2200


def synth_command(args: argparse.Namespace) -> int:
    """`tradingd bars synth`: deterministic synthetic minute bars, one file per symbol."""
    from feeds.synth import write_synthetic

    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    if not symbols:
        raise ConfigError(f"command line: --symbols {args.symbols!r}: no symbol named")
    for symbol in symbols:
        # Each symbol names its file: no path separators, nothing a file system reads specially.
        if not _FILE_SYMBOL.match(symbol):
            raise ConfigError(
                f"command line: --symbols {printable(symbol)}: a symbol of bars synth names its "
                "file: 1 to 16 letters, digits, '.' or '-', starting with a letter or digit"
            )
    # The calendar library covers the years pandas can stamp (1677 to 2262) less a margin; ~250
    # sessions a year, so a span past LAST_SYNTH_YEAR could not be built.
    if not FIRST_SYNTH_YEAR <= args.start.year < LAST_SYNTH_YEAR:
        raise ConfigError(
            f"command line: --start {args.start}: the NYSE calendar used covers the years "
            f"{FIRST_SYNTH_YEAR} to {LAST_SYNTH_YEAR}"
        )
    most = (LAST_SYNTH_YEAR - args.start.year) * 250
    if args.sessions > most:
        raise ConfigError(
            f"command line: --sessions {args.sessions}: from {args.start} the NYSE calendar "
            f"(to {LAST_SYNTH_YEAR}) holds at most {most:,} sessions"
        )
    out_folder("--out", args.out)
    paths = write_synthetic(
        args.out,
        symbols=symbols,
        sessions=args.sessions,
        seed=args.seed,
        start=args.start,
        fmt=args.format,
    )
    command_log(args).info(
        "synth_written", files=[str(p) for p in paths], sessions=args.sessions, seed=args.seed
    )
    for path in paths:
        print(path)
    return 0


def download_command(args: argparse.Namespace) -> int:
    """`tradingd bars download`: Alpaca's historical bars into Parquet files."""
    import os

    from daemon.settings import ALPACA_DATA_URL
    from daemon.wiring import credentials
    from feeds.alpaca_history import HistoricalBars, download

    if args.end < args.start:
        raise ConfigError(f"command line: --end {args.end} is before --start {args.start}")
    out_folder("--out", args.out)
    key, secret = credentials(os.environ)
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    history = HistoricalBars(
        key=key, secret=secret, url=args.url or ALPACA_DATA_URL, feed=args.feed
    )
    log = command_log(args)
    written = download(
        history, symbols, args.start, args.end, timeframe=args.timeframe, out_dir=args.out
    )
    for symbol, (path, rows) in sorted(written.items()):
        log.info("bars_downloaded", symbol=symbol, rows=rows, path=str(path) if rows else None)
        print(f"{symbol}: {rows:,} bars" + (f" -> {path}" if rows else " (none: no file)"))
    return 0


def check_config_command(args: argparse.Namespace) -> int:
    """`tradingd check-config`: validate the overlays and print the resolved config."""
    from composer.registry import load_registry
    from daemon.config import build_strategies

    loaded = load_config(args.configs)
    # Strategies and their params are checked too, against the configured universe when it is
    # given (the data's symbols are only known when the data is read).
    universe = loaded.settings.symbols
    if universe:
        build_strategies(loaded, load_registry(), universe)
    print(f"# resolved from: {' '.join(loaded.files)}")
    settings = loaded.settings
    print(f"# {settings.execution.describe(settings.data.timeframe)}")
    print(yaml.safe_dump(redacted(loaded.settings), sort_keys=False), end="")
    return 0


def sandbox_command(args: argparse.Namespace) -> int:
    """`tradingd sandbox`: a local stand-in for Alpaca on 127.0.0.1 until Ctrl-C."""
    import asyncio

    from sandbox import Sandbox, serve

    log = command_log(args)
    symbols = [s.strip().upper() for s in args.symbols.split(",")] if args.symbols else None

    def ready(sandbox: Sandbox) -> None:
        log.info("sandbox_listening", url=sandbox.url, speed=args.speed, data=str(args.data))
        print(
            f"sandbox on {sandbox.url} (trading REST and data REST), "
            f"{sandbox.trade_stream_url} (trade updates), {sandbox.data_stream_url('iex')} "
            f"(market data); any non-empty APCA_API_KEY_ID/APCA_API_SECRET_KEY. Ctrl-C stops.",
            flush=True,
        )

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(
                args.data,
                port=args.port,
                speed=args.speed,
                symbols=symbols,
                start_cash=args.cash,
                warm_minutes=args.warm_minutes,
                ready=ready,
            )
        )
    return 0
