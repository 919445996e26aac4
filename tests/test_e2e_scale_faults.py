"""Scale-out faults against the real bot: PostgreSQL restarts mid-job, the S3 server goes away."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from tests.harness import World
from tests.servers import Postgres, S3Server, TcpProxy
from tests.test_e2e_scale import new_bucket


async def test_a_postgres_restart_mid_job_loses_nothing(world: World, postgres: Postgres) -> None:
    await world.start_bot(DATABASE_URL=await postgres.new_database())
    world.apimart.script(duration=3.0)
    inter = await world.edit()
    await world.discord.wait_until(lambda: world.apimart.submissions, 15)
    await asyncio.to_thread(postgres.restart)  # every connection of the bot drops while it polls
    result = await world.result_of(inter, timeout=40)
    assert result.attachments and len(world.apimart.submissions) == 1
    job = await world.bot.backend.store.get_job(world.apimart.submissions[0].idempotency_key)
    assert job is not None and job.state == "done"
    await world.result_of(await world.edit())  # and the next job works as usual


async def test_s3_going_away_fails_the_job_clearly_not_a_hang(world: World, s3: S3Server) -> None:
    proxy = await TcpProxy(urlsplit(s3.endpoint).port or 80).start()
    env = s3.client_settings(await new_bucket(s3))
    env["S3_ENDPOINT_URL"] = f"http://127.0.0.1:{proxy.port}"
    await world.start_bot(**env)
    await world.result_of(await world.edit())  # hosted on S3, fetched by the fake APIMart

    await proxy.cut()
    inter = await world.edit()
    text = await world.failure_of(inter, timeout=60)
    assert text.startswith("❌") and "couldn't upload your image" in text
    assert len(world.apimart.submissions) == 1, "nothing is submitted without a hosted input"
