"""The store contract, run against BOTH engines: SQLite and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from kontext.adapters.storage import PostgresStore, SqliteStore, schema
from kontext.domain import jobs as m
from kontext.domain.guild_settings import GuildSettings
from kontext.domain.policy import Allowed, Denied
from kontext.domain.usage import LedgerRow
from kontext.services.ledger import LocalSessionGate, MemoryLedger
from kontext.services.ports import Store, UsageLedger, UsageSnapshot
from tests.servers import Postgres

Opener = Callable[..., Awaitable[PostgresStore | SqliteStore]]


def make_job(**overrides: Any) -> m.JobRecord:
    values: dict[str, Any] = dict(
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
        guild_id=2**62 + 9,  # Discord ids need 64 bits
    )
    values.update(overrides)
    return m.JobRecord(**values)


@pytest.fixture(params=["sqlite", "postgres"])
async def opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens stores on ONE database, as different processes would (``owner``), closing them after."""
    opened: list[PostgresStore | SqliteStore] = []
    open_store: Opener
    if request.param == "postgres":
        server: Postgres = request.getfixturevalue("postgres")
        url = await server.new_database()

        async def open_postgres(owner: str = "p1", lease_s: float = 30.0) -> PostgresStore:
            store = PostgresStore(url, owner=owner, lease_s=lease_s, pool_size=4, retry_s=5)
            await store.open()
            opened.append(store)
            return store

        open_store = open_postgres
    else:

        async def open_sqlite(owner: str = "p1", lease_s: float = 30.0) -> SqliteStore:
            store = SqliteStore(tmp_path / "k.sqlite3", owner=owner, lease_s=lease_s)
            await store.open()
            opened.append(store)
            return store

        open_store = open_sqlite
    yield open_store
    for store in reversed(opened):
        await store.close()


def ledger_of(store: Any) -> UsageLedger:
    return store if isinstance(store, PostgresStore) else MemoryLedger(store)


async def test_roundtrip_and_transitions(opener: Opener) -> None:
    store: Store = await opener()
    job = make_job(prompt_upsampling=True)
    await store.insert_job(job)
    assert await store.get_job(job.id) == job
    assert await store.transition(job, [m.JobState.RECEIVED], m.JobState.HOSTED, hosted_url="https://h/x.png")
    assert not await store.transition(job, [m.JobState.RECEIVED], m.JobState.HOSTED), (
        "compare-and-set must refuse a stale state"
    )
    assert job.state is m.JobState.HOSTED
    assert await store.update_job(job, status_message_id=2**63 - 1)
    again = await store.get_job(job.id)
    assert again is not None and again.state is m.JobState.HOSTED and again.status_message_id == 2**63 - 1
    assert await store.transition(job, m.ACTIVE_STATES, m.JobState.DONE, delivery=m.DeliveryKind.CHANNEL)
    final = await store.get_job(job.id)
    assert final is not None and final.state is m.JobState.DONE and final.delivery is m.DeliveryKind.CHANNEL


async def test_reopen_keeps_everything(opener: Opener) -> None:
    store = await opener()
    job = make_job()
    await store.insert_job(job)
    await store.put_guild_settings(9, {"safety": 1, "blocklist": ["秘密"]})
    for user, at in ((42, 1000.0), (42, 1001.0), (43, 1002.0)):
        await store.add_usage("2026-11-25", 9, user, at)
    await store.close()

    store = await opener()
    assert await store.get_job(job.id) == job
    assert await store.get_guild_settings(9) == {"safety": 1, "blocklist": ["秘密"]}
    counts, last = await store.usage_snapshot("2026-11-25", 9)
    assert counts == {42: 2, 43: 1} and last[42] == 1001.0
    await store.add_usage("2026-11-25", 9, 43, 999.0, count=-1)
    assert (await store.usage_snapshot("2026-11-25", 9))[0] == {42: 2, 43: 0}
    await store.delete_guild_settings(9)
    assert await store.get_guild_settings(9) is None


async def test_unknown_column_is_rejected(opener: Opener) -> None:
    store = await opener()
    job = make_job()
    await store.insert_job(job)
    with pytest.raises(ValueError):
        await store.update_job(job, **{"state = 'done' --": 1})


async def test_prune_forgets_only_old_finished_jobs_and_usage(opener: Opener) -> None:
    store = await opener()
    old_done, old_active, new_done = make_job(), make_job(), make_job()
    for job in (old_done, old_active, new_done):
        await store.insert_job(job)
    await store.transition(old_done, m.ACTIVE_STATES, m.JobState.DONE)
    await store.transition(new_done, m.ACTIVE_STATES, m.JobState.FAILED)
    await store.add_usage("2020-01-01", 9, 42, 1.0)
    await store.add_usage("2099-01-01", 9, 42, 2.0)
    await store.update_job(old_done, updated_at=1000.0)  # finished long ago
    assert await store.prune(1_609_459_200.0) == (1, 1)  # 2021-01-01
    assert await store.get_job(old_done.id) is None
    assert await store.get_job(old_active.id) is not None, "unfinished jobs are never pruned"
    assert await store.get_job(new_done.id) is not None
    assert (await store.usage_snapshot("2099-01-01", 9))[0] == {42: 1}


async def test_only_the_owner_changes_a_job(opener: Opener) -> None:
    mine, theirs = await opener("p1"), await opener("p2")
    job = make_job()
    await mine.insert_job(job)
    copy = await theirs.get_job(job.id)
    assert copy is not None
    assert not await theirs.transition(copy, [m.JobState.RECEIVED], m.JobState.HOSTED)
    assert not await theirs.update_job(copy, prompt="hijacked")
    assert await mine.transition(job, [m.JobState.RECEIVED], m.JobState.HOSTED)


async def test_a_dead_process_s_jobs_are_claimed_once_after_its_lease(opener: Opener) -> None:
    dead = await opener("dead", lease_s=0.01)
    jobs = [make_job() for _ in range(6)]
    for job in jobs:
        await dead.insert_job(job)
    await dead.transition(jobs[0], m.ACTIVE_STATES, m.JobState.DONE)
    await asyncio.sleep(0.05)  # the lease (10 ms) runs out: that is the point of this test
    first, second = await opener("a"), await opener("b")
    claims = await asyncio.gather(first.claim_jobs(), second.claim_jobs())
    claimed = [job.id for batch in claims for job in batch]
    assert sorted(claimed) == sorted(job.id for job in jobs[1:]), "every unfinished job, exactly once"
    assert not await dead.transition(jobs[1], m.ACTIVE_STATES, m.JobState.FAILED), "the old owner lost them"
    winner = first if jobs[1].id in [j.id for j in claims[0]] else second
    assert await winner.transition(jobs[1], m.ACTIVE_STATES, m.JobState.DONE)


async def test_live_leases_are_not_taken_until_released(opener: Opener) -> None:
    owner = await opener("alive", lease_s=60)
    job = make_job()
    await owner.insert_job(job)
    other = await opener("other")
    assert await other.claim_jobs() == []
    assert await owner.renew_leases() == 1
    assert await other.claim_jobs() == []
    assert await owner.release_leases() == 1, "a clean shutdown hands its jobs over at once"
    assert [j.id for j in await other.claim_jobs()] == [job.id]


async def test_a_sole_process_takes_everything_at_start(opener: Opener) -> None:
    before = await opener("before", lease_s=600)
    job = make_job()
    await before.insert_job(job)
    after = await opener("after")
    assert [j.id for j in await after.claim_jobs(everything=True)] == [job.id]


async def test_admission_is_exact_under_concurrency(opener: Opener) -> None:
    """20 requests at once, from two 'processes', against a server quota of 5: exactly 5 admitted."""
    stores = [await opener("p1"), await opener("p2")]
    ledgers = [ledger_of(stores[0]), ledger_of(stores[1])]
    if isinstance(stores[0], SqliteStore):
        ledgers = [ledgers[0], ledgers[0]]  # one process owns a SQLite file: one ledger

    def quota_of_5(usage: UsageSnapshot) -> Allowed | Denied:
        if usage.guild_jobs_today >= 5:
            return Denied("policy_guild_quota")
        return Allowed("flux-kontext-pro", 2, GuildSettings())

    results = await asyncio.gather(
        *(ledgers[i % 2].admit(77, 1000 + i, "2026-11-30", 1.0e9 + i, quota_of_5) for i in range(20))
    )
    admitted = [charge for decision, charge in results if isinstance(decision, Allowed)]
    assert len(admitted) == 5
    assert admitted[0] is not None, "an admitted request is charged"
    await ledgers[1].refund(admitted[0])  # a refund frees one place
    decision, _ = await ledgers[0].admit(77, 5, "2026-11-30", 2.0e9, quota_of_5)
    assert isinstance(decision, Allowed)
    for ledger in ledgers:
        await ledger.flush()
    assert sum((await stores[0].usage_snapshot("2026-11-30", 77))[0].values()) == 5


async def test_session_starts_are_spaced_per_bucket(opener: Opener) -> None:
    store = await opener("p1")
    other = await opener("p2")
    gates = [store, other] if isinstance(store, PostgresStore) else [LocalSessionGate()] * 2
    loop = asyncio.get_running_loop()
    started: list[tuple[int, float]] = []

    async def identify(gate: Any, bucket: int) -> None:
        await gate.wait_turn(bucket, 0.3)
        started.append((bucket, loop.time()))

    await asyncio.gather(identify(gates[0], 0), identify(gates[1], 0), identify(gates[1], 1))
    zero = sorted(at for bucket, at in started if bucket == 0)
    assert zero[1] - zero[0] >= 0.28, "two IDENTIFYs in one bucket are spaced"
    one = next(at for bucket, at in started if bucket == 1)
    assert one - zero[0] < 0.25, "another bucket does not wait"


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "k.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {schema.LATEST + 1}")
    conn.close()
    with pytest.raises(schema.SchemaTooNew, match="newer than this bot"):
        await SqliteStore(path).open()


async def test_postgres_refuses_a_newer_schema(postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url)
    await conn.execute("CREATE TABLE kontext_schema (version INTEGER NOT NULL)")
    await conn.execute("INSERT INTO kontext_schema VALUES ($1)", schema.LATEST + 1)
    await conn.close()
    store = PostgresStore(postgres_url, owner="p1")
    with pytest.raises(schema.SchemaTooNew, match="newer than this bot"):
        await store.open()
    await store.close()


async def test_an_old_sqlite_database_is_migrated(tmp_path: Path) -> None:
    """A database written by the previous release (schema 2) opens, keeps its jobs and can be claimed."""
    path = tmp_path / "k.sqlite3"
    conn = sqlite3.connect(path)
    for migration in schema.MIGRATIONS[:2]:
        for statement in migration.statements("sqlite"):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    job = make_job()
    columns = [row[1] for row in conn.execute("PRAGMA table_info(jobs)")]  # what schema 2 had
    values = [int(v) if isinstance(v, bool) else v for v in (getattr(job, c) for c in columns)]
    conn.execute(
        f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})", values
    )
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    await store.open()
    assert [j.id for j in await store.claim_jobs(everything=True)] == [job.id]
    await store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == schema.LATEST


async def test_postgres_survives_a_restart(postgres: Postgres, postgres_url: str) -> None:
    """Connections drop when PostgreSQL restarts; the store reconnects and nothing is lost."""
    store = PostgresStore(postgres_url, owner="p1", retry_s=30)
    await store.open()
    job = make_job()
    await store.insert_job(job)
    await asyncio.to_thread(postgres.restart)
    assert await store.transition(job, [m.JobState.RECEIVED], m.JobState.HOSTED)
    stored = await store.get_job(job.id)
    assert stored is not None and stored.state is m.JobState.HOSTED
    await store.close()


async def test_a_second_process_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    """SQLite cannot share leases between processes: a second bot on the same DATA_DIR stops at once."""
    store = SqliteStore(tmp_path / "k.sqlite3")
    await store.open()
    code = (
        "import asyncio, sys\n"
        "from kontext.adapters.storage.sqlite import SqliteStore, DataDirInUse\n"
        "async def main():\n"
        "    try:\n"
        f"        await SqliteStore({str(tmp_path / 'k.sqlite3')!r}).open()\n"
        "    except DataDirInUse as exc:\n"
        "        print(exc); sys.exit(3)\n"
        "asyncio.run(main())\n"
    )
    other = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await other.communicate()
    assert other.returncode == 3, output
    assert b"DATABASE_URL" in output
    await store.close()
    again = SqliteStore(tmp_path / "k.sqlite3")
    await again.open()  # free again once the first process let go
    await again.close()


async def test_tokens_of_finished_jobs_are_forgotten(opener: Opener) -> None:
    store = await opener()
    done, running = make_job(interaction_token="secret-1"), make_job(interaction_token="secret-2")
    for job in (done, running):
        await store.insert_job(job)
    await store.transition(done, m.ACTIVE_STATES, m.JobState.FAILED)
    assert await store.forget_tokens() == 1
    finished, still_running = await store.get_job(done.id), await store.get_job(running.id)
    assert finished is not None and finished.interaction_token is None
    assert still_running is not None
    assert still_running.interaction_token == "secret-2", "a running job still needs it"


async def test_budgets_hold_under_concurrency_across_processes(opener: Opener) -> None:
    """20 requests at once from two 'processes' against a server budget of 5 jobs' money and a
    bot-wide budget: exactly 5 admitted; a release gives money back, not the job count."""
    stores = [await opener("p1"), await opener("p2")]
    ledgers = [ledger_of(stores[0]), ledger_of(stores[1])]
    if isinstance(stores[0], SqliteStore):
        ledgers = [ledgers[0], ledgers[0]]
    day = "2026-12-06"

    def budget_of_5(usage: UsageSnapshot) -> Allowed | Denied:
        if usage.guild_month_spent + 40_000 > 200_000 or usage.bot_month_spent + 40_000 > 1_000_000:
            return Denied("policy_guild_budget")
        return Allowed("flux-kontext-pro", 2, GuildSettings(), 40_000)

    results = await asyncio.gather(
        *(ledgers[i % 2].admit(88, 2000 + i, day, 1.0e9 + i, budget_of_5, bot_wide=True) for i in range(20))
    )
    admitted = [charge for decision, charge in results if isinstance(decision, Allowed)]
    assert len(admitted) == 5 and all(c is not None and c.cost == 40_000 for c in admitted)
    first = admitted[0]
    assert first is not None
    await ledgers[1].release(88, day, first.user_id, "flux-kontext-pro", 40_000)
    decision, _ = await ledgers[0].admit(88, 9, day, 2.0e9, budget_of_5, bot_wide=True)
    assert isinstance(decision, Allowed), "released money can be spent again"
    for ledger in ledgers:
        await ledger.flush()
    month, users = await stores[0].spend_snapshot(day, 88)
    assert month == 200_000 and users[first.user_id] == 0
    assert await stores[1].spend_month_total("2026-12-31") == 200_000
    assert await stores[1].spend_month_total("2027-01-01") == 0
    rows = await stores[0].spend_rows(88, "2026-12-01", "2026-12-31")
    assert sum(r.jobs for r in rows) == 6 and sum(r.cost for r in rows) == 200_000
    peek = await ledgers[1].peek(88, 9, day)
    assert peek.guild_month_spent == 200_000 and peek.user_day_spent == 40_000


async def test_a_refund_takes_back_the_job_and_its_money(opener: Opener) -> None:
    store = await opener("p1")
    ledger = ledger_of(store)

    def allow(usage: UsageSnapshot) -> Allowed | Denied:
        return Allowed("flux-kontext-max", 2, GuildSettings(), 80_000)

    _, charge = await ledger.admit(5, 6, "2026-12-06", 1.0e9, allow, limited=False)
    assert charge is not None and charge.model == "flux-kontext-max"
    await ledger.refund(charge)
    await ledger.flush()
    assert await store.spend_rows(5, "2026-12-06", "2026-12-06") == [
        LedgerRow("2026-12-06", 6, "flux-kontext-max", 0, 0)
    ]


async def test_failures_are_counted_by_reason_and_spend_is_kept_longer(opener: Opener) -> None:
    store = await opener("p1")
    for code in ("task_failed", "task_failed", "image_broken"):
        job = make_job(guild_id=42)
        await store.insert_job(job)
        await store.transition(job, [m.JobState.RECEIVED], m.JobState.FAILED, error_code=code)
    assert await store.failure_counts(42, 0.0) == {"task_failed": 2, "image_broken": 1}
    await store.add_spend("2026-01-01", 42, 1, "flux-kontext-pro", jobs=1, cost=40_000)
    await store.add_spend("2026-06-01", 42, 1, "flux-kontext-pro", jobs=1, cost=40_000)
    march = 1_772_323_200.0  # 2026-03-01
    await store.prune(march, spend_before=march)
    assert [r.day for r in await store.spend_rows(42, "2025-01-01", "2027-01-01")] == ["2026-06-01"]
