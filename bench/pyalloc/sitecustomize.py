"""Python allocations of the bot, for ``job_bench``'s ``pyalloc`` scenario only (the bot's code is untouched).

Python imports ``sitecustomize`` at start-up from the first directory on its path that has one;
``job_bench`` puts this directory on the bot's ``PYTHONPATH`` together with
``KONTEXT_BENCH_ALLOC_FILE``. Then, before ``bot.py`` runs, :mod:`tracemalloc` starts (one frame per
allocation: it slows the bot down, so that scenario reports memory only), and every ``SIGUSR1``
runs a full garbage collection and appends one JSON line to that file: the bytes Python holds now, the
most it held since the previous ``SIGUSR1`` (about: less what this hook itself holds), and the
allocation sites that changed most since the first one. Without the variable, nothing happens.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import tracemalloc
from types import FrameType

_PATH = os.environ.get("KONTEXT_BENCH_ALLOC_FILE")
#: bytes and blocks per allocation site ("file:line") at the first SIGUSR1
_base: dict[str, tuple[int, int]] = {}


#: this measurement's own allocations (the dictionaries here, tracemalloc's snapshots) are left out
_OWN = (tracemalloc.__file__, __file__)


def _sites() -> dict[str, tuple[int, int]]:
    stats = tracemalloc.take_snapshot().statistics("lineno")
    return {
        str(s.traceback[0]): (s.size, s.count) for s in stats if not s.traceback[0].filename.startswith(_OWN)
    }


def _dump(signum: int, frame: FrameType | None) -> None:
    assert _PATH is not None
    gc.collect()  # what is held, not garbage that has not been collected yet
    traced, peak = tracemalloc.get_traced_memory()
    sites = _sites()
    current = sum(size for size, _ in sites.values())
    peak -= traced - current  # the measurement's own memory was there at the peak too (about)
    if not _base:
        _base.update(sites)
    growth = {
        site: (size - _base.get(site, (0, 0))[0], count - _base.get(site, (0, 0))[1])
        for site, (size, count) in sites.items()
    }
    grown = [
        {"site": site, "kb": round(size / 1024, 1), "blocks": count}
        for site, (size, count) in sorted(growth.items(), key=lambda item: -abs(item[1][0]))[:8]
    ]
    line = {"current": current, "peak": peak, "grown": grown}
    with open(_PATH, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
    tracemalloc.reset_peak()


if _PATH:
    tracemalloc.start(1)
    signal.signal(signal.SIGUSR1, _dump)
