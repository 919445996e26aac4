"""What ``/healthz`` says: ``ok``, and the problems that make the bot unhealthy.

Each problem is a short machine-readable reason. Nothing here waits: the database is checked in the
background when an answer is asked for and the last check is older than :data:`DB_CHECK_EVERY_S`, and
the answer uses the last result (a probe polling ``/healthz`` costs one cheap query per period).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from kontext.services.ports import JobStore
from kontext.services.runner import JobRunner
from kontext.support.background import BackgroundTasks

log = logging.getLogger("kontext.health")

DISCORD_DISCONNECTED: Final = "discord_disconnected"
SHUTTING_DOWN: Final = "shutting_down"
IMAGE_WORKERS_UNAVAILABLE: Final = "image_workers_unavailable"
DATABASE_UNREACHABLE: Final = "database_unreachable"

#: Seconds between two database checks (at most; none while nobody asks).
DB_CHECK_EVERY_S: Final = 10.0
#: Seconds a database check may take before the database counts as unreachable.
DB_CHECK_TIMEOUT_S: Final = 5.0
#: A job id that never exists: looking it up is one primary-key query.
_PROBE_ID: Final = "healthz-probe"


class DatabaseProbe:
    """Whether the store answered its last cheap query (see the module docstring)."""

    def __init__(
        self,
        store: JobStore,
        *,
        every: float = DB_CHECK_EVERY_S,
        timeout: float = DB_CHECK_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.every = every
        self.timeout = timeout
        self._clock = clock
        self._checked_at: float | None = None
        self._reachable = True  # it was opened at start
        self._tasks = BackgroundTasks("health", log)

    def reachable(self) -> bool:
        """The last result; starts a check in the background when it is due."""
        now = self._clock()
        due = self._checked_at is None or now - self._checked_at >= self.every
        if due and not len(self._tasks):
            self._checked_at = now
            self._tasks.spawn(self.check(), name="database-check")
        return self._reachable

    async def check(self) -> bool:
        """Run one check now and remember its result."""
        try:
            async with asyncio.timeout(self.timeout):
                await self.store.get_job(_PROBE_ID)
        except Exception as exc:  # noqa: BLE001 - whatever the query raised, the database did not answer
            if self._reachable:
                log.warning("database check failed: %r", exc)
            self._reachable = False
        else:
            self._reachable = True
        return self._reachable

    async def close(self) -> None:
        await self._tasks.close(timeout=1)


@dataclass
class Health:
    """Reads the parts of a running bot into the ``/healthz`` answer."""

    runner: JobRunner
    discord_connected: Callable[[], bool]
    #: Gateway latency in seconds, None when unknown.
    latency: Callable[[], float | None]
    image_workers_available: Callable[[], bool]
    database: DatabaseProbe

    def problems(self) -> list[str]:
        found = []
        if not self.discord_connected():
            found.append(DISCORD_DISCONNECTED)
        if not self.runner.accepting:
            found.append(SHUTTING_DOWN)
        if not self.image_workers_available():
            found.append(IMAGE_WORKERS_UNAVAILABLE)
        if not self.database.reachable():
            found.append(DATABASE_UNREACHABLE)
        return found

    def report(self) -> dict[str, Any]:
        problems = self.problems()
        latency = self.latency() if DISCORD_DISCONNECTED not in problems else None
        return {
            "ok": not problems,
            "problems": problems,
            "discord_connected": DISCORD_DISCONNECTED not in problems,
            "latency_ms": round(latency * 1000) if latency is not None and math.isfinite(latency) else None,
            "jobs_running": self.runner.scheduler.running_total,
            "jobs_waiting": self.runner.scheduler.waiting_count,
        }
