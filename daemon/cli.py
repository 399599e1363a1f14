"""The `tradingd` command line.

A user's mistake (bad config, unreadable data) gets one message on stderr and exit code 2, never a
traceback. JSON logs go to stderr; stdout carries the human summary.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from daemon import options
from daemon.config import Loc, load_config, redacted
from daemon.logs import EventLog
from daemon.replay.driver import progress_bar, replay
from daemon.settings import LogSettings
from feeds.errors import ConfigError, TradingdError

EXIT_USAGE = 2
SANDBOX_PORT = 8765
HTTP_PORT = 9108


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
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
    return code


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="overrides log.level of the config (default info)",
    )
    common.add_argument(
        "--log-format",
        choices=["json", "text"],
        help="json lines (the default) or text for a person at a terminal; overrides log.format",
    )
    # What a replay and a walk-forward both read: the overlays and the data they cover.
    runs = argparse.ArgumentParser(add_help=False, parents=[common])
    runs.add_argument("configs", nargs="+", metavar="CONFIG", help="YAML overlays, merged in order")
    runs.add_argument("--data", help="a data file or folder (overrides data.path)")
    runs.add_argument("--symbols", help="comma-separated universe (overrides symbols)")
    runs.add_argument(
        "--start", type=options.day, help="first date, YYYY-MM-DD (overrides run.start)"
    )
    runs.add_argument("--end", type=options.day, help="last date, inclusive (overrides run.end)")
    runs.add_argument("--report", action="store_true", help="also write report.html")
    parser = argparse.ArgumentParser(
        prog="tradingd",
        description="A trading daemon for Alpaca; replays history through the code that trades.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rp = sub.add_parser(
        "replay",
        parents=[runs],
        help="replay historical bars through the event path",
        description="Replay historical bars through the whole event path with the simulated "
        "broker, and write summary.json, orders.csv, fills.csv, equity.csv, risk_events.csv "
        "and rejected_bars.csv.",
    )
    rp.add_argument("--out", type=Path, help="output folder (default: out/<run id>/)")
    rp.add_argument(
        "--serve",
        action="store_true",
        help="pace the replay in wall time with the HTTP server up (/metrics, /state, ...)",
    )
    rp.add_argument(
        "--speed",
        type=options.positive_float,
        default=20.0,
        help="with --serve: slices per second (default 20)",
    )
    rp.add_argument("--port", type=int, help="with --serve: the HTTP port (default http.port)")
    rp.set_defaults(func=_replay)

    wf = sub.add_parser(
        "walkforward",
        parents=[runs],
        help="rolling train/test optimization, out of sample",
        description="Walk-forward: in each training window choose the grid point with the best "
        "objective, then replay the following test window with it through the same event path. "
        "The test windows are joined into one equity curve. Folds and grid points run in "
        "parallel across processes, or on a Dask cluster with --scheduler.",
    )
    wf.add_argument(
        "--train", type=options.sessions, required=True, help="training window, e.g. 252d"
    )
    wf.add_argument("--test", type=options.sessions, required=True, help="test window, e.g. 63d")
    wf.add_argument("--grid", help="YAML: key path -> list of values (the cartesian product)")
    wf.add_argument("--objective", default="sharpe", help="summary figure to maximize")
    wf.add_argument("--scheduler", help="a Dask scheduler address (tcp://host:8786)")
    wf.add_argument("--workers", type=options.positive_int, help="processes (default: the CPUs)")
    wf.add_argument("--seed", type=int, default=0)
    wf.add_argument("--out", type=Path, help="output folder (default: out/walkforward-<time>/)")
    wf.set_defaults(func=_walkforward)

    rep = sub.add_parser(
        "report",
        parents=[common],
        help="write report.html for a replay's output folder",
        description="Write one self-contained HTML report (plots inlined) for the output folder "
        "of a replay: equity against buy-and-hold of the same universe, drawdown, exposure, "
        "weights, regimes, rolling Sharpe, monthly returns, trades, rejected bars, metrics.",
    )
    rep.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    rep.set_defaults(func=_report)

    run = sub.add_parser(
        "run",
        parents=[common],
        help="run the daemon on Alpaca (paper, live, sim or track, as live.mode says)",
        description="Run the daemon: Alpaca's market-data stream through the event path, orders "
        "to Alpaca's paper or live API (or the simulated broker in mode sim, or none in mode "
        "track). Keys come from APCA_API_KEY_ID and APCA_API_SECRET_KEY. Stops cleanly on "
        "SIGINT or SIGTERM.",
    )
    run.add_argument("configs", nargs="+", metavar="CONFIG", help="YAML overlays, merged in order")
    run.add_argument(
        "--live", action="store_true", help="confirm live trading (needs live.mode: live)"
    )
    run.add_argument("--out", type=Path, help="output folder (default: out/<run id>/)")
    run.set_defaults(func=_run)

    _add_sandbox(sub, common)

    ctl = sub.add_parser(
        "ctl",
        parents=[common],
        help="talk to a running daemon: status, halt, resume, flatten, reset",
        description="Call a running daemon's HTTP control plane. halt: no new orders; resume; "
        "flatten: close every position now and halt; reset: reset the kill switch; status: its "
        "state and readiness. The token comes from TRADINGD_CONTROL_TOKEN.",
    )
    ctl.add_argument("action", choices=["status", "halt", "resume", "flatten", "reset"])
    ctl.add_argument(
        "--url", default=f"http://127.0.0.1:{HTTP_PORT}", help="the daemon's HTTP address"
    )
    ctl.set_defaults(func=_ctl)

    au = sub.add_parser(
        "audit",
        parents=[common],
        help="replay a live session's journal through the core and report every difference",
        description="The parity audit: replay every bar, fill and control a daemon journaled "
        "in STATE_DIR through the core with the config it ran, and compare each decision "
        "(composed targets and orders) with what was done live. Exit 0 with no difference, "
        "1 with any.",
    )
    au.add_argument("state_dir", type=Path, metavar="STATE_DIR")
    au.add_argument(
        "--config",
        nargs="+",
        metavar="CONFIG",
        help="replay with these overlays instead of the recorded config (a what-if)",
    )
    au.set_defaults(func=_audit)

    cc = sub.add_parser(
        "check-config",
        parents=[common],
        help="validate config overlays and print the result",
    )
    cc.add_argument("configs", nargs="+", metavar="CONFIG")
    cc.set_defaults(func=_check_config)

    bars = sub.add_parser("bars", help="bar data tools")
    bars_sub = bars.add_subparsers(dest="bars_command", required=True, metavar="COMMAND")
    synth = bars_sub.add_parser(
        "synth",
        parents=[common],
        help="write deterministic synthetic minute bars",
        description="Write one file of 1-minute bars per symbol over real NYSE sessions "
        "(holidays skipped, early closes honoured). Same arguments, same bytes.",
    )
    synth.add_argument("--symbols", required=True, help="comma-separated, e.g. AAA,BBB,CCC")
    synth.add_argument("--sessions", type=options.positive_int, required=True)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument(
        "--start",
        type=options.day,
        default=date(2024, 1, 2),
        help="first session on or after this date (default 2024-01-02)",
    )
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument("--format", choices=["csv", "parquet"], default="parquet")
    synth.set_defaults(func=_synth)
    dl = bars_sub.add_parser(
        "download",
        parents=[common],
        help="download historical bars from Alpaca into Parquet files that replay reads",
        description="Download bars through Alpaca's historical data API (every page), one "
        "Parquet file per symbol. Keys come from APCA_API_KEY_ID and APCA_API_SECRET_KEY.",
    )
    dl.add_argument("--symbols", required=True, help="comma-separated, e.g. SPY,AAPL")
    dl.add_argument("--start", type=options.day, required=True, help="first New York date")
    dl.add_argument("--end", type=options.day, required=True, help="last New York date, inclusive")
    dl.add_argument("--timeframe", default="1Min", help="1Min, 5Min, 15Min, 1Hour or 1Day")
    dl.add_argument("--feed", choices=["iex", "sip", "delayed_sip"], default="iex")
    dl.add_argument("--url", help="data API base URL (default https://data.alpaca.markets)")
    dl.add_argument("--out", type=Path, required=True, help="output folder")
    dl.set_defaults(func=_download)
    return parser


def _overrides(args: argparse.Namespace) -> dict[Loc, Any]:
    if args.start and args.end and args.end < args.start:
        raise ConfigError(f"command line: --end {args.end} is before --start {args.start}")
    out: dict[Loc, Any] = {}
    if args.data:
        out[("data", "path")] = args.data
    if args.symbols:
        out[("symbols",)] = [s for s in args.symbols.split(",") if s.strip()]
    if args.start:
        out[("run", "start")] = args.start.isoformat()
    if args.end:
        out[("run", "end")] = args.end.isoformat()
    return out


def _add_sandbox(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """`tradingd sandbox`: its option types make every mistake one line naming the option."""
    sb = sub.add_parser(
        "sandbox",
        parents=[common],
        help="serve a local stand-in for Alpaca on 127.0.0.1, playing bars from files",
        description="A local stand-in for Alpaca's trading REST API, trade-updates stream, "
        "market-data stream and historical bars, playing replay files at a chosen speed and "
        "filling market orders at the next bar's open. Point `tradingd run` at it (see "
        "config/sandbox.yaml) to watch the whole live path trade offline.",
    )
    sb.add_argument("--data", type=Path, required=True, help="a data file or folder of 1-min bars")
    sb.add_argument(
        "--speed",
        type=options.checked("--speed", options.speed),
        default=60.0,
        help="market minutes per wall minute (default 60: one bar a second)",
    )
    sb.add_argument(
        "--port",
        type=options.checked("--port", options.port),
        default=SANDBOX_PORT,
        help=f"default {SANDBOX_PORT}",
    )
    sb.add_argument("--symbols", help="comma-separated (default: every symbol in the data)")
    sb.add_argument(
        "--warm-minutes",
        type=options.checked("--warm-minutes", options.minutes),
        default=390,
        help="minutes of the data already in the past: served as history, not streamed",
    )
    sb.add_argument(
        "--cash",
        type=options.checked("--cash", options.cash),
        default=Decimal(100_000),
        help="starting cash",
    )
    sb.set_defaults(func=_sandbox)


def _log(args: argparse.Namespace, settings: LogSettings | None = None) -> EventLog:
    """The event log: command-line flags win over the config's `log:` section."""
    configured = settings or LogSettings()
    return EventLog(
        level=args.log_level or configured.level, fmt=args.log_format or configured.format
    )


def _replay(args: argparse.Namespace) -> int:
    import pyarrow as pa

    # Arrow's default pool (mimalloc) keeps the pages that file parsing freed for the whole
    # run; the system allocator gives them back: about 60 MB less resident on a year of
    # minute bars, at no measurable cost in speed.
    pa.set_memory_pool(pa.system_memory_pool())
    loaded = load_config(args.configs, _overrides(args))
    log = _log(args, loaded.settings.log)
    if args.serve:
        import asyncio
        import os

        from daemon.replay.paced import PacedReplay

        paced = PacedReplay(
            loaded, log=log, env=os.environ, speed=args.speed, out_dir=args.out, port=args.port
        )
        result = asyncio.run(paced.run())
    else:
        result = replay(loaded, out_dir=args.out, log=log, progress=progress_bar())
    s = result.summary
    rejected = sum(s["bars_rejected"].values())
    kill = f"TRIPPED ({s['kill_switch_reason']})" if s["kill_switch"] else "off"
    print(
        f"replay {s['run_id']}: {s['bars_in']:,} bars ({rejected:,} rejected), "
        f"{len(s['symbols'])} symbols, {s['slices']:,} slices, "
        f"{s['first_slice']} .. {s['last_slice']}\n"
        f"  orders {s['orders']:,}  fills {s['fills']:,}  denied {s['denied_orders']:,}"
        f"  kill switch {kill}\n"
        f"  equity {s['start_equity']} -> {s['final_equity']}  return {s['total_return']:+.2%}"
        f"  max drawdown {s['max_drawdown']:.2%}  sharpe {s['sharpe']:.2f}\n"
        f"  {s['wall_seconds']:.2f} s, {s['bars_per_second']:,} bars/s\n"
        f"  wrote {result.out_dir}/"
    )
    if args.report:
        print(f"  report {_write_report(result.out_dir, log)}")
    return 0


def _walkforward(args: argparse.Namespace) -> int:
    from daemon.replay.walkforward import default_workers, walk_forward

    log = _log(args)
    out = args.out or Path("out") / f"walkforward-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    result = walk_forward(
        args.configs,
        train_days=args.train,
        test_days=args.test,
        grid_path=args.grid,
        scheduler=args.scheduler,
        workers=args.workers or default_workers(),
        overrides=_overrides(args),
        out_dir=out,
        seed=args.seed,
        objective=args.objective,
    )
    s = result.summary
    log.info("walkforward_finished", out=str(result.out_dir), folds=s["folds"])
    print(
        f"walk-forward: {s['folds']} folds ({args.train} train / {args.test} test sessions), "
        f"{s['grid_points']} grid points, {s['mode']} x {s['workers']}\n"
        f"  out of sample {s['first_test']} .. {s['last_test']}: "
        f"return {s['total_return']:+.2%}  cagr {s['cagr']:+.2%}  sharpe {s['sharpe']:.2f}  "
        f"max drawdown {s['max_drawdown']:.2%}\n"
        f"  {s['wall_seconds']:.1f} s\n"
        f"  wrote {result.out_dir}/ (equity.csv, folds.csv, summary.json)"
    )
    if args.report:
        print(f"  report {_write_report(result.out_dir, log)}")
    return 0


def _report(args: argparse.Namespace) -> int:
    print(_write_report(args.out_dir, _log(args)))
    return 0


def _write_report(out_dir: Path, log: EventLog) -> Path:
    """The report of a replay or walk-forward folder, with buy-and-hold of its universe when
    the data it read is still where it was."""
    from daemon.research.metrics import load_closes, read_summary
    from daemon.research.report import (
        is_walkforward,
        walkforward_symbols,
        write_report,
        write_walkforward_report,
    )
    from feeds.replay import ReplaySource

    walkforward = is_walkforward(out_dir)
    # A walk-forward's replays record the data they read; its first test replay stands for all.
    replay_dir = out_dir / "jobs" / "fold000-test" if walkforward else out_dir
    summary = read_summary(replay_dir)
    symbols = walkforward_symbols(out_dir) if walkforward else summary["symbols"]
    prices = None
    data = summary.get("data")
    if data and Path(data).exists():
        source = ReplaySource(Path(data), symbols=symbols, timezone=summary.get("data_timezone"))
        prices = load_closes(source)
    else:
        log.warning("report_without_benchmark", reason=f"data not found: {data}")
    write = write_walkforward_report if walkforward else write_report
    path = write(out_dir, prices=prices)
    log.info("report_written", path=str(path))
    return path


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from daemon.live.lifecycle import LiveDaemon

    loaded = load_config(args.configs)
    log = _log(args, loaded.settings.log)
    daemon = LiveDaemon(
        loaded,
        log=log,
        env=os.environ,
        allow_live=args.live,
        out_dir=args.out,
        install_signals=True,
    )
    code = asyncio.run(daemon.run())
    print(f"tradingd run ({daemon.mode}): stopped; wrote {daemon.out_dir}/")
    return code


def _sandbox(args: argparse.Namespace) -> int:
    import asyncio

    from sandbox import Sandbox, serve

    log = _log(args)
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


def _download(args: argparse.Namespace) -> int:
    import os

    from daemon.settings import ALPACA_DATA_URL
    from daemon.wiring import credentials
    from feeds.alpaca_history import HistoricalBars, download

    if args.end < args.start:
        raise ConfigError(f"command line: --end {args.end} is before --start {args.start}")
    key, secret = credentials(os.environ)
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    history = HistoricalBars(
        key=key, secret=secret, url=args.url or ALPACA_DATA_URL, feed=args.feed
    )
    log = _log(args)
    written = download(
        history, symbols, args.start, args.end, timeframe=args.timeframe, out_dir=args.out
    )
    for symbol, (path, rows) in sorted(written.items()):
        log.info("bars_downloaded", symbol=symbol, rows=rows, path=str(path) if rows else None)
        print(f"{symbol}: {rows:,} bars" + (f" -> {path}" if rows else " (none: no file)"))
    return 0


def _ctl(args: argparse.Namespace) -> int:
    import os

    from daemon.service.ctl import ctl

    status, body = ctl(args.action, url=args.url, token=os.environ.get("TRADINGD_CONTROL_TOKEN"))
    print(yaml.safe_dump(body, sort_keys=False), end="")
    return 0 if status < 400 else 1


def _audit(args: argparse.Namespace) -> int:
    from daemon.replay.audit import audit, describe

    result = audit(args.state_dir, config_override=args.config)
    for line in describe(result):
        print(line)
    _log(args).info(
        "audit_finished",
        state_dir=str(args.state_dir),
        slices=result.slices,
        differences=len(result.differences),
    )
    return 0 if not result.differences else 1


def _check_config(args: argparse.Namespace) -> int:
    from composer.registry import load_registry
    from daemon.config import build_strategies

    loaded = load_config(args.configs)
    # Strategies and their params are checked too, against the configured universe when it is
    # given (the data's symbols are only known when the data is read).
    universe = loaded.settings.symbols
    if universe:
        build_strategies(loaded, load_registry(), universe)
    print(f"# resolved from: {' '.join(loaded.files)}")
    print(yaml.safe_dump(redacted(loaded.settings), sort_keys=False), end="")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from feeds.synth import write_synthetic

    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    paths = write_synthetic(
        args.out,
        symbols=symbols,
        sessions=args.sessions,
        seed=args.seed,
        start=args.start,
        fmt=args.format,
    )
    _log(args).info(
        "synth_written", files=[str(p) for p in paths], sessions=args.sessions, seed=args.seed
    )
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
