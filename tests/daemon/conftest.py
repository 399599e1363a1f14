"""Fixtures of the daemon tests."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sandbox import Sandbox
from tests.daemon.livekit import DATA

RECORDER = textwrap.dedent(
    """
    from typing import ClassVar
    from pydantic import BaseModel, ConfigDict
    from composer.strategy import Strategy, strategy
    from feeds.bar import Bar

    class Params(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")

    @strategy("recorder", params=Params)
    class Recorder(Strategy[Params]):
        \"\"\"Always fully long; remembers every bar it was shown.\"\"\"

        seen: ClassVar[list[Bar]] = []

        @property
        def warmup_bars(self) -> int:
            return 0

        def on_bar(self, bar: Bar) -> None:
            Recorder.seen.append(bar)
            self.signals[bar.symbol] = 1.0
    """
)


@pytest.fixture
def recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A third-party strategy package, installed for real: a module and its dist-info with an
    entry point in the `tradingd.strategies` group, on sys.path. Registered as "recorder"."""
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / "recorder_strategy.py").write_text(RECORDER)
    info = site / "recorder_strategy-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: recorder-strategy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[tradingd.strategies]\nrecorder = recorder_strategy:Recorder\n"
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "recorder_strategy", raising=False)
    import recorder_strategy  # type: ignore[import-not-found]

    return recorder_strategy.Recorder


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """The sandbox on an ephemeral port, stepped by hand, 120 minutes of history."""
    box = Sandbox(DATA, speed=None, warm_minutes=120, key="test-key", secret="test-secret")
    await box.start()
    try:
        yield box
    finally:
        await box.close()
