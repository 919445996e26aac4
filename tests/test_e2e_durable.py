"""End to end: durable jobs — nothing lost across restarts and kills, nothing submitted twice."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
import time
from pathlib import Path

from tests.fakes.discord import FakeInteraction
from tests.harness import ROOT, World, decode, inverted, job_states, make_image, mean_abs_diff


async def wait_for_state(data_dir: Path, state: str, timeout: float = 20.0, job_id: str | None = None) -> str:
    """Wait until a job (any, or ``job_id``) is in ``state``; returns its id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for found, current in job_states(data_dir).items():
            if current == state and job_id in (None, found):
                return found
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no job reached {state}: {job_states(data_dir)}")


async def stopped_mid_poll(world: World, duration: float) -> tuple[FakeInteraction, str]:
    """Start a bot, run one /edit until its task id is stored, then stop the bot cleanly."""
    await world.start_bot()
    world.apimart.script(duration=duration)
    inter = await world.edit()
    job_id = await wait_for_state(world.data_dir, "submitted")
    await world.stop_bot()
    return inter, job_id


def backdate(data_dir: Path, job_id: str, *, seconds: float) -> None:
    """Move a stored job's creation into the past (as if the bot had been down that long)."""
    conn = sqlite3.connect(data_dir / "kontext.sqlite3")
    try:
        conn.execute("UPDATE jobs SET created_at = created_at - ? WHERE id = ?", (seconds, job_id))
        conn.commit()
    finally:
        conn.close()


def result_posts(inter: FakeInteraction, world: World) -> int:
    """How many times a result image was posted for this interaction (original edits + late channel posts)."""
    edits = sum(1 for e in inter.original_edits if e.message.embeds and e.message.attachments)
    original_id = inter.original.id if inter.original is not None else None
    posts = sum(
        1
        for msg in world.discord.channel_messages(inter.channel_id)
        if msg.embeds
        and msg.attachments
        and msg.message_reference
        and int(msg.message_reference["message_id"]) == original_id
    )
    return edits + posts


async def test_clean_restart_mid_poll_delivers_once(world: World) -> None:
    await world.start_bot()
    world.apimart.script(duration=2.0)
    source = make_image(256, 256)
    inter = await world.edit(source)
    job_id = await wait_for_state(world.data_dir, "submitted")
    await world.stop_bot()
    assert job_states(world.data_dir)[job_id] == "submitted", "a clean stop leaves the job resumable"

    await world.start_bot()
    result = await world.result_of(inter)
    assert mean_abs_diff(decode(result.attachments[0].data), inverted(decode(source))) < 6
    await wait_for_state(world.data_dir, "done", job_id=job_id)
    assert result_posts(inter, world) == 1
    assert len(world.apimart.submissions) == 1


async def test_job_completed_while_down_is_delivered_on_start(world: World) -> None:
    await world.start_bot(JOB_TIMEOUT_SECONDS="2")
    world.apimart.script(duration=1.0)
    inter = await world.edit()
    job_id = await wait_for_state(world.data_dir, "submitted")
    await world.stop_bot()
    world.apimart.advance(60)  # the task finishes while the bot is down …
    backdate(world.data_dir, job_id, seconds=60)  # … and the bot stays down past the job's deadline

    await world.start_bot(JOB_TIMEOUT_SECONDS="2")
    await world.result_of(inter)
    assert len(world.apimart.submissions) == 1
    await wait_for_state(world.data_dir, "done", job_id=job_id)


async def test_job_caught_mid_submit_is_failed_never_resubmitted(world: World) -> None:
    await world.start_bot()
    world.apimart.slow_next("submit", 6.0)  # the answer arrives after the bot has stopped
    inter = await world.edit()
    job_id = await wait_for_state(world.data_dir, "submitting")
    await world.stop_bot()
    assert job_states(world.data_dir)[job_id] == "submitting"

    await world.start_bot()
    text = await world.failure_of(inter)
    assert "not sent twice" in text
    assert len(world.apimart.submissions) == 1
    await wait_for_state(world.data_dir, "failed", job_id=job_id)


async def test_expired_token_delivers_to_the_channel_with_a_mention(world: World) -> None:
    inter, job_id = await stopped_mid_poll(world, 1.5)
    world.discord.expire_interaction(inter)

    await world.start_bot()

    def channel_result() -> object:
        for msg in world.discord.channel_messages(world.channel.id):
            if msg.attachments and msg.embeds:
                return msg
        return None

    msg = await world.discord.wait_until(channel_result, timeout=20)
    assert f"<@{world.user.id}>" in msg.content
    assert msg.mention_ids == [world.user.id]
    assert inter.original is not None
    assert msg.message_reference and int(msg.message_reference["message_id"]) == inter.original.id
    assert msg.nonce == job_id
    assert len(world.apimart.submissions) == 1
    await wait_for_state(world.data_dir, "done", job_id=job_id)


async def test_late_delivery_into_a_deleted_channel_is_a_recorded_failure(world: World) -> None:
    inter, job_id = await stopped_mid_poll(world, 1.0)
    world.discord.expire_interaction(inter)
    world.discord.delete_channel(world.channel.id)

    bot = await world.start_bot()
    await wait_for_state(world.data_dir, "failed", job_id=job_id)
    job = await bot.backend.store.get_job(job_id)
    assert job.state == "failed" and job.error_code == "delivery_failed"
    assert not bot.is_closed()


async def test_hard_kill_then_restart_delivers_once(world: World, tmp_path: Path) -> None:
    """SIGKILL a real bot process mid-poll; a new process on the same data dir finishes the job."""
    env = {**os.environ, **world.env, "PYTHONPATH": str(ROOT)}
    log_path = tmp_path / "bot.log"
    world.apimart.script(duration=4.0)
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "bot.py"), env=env, cwd=str(tmp_path), stdout=log_file, stderr=log_file
        )
        try:
            await world.discord.wait_until(
                lambda: world.discord.connected and world.discord.commands, timeout=30
            )
            inter = await world.edit()
            job_id = await wait_for_state(world.data_dir, "submitted", timeout=30)
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert job_states(world.data_dir)[job_id] == "submitted"

    await world.start_bot()
    await world.result_of(inter)
    await wait_for_state(world.data_dir, "done", job_id=job_id)
    assert result_posts(inter, world) == 1
    assert len(world.apimart.submissions) == 1
    log_text = log_path.read_text(errors="replace")
    assert world.env["DISCORD_TOKEN"] not in log_text and world.env["APIMART_API_KEY"] not in log_text
    assert f"[job={job_id}]" in log_text


async def test_sigterm_shuts_down_within_seconds_and_leaves_job_resumable(
    world: World, tmp_path: Path
) -> None:
    env = {**os.environ, **world.env, "PYTHONPATH": str(ROOT)}
    world.apimart.script(duration=5.0)
    with (tmp_path / "bot.log").open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "bot.py"), env=env, cwd=str(tmp_path), stdout=log_file, stderr=log_file
        )
        try:
            await world.discord.wait_until(
                lambda: world.discord.connected and world.discord.commands, timeout=30
            )
            inter = await world.edit()
            job_id = await wait_for_state(world.data_dir, "submitted", timeout=30)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 10)
            took = time.monotonic() - started
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert code == 0, (tmp_path / "bot.log").read_text()
    assert took < 10
    assert job_states(world.data_dir)[job_id] == "submitted"
    await world.start_bot()
    await world.result_of(inter)
    assert len(world.apimart.submissions) == 1


async def test_two_hundred_jobs_at_once(world: World) -> None:
    """Random durations, caps of 8 bot-wide and 2 per user: every job ends once, the caps hold."""
    rng = random.Random(7)
    users = [world.discord.add_user(f"user{i}") for i in range(25)]
    for user in users:
        world.discord.add_member(world.guild.id, user.id)
    bot = await world.start_bot(MAX_CONCURRENT_JOBS="8", MAX_JOBS_PER_USER="2", MAX_QUEUED_JOBS="500")
    for _ in range(200):
        world.apimart.script(duration=rng.uniform(0.05, 0.4), progress_steps=(50,))
    in_flight = 0
    peak = 0
    original_submit = bot.backend.provider.submit

    async def counting_submit(*args: object, **kwargs: object) -> str:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await original_submit(*args, **kwargs)
        finally:
            in_flight -= 1

    bot.backend.provider.submit = counting_submit
    image = make_image(64, 64)
    inters = await asyncio.gather(
        *(world.edit(image, f"edit {i}", user_id=users[i % len(users)].id) for i in range(200))
    )

    def finished(inter: FakeInteraction) -> bool:
        original = inter.original
        return original is not None and (
            bool(original.attachments and original.embeds) or original.content.startswith("❌")
        )

    await world.discord.wait_until(lambda: all(finished(i) for i in inters), timeout=120)
    await bot.backend.runner.wait_idle()

    delivered = failed = 0
    for inter in inters:
        posts = result_posts(inter, world)
        assert posts <= 1
        if posts == 1:
            delivered += 1
        else:
            assert inter.original is not None and inter.original.content.startswith("❌")
            failed += 1
    assert delivered + failed == 200
    assert delivered == 200, f"{failed} failed"
    assert len(world.apimart.submissions) == 200
    assert len({s.idempotency_key for s in world.apimart.submissions}) == 200
    assert bot.backend.runner.scheduler.peak_running <= 8
    assert peak <= 8

    assert bot.backend.runner.scheduler.peak_per_user <= 2

    # queue positions: every waiting job counted down, never up, starting from a place it really had
    waited = 0
    for inter in inters:
        positions = [
            int(e.message.content.split("position ")[1].rstrip("…"))
            for e in inter.original_edits
            if "position" in e.message.content
        ]
        if positions:
            waited += 1
            assert positions == sorted(positions, reverse=True) and len(set(positions)) == len(positions)
            assert positions[0] <= 200 - 8
    assert waited > 100

    # Discord requests per job stay bounded whatever the line's length (the defer, a few status
    # edits, the result): no edit storm when the line moves
    per_job = [
        sum(1 for r in world.discord.requests if r.kind == "api" and inter.token in r.path)
        for inter in inters
    ]
    assert max(per_job) <= 12, f"{max(per_job)} Discord requests for one job"
