"""A walk-forward worker parses its data once for all its jobs, and again only if it changed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from daemon.config import load_config
from daemon.replay.walkforward.jobs import ParsedData

ROOT = Path(__file__).resolve().parents[2]


def test_the_parse_is_reused_until_a_file_changes(tmp_path: Path) -> None:
    data = tmp_path / "daily"
    shutil.copytree(ROOT / "data/sample/daily", data)
    loaded = load_config([str(ROOT / "config/base.yaml")], {("data", "path"): str(data)})
    cache = ParsedData()
    first = cache.get(loaded)
    assert cache.get(loaded) is first
    again = load_config([str(ROOT / "config/base.yaml")], {("data", "path"): str(data)})
    assert cache.get(again) is first  # an equal config, loaded anew: still the same parse
    some = sorted(data.iterdir())[0]
    stat = some.stat()
    os.utime(some, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cache.get(loaded) is not first
    cache.clear()
