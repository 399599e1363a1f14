"""The status page's weight, and what open pages cost the daemon per slice.

A paper daemon trades on the sandbox in this process (the sandbox stepped by hand, one minute a
step); `--pages` clients hold /events open and read every push. The same minutes are played
with no page open, then with the pages; the figures are the process's CPU time per slice (the
daemon's decision, the sandbox's side and, with pages, the pushes), and the cost of one push
measured alone (the snapshot built and serialized once, then written to every page).

    python tests/bench/status_pages.py [--pages 10] [--minutes 60]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from daemon.service.status_page import StatusPage  # noqa: E402
from sandbox import Sandbox  # noqa: E402
from tests.daemon.livekit import DATA, Session, start_session  # noqa: E402

ASSETS = ("index.html", "status.js", "status.css", "icon.svg")


def weight() -> None:
    folder = resources.files("daemon.service").joinpath("assets")
    sizes = {name: len(folder.joinpath(name).read_bytes()) for name in ASSETS}
    total = sum(sizes.values())
    print(f"page: {len(sizes)} files, {total:,} bytes uncompressed ({sizes}); + /events")


async def pages_open(url: str, n: int) -> list[asyncio.subprocess.Process]:
    """`n` readers of /events in other processes (curl), so their CPU is not the daemon's."""
    return [
        await asyncio.create_subprocess_exec(
            "curl", "-sN", "-o", "/dev/null", url, stdin=asyncio.subprocess.DEVNULL
        )
        for _ in range(n)
    ]


async def play(session: Session, minutes: int, page: StatusPage | None) -> tuple[float, float]:
    """CPU and wall seconds per slice over `minutes` steps; with pages open, each step waits
    until the slice's push went out (as live, where slices are a minute apart and each gets
    its own push)."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(minutes):
        before = page.pushes if page is not None else 0
        await session.step(1)
        if page is not None:
            async with asyncio.timeout(20):
                while page.pushes == before:
                    await asyncio.sleep(0.02)  # a bench: a coarse poll costs next to nothing
        else:
            # The same wall time per slice as with pages (the rate limit's wait), so the
            # daemon's timers (loop lag, clock, watch) cost the same in both runs.
            await asyncio.sleep(0.25)
    return (time.process_time() - cpu) / minutes, (time.perf_counter() - wall) / minutes


async def run(pages: int, minutes: int) -> None:
    # The recorder strategy of the tests is not installed here: a built-in one rebalances.
    strategies: dict[str, Any] = {"mom": {"type": "momentum", "params": {"lookback": 5}}}
    with tempfile.TemporaryDirectory() as tmp:
        box = Sandbox(DATA, speed=None, warm_minutes=120, key="test-key", secret="test-secret")
        await box.start()
        session = await start_session(Path(tmp), box, strategies=strategies)
        daemon = session.daemon
        try:
            assert daemon.http is not None
            page = daemon.http.page
            await play(session, 5, None)  # warm
            alone_cpu, alone_wall = await play(session, minutes, None)
            readers = await pages_open(daemon.http.url + "/events", pages)
            async with asyncio.timeout(20):
                while page.open_pages < pages:
                    await asyncio.sleep(0.01)
            pushes = page.pushes
            with_cpu, with_wall = await play(session, minutes, page)
            pushes = page.pushes - pushes
            n = 200
            started = time.perf_counter()
            for _ in range(n):
                message = page.message()
            build_s = (time.perf_counter() - started) / n
            for process in readers:
                process.terminate()  # by its own PID
                await process.wait()
        finally:
            await session.stop()
            await box.close()
    print(f"slices: {minutes} per run; pushes during the run with pages: {pushes}")
    print("(each slice waits ~0.25 s, the push's rate limit, in both runs)")
    print(f"no page open:  {alone_cpu * 1e3:.2f} ms CPU / slice ({alone_wall * 1e3:.1f} ms wall)")
    print(
        f"{pages} pages open: {with_cpu * 1e3:.2f} ms CPU / slice ({with_wall * 1e3:.1f} ms wall)"
    )
    print(f"added: {(with_cpu - alone_cpu) * 1e3:+.2f} ms CPU / slice")
    print(f"one push: snapshot + JSON {build_s * 1e3:.3f} ms, {len(message):,} bytes per page")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--minutes", type=int, default=60)
    args = parser.parse_args()
    weight()
    asyncio.run(run(args.pages, args.minutes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
