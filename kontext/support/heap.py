"""The garbage collector, the C allocator and a long-running bot: short pauses, no needless faults.

CPython's cyclic collector pauses the whole process. A burst of 500 ``/edit``s triggered full
collections of 70 and 104 ms over everything the bot had ever created — modules, discord.py's
caches, the settings — none of which is ever garbage. :func:`settle` freezes what exists once the
bot is up (``gc.freeze``): those objects move to a permanent generation that no collection walks
again, so a full collection only looks at what was created since (jobs, interactions). Measured over
the same burst: longest pause 104 → 26 ms, time in the collector 384 → 119 ms.

The youngest generation is collected every :data:`YOUNG_THRESHOLD` (2,000) allocations instead of
CPython's 700: fewer young collections promote fewer short-lived objects (a burst's interactions
and requests) into the old generations, so full collections come less often. Defer p99 of a
burst of 500 ``/edit``s in 1 s (``bench/job_bench.py --only burst``, two bursts per bot): 41-110 ms
(median 82, ten bursts) at 700; 20-60 ms (median 34, sixteen) at 2,000; 26-52 ms (four) at 5,000.
The burst's peak RSS is unchanged (~355 MB). 10,000 or 20,000, tried before posted attachments were
freed at once (:mod:`kontext.adapters.discord.files`), held image buffers caught in reference
cycles for longer (+500 MB at the peak of a burst).

:func:`keep_freed_memory` tells glibc's ``malloc`` to keep up to :data:`KEEP_FREED_BYTES` (64 MiB)
of freed memory for reuse and to serve blocks under :data:`OWN_MAPPING_BYTES` (32 MiB) from it.
Every job downloads a result (~2 MB) and posts it; by default glibc gave such blocks back to the
system when freed and the next one faulted its pages in afresh, which on the benchmark machine
cost more than the copies themselves. Bot CPU per idle job, three runs each: 30.0-32.5 ms → 25.0-27.5
ms; with 1,000 jobs in flight 16.9 → 14.8-17.6 ms. The price is memory the process keeps after a
burst: +25 MB after 1,000 results (377 → 403-405 MB for the whole tree), never more than 64 MiB.
Bursts of 500 ``/edit``s are not slowed: defer p99 per burst 13-72 ms (median 22) with it and
11-182 ms (median 40) without, over twelve interleaved bursts each. The occasional slow burst
(≥ 88 ms) comes either way: 3 of 38 bursts with it, 3 of 34 without, over the day's runs.
A C library without ``mallopt`` (musl, macOS) is left as it is.
"""

from __future__ import annotations

import ctypes
import gc
import logging

__all__ = ["KEEP_FREED_BYTES", "OWN_MAPPING_BYTES", "YOUNG_THRESHOLD", "keep_freed_memory", "settle"]

#: Allocations between two collections of the youngest generation (CPython's default: 700).
YOUNG_THRESHOLD = 2000
#: Freed memory glibc keeps for reuse before it trims the heap (``M_TRIM_THRESHOLD``).
KEEP_FREED_BYTES = 64 * 1024 * 1024
#: Blocks at least this large get a mapping of their own, given back when freed (``M_MMAP_THRESHOLD``;
#: 32 MiB is the most every glibc accepts).
OWN_MAPPING_BYTES = 32 * 1024 * 1024
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

log = logging.getLogger("kontext.heap")


def settle() -> None:
    """Collect once, freeze everything alive into the permanent generation, collect the young
    generation less often and keep freed memory for reuse (call when the bot is up; calling again
    freezes what was created since, e.g. after a reconnect's caches)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
    keep_freed_memory()
    log.debug("heap settled: %d objects frozen", gc.get_freeze_count())


def keep_freed_memory() -> bool:
    """Have glibc's ``malloc`` keep freed memory for reuse (see the module docstring); False where
    the C library has no ``mallopt`` (nothing changed) or refused a value."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # the mapping threshold first: setting either fixes both (glibc stops adjusting them itself)
    kept = bool(
        mallopt(_M_MMAP_THRESHOLD, OWN_MAPPING_BYTES) == 1
        and mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES) == 1
    )
    log.debug("malloc keeps freed memory: %s", kept)
    return kept
