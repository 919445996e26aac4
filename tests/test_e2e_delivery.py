"""Late delivery as real Discord does it: the bot's own upload limit, exactly once beyond the nonce
window, and a result posted even where the bot may not embed links."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from PIL import Image

from kontext.adapters.storage import SqliteStore
from kontext.domain.jobs import JobState
from tests.fakes.discord import FakeInteraction, FakeMessage
from tests.harness import World, decode
from tests.test_e2e_durable import wait_for_state

MIB = 1024 * 1024


def channel_results(world: World, inter: FakeInteraction) -> list[FakeMessage]:
    """The bot's channel posts that answer this interaction with an image."""
    assert inter.original is not None
    return [
        msg
        for msg in world.discord.channel_messages(inter.channel_id)
        if msg.attachments
        and msg.message_reference
        and int(msg.message_reference["message_id"]) == inter.original.id
    ]


async def submitted_then_stopped(world: World, inter_factory: Any, **env: str) -> tuple[FakeInteraction, str]:
    """Run an /edit until its task id is stored, stop the bot, expire the interaction token."""
    await world.start_bot(**env)
    inter = await inter_factory()
    job_id = await wait_for_state(world.data_dir, "submitted")
    await world.stop_bot()
    world.discord.expire_interaction(inter)
    return inter, job_id


async def test_a_late_result_fits_the_server_limit_not_the_requester_s_nitro(world: World) -> None:
    """After 15 minutes the result is posted AS THE BOT, which only has the server's 10 MiB, even for a
    requester whose Nitro allowed 50 MiB in the interaction."""
    nitro = world.discord.add_user("nitro", nitro_upload_limit=50 * MIB)
    world.discord.add_member(world.guild.id, nitro.id)
    noise = Image.effect_noise((4000, 2500), 128).convert("RGB")  # compresses badly: a big PNG result
    buf = io.BytesIO()
    noise.save(buf, "PNG", compress_level=1)
    world.apimart.script(duration=1.5)
    env = {"NORMALISE_MEGAPIXELS": "10", "MAX_RESULT_MB": "100", "MAX_INPUT_MB": "50"}

    async def edit() -> FakeInteraction:
        inter = await world.edit(buf.getvalue(), user_id=nitro.id)
        assert inter.payload["attachment_size_limit"] == 50 * MIB
        return inter

    inter, job_id = await submitted_then_stopped(world, edit, **env)
    await world.start_bot(**env)
    await wait_for_state(world.data_dir, "done", job_id=job_id, timeout=60)
    [post] = channel_results(world, inter)
    [attachment] = post.attachments
    assert len(attachment.data) <= 10 * MIB, "fitted to the server's limit"
    task_id = world.apimart.submissions[0].task_id
    assert task_id is not None
    assert len(world.apimart.result_bytes(task_id)) > 10 * MIB
    decode(attachment.data)
    assert not [r for r in world.discord.requests if r.status == 413], "nothing was refused as too large"


async def test_a_restart_after_the_nonce_window_does_not_post_twice(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bot posts the late result, then dies before recording it; it comes back after Discord's
    nonce window has passed. It must find its earlier post instead of posting again."""
    world.apimart.script(duration=1.0)
    inter, job_id = await submitted_then_stopped(world, world.edit)

    record = SqliteStore.transition
    posted_but_not_recorded = asyncio.Event()

    async def crash_before_recording(self: SqliteStore, job: Any, *args: Any, **kwargs: Any) -> bool:
        if args[1] is JobState.DONE:
            posted_but_not_recorded.set()
            await asyncio.Event().wait()  # the process "dies" here: the post is out, the record is not
        return await record(self, job, *args, **kwargs)

    monkeypatch.setattr(SqliteStore, "transition", crash_before_recording)
    await world.start_bot()
    await asyncio.wait_for(posted_but_not_recorded.wait(), 20)
    await world.stop_bot()
    monkeypatch.undo()
    assert len(channel_results(world, inter)) == 1
    world.discord.advance_clock(world.discord.nonce_window + 60)  # Discord no longer de-duplicates

    await world.start_bot()
    await wait_for_state(world.data_dir, "done", job_id=job_id)
    assert len(channel_results(world, inter)) == 1, "the result was posted exactly once"
    assert len(world.apimart.submissions) == 1


async def test_a_result_is_delivered_where_the_bot_may_not_embed_links(world: World) -> None:
    """Discord silently drops the embed of a message that has content or files when the bot lacks
    Embed Links; the result (the file, the buttons) must still arrive and the job end done."""
    world.apimart.script(duration=1.0)
    inter, job_id = await submitted_then_stopped(world, world.edit)
    world.discord.deny(world.channel.id, "embed")
    await world.start_bot()
    await wait_for_state(world.data_dir, "done", job_id=job_id)
    [post] = channel_results(world, inter)
    assert post.attachments and not post.embeds, "the file arrived; Discord dropped the embed"
    assert any(job_id in custom_id for custom_id in post.custom_ids), "the buttons came with it"
