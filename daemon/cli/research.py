"""The research commands: `replay`, `walkforward` and `report`, and the report they may add."""

from __future__ import annotations

import argparse
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon.cli.log import command_log
from daemon.cli.options import out_folder
from daemon.config import Loc, load_config, run_overrides
from daemon.logs import EventLog
from daemon.replay.driver import progress_bar, replay
from feeds.errors import ConfigError


def replay_command(args: argparse.Namespace) -> int:
    """`tradingd replay`: one replay (paced and served with --serve) and its summary."""
    import pyarrow as pa

    # Arrow's default pool (mimalloc) keeps the pages that file parsing freed for the whole
    # run; the system allocator gives them back: about 60 MB less resident on a year of
    # minute bars, at no measurable cost in speed.
    pa.set_memory_pool(pa.system_memory_pool())
    if args.out is not None:
        out_folder("--out", args.out)
    loaded = load_config(args.configs, _overrides(args))
    log = command_log(args, loaded.settings.log)
    if args.serve:
        import asyncio
        import os

        from daemon.replay.paced import PacedReplay

        paced = PacedReplay(
            loaded,
            log=log,
            env=os.environ,
            speed=args.speed,
            out_dir=args.out,
            port=args.port,
            install_signals=True,
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
        f"  max drawdown {s['max_drawdown']:.2%}  sharpe {_ratio(s['sharpe'])}\n"
        f"  {s['wall_seconds']:.2f} s, {s['bars_per_second']:,} bars/s\n"
        f"  wrote {result.out_dir}/"
    )
    if args.report:
        print(f"  report {_write_report(result.out_dir, log)}")
    return 0


def walkforward_command(args: argparse.Namespace) -> int:
    """`tradingd walkforward`: the rolling train/test optimization and its summary."""
    from daemon.replay.walkforward.driver import walk_forward
    from daemon.replay.walkforward.jobs import default_workers

    out = out_folder(
        "--out", args.out or Path("out") / f"walkforward-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    )
    log = command_log(args)
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
        f"return {s['total_return']:+.2%}  cagr {s['cagr']:+.2%}  sharpe {_ratio(s['sharpe'])}  "
        f"max drawdown {s['max_drawdown']:.2%}\n"
        f"  {s['wall_seconds']:.1f} s\n"
        f"  wrote {result.out_dir}/ (equity.csv, folds.csv, summary.json)"
    )
    if args.report:
        print(f"  report {_write_report(result.out_dir, log)}")
    return 0


def report_command(args: argparse.Namespace) -> int:
    """`tradingd report`: report.html for a replay's or a walk-forward's folder."""
    print(_write_report(args.out_dir, command_log(args)))
    return 0


def _ratio(value: float | None) -> str:
    """A ratio as the summary line shows it; n/a when undefined (a flat series' Sharpe)."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.2f}"


def _overrides(args: argparse.Namespace) -> dict[Loc, Any]:
    if args.start and args.end and args.end < args.start:
        raise ConfigError(f"command line: --end {args.end} is before --start {args.start}")
    return run_overrides(
        data=args.data or None,
        symbols=[s for s in args.symbols.split(",") if s.strip()] if args.symbols else None,
        start=args.start,
        end=args.end,
    )


def _write_report(out_dir: Path, log: EventLog) -> Path:
    from daemon.research.report.folder import write_folder_report

    return write_folder_report(out_dir, log)
