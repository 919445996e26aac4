"""Moderation service: atomic admit-and-count, persisted usage, settings cache."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kontext.adapters.storage.sqlite import SqliteStore
from kontext.domain.policy import Allowed, BotDefaults, Denied, RequestFacts
from kontext.services.ledger import MemoryLedger
from kontext.services.moderation import Moderation

DEFAULTS = BotDefaults(default_model="flux-kontext-pro", default_safety=2, allow_dms=False)


def facts(user_id: int, guild_id: int = 9) -> RequestFacts:
    return RequestFacts(
        guild_id=guild_id,
        channel_id=1,
        channel_is_nsfw=False,
        user_id=user_id,
        role_ids=frozenset(),
        is_admin=False,
        prompt="make it blue",
        requested_model=None,
        requested_safety=None,
        now=0.0,
        user_jobs_today=0,
        guild_jobs_today=0,
        user_last_job_at=None,
    )


async def test_concurrent_requests_cannot_exceed_the_quota(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "k.sqlite3")
    await store.open()
    clock = [1_700_000_000.0]
    mod = Moderation(store, MemoryLedger(store), DEFAULTS, clock=lambda: clock[0])
    await mod.change(9, guild_daily_quota=3)
    decisions = await asyncio.gather(*(mod.admit(facts(user)) for user in range(10)))
    assert sum(isinstance(d, Allowed) for d in decisions) == 3
    assert all(d.code == "policy_guild_quota" for d in decisions if isinstance(d, Denied))
    await mod.flush()
    assert sum((await store.usage_snapshot("2023-11-14", 9))[0].values()) == 3

    # a new process sees the same usage and the same settings
    fresh = Moderation(store, MemoryLedger(store), DEFAULTS, clock=lambda: clock[0])
    assert (await fresh.settings(9)).guild_daily_quota == 3
    assert isinstance(await fresh.admit(facts(99)), Denied)
    total, top = await fresh.usage_today(9)
    assert total == 3 and len(top) == 3

    # the next UTC day starts from zero
    clock[0] += 86_400
    assert isinstance(await fresh.admit(facts(99)), Allowed)
    await fresh.flush()
    await store.close()


async def test_cooldown_uses_the_last_use_across_restarts(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "k.sqlite3")
    await store.open()
    clock = [1_700_000_000.0]
    mod = Moderation(store, MemoryLedger(store), DEFAULTS, clock=lambda: clock[0])
    await mod.change(9, cooldown_s=60)
    assert isinstance(await mod.admit(facts(1)), Allowed)
    await mod.flush()
    clock[0] += 30
    fresh = Moderation(store, MemoryLedger(store), DEFAULTS, clock=lambda: clock[0])
    denied = await fresh.admit(facts(1))
    assert isinstance(denied, Denied) and denied.code == "policy_cooldown" and denied.params["seconds"] == 30
    clock[0] += 31
    assert isinstance(await fresh.admit(facts(1)), Allowed)
    await fresh.flush()
    await store.close()
