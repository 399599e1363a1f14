"""One replay from Python: `replay(config)` gives a `Run` of DataFrames, on disk or not."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import IO, Any, Literal

import orjson
import pandas as pd

from daemon.config import Loc, run_overrides
from daemon.logs import EventLog
from daemon.replay.driver import replay as _replay
from daemon.research.report.folder import write_folder_report
from feeds.errors import ConfigError, SourceError
from tradingd.config import Config, load_config, with_arguments
from tradingd.frames import frame

LogLevel = Literal["debug", "info", "warning", "error"]
# The files of a replay's folder that a Run reads, each a DataFrame of the same name.
RUN_FILES = (
    "equity.csv",
    "orders.csv",
    "fills.csv",
    "targets.csv",
    "risk_events.csv",
    "rejected_bars.csv",
)
ConfigLike = Config | str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


class Run:
    """A finished replay: its summary and its files as DataFrames indexed by time (UTC).

    The frames are read from the run's files on first use: `equity` (cash, equity,
    gross_exposure, drawdown per slice), `orders`, `fills`, `targets` (kind, name, weight at
    each rebalance that changed them), `risk_events` and `rejected_bars`. Their columns are
    those of the files `tradingd replay` writes (see the README's "What a replay writes");
    numbers are floats, times are tz-aware UTC.

    Attributes:
        summary: what `summary.json` holds (bars, orders, fills, equity, return, drawdown,
            Sharpe, positions, ...).
        out_dir: the folder the run was written to; None for a run kept in memory.
    """

    def __init__(
        self, summary: dict[str, Any], texts: Mapping[str, str], out_dir: Path | None
    ) -> None:
        self.summary = summary
        self.out_dir = out_dir
        self._texts = dict(texts)

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"<Run {s.get('run_id')}: {s.get('slices')} slices, {s.get('orders')} orders, "
            f"return {s.get('total_return', 0.0):+.2%}, sharpe {s.get('sharpe', 0.0):.2f}, "
            f"max drawdown {s.get('max_drawdown', 0.0):.2%}>"
        )

    @cached_property
    def equity(self) -> pd.DataFrame:
        """One row per slice: cash, equity, gross_exposure, drawdown."""
        return frame("equity.csv", self._texts["equity.csv"])

    @cached_property
    def orders(self) -> pd.DataFrame:
        """Every order sent, by decision time: slice_time, client_order_id, symbol, side, qty,
        type, limit_price, risk, status, filled_qty, avg_fill_price, detail."""
        return frame("orders.csv", self._texts["orders.csv"])

    @cached_property
    def fills(self) -> pd.DataFrame:
        """Every fill: client_order_id, symbol, side, qty, price, commission, execution_id."""
        return frame("fills.csv", self._texts["fills.csv"])

    @cached_property
    def targets(self) -> pd.DataFrame:
        """The composed weight per symbol (`kind` = `symbol`) and the capital weight per
        strategy (`kind` = `strategy`), at each rebalance that changed them."""
        return frame("targets.csv", self._texts["targets.csv"])

    @cached_property
    def risk_events(self) -> pd.DataFrame:
        """Every denied or clipped order and every kill-switch trip, with the reason."""
        return frame("risk_events.csv", self._texts["risk_events.csv"])

    @cached_property
    def rejected_bars(self) -> pd.DataFrame:
        """Every quarantined bar: file, row, symbol, reason (the time is NaT if unreadable)."""
        return frame("rejected_bars.csv", self._texts["rejected_bars.csv"])

    def report(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the HTML report of this run (as `tradingd report` does) and return its path.

        Args:
            path: where the HTML goes (its folder is created); by default `report.html` in the
                run's folder. A run kept in memory needs a path.

        Raises:
            ConfigError: a run kept in memory and no path.
        """
        if self.out_dir is not None:
            written = write_folder_report(self.out_dir, _quiet_log())
            return written if path is None else _copy(written, Path(path))
        if path is None:
            raise ConfigError("Run.report(): this run is in memory (out=None): give a path")
        with tempfile.TemporaryDirectory(prefix="tradingd-report-") as tmp:
            folder = Path(tmp)
            self._write_files(folder)
            return _copy(write_folder_report(folder, _quiet_log()), Path(path))

    def _write_files(self, folder: Path) -> None:
        for name, text in self._texts.items():
            (folder / name).write_text(text, encoding="utf-8", newline="")
        (folder / "summary.json").write_bytes(
            orjson.dumps(self.summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        )


def replay(
    config: ConfigLike,
    *,
    data: str | os.PathLike[str] | None = None,
    symbols: Sequence[str] | None = None,
    start: date | str | None = None,
    end: date | str | None = None,
    out: str | os.PathLike[str] | None = None,
    log_level: LogLevel = "warning",
) -> Run:
    """Replay history through the event path with the simulated broker, as `tradingd replay`.

    Args:
        config: a [`Config`][tradingd.Config], or YAML overlay paths to load.
        data: a data file or folder (overrides `data.path`).
        symbols: the universe (overrides `symbols`).
        start: first New York trading date, inclusive (overrides `run.start`).
        end: last New York trading date, inclusive (overrides `run.end`).
        out: the folder to write the run's files into, as `tradingd replay --out`; None keeps
            them in memory and writes nothing to disk.
        log_level: the least level of the JSON-free text log lines written to stderr.

    Returns:
        The finished run.

    Raises:
        ConfigError: a bad config or argument; the message names the key.
        SourceError: the data cannot be read, or holds no bars in the range.
    """
    cfg = with_arguments(
        as_config(config), _run_overrides(data, symbols, start, end), "replay() arguments"
    )
    log = _log(log_level)
    if out is None:
        memory = _MemoryFiles()
        result = _replay(cfg.loaded, out_dir=None, log=log, opener=memory.open)
        return Run(result.summary, {n: memory.texts[n] for n in RUN_FILES}, None)
    result = _replay(cfg.loaded, out_dir=Path(out), log=log)
    return load_run(result.out_dir)


def load_run(path: str | os.PathLike[str]) -> Run:
    """The run a replay wrote into `path` (by `tradingd replay` or `replay(out=...)`).

    Raises:
        SourceError: the folder holds no finished run (no summary.json, or a file missing).
    """
    folder = Path(path)
    try:
        summary = orjson.loads((folder / "summary.json").read_bytes())
        texts = {name: (folder / name).read_text(encoding="utf-8") for name in RUN_FILES}
    except FileNotFoundError as e:
        raise SourceError(
            f"{folder}: not a finished replay's folder ({e.filename} missing)"
        ) from None
    return Run(summary, texts, folder)


def as_config(config: ConfigLike) -> Config:
    """A `Config` as it is, or the overlays named by a path or a sequence of paths, loaded."""
    if isinstance(config, Config):
        return config
    if isinstance(config, str | os.PathLike):
        return load_config(config)
    return load_config(*config)


def _run_overrides(
    data: str | os.PathLike[str] | None,
    symbols: Sequence[str] | None,
    start: date | str | None,
    end: date | str | None,
) -> dict[Loc, Any]:
    if isinstance(symbols, str):
        raise ConfigError(f"replay() arguments: symbols: a list of symbols, not {symbols!r}")
    return run_overrides(data=data, symbols=symbols, start=start, end=end)


def _copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(source, target))


def _log(level: LogLevel) -> EventLog:
    # Text lines, not JSON: a notebook shows stderr to a person.
    return EventLog(level=level, fmt="text")


def _quiet_log() -> EventLog:
    return EventLog(level="warning", fmt="text")


class _MemoryFiles:
    """The files of a run as text in memory: the recorder's `opener`."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def open(self, name: str) -> IO[str]:
        return _KeptText(self.texts, name)


class _KeptText(io.StringIO):
    """A text buffer that hands its contents over when it is closed."""

    def __init__(self, texts: dict[str, str], name: str) -> None:
        super().__init__()
        self._texts = texts
        self._name = name

    def close(self) -> None:
        if not self.closed:
            self._texts[self._name] = self.getvalue()
        super().close()
