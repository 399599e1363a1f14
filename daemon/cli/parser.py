"""The argument table of `tradingd`: one function per command, in the order `--help` lists them.

Each command's parser names its handler (`set_defaults(func=...)`) in `research`, `live` or
`tools`; `daemon.cli.main` calls it.
"""

from __future__ import annotations

import argparse
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import TypeAlias

from daemon.cli import options
from daemon.cli.journal import journal_command
from daemon.cli.live import audit_command, ctl_command, run_command
from daemon.cli.notify import notify_test_command
from daemon.cli.research import replay_command, report_command, walkforward_command
from daemon.cli.tools import check_config_command, download_command, sandbox_command, synth_command

SANDBOX_PORT = 8765
HTTP_PORT = 9108

_Commands: TypeAlias = "argparse._SubParsersAction[options.Parser]"


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; each sets `func`, the handler of its parsed arguments."""
    common = options.Parser(add_help=False)
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
    runs = options.Parser(add_help=False, parents=[common])
    runs.add_argument("configs", nargs="+", metavar="CONFIG", help="YAML overlays, merged in order")
    runs.add_argument("--data", help="a data file or folder (overrides data.path)")
    runs.add_argument("--symbols", help="comma-separated universe (overrides symbols)")
    runs.add_argument(
        "--start", type=options.day, help="first date, YYYY-MM-DD (overrides run.start)"
    )
    runs.add_argument("--end", type=options.day, help="last date, inclusive (overrides run.end)")
    runs.add_argument("--report", action="store_true", help="also write report.html")
    parser = options.Parser(
        prog="tradingd",
        description="A trading daemon for Alpaca; replays history through the code that trades.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_replay(sub, runs)
    _add_walkforward(sub, runs)
    _add_report(sub, common)
    _add_run(sub, common)
    _add_sandbox(sub, common)
    _add_ctl(sub, common)
    _add_audit(sub, common)
    _add_journal(sub, common)
    _add_check_config(sub, common)
    _add_bars(sub, common)
    _add_notify(sub, common)
    return parser


def _add_replay(sub: _Commands, runs: options.Parser) -> None:
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
    rp.add_argument(
        "--port",
        type=options.checked("--port", options.any_port),
        help="with --serve: the HTTP port (default http.port; 0: any free port)",
    )
    rp.set_defaults(func=replay_command)


def _add_walkforward(sub: _Commands, runs: options.Parser) -> None:
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
    wf.add_argument(
        "--objective",
        default="sharpe",
        help="summary figure to maximize: sharpe (default), total_return or final_equity",
    )
    wf.add_argument("--scheduler", help="a Dask scheduler address (tcp://host:8786)")
    wf.add_argument("--workers", type=options.positive_int, help="processes (default: the CPUs)")
    wf.add_argument("--seed", type=int, default=0)
    wf.add_argument("--out", type=Path, help="output folder (default: out/walkforward-<time>/)")
    wf.set_defaults(func=walkforward_command)


def _add_report(sub: _Commands, common: options.Parser) -> None:
    rep = sub.add_parser(
        "report",
        parents=[common],
        help="write report.html for a replay's output folder",
        description="Write one self-contained HTML report (plots inlined) for the output folder "
        "of a replay: equity against buy-and-hold of the same universe, drawdown, exposure, "
        "weights, regimes, rolling Sharpe, monthly returns, trades, rejected bars, metrics.",
    )
    rep.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    rep.set_defaults(func=report_command)


def _add_run(sub: _Commands, common: options.Parser) -> None:
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
    run.set_defaults(func=run_command)


def _add_sandbox(sub: _Commands, common: options.Parser) -> None:
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
    sb.set_defaults(func=sandbox_command)


def _add_ctl(sub: _Commands, common: options.Parser) -> None:
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
    ctl.set_defaults(func=ctl_command)


def _add_audit(sub: _Commands, common: options.Parser) -> None:
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
    au.add_argument(
        "--since",
        type=options.day,
        help="audit only the sessions on or after this date, YYYY-MM-DD (from a snapshot)",
    )
    au.add_argument(
        "--sessions",
        type=options.positive_int,
        help="audit only the last N sessions (from a snapshot): time follows the range",
    )
    au.set_defaults(func=audit_command)


def _add_journal(sub: _Commands, common: options.Parser) -> None:
    jo = sub.add_parser(
        "journal",
        parents=[common],
        help="a journal's size (stats), its retention (compact), its contents out (export)",
        description="stats: sizes, rows, sessions (read-only, beside a running daemon too). "
        "compact: move inputs and decisions older than the last --keep-sessions sessions to "
        "compressed Parquet in STATE_DIR/archive/ (or drop them), then VACUUM (needs the "
        "daemon stopped). export: write inputs, decisions, orders and fills as Parquet.",
    )
    jo.add_argument("action", choices=["stats", "compact", "export"])
    jo.add_argument("state_dir", type=Path, metavar="STATE_DIR")
    jo.add_argument(
        "--keep-sessions",
        type=options.positive_int,
        default=30,
        help="compact: sessions of inputs kept (default 30)",
    )
    jo.add_argument("--drop", action="store_true", help="compact: drop instead of archiving")
    jo.add_argument("--no-vacuum", action="store_true", help="compact: skip the VACUUM")
    jo.add_argument("--out", type=Path, help="export: the output folder")
    jo.add_argument(
        "--sessions", type=options.positive_int, help="export: only the last N sessions' inputs"
    )
    jo.set_defaults(func=journal_command)


def _add_check_config(sub: _Commands, common: options.Parser) -> None:
    cc = sub.add_parser(
        "check-config",
        parents=[common],
        help="validate config overlays and print the result",
    )
    cc.add_argument("configs", nargs="+", metavar="CONFIG")
    cc.set_defaults(func=check_config_command)


def _add_bars(sub: _Commands, common: options.Parser) -> None:
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
    synth.set_defaults(func=synth_command)
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
    dl.set_defaults(func=download_command)


def _add_notify(sub: _Commands, common: options.Parser) -> None:
    notify = sub.add_parser("notify", help="notification tools")
    notify_sub = notify.add_subparsers(dest="notify_command", required=True, metavar="COMMAND")
    test = notify_sub.add_parser(
        "test",
        parents=[common],
        help="send one test message to every target of the config's notify: section",
    )
    test.add_argument("configs", nargs="+", metavar="CONFIG", help="YAML overlays, merged in order")
    test.add_argument("--text", help="the message (default: a fixed test sentence)")
    test.set_defaults(func=notify_test_command)
