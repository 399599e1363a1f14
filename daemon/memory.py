"""Handing memory the process freed back to the system."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable, Iterator

_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
_MMAP_THRESHOLD = 128 * 1024  # glibc's default, kept fixed


def arrow_on_system_heap() -> None:
    """Make Arrow allocate from the C library's heap, not its default pool (mimalloc or
    jemalloc), and have the heap map large blocks on their own, for the rest of the process.

    A replay reads its files a batch at a time (`feeds.replay.ReplaySource`): the batches'
    Arrow buffers and numpy columns live a moment each, between the long-lived objects of the
    run. The default pool would keep what they freed; glibc, which raises its mapping
    threshold after the first large free, would then put them in the heap, fragment it and
    keep its pages (about 80 MB over 1.47M bars). With the threshold fixed at its default,
    every block of 128 KiB or more is mapped alone and handed back when freed. Called before
    a parse by the drivers (not by `feeds`: it is a choice for the whole process).
    """
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
    mallopt = _libc_function("mallopt")
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)


def release_freed_memory() -> None:
    """Return the heap's free pages to the system (glibc's `malloc_trim(0)`); a no-op where
    there is no glibc.

    Parsing a data set frees most of what it allocated (Arrow buffers, intermediate arrays),
    but glibc keeps those pages mapped: at 1.47M bars the process stays at ~600 MB where ~250 MB
    is in use. Called once after a parse, it costs a few milliseconds.
    """
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)


def freeze_heap() -> None:
    """Collect once, then move every object alive into the collector's permanent generation,
    which later collections skip. `thaw_heap` undoes it.

    For a daemon at the end of its start-up: what it built then (modules, the configuration,
    the strategies' windows) lives for the run, and each full collection walked it all again:
    70-150 ms of the event loop at 500 symbols, every few minutes.
    """
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic collector off for a burst of allocation, on again after (if it was).

    For a daemon's warm-up: fetching and feeding ~200,000 bars allocates enough to set off
    full collections, each holding the interpreter for 20 ms or more from whichever thread
    allocated (the event loop's too). Reference counting still frees what is not in a cycle;
    `freeze_heap`'s collection at the end of the start-up finds the rest once.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def thaw_heap() -> None:
    """Give the frozen objects back to the collector (at a daemon's stop: what it leaves
    behind is garbage again, for a process that goes on, such as the tests')."""
    gc.unfreeze()


@functools.cache
def _libc_function(symbol: str) -> Callable[..., int] | None:
    """A function of glibc's allocator, or None where there is no glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function: Callable[..., int] = getattr(ctypes.CDLL(name), symbol)
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    return function
