"""Admission accounting for a bot that runs as ONE process: counters in memory, rows written behind.

The decision and the count are one step with no ``await`` in between, so a burst of requests is
admitted exactly up to a quota or a budget without waiting for the database (the acknowledgement
must reach Discord within 3 s). Several processes need the database's own atomicity instead (the
PostgreSQL store implements :class:`~kontext.services.ports.UsageLedger` itself).

Money is counted when a job is admitted (its price held against the budgets), given back with a
refund (the request never became a job) or a release (the job was never billed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from kontext.domain.costs import month_first_day
from kontext.domain.policy import Allowed, Denied
from kontext.services.ports import Decide, SpendStore, UsageCharge, UsageSnapshot, UsageStore
from kontext.support.background import BackgroundTasks

log = logging.getLogger("kontext.usage")


class LedgerStore(UsageStore, SpendStore, Protocol):
    """What the in-memory ledger reads at first use and writes behind."""


@dataclass
class _Day:
    """One guild's counters for one UTC day (and every user's last use, for cooldowns), with its
    money committed this month and each user's today."""

    day: str
    counts: dict[int, int]
    last: dict[int, float]
    month_spent: int
    user_spent: dict[int, int]


@dataclass
class _Month:
    """The whole bot's money committed in one UTC month."""

    first_day: str
    spent: int


class MemoryLedger:
    """The :class:`~kontext.services.ports.UsageLedger` of a single process."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        self._days: dict[int, _Day] = {}
        self._month: _Month | None = None
        self._loading: dict[int, asyncio.Lock] = {}
        self._month_loading = asyncio.Lock()
        self._writes = BackgroundTasks("usage", log)

    async def _day(self, guild: int, day: str) -> _Day:
        usage = self._days.get(guild)
        if usage is None or usage.day != day:
            async with self._loading.setdefault(guild, asyncio.Lock()):
                usage = self._days.get(guild)
                if usage is None or usage.day != day:
                    await self._writes.settle()  # a new day reads the month's money: what is owed, written
                    counts, last = await self.store.usage_snapshot(day, guild)
                    month_spent, user_spent = await self.store.spend_snapshot(day, guild)
                    usage = _Day(day, counts, last, month_spent, user_spent)
                    self._days[guild] = usage
        return usage

    async def _bot_month(self, day: str) -> _Month:
        first = month_first_day(day)
        month = self._month
        if month is None or month.first_day != first:
            async with self._month_loading:
                month = self._month
                if month is None or month.first_day != first:
                    await self._writes.settle()
                    month = _Month(first, await self.store.spend_month_total(day))
                    self._month = month
        return month

    async def admit(
        self,
        guild: int,
        user_id: int,
        day: str,
        now: float,
        decide: Decide,
        *,
        limited: bool = True,
        bot_wide: bool = False,
    ) -> tuple[Allowed | Denied, UsageCharge | None]:
        month = await self._bot_month(day)
        usage = await self._day(guild, day)
        # from here to the count nothing awaits: no other request can slip in between
        previous = usage.last.get(user_id)
        snapshot = UsageSnapshot(
            usage.counts.get(user_id, 0),
            sum(usage.counts.values()),
            previous,
            guild_month_spent=usage.month_spent,
            user_day_spent=usage.user_spent.get(user_id, 0),
            bot_month_spent=month.spent,
        )
        decision = decide(snapshot)
        if isinstance(decision, Denied):
            return decision, None
        charge = UsageCharge(guild, day, user_id, previous, decision.model, decision.cost, now)
        self._count(charge, 1, month)
        usage.last[user_id] = now
        self._writes.spawn(self.store.add_usage(day, guild, user_id, now), name="usage-add")
        return decision, charge

    def _count(self, charge: UsageCharge, sign: int, month: _Month | None) -> None:
        """Add (``sign`` 1) or take back (-1) one job and its money in memory, and write it behind."""
        usage = self._days.get(charge.guild)
        if usage is not None and usage.day == charge.day:
            _bump(usage.counts, charge.user_id, sign)
            _bump(usage.user_spent, charge.user_id, sign * charge.cost)
            usage.month_spent = max(0, usage.month_spent + sign * charge.cost)
        elif usage is not None and month_first_day(usage.day) == month_first_day(charge.day):
            usage.month_spent = max(0, usage.month_spent + sign * charge.cost)
        if month is not None and month.first_day == month_first_day(charge.day):
            month.spent = max(0, month.spent + sign * charge.cost)
        self._writes.spawn(
            self.store.add_spend(
                charge.day, charge.guild, charge.user_id, charge.model, jobs=sign, cost=sign * charge.cost
            ),
            name="spend-add",
        )

    async def refund(self, charge: UsageCharge) -> None:
        self._count(charge, -1, self._month)
        usage = self._days.get(charge.guild)
        if usage is not None and usage.day == charge.day:
            if charge.previous_last is None:
                usage.last.pop(charge.user_id, None)
            else:
                usage.last[charge.user_id] = charge.previous_last
        restored = charge.previous_last or 0.0
        self._writes.spawn(
            self.store.add_usage(charge.day, charge.guild, charge.user_id, restored, count=-1),
            name="usage-refund",
        )

    async def release(self, guild: int, day: str, user_id: int, model: str, cost: int) -> None:
        if cost <= 0:
            return
        usage = self._days.get(guild)
        if usage is not None and usage.day == day:
            _bump(usage.user_spent, user_id, -cost)
        if usage is not None and month_first_day(usage.day) == month_first_day(day):
            usage.month_spent = max(0, usage.month_spent - cost)
        month = self._month
        if month is not None and month.first_day == month_first_day(day):
            month.spent = max(0, month.spent - cost)
        self._writes.spawn(
            self.store.add_spend(day, guild, user_id, model, jobs=0, cost=-cost), name="spend-release"
        )

    async def peek(self, guild: int, user_id: int, day: str) -> UsageSnapshot:
        month = await self._bot_month(day)
        usage = await self._day(guild, day)
        return UsageSnapshot(
            usage.counts.get(user_id, 0),
            sum(usage.counts.values()),
            usage.last.get(user_id),
            guild_month_spent=usage.month_spent,
            user_day_spent=usage.user_spent.get(user_id, 0),
            bot_month_spent=month.spent,
        )

    async def counts(self, guild: int, day: str) -> dict[int, int]:
        return dict((await self._day(guild, day)).counts)

    async def flush(self) -> None:
        await self._writes.drain()


def _bump(counts: dict[int, int], key: int, delta: int) -> None:
    """Add ``delta`` to ``counts[key]``, dropping the key at zero (never below)."""
    value = counts.get(key, 0) + delta
    if value > 0:
        counts[key] = value
    else:
        counts.pop(key, None)


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
