"""Give the C heap's free pages back to the system after a burst (glibc; elsewhere a no-op).

CPython hands every buffer over 512 bytes (downloads, uploads, JSON, HTTP chunks) to ``malloc``.
glibc keeps the pages of freed memory in the main heap mapped unless they sit at its very top, so a
bot that carried 1,000 jobs stayed at 1.1-1.5 GB of RSS after they had all ended, although
``mallinfo2`` counted under 20 MB of it in use (416 MB of heap, 397 MB of it free). ``malloc_trim(0)``
returns those free pages (measured: 623 -> 96 MB of RSS for the bot after 600 jobs).

:class:`HeapTrimmer` checks every ``interval`` seconds how much of the heap is free (``mallinfo2``:
a walk of malloc's free lists, microseconds) and, past ``min_free_bytes``, trims in a worker thread:
ctypes releases the GIL for the call, so the event loop goes on (its own allocations wait for the
heap's lock for the few milliseconds the trim takes). Trimming while busy only costs page faults
later, so the threshold keeps it to what a burst leaves behind.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from typing import Final

__all__ = ["HeapTrimmer", "NativeHeap", "glibc_heap"]

log = logging.getLogger("kontext.heap")

#: Free heap worth giving back: below it, a trim is not worth the page faults it may cause later.
MIN_FREE_BYTES: Final = 64 * 1024 * 1024
#: How often the heap is looked at.
INTERVAL_S: Final = 10.0


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (glibc 2.33+): every field a ``size_t``."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


class NativeHeap:
    """glibc's ``mallinfo2`` and ``malloc_trim``."""

    def __init__(self, libc: ctypes.CDLL) -> None:
        self._mallinfo2 = libc.mallinfo2
        self._mallinfo2.restype = _MallInfo2
        self._mallinfo2.argtypes = []
        self._trim = libc.malloc_trim
        self._trim.restype = ctypes.c_int
        self._trim.argtypes = [ctypes.c_size_t]

    def free_bytes(self) -> int:
        """Bytes malloc holds free in its heaps (``fordblks``)."""
        return int(self._mallinfo2().fordblks)

    def trim(self) -> bool:
        """Return free pages to the system (``malloc_trim(0)``); True when some were."""
        return bool(self._trim(0))


def glibc_heap() -> NativeHeap | None:
    """The process's glibc heap, or None (musl, macOS, Windows, glibc before 2.33)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        if not (hasattr(libc, "mallinfo2") and hasattr(libc, "malloc_trim")):
            return None
        return NativeHeap(libc)
    except OSError:
        return None


class HeapTrimmer:
    """Trims the heap now and then, when enough of it is free (see the module docstring)."""

    def __init__(
        self,
        heap: NativeHeap | None,
        *,
        interval: float = INTERVAL_S,
        min_free_bytes: int = MIN_FREE_BYTES,
    ) -> None:
        self.heap = heap
        self.interval = interval
        self.min_free_bytes = min_free_bytes
        #: Trims done (for tests and the log).
        self.trims = 0

    async def check(self) -> bool:
        """Trim if at least ``min_free_bytes`` are free; True when it trimmed."""
        heap = self.heap
        if heap is None:
            return False
        free = heap.free_bytes()
        if free < self.min_free_bytes:
            return False
        await asyncio.get_running_loop().run_in_executor(None, heap.trim)
        self.trims += 1
        log.debug("gave the C heap's free pages back: %d MB were free", free // (1024 * 1024))
        return True
