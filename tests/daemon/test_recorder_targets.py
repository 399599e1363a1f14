"""targets.csv and orders.csv: the rows the recorder writes in one piece are the ones csv.writer
would write; a live decision's rows, and the end of the targets it replaced, come after it."""

from __future__ import annotations

import asyncio
import csv
import io
import time
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from composer.targets import Targets
from daemon.live.loop import EngineLoop
from daemon.logs import EventLog
from daemon.recorder import Recorder
from daemon.run_files import plain_row

T0 = 1_704_205_800 * 10**9  # 2024-01-02T14:30:00Z


@pytest.mark.parametrize(
    "names", [["AAA", "BRK.B", "S0001"], ["AAA", 'we"ird', "a,b", "line\nbreak", "cr\rx"]]
)
def test_target_rows_are_csv_writer_rows(tmp_path: Path, names: list[str]) -> None:
    recorder = Recorder(tmp_path, EventLog(io.StringIO()))
    recorder.start()
    expected = io.StringIO()
    writer = csv.writer(expected, lineterminator="\n")
    writer.writerow(["time", "kind", "name", "weight"])
    for k in range(3):
        weights = {n: (i + 1) * 0.0123456789 * (k + 1) for i, n in enumerate(names)}
        strategies = {"trend": 0.5, "odd,id": 0.25}
        recorder.on_targets(
            Targets(
                ts=T0 + k * 60 * 10**9,
                weights=weights,
                strategy_weights=strategies,
                signals={},
            )
        )
        when = f"2024-01-02T14:3{k}:00Z"
        for n, w in weights.items():
            writer.writerow([when, "symbol", n, f"{w:.6f}"])
        for n, w in strategies.items():
            writer.writerow([when, "strategy", n, f"{w:.6f}"])
    recorder.close()
    assert (tmp_path / "targets.csv").read_bytes() == expected.getvalue().encode()


@given(st.lists(st.text(alphabet=st.sampled_from('ab,"\r\n 0.-'), max_size=6), max_size=14))
def test_a_plain_row_is_what_csv_writer_writes(fields: list[str]) -> None:
    # orders.csv rows go through `plain_row` (csv.writer when it declines).
    expected = io.StringIO()
    csv.writer(expected, lineterminator="\n").writerow(fields)
    line = plain_row(fields)
    assert line is None or line == expected.getvalue()
    if fields and "".join(fields) and not any(c in "".join(fields) for c in ',"\r\n'):
        assert line is not None  # declined only when a field needs quoting


def test_deferred_target_rows_are_the_rows_in_their_order(tmp_path: Path) -> None:
    # A live run writes a rebalance's rows after the decision (`defer_targets`): nothing is
    # written until then, and the file ends the same as one written at once.
    def targets(k: int) -> Targets:
        return Targets(
            ts=T0 + k * 60 * 10**9,
            weights={"AAA": 0.1 * k, "BBB": -0.05 * k},
            strategy_weights={"trend": 1.0},
            signals={},
        )

    at_once = Recorder(tmp_path / "at-once", EventLog(io.StringIO()))
    deferred = Recorder(tmp_path / "deferred", EventLog(io.StringIO()), flush_each_slice=True)
    deferred.defer_targets = True
    at_once.start()
    deferred.start()
    header = (tmp_path / "deferred" / "targets.csv").read_text()
    for k in range(4):
        at_once.on_targets(targets(k))
        deferred.on_targets(targets(k))
        if k == 0:
            assert (tmp_path / "deferred" / "targets.csv").read_text() == header
            deferred.write_due_targets()
            assert (
                "2024-01-02T14:30:00Z,symbol,AAA"
                in (tmp_path / "deferred" / "targets.csv").read_text()
            )
        # k = 1, 2: not written yet when the next rebalance comes; 3: written by close.
    at_once.close()
    deferred.close()
    assert (tmp_path / "deferred" / "targets.csv").read_bytes() == (
        tmp_path / "at-once" / "targets.csv"
    ).read_bytes()


async def test_the_targets_a_decision_replaced_end_after_the_tasks_it_woke() -> None:
    # `EngineLoop._decided` runs after each live decision with the targets the decision
    # replaced: a callback becomes their last holder, so they are freed after the broker's
    # sender (woken by the hand-over), the journal's records of a slice closed behind and the
    # target rows have run, not inside the decision.
    class Replaced:  # stands in for the Targets (a slots dataclass: no weak references)
        pass

    events: list[str] = []
    handed_over = asyncio.Event()

    async def sender() -> None:
        await handed_over.wait()
        events.append("sender ran" if ref() is not None else "sender ran after the free")

    task = asyncio.create_task(sender())
    await asyncio.sleep(0)  # the sender waits for the hand-over
    replaced = Replaced()
    ref = weakref.ref(replaced, lambda _: events.append("freed"))
    handed_over.set()
    recorder = SimpleNamespace(write_due_targets=lambda: events.append("rows"))
    loop = SimpleNamespace(recorder=recorder, _write_behind=lambda: events.append("journal"))
    EngineLoop._decided(cast(Any, loop), cast(Any, replaced))
    del replaced
    assert ref() is not None  # the decision's own turn does not free them
    await asyncio.wait_for(task, timeout=5)
    deadline = time.monotonic() + 5
    while ref() is not None and time.monotonic() < deadline:
        await asyncio.sleep(0)
    assert events == ["sender ran", "journal", "rows", "freed"]
