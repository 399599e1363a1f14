"""Every notebook in examples/ runs top to bottom, in a kernel of this environment, within a
minute (on the shipped sample), so none can rot. The committed files keep their outputs; this
executes a copy."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent.parent
NOTEBOOKS = sorted((ROOT / "examples").glob("*.ipynb"))
# Each runs in well under a minute here; the margin is for a loaded 2-core CI machine.
BUDGET_S = 180


def test_there_are_the_three_notebooks() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_replay.ipynb",
        "02_strategy.ipynb",
        "03_composers.ipynb",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_notebook_runs_top_to_bottom(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # jupyter_core's own paths, without its warning about the move to platformdirs.
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    book = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    executed = [c.execution_count for c in book.cells if c.cell_type == "code"]
    assert None not in executed, "commit the notebook run, with its outputs"
    started = time.perf_counter()
    # Runs in examples/, as a reader's Jupyter would; the notebook steps up to the checkout.
    client = NotebookClient(
        book,
        timeout=BUDGET_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    assert time.perf_counter() - started < BUDGET_S
    errors = [o for c in book.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
