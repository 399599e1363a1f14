"""A walk-forward's replays as jobs of plain data, and the ways of running them: in this
process, in a process pool, or on a Dask cluster. A job's result depends only on the job."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

from daemon.config import LoadedConfig, Loc, load_config
from daemon.logs import EventLog
from daemon.memory import release_freed_memory
from daemon.replay.driver import replay
from daemon.wiring import open_source
from feeds.errors import ConfigError
from feeds.replay import ReplaySource

Mode: TypeAlias = Literal["serial", "processes", "dask"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One replay: plain data, so it pickles to a process or a Dask worker.

    Paths are absolute: a worker may run in another directory.
    """

    config_paths: tuple[str, ...]
    overrides: tuple[tuple[Loc, Any], ...]
    start: date
    end: date
    warmup_from: date
    out_dir: str
    want_equity: bool


@dataclass(frozen=True, slots=True)
class Curve:
    """A test window's equity curve as it crosses from a worker to the parent: two arrays, not
    a tuple per slice (a parent holding 16 curves of 24,570 minutes as tuples took ~60 MB).

    Attributes:
        times: the ISO times of `equity.csv`, as ASCII bytes.
        equity: the equity values, as `equity.csv` has them.
    """

    times: npt.NDArray[np.bytes_]
    equity: npt.NDArray[np.float64]

    def points(self) -> list[tuple[str, float]]:
        """(time, equity) per recorded slice."""
        times = [t.decode("ascii") for t in self.times.tolist()]
        return list(zip(times, self.equity.tolist(), strict=True))


@dataclass(frozen=True, slots=True, kw_only=True)
class JobResult:
    summary: dict[str, Any]
    # Only for test jobs (the joined curve needs it).
    curve: Curve | None


class Future(Protocol):
    """A job's result to come (a process pool's or Dask's future, or one already done)."""

    def result(self) -> JobResult: ...


def run_job(job: Job) -> JobResult:
    """Replay one window (a module-level function: process pools and Dask pickle it by name)."""
    loaded = load_config(job.config_paths, dict(job.overrides))
    out = Path(job.out_dir)
    result = replay(
        loaded,
        out_dir=out,
        log=EventLog(io.StringIO()),
        warmup_from=job.warmup_from,
        source=_HELD.get(loaded, job.warmup_from),
    )
    curve = _read_curve(out / "equity.csv") if job.want_equity else None
    return JobResult(summary=result.summary, curve=curve)


def _read_curve(path: Path) -> Curve:
    with path.open(newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        header = next(rows)
        at, value = header.index("time"), header.index("equity")
        times, equity = [], []
        for r in rows:
            times.append(r[at].encode("ascii"))
            equity.append(float(r[value]))
    return Curve(np.array(times, dtype=np.bytes_), np.array(equity, dtype=np.float64))


class HeldRange:
    """The rows of the last range this process replayed, held for the next job of the same
    range (a fold's training jobs differ only in their grid point).

    A job reads only its range from the files (`ReplaySource` streams them): a worker holds one
    window of rows, never the whole data set. Keyed by what the rows depend on, the files'
    sizes and modification times included, so a changed file is read again.
    """

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._source: ReplaySource | None = None

    def get(self, loaded: LoadedConfig, warmup_from: date) -> ReplaySource:
        """The rows of `loaded`'s data over the run's range from `warmup_from` on."""
        settings = loaded.settings
        data = settings.data
        key = (
            str(data.path),
            tuple(settings.symbols or ()),
            data.timezone,
            data.timeframe,
            warmup_from,
            settings.run.end,
            _stamp(Path(data.path)),
        )
        if self._source is None or key != self._key:
            self.clear()
            self._source = open_source(loaded, warmup_from=warmup_from).hold()
            self._key = key
            release_freed_memory()
        return self._source

    def clear(self) -> None:
        """Drop the held rows."""
        self._key = self._source = None


_HELD = HeldRange()


def _stamp(path: Path) -> tuple[tuple[str, int, int], ...]:
    """(name, size, mtime) of the file or of every file in the folder."""
    try:
        files = sorted(path.iterdir()) if path.is_dir() else [path]
        return tuple((f.name, (st := f.stat()).st_size, st.st_mtime_ns) for f in files)
    except OSError:
        return ()  # the read itself reports the problem


def runner(
    scheduler: str | None, workers: int
) -> tuple[Callable[[Job], Future], Mode, int, Callable[[], None]]:
    """(submit, mode, workers, close) for the chosen way of running jobs."""
    if scheduler is not None:
        try:
            from distributed import Client
        except ImportError:
            raise ConfigError("--scheduler needs Dask: pip install 'tradingd[dask]'") from None
        client = Client(scheduler)  # type: ignore[no-untyped-call]
        n = len(client.scheduler_info()["workers"])

        def submit_dask(job: Job) -> Future:
            future: Future = client.submit(run_job, job, pure=False)
            return future

        return submit_dask, "dask", n, client.close
    if workers == 1:
        return (lambda job: _Done(run_job(job))), "serial", 1, _HELD.clear
    pool: Executor = ProcessPoolExecutor(max_workers=workers)
    pool.submit(int)  # forks the workers now, from the process as it is (see walk_forward)

    def submit_pool(job: Job) -> Future:
        return pool.submit(run_job, job)

    return submit_pool, "processes", workers, lambda: pool.shutdown(cancel_futures=True)


def default_workers() -> int:
    """A sensible --workers default: the CPUs this process may use."""
    return max(len(os.sched_getaffinity(0)), 1)


@dataclass(frozen=True, slots=True)
class _Done:
    value: JobResult

    def result(self) -> JobResult:
        return self.value
