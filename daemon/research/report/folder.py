"""The report of an output folder as `tradingd report` writes it: the replay's or the
walk-forward's files, and the buy-and-hold benchmark when the data it read is still there."""

from __future__ import annotations

from pathlib import Path

from daemon.logs import EventLog
from daemon.research.metrics import load_closes, read_summary
from daemon.research.report.document import (
    is_walkforward,
    walkforward_symbols,
    write_report,
    write_walkforward_report,
)
from feeds.replay import ReplaySource


def write_folder_report(out_dir: Path, log: EventLog) -> Path:
    """Write `out_dir/report.html` for a replay or walk-forward folder and return its path.

    The benchmark (an equal-weight buy-and-hold of the universe) is drawn when the data the run
    read is still where it was; otherwise the report goes without it, with a warning.

    Raises:
        SourceError: the folder is not a finished run's (no summary.json).
    """
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
