"""targets.csv: the rows the recorder writes in one piece are the ones csv.writer would write."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from composer.targets import Targets
from daemon.logs import EventLog
from daemon.recorder import Recorder

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
