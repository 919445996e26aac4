"""Per-server moderation as a service: cached settings, atomic admit-and-count, daily usage.

The decision itself is the pure :func:`kontext.domain.policy.decide`; this module feeds it the stored
settings and today's usage, and counts an admitted request in the same critical section so two
simultaneous requests cannot both slip under a quota. A request that is admitted but never becomes a
job (the acknowledgement failed, the bot is shutting down) is refunded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from kontext.domain.guild_settings import GuildSettings
from kontext.domain.policy import Allowed, BotDefaults, Denied, RequestFacts, decide, utc_day
from kontext.services.ports import SettingsStore, UsageStore
from kontext.support.background import BackgroundTasks

log = logging.getLogger("kontext.services.moderation")

DM_GUILD = 0  # usage rows for direct messages


@dataclass
class _DayUsage:
    """One guild's counters for one UTC day (and every user's last use, for cooldowns)."""

    day: str
    counts: dict[int, int]
    last: dict[int, float]


@dataclass(frozen=True)
class UsageCharge:
    """What one admission counted, so it can be refunded."""

    guild: int
    day: str
    user_id: int
    previous_last: float | None


@dataclass(frozen=True)
class Admitted(Allowed):
    """An allowed request, already counted in today's usage."""

    charge: UsageCharge


class ModerationStore(SettingsStore, UsageStore, Protocol):
    """The persistence moderation needs."""


class Moderation:
    """Settings per guild (persisted in the store) and the admit decision for each request."""

    def __init__(
        self, store: ModerationStore, defaults: BotDefaults, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.defaults = defaults
        self.clock = clock
        self._cache: dict[int, GuildSettings] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._usage: dict[int, _DayUsage] = {}
        self._writes = BackgroundTasks("usage", log)

    def _lock(self, guild_id: int) -> asyncio.Lock:
        return self._locks.setdefault(guild_id, asyncio.Lock())

    async def settings(self, guild_id: int) -> GuildSettings:
        """The guild's settings (defaults for a new guild)."""
        cached = self._cache.get(guild_id)
        if cached is None:
            cached = GuildSettings.from_dict(await self.store.get_guild_settings(guild_id))
            self._cache[guild_id] = cached
        return cached

    async def change(self, guild_id: int, **changes: Any) -> GuildSettings:
        """Validate and persist changes; raises :class:`kontext.domain.guild_settings.SettingsError`."""
        async with self._lock(guild_id):
            updated = (await self.settings(guild_id)).with_changes(**changes)
            await self.store.put_guild_settings(guild_id, updated.to_dict())
            self._cache[guild_id] = updated
        log.info("guild %s settings changed: %s", guild_id, ", ".join(sorted(changes)))
        return updated

    async def reset(self, guild_id: int) -> GuildSettings:
        async with self._lock(guild_id):
            await self.store.delete_guild_settings(guild_id)
            self._cache[guild_id] = GuildSettings()
        log.info("guild %s settings reset to defaults", guild_id)
        return self._cache[guild_id]

    async def _day_usage(self, day: str, guild: int) -> _DayUsage:
        usage = self._usage.get(guild)
        if usage is None or usage.day != day:
            async with self._lock(guild):
                usage = self._usage.get(guild)
                if usage is None or usage.day != day:
                    counts, last = await self.store.usage_snapshot(day, guild)
                    usage = _DayUsage(day, counts, last)
                    self._usage[guild] = usage
        return usage

    async def admit(self, facts: RequestFacts) -> Admitted | Denied:
        """Decide one request; an allowed request is counted in today's usage at once.

        Counters live in memory (loaded once per guild and day) so the decision and the count are
        one atomic step without awaiting the database; the row is written behind, in order.
        """
        guild = facts.guild_id if facts.guild_id is not None else DM_GUILD
        settings = await self.settings(guild) if facts.guild_id is not None else GuildSettings()
        now = self.clock()
        day = utc_day(now)
        usage = await self._day_usage(day, guild)
        # from here to the count nothing awaits: no other request can slip in between
        facts = replace(
            facts,
            now=now,
            user_jobs_today=usage.counts.get(facts.user_id, 0),
            guild_jobs_today=sum(usage.counts.values()),
            user_last_job_at=usage.last.get(facts.user_id),
        )
        decision = decide(settings, facts, self.defaults)
        if isinstance(decision, Denied):
            return decision
        charge = UsageCharge(guild, day, facts.user_id, usage.last.get(facts.user_id))
        usage.counts[facts.user_id] = usage.counts.get(facts.user_id, 0) + 1
        usage.last[facts.user_id] = now
        self._writes.spawn(self.store.add_usage(day, guild, facts.user_id, now), name="usage-add")
        return Admitted(decision.model, decision.safety, decision.settings, charge)

    def refund(self, charge: UsageCharge) -> None:
        """Take back an admission that did not become a job (its quota and cooldown are given back)."""
        usage = self._usage.get(charge.guild)
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

    async def flush(self) -> None:
        """Wait for usage rows still being written (shutdown and tests)."""
        await self._writes.drain()

    async def usage_today(self, guild_id: int, top: int = 5) -> tuple[int, list[tuple[int, int]]]:
        """Today's total for a guild and its heaviest users as (user_id, count), most first."""
        usage = await self._day_usage(utc_day(self.clock()), guild_id)
        ranked = sorted(usage.counts.items(), key=lambda item: (-item[1], item[0]))
        return sum(usage.counts.values()), ranked[:top]
