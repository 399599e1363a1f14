"""A walk-forward worker reads a range once for the jobs of that range, and again only when the
range or a file changed."""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path
from typing import Any

from daemon.config import Loc, load_config
from daemon.replay.walkforward.jobs import HeldRange

ROOT = Path(__file__).resolve().parents[2]


def test_the_range_is_held_until_it_or_a_file_changes(tmp_path: Path) -> None:
    data = tmp_path / "daily"
    shutil.copytree(ROOT / "data/sample/daily", data)
    overrides: dict[Loc, Any] = {("data", "path"): str(data), ("run", "start"): "2005-01-03"}
    loaded = load_config([str(ROOT / "config/base.yaml")], overrides)
    held = HeldRange()
    first = held.get(loaded, date(2004, 12, 1))
    assert held.get(loaded, date(2004, 12, 1)) is first
    again = load_config([str(ROOT / "config/base.yaml")], overrides)
    assert held.get(again, date(2004, 12, 1)) is first  # an equal config, loaded anew
    bars = [bar for bar, _ in first]
    assert [bar for bar, _ in first] == bars  # held rows iterate again, the same
    other = held.get(loaded, date(2004, 11, 1))
    assert other is not first
    assert len(other) > len(first)
    some = sorted(data.iterdir())[0]
    stat = some.stat()
    os.utime(some, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert held.get(loaded, date(2004, 11, 1)) is not other
    held.clear()
