"""Two bot processes (shards 0 and 1 of 2) on one PostgreSQL and one S3 bucket, against the fakes.

100 /edits across 10 servers; one process is SIGKILLed mid-poll and the survivor finishes its jobs
with exactly one submit and one delivery each; a server quota of N admits exactly N although the
process that counted the first requests died in between.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiobotocore.session import get_session

from kontext.adapters.storage import PostgresStore
from tests.fakes.apimart_fake import FakeApimart
from tests.fakes.discord import FakeDiscord, FakeGuild, FakeInteraction, FakeUser
from tests.harness import API_KEY, TOKEN, World, free_port, make_image
from tests.processes import BotProcess
from tests.servers import Postgres, S3Server
from tests.waiting import eventually, eventually_async


async def new_bucket(s3: S3Server) -> str:
    bucket = f"kontext-{secrets.token_hex(4)}"
    async with get_session().create_client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name="us-east-1",
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
    ) as client:
        await client.create_bucket(Bucket=bucket)
    return bucket


class Cluster:
    """The fakes, the servers and the bot processes of one scale-out test."""

    def __init__(self, world: World, tmp_path: Path, env: dict[str, str]) -> None:
        self.world = world
        self.tmp_path = tmp_path
        self.env = env
        self.processes: list[BotProcess] = []

    async def start(self, name: str, shard: int) -> BotProcess:
        """Start ``python bot.py`` for one shard and wait until its /healthz says it is connected."""
        port = free_port()
        env = {
            **self.env,
            "SHARD_IDS": str(shard),
            "WEB_PORT": str(port),
            "DATA_DIR": str(self.tmp_path / name),
        }
        process = await BotProcess(name, env, self.tmp_path / name).start()
        self.processes.append(process)

        async def healthy() -> bool:
            assert process.running, process.log()
            try:
                async with aiohttp.ClientSession() as session:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        return response.status == 200
            except aiohttp.ClientError:
                return False

        await eventually_async(healthy, 60)
        return process

    async def edit(self, guild: FakeGuild, user: FakeUser, prompt: str = "make it blue") -> FakeInteraction:
        discord = self.world.discord
        channel = guild.text_channels[0]
        attachment = discord.add_attachment(
            make_image(160, 120), "photo.png", "image/png", channel_id=channel.id
        )
        return await discord.slash(
            "edit",
            {"prompt": prompt},
            attachments={"image": attachment},
            user_id=user.id,
            guild_id=guild.id,
            channel_id=channel.id,
        )

    async def close(self) -> None:
        for process in self.processes:
            await process.stop()


@pytest.fixture
async def cluster(tmp_path: Path, postgres: Postgres, s3: S3Server) -> AsyncIterator[Cluster]:
    async with FakeDiscord(TOKEN, shards=2) as discord_fake, FakeApimart(API_KEY) as apimart_fake:
        world = World(discord_fake, apimart_fake, tmp_path / "unused")
        env = {
            **world.env,
            **s3.client_settings(await new_bucket(s3)),
            "DATABASE_URL": await postgres.new_database(),
            "SHARD_COUNT": "2",
            "JOB_LEASE_SECONDS": "5",
            "JOB_LEASE_HEARTBEAT_SECONDS": "1",
            "MAX_CONCURRENT_JOBS": "64",
            "MAX_JOBS_PER_USER": "16",
            "STATUS_UPDATE_INTERVAL_SECONDS": "1.5",
            "LOG_LEVEL": "INFO",
        }
        built = Cluster(world, tmp_path, env)
        try:
            yield built
        finally:
            await built.close()


async def all_polled(url: str, jobs: int) -> bool:
    """Every job has its task id stored and is not finished yet (the moment to kill a process)."""
    conn = await asyncpg.connect(url)
    try:
        states = [row["state"] for row in await conn.fetch("SELECT state FROM jobs")]
    finally:
        await conn.close()
    return len(states) == jobs and all(state == "submitted" for state in states)


def result_edits(inter: FakeInteraction) -> int:
    """How many times the status message became a result (an attachment and an embed)."""
    return sum(1 for edit in inter.original_edits if edit.message.attachments and edit.message.embeds)


async def test_two_processes_share_the_work_and_finish_a_dead_one_s_jobs(cluster: Cluster) -> None:
    world, discord, apimart = cluster.world, cluster.world.discord, cluster.world.apimart
    guilds = [discord.add_guild(f"server {i}") for i in range(10)]
    users = [discord.add_user(f"artist{i}") for i in range(10)]
    for guild in guilds:
        for user in users:
            discord.add_member(guild.id, user.id)
    shard_of = {guild.id: (guild.id >> 22) % 2 for guild in guilds}
    assert set(shard_of.values()) == {0, 1}, "the servers are spread over both shards"

    first = await cluster.start("shard0", 0)
    second = await cluster.start("shard1", 1)
    assert discord.identify_violations == [], "session starts were spaced across the processes"

    apimart.script(duration=8.0, persist=True)
    inters = [await cluster.edit(guilds[i % 10], users[i // 10]) for i in range(100)]
    await eventually_async(lambda: all_polled(cluster.env["DATABASE_URL"], 100), 60)
    await second.kill()  # mid-poll: every task id is stored, its jobs are unfinished

    await eventually(lambda: all(result_edits(inter) for inter in inters), 90)
    keys = [submission.idempotency_key for submission in apimart.submissions]
    assert len(keys) == 100 and len(set(keys)) == 100, "every job was submitted exactly once"
    assert all(result_edits(inter) == 1 for inter in inters), "every result was posted exactly once"
    assert first.running
    assert "resuming job" in first.log(), "the survivor took over the dead process's jobs"
    assert world.env["APIMART_API_KEY"] not in first.log() + second.log()


async def test_a_server_quota_holds_across_processes(cluster: Cluster, postgres: Postgres) -> None:
    discord, apimart = cluster.world.discord, cluster.world.apimart
    guild = discord.add_guild("quota server", shard=(0, 2))
    users = [discord.add_user(f"member{i}") for i in range(5)]
    for user in users:
        discord.add_member(guild.id, user.id)
    store = PostgresStore(cluster.env["DATABASE_URL"], owner="test")
    await store.open()
    await store.put_guild_settings(guild.id, {"guild_daily_quota": 3})
    await store.close()
    apimart.script(duration=0.2, persist=True)

    first = await cluster.start("shard0", 0)
    early = [await cluster.edit(guild, users[i]) for i in range(2)]
    await eventually(lambda: len(apimart.submissions) == 2, 30)
    await first.kill()  # the process that counted them is gone

    await cluster.start("shard0-again", 0)
    late = [await cluster.edit(guild, users[2 + i]) for i in range(3)]

    def refused(inter: FakeInteraction) -> bool:
        return (
            inter.original is not None
            and inter.original.ephemeral
            and "edits for today" in inter.original.content
        )

    await eventually(lambda: sum(map(refused, late)) == 2 and len(apimart.submissions) == 3, 30)
    assert not refused(late[0]), "the third request of the day was still admitted"
    assert len(early) == 2
