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

from daemon.config import Loc, load_config
from daemon.logs import EventLog
from daemon.replay.driver import replay
from feeds.errors import ConfigError

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


@dataclass(frozen=True, slots=True, kw_only=True)
class JobResult:
    summary: dict[str, Any]
    # (time ISO, equity) per recorded slice; only for test jobs (the joined curve needs it).
    equity: tuple[tuple[str, float], ...]


class Future(Protocol):
    """A job's result to come (a process pool's or Dask's future, or one already done)."""

    def result(self) -> JobResult: ...


def run_job(job: Job) -> JobResult:
    """Replay one window (a module-level function: process pools and Dask pickle it by name)."""
    loaded = load_config(job.config_paths, dict(job.overrides))
    out = Path(job.out_dir)
    # The source streams the job's range from the files: a worker holds a few batches of
    # rows, not the data set, and parses only the rows its range keeps.
    result = replay(loaded, out_dir=out, log=EventLog(io.StringIO()), warmup_from=job.warmup_from)
    equity: tuple[tuple[str, float], ...] = ()
    if job.want_equity:
        with (out / "equity.csv").open(newline="", encoding="utf-8") as f:
            rows = csv.reader(f)
            header = next(rows)
            at, value = header.index("time"), header.index("equity")
            equity = tuple((r[at], float(r[value])) for r in rows)
    return JobResult(summary=result.summary, equity=equity)


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
        return (lambda job: _Done(run_job(job))), "serial", 1, lambda: None
    pool: Executor = ProcessPoolExecutor(max_workers=workers)

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
