"""The systemd notify protocol, against a real unix datagram socket."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.service.systemd import Notifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    try:
        yield sock, path
    finally:
        sock.close()


def test_ready_and_stopping_reach_the_socket(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    notifier.ready("trading 4 symbols")
    assert sock.recv(4096) == b"READY=1\nSTATUS=trading 4 symbols"
    notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"


def test_without_systemd_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.notify("READY=1") is False
    assert notifier.watchdog_interval_s is None


def test_a_vanished_socket_is_not_an_error(tmp_path: Path) -> None:
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}).notify("READY=1") is False


async def test_watchdog_pings_at_half_the_period_while_healthy(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})
    assert notifier.watchdog_interval_s == 0.05
    task = asyncio.create_task(notifier.watchdog(lambda: True))
    try:
        loop = asyncio.get_running_loop()
        first = await asyncio.wait_for(loop.run_in_executor(None, sock.recv, 64), 5)
        second = await asyncio.wait_for(loop.run_in_executor(None, sock.recv, 64), 5)
    finally:
        task.cancel()
    assert first == second == b"WATCHDOG=1"


async def test_watchdog_is_silent_while_unhealthy(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    sock.setblocking(False)
    healthy = False
    periods = 0
    woke = asyncio.Event()

    async def period(seconds: float) -> None:
        nonlocal periods, healthy
        periods += 1
        if periods == 5:
            with pytest.raises(BlockingIOError):
                sock.recv(64)  # five periods unhealthy: no ping at all
            healthy = True
        elif periods > 5:
            woke.set()
        await asyncio.sleep(0)

    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"})
    task = asyncio.create_task(notifier.watchdog(lambda: healthy, sleep=period))
    try:
        await asyncio.wait_for(woke.wait(), 5)
    finally:
        task.cancel()
    assert periods > 5
    assert sock.recv(64) == b"WATCHDOG=1"  # pinged once healthy again
