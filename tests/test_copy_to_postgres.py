"""Moving from SQLite to PostgreSQL: `python bot.py --copy-to-postgres` copies jobs, settings and usage."""

from __future__ import annotations

from pathlib import Path

from kontext.adapters.storage import PostgresStore, SqliteStore
from kontext.adapters.storage.copy import copy_sqlite_to_postgres
from kontext.domain import jobs as m
from tests.harness import API_KEY, TOKEN
from tests.test_scale_startup import run_bot
from tests.test_store import make_job


async def filled_sqlite(path: Path) -> tuple[m.JobRecord, m.JobRecord]:
    store = SqliteStore(path, owner="old-bot")
    await store.open()
    active, done = make_job(), make_job()
    await store.insert_job(active)
    await store.insert_job(done)
    await store.transition(active, [m.JobState.RECEIVED], m.JobState.SUBMITTED, task_id="task-1")
    await store.transition(done, m.ACTIVE_STATES, m.JobState.DONE)
    await store.put_guild_settings(9, {"safety": 1, "blocklist": ["秘密"]})
    await store.add_usage("2026-11-30", 9, 42, 1000.0)
    await store.close()
    return active, done


async def test_copy_brings_everything_and_can_be_rerun(tmp_path: Path, postgres_url: str) -> None:
    active, done = await filled_sqlite(tmp_path / "kontext.sqlite3")
    copied = await copy_sqlite_to_postgres(tmp_path / "kontext.sqlite3", postgres_url)
    assert (copied.jobs, copied.settings, copied.usage) == (2, 1, 1)
    again = await copy_sqlite_to_postgres(tmp_path / "kontext.sqlite3", postgres_url)
    assert (again.jobs, again.settings, again.usage) == (0, 0, 0), "re-running copies nothing twice"

    store = PostgresStore(postgres_url, owner="new-bot")
    await store.open()
    assert await store.get_job(done.id) == done
    assert await store.get_guild_settings(9) == {"safety": 1, "blocklist": ["秘密"]}
    assert (await store.usage_snapshot("2026-11-30", 9))[0] == {42: 1}
    claimed = await store.claim_jobs()
    assert [j.id for j in claimed] == [active.id], "the unfinished job is taken over at once"
    assert claimed[0].state is m.JobState.SUBMITTED and claimed[0].task_id == "task-1"
    await store.close()


async def test_the_command_line(tmp_path: Path, postgres_url: str) -> None:
    await filled_sqlite(tmp_path / "kontext.sqlite3")
    env = {
        "DISCORD_TOKEN": TOKEN,
        "APIMART_API_KEY": API_KEY,
        "DATA_DIR": str(tmp_path),
        "DATABASE_URL": postgres_url,
    }
    code, output = await run_bot("--copy-to-postgres", env=env)
    assert code == 0 and "copied 2 job(s), 1 server setting(s), 1 usage row(s)" in output, output
    code, output = await run_bot("--copy-to-postgres", env={**env, "DATABASE_URL": ""})
    assert code == 2 and "DATABASE_URL: required" in output
