"""Per-server moderation as a service: cached settings, atomic admit-and-count, daily usage.

The decision itself is the pure :func:`kontext.policy.decide`; this module feeds it the stored
settings and today's usage, and counts an admitted request in the same critical section so two
simultaneous requests cannot both slip under a quota.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from kontext.guild_settings import GuildSettings
from kontext.policy import Allowed, BotDefaults, Denied, RequestFacts, decide, utc_day
from kontext.store import Store

log = logging.getLogger("kontext.moderation")

DM_GUILD = 0  # usage rows for direct messages


class Moderation:
    """Settings per guild (persisted in the store) and the admit decision for each request."""

    def __init__(self, store: Store, defaults: BotDefaults, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.defaults = defaults
        self.clock = clock
        self._cache: dict[int, GuildSettings] = {}
        self._locks: dict[int, asyncio.Lock] = {}

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
        """Validate and persist changes; raises :class:`kontext.guild_settings.SettingsError`."""
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

    async def admit(self, facts: RequestFacts) -> Allowed | Denied:
        """Decide one request; an allowed request is counted in today's usage at once."""
        guild = facts.guild_id if facts.guild_id is not None else DM_GUILD
        async with self._lock(guild):
            now = self.clock()
            day = utc_day(now)
            settings = await self.settings(guild) if facts.guild_id is not None else GuildSettings()
            facts = replace(
                facts,
                now=now,
                user_jobs_today=await self.store.usage(day, guild, facts.user_id),
                guild_jobs_today=await self.store.usage(day, guild),
                user_last_job_at=await self.store.last_use(guild, facts.user_id),
            )
            decision = decide(settings, facts, self.defaults)
            if isinstance(decision, Allowed):
                await self.store.add_usage(day, guild, facts.user_id, now)
        return decision

    async def usage_today(self, guild_id: int, user_id: int | None = None) -> int:
        return await self.store.usage(utc_day(self.clock()), guild_id, user_id)
