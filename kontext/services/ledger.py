"""Admission accounting for a bot that runs as ONE process: counters in memory, rows written behind.

The decision and the count are one step with no ``await`` in between, so a burst of requests is
admitted exactly up to a quota without waiting for the database (the acknowledgement must reach
Discord within 3 s). Several processes need the database's own atomicity instead (the PostgreSQL
store implements :class:`~kontext.services.ports.UsageLedger` itself).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from kontext.domain.policy import Allowed, Denied
from kontext.services.ports import Decide, UsageCharge, UsageSnapshot, UsageStore
from kontext.support.background import BackgroundTasks

log = logging.getLogger("kontext.usage")


@dataclass
class _Day:
    """One guild's counters for one UTC day (and every user's last use, for cooldowns)."""

    day: str
    counts: dict[int, int]
    last: dict[int, float]


class MemoryLedger:
    """The :class:`~kontext.services.ports.UsageLedger` of a single process."""

    def __init__(self, store: UsageStore) -> None:
        self.store = store
        self._days: dict[int, _Day] = {}
        self._loading: dict[int, asyncio.Lock] = {}
        self._writes = BackgroundTasks("usage", log)

    async def _day(self, guild: int, day: str) -> _Day:
        usage = self._days.get(guild)
        if usage is None or usage.day != day:
            async with self._loading.setdefault(guild, asyncio.Lock()):
                usage = self._days.get(guild)
                if usage is None or usage.day != day:
                    counts, last = await self.store.usage_snapshot(day, guild)
                    usage = _Day(day, counts, last)
                    self._days[guild] = usage
        return usage

    async def admit(
        self, guild: int, user_id: int, day: str, now: float, decide: Decide
    ) -> tuple[Allowed | Denied, UsageCharge | None]:
        usage = await self._day(guild, day)
        # from here to the count nothing awaits: no other request can slip in between
        previous = usage.last.get(user_id)
        snapshot = UsageSnapshot(usage.counts.get(user_id, 0), sum(usage.counts.values()), previous)
        decision = decide(snapshot)
        if isinstance(decision, Denied):
            return decision, None
        usage.counts[user_id] = usage.counts.get(user_id, 0) + 1
        usage.last[user_id] = now
        self._writes.spawn(self.store.add_usage(day, guild, user_id, now), name="usage-add")
        return decision, UsageCharge(guild, day, user_id, previous)

    async def refund(self, charge: UsageCharge) -> None:
        usage = self._days.get(charge.guild)
        if usage is not None and usage.day == charge.day:
            left = usage.counts.get(charge.user_id, 0) - 1
            if left > 0:
                usage.counts[charge.user_id] = left
            else:
                usage.counts.pop(charge.user_id, None)
            if charge.previous_last is None:
                usage.last.pop(charge.user_id, None)
            else:
                usage.last[charge.user_id] = charge.previous_last
        restored = charge.previous_last or 0.0
        self._writes.spawn(
            self.store.add_usage(charge.day, charge.guild, charge.user_id, restored, count=-1),
            name="usage-refund",
        )

    async def counts(self, guild: int, day: str) -> dict[int, int]:
        return dict((await self._day(guild, day)).counts)

    async def flush(self) -> None:
        await self._writes.drain()


class LocalSessionGate:
    """The session-start gate of a single process: one IDENTIFY per bucket per ``spacing`` seconds."""

    def __init__(self) -> None:
        self._locks: dict[int, asyncio.Lock] = {}
        self._last: dict[int, float] = {}

    async def wait_turn(self, bucket: int, spacing: float) -> None:
        async with self._locks.setdefault(bucket, asyncio.Lock()):
            wait = self._last.get(bucket, float("-inf")) + spacing - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last[bucket] = time.monotonic()
