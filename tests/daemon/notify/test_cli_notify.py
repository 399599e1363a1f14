"""`tradingd notify test` as a user runs it: a child process, its targets local receivers."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import yaml

from tests.daemon.notify.receivers import DISCORD_SECRET, SLACK_SECRET, Fault, Receivers

ROOT = Path(__file__).resolve().parents[3]


async def notify_test(config: Path, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon.cli",
        "notify",
        "test",
        str(ROOT / "config" / "base.yaml"),
        str(config),
        "--text",
        "hello from the test",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_each_target_gets_one_message_and_its_outcome_is_printed(
    tmp_path: Path, receivers: Receivers
) -> None:
    receivers.arm("discord", Fault("500"))
    config = tmp_path / "notify.yaml"
    notify = {"label": "box 1", "targets": [{"type": "slack"}, {"type": "discord"}]}
    config.write_text(yaml.safe_dump({"notify": notify}), encoding="utf-8")
    code, out, err = await notify_test(config, receivers.env)
    assert code == 1, err
    assert out.splitlines() == [
        "slack: sent",
        "discord: FAILED: HTTP 500: internal error handling ***",
    ]
    assert receivers.texts("slack") == ["[box 1] hello from the test"]
    assert SLACK_SECRET not in out + err
    assert DISCORD_SECRET not in out + err


async def test_without_a_target_it_says_so(tmp_path: Path) -> None:
    config = tmp_path / "empty.yaml"
    config.write_text("notify: {targets: []}\n", encoding="utf-8")
    code, out, err = await notify_test(config, {})
    assert code == 2
    assert out == ""
    files = f"{ROOT / 'config' / 'base.yaml'} {config}"
    assert err == f"tradingd: error: {files}: notify.targets: no target is configured\n"
