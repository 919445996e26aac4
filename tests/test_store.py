"""SQLite store: migrations, write-ahead transitions, settings and usage persistence."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kontext.domain import jobs as m
from kontext.adapters.storage.sqlite import MIGRATIONS, SqliteStore


def make_job(**overrides: object) -> m.JobRecord:
    values: dict[str, object] = dict(
        id=m.new_job_id(),
        kind=m.JobKind.EDIT,
        prompt="make the hair blue 把头发变成蓝色",
        model="flux-kontext-pro",
        size="match_input_image",
        response_format="png",
        safety_tolerance=2,
        prompt_upsampling=False,
        user_id=42,
        channel_id=7,
        guild_id=9,
    )
    values.update(overrides)
    return m.JobRecord(**values)  # type: ignore[arg-type]


async def test_roundtrip_and_transitions(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "k.sqlite3")
    await store.open()
    job = make_job(prompt_upsampling=True)
    await store.insert_job(job)
    loaded = await store.get_job(job.id)
    assert loaded == job
    assert await store.transition(job, [m.JobState.RECEIVED], m.JobState.HOSTED, hosted_url="https://h/x.png")
    assert not await store.transition(job, [m.JobState.RECEIVED], m.JobState.HOSTED), (
        "compare-and-set must refuse a stale state"
    )
    assert job.state == m.JobState.HOSTED
    await store.update_job(job, status_message_id=123)
    again = await store.get_job(job.id)
    assert again is not None and again.state == m.JobState.HOSTED and again.status_message_id == 123
    assert [j.id for j in await store.active_jobs()] == [job.id]
    assert await store.transition(job, m.ACTIVE_STATES, m.JobState.DONE)
    assert await store.active_jobs() == []
    await store.close()


async def test_reopen_keeps_everything_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "k.sqlite3"
    store = SqliteStore(path)
    await store.open()
    job = make_job()
    await store.insert_job(job)
    await store.put_guild_settings(9, {"safety": 1, "blocklist": ["秘密"]})
    await store.add_usage("2026-11-25", 9, 42, 1000.0)
    await store.add_usage("2026-11-25", 9, 42, 1001.0)
    await store.add_usage("2026-11-25", 9, 43, 1002.0)
    await store.close()

    store = SqliteStore(path)
    await store.open()
    assert (await store.get_job(job.id)) == job
    assert await store.get_guild_settings(9) == {"safety": 1, "blocklist": ["秘密"]}
    counts, last = await store.usage_snapshot("2026-11-25", 9)
    assert counts == {42: 2, 43: 1}
    assert last[42] == 1001.0
    await store.close()
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    assert version == len(MIGRATIONS)


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    store = SqliteStore(path)
    with pytest.raises(RuntimeError, match="newer than this bot"):
        await store.open()


async def test_unknown_column_is_rejected(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "k.sqlite3")
    await store.open()
    job = make_job()
    await store.insert_job(job)
    with pytest.raises(ValueError):
        await store.update_job(job, **{"state = 'done' --": 1})
    await store.close()


async def test_prune_forgets_only_old_finished_jobs_and_usage(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "k.sqlite3")
    await store.open()
    old_done, old_active, new_done = make_job(), make_job(), make_job()
    for job in (old_done, old_active, new_done):
        await store.insert_job(job)
    await store.transition(old_done, m.ACTIVE_STATES, m.JobState.DONE)
    await store.transition(new_done, m.ACTIVE_STATES, m.JobState.FAILED)
    await store.add_usage("2020-01-01", 9, 42, 1.0)
    await store.add_usage("2099-01-01", 9, 42, 2.0)
    await store.update_job(old_done, updated_at=1000.0)  # finished long ago
    jobs, usage = await store.prune(1_609_459_200.0)  # 2021-01-01
    assert (jobs, usage) == (1, 1)
    assert await store.get_job(old_done.id) is None
    assert await store.get_job(old_active.id) is not None, "unfinished jobs are never pruned"
    assert await store.get_job(new_done.id) is not None
    assert (await store.usage_snapshot("2099-01-01", 9))[0] == {42: 1}
    await store.close()
