"""kontext.support.native_heap: the C heap's free pages go back to the system after a burst."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from kontext.support.native_heap import HeapTrimmer, NativeHeap, glibc_heap

HEAP = glibc_heap()
#: glibc 2.33 or later (mallinfo2), as where CI runs: the trimmer must work there, not quietly do nothing.
LIBC, LIBC_VERSION = platform.libc_ver()
ON_GLIBC = LIBC == "glibc" and tuple(int(p) for p in LIBC_VERSION.split(".")[:2]) >= (2, 33)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def burst_leftovers() -> list[bytes]:
    """What a burst leaves: ~200 MB of 100 kB buffers (under glibc's mmap threshold, so in its
    heap) freed, with small buffers allocated between them still alive (so the heap's top is not
    free and glibc cannot shrink it by itself)."""
    big = []
    pins = []
    for _ in range(2000):
        big.append(bytes(100_000) + b"x")  # written, so resident
        pins.append(bytes(2000) + b"p")
    del big
    return pins


def test_glibc_is_found_where_there_is_one() -> None:
    assert (HEAP is not None) == ON_GLIBC


@pytest.mark.skipif(HEAP is None, reason="needs glibc's malloc_trim (CI runs on Linux with glibc)")
async def test_a_burst_s_free_heap_is_given_back() -> None:
    assert HEAP is not None
    pins = burst_leftovers()
    before = rss_mb()
    assert HEAP.free_bytes() > 150 * 1024 * 1024, "the freed buffers are still the heap's"
    trimmer = HeapTrimmer(HEAP, min_free_bytes=64 * 1024 * 1024)
    assert await trimmer.check() is True
    assert rss_mb() < before - 100, f"RSS {before:.0f} -> {rss_mb():.0f} MB"
    assert len(pins) == 2000, "the live buffers are untouched"


async def test_nothing_is_done_below_the_threshold_or_without_glibc() -> None:
    assert await HeapTrimmer(None).check() is False

    class Quiet(NativeHeap):
        def __init__(self) -> None:
            self.trimmed = 0

        def free_bytes(self) -> int:
            return 10 * 1024 * 1024

        def trim(self) -> bool:
            self.trimmed += 1
            return True

    quiet = Quiet()
    trimmer = HeapTrimmer(quiet, min_free_bytes=64 * 1024 * 1024)
    assert await trimmer.check() is False and quiet.trimmed == 0 and trimmer.trims == 0
