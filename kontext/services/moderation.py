"""Per-server moderation as a service: settings (cached), admission decided and counted atomically.

The decision itself is the pure :func:`kontext.domain.policy.decide`; the ledger
(:class:`~kontext.services.ports.UsageLedger`) feeds it today's usage and this month's spending and
counts an allowed request — and holds its price — in the same atomic step, so simultaneous requests
cannot slip past a quota or a budget: in memory for one process, in the database for several. A
request that is admitted but never becomes a job (the acknowledgement failed, the bot is shutting
down) is refunded; a job that ends without being billed gives its price back (:meth:`release`).
With several processes, settings are re-read after ``settings_ttl`` seconds so a change made in one
process is seen by the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from kontext.domain.guild_settings import GuildSettings
from kontext.domain.jobs import JobRecord
from kontext.domain.policy import Allowed, BotDefaults, Denied, RequestFacts, decide, utc_day
from kontext.services.ports import SettingsStore, UsageCharge, UsageLedger, UsageSnapshot

log = logging.getLogger("kontext.moderation")

DM_GUILD = 0  # usage rows for direct messages


@dataclass(frozen=True)
class Admitted(Allowed):
    """An allowed request, already counted in today's usage (its price held against the budgets)."""

    charge: UsageCharge = field(kw_only=True)


@dataclass(frozen=True)
class PersonalUsage:
    """What ``/usage`` shows one member of one server (money in micros, times in Unix s)."""

    settings: GuildSettings
    now: float
    usage: UsageSnapshot


class Moderation:
    """Settings per guild (persisted in the store) and the admit decision for each request."""

    def __init__(
        self,
        store: SettingsStore,
        ledger: UsageLedger,
        defaults: BotDefaults,
        *,
        settings_ttl: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.defaults = defaults
        self.settings_ttl = settings_ttl
        self.clock = clock
        self._cache: dict[int, tuple[GuildSettings, float]] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    def _lock(self, guild_id: int) -> asyncio.Lock:
        return self._locks.setdefault(guild_id, asyncio.Lock())

    async def settings(self, guild_id: int) -> GuildSettings:
        """The guild's settings (defaults for a new guild)."""
        cached = self._cache.get(guild_id)
        now = time.monotonic()
        if cached is not None and (self.settings_ttl is None or now - cached[1] < self.settings_ttl):
            return cached[0]
        loaded = GuildSettings.from_dict(await self.store.get_guild_settings(guild_id))
        self._cache[guild_id] = (loaded, now)
        return loaded

    async def change(self, guild_id: int, **changes: Any) -> GuildSettings:
        """Validate and persist changes; raises :class:`kontext.domain.guild_settings.SettingsError`."""
        async with self._lock(guild_id):
            updated = (await self.settings(guild_id)).with_changes(**changes)
            await self.store.put_guild_settings(guild_id, updated.to_dict())
            self._cache[guild_id] = (updated, time.monotonic())
        log.info("guild %s settings changed: %s", guild_id, ", ".join(sorted(changes)))
        return updated

    async def reset(self, guild_id: int) -> GuildSettings:
        async with self._lock(guild_id):
            await self.store.delete_guild_settings(guild_id)
            self._cache[guild_id] = (GuildSettings(), time.monotonic())
        log.info("guild %s settings reset to defaults", guild_id)
        return self._cache[guild_id][0]

    async def admit(self, facts: RequestFacts) -> Admitted | Denied:
        """Decide one request; an allowed request is counted in today's usage in the same step."""
        guild = facts.guild_id if facts.guild_id is not None else DM_GUILD
        settings = await self.settings(guild) if facts.guild_id is not None else GuildSettings()
        now = self.clock()

        def judge(usage: UsageSnapshot) -> Allowed | Denied:
            current = replace(
                facts,
                now=now,
                user_jobs_today=usage.user_jobs_today,
                guild_jobs_today=usage.guild_jobs_today,
                user_last_job_at=usage.user_last_job_at,
                guild_month_spent=usage.guild_month_spent,
                user_day_spent=usage.user_day_spent,
                bot_month_spent=usage.bot_month_spent,
            )
            return decide(settings, current, self.defaults)

        decision, charge = await self.ledger.admit(
            guild,
            facts.user_id,
            utc_day(now),
            now,
            judge,
            limited=settings.limits_usage(),
            bot_wide=self.defaults.monthly_budget > 0,
        )
        if isinstance(decision, Denied):
            return decision
        assert charge is not None
        return Admitted(decision.model, decision.safety, decision.settings, decision.cost, charge=charge)

    async def refund(self, charge: UsageCharge) -> None:
        """Take back an admission that did not become a job (quota, cooldown and money given back)."""
        await self.ledger.refund(charge)

    async def release(self, job: JobRecord, cost: int) -> None:
        """A job that was never billed gives back the ``cost`` held for it at admission."""
        guild = job.guild_id if job.guild_id is not None else DM_GUILD
        await self.ledger.release(guild, utc_day(job.created_at), job.user_id, job.model, cost)
        log.info("job %s was not billed: %d micro-units given back to the budgets", job.id, cost)

    async def personal(self, guild_id: int, user_id: int) -> PersonalUsage:
        """One member's usage today on one server, for ``/usage``."""
        now = self.clock()
        settings = await self.settings(guild_id)
        usage = await self.ledger.peek(guild_id, user_id, utc_day(now))
        return PersonalUsage(settings, now, usage)

    async def flush(self) -> None:
        """Wait for usage rows still being written (shutdown and tests)."""
        await self.ledger.flush()

    async def usage_today(self, guild_id: int, top: int = 5) -> tuple[int, list[tuple[int, int]]]:
        """Today's total for a guild and its heaviest users as (user_id, count), most first."""
        counts = await self.ledger.counts(guild_id, utc_day(self.clock()))
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return sum(counts.values()), ranked[:top]
