"""targets.csv and orders.csv: the rows the recorder writes in one piece are the ones csv.writer
would write."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from composer.targets import Targets
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
                by_strategy={},
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
