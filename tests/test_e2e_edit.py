"""End to end: /edit through the real bot, real discord.py and real aiohttp against both fakes."""

from __future__ import annotations

import pytest

from tests.harness import World, decode, inverted, make_image, mean_abs_diff


@pytest.mark.parametrize("host", ["apimart", "local", "discord"])
async def test_happy_path_with_each_image_host(world: World, host: str) -> None:
    env = {"IMAGE_HOST": host}
    if host == "local":
        from tests.harness import free_port

        port = free_port()
        env.update(WEB_PORT=str(port), PUBLIC_BASE_URL=f"http://127.0.0.1:{port}")
    await world.start_bot(**env)
    source = make_image(320, 240)
    inter = await world.edit(source, "make the hair blue")

    result = await world.result_of(inter)
    # acknowledged at once, with a deferred "thinking" response, before the attachment was fetched
    assert inter.callback_type == 5
    assert inter.first_callback_delay is not None and inter.first_callback_delay < 3
    cdn_gets = [r for r in world.discord.requests if r.method == "GET" and "/attachments/" in r.path]
    assert cdn_gets and inter.callbacks[0].time <= cdn_gets[0].time

    # exactly one submission, with our job id as the idempotency key and a URL from the chosen host
    [submission] = world.apimart.submissions
    body = submission.json
    assert body["model"] == "flux-kontext-pro" and body["prompt"] == "make the hair blue"
    assert body["size"] == "match_input_image" and body["safety_tolerance"] == 2
    url = body["image_urls"][0]
    expected = {
        "apimart": world.apimart.base_url,
        "local": env.get("PUBLIC_BASE_URL", "") + "/files/",
        "discord": world.discord.base_url + "/attachments/",
    }[host]
    assert url.startswith(expected)
    job = await world.bot.backend.store.get_job(submission.idempotency_key)
    assert job is not None and job.state == "done" and job.host_name == host

    # the result is a real attachment whose pixels are the fake's edit (inverted colours) of the input
    [attachment] = result.attachments
    output = decode(attachment.data)
    assert output.size == (320, 240)
    assert mean_abs_diff(output, inverted(decode(source))) < 6
    assert mean_abs_diff(output, decode(source)) > 60
    embed = result.embeds[0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Prompt"] == "make the hair blue"
    assert fields["Model"] == "flux-kontext-pro"
    assert fields["Requested by"] == f"<@{world.user.id}>"
    assert result.content.startswith("✅ Done")
    assert {"kx:reroll:" + job.id, "kx:again:" + job.id, "kx:delete:" + job.id} <= set(result.custom_ids)

    # one status message was kept up to date along the way
    contents = [e.message.content for e in inter.original_edits]
    assert any(c.startswith(("🎨 Editing", "🕒 Queued")) for c in contents)
    assert not any(c.startswith("⬆️ Uploading") for c in contents), "a quick upload needs no edit of its own"
    assert not inter.followups
    if host == "local":
        # the hosted copy is gone once the job is done
        assert list((world.data_dir / "hosted").iterdir()) == []


async def test_clean_files_are_passed_on_undecoded_in_a_server_without_a_moderation_log(world: World) -> None:
    """No moderation log, so no thumbnails: a clean JPEG that needs no change is uploaded to the API
    byte for byte and the clean result that fits is posted as it is, without an image worker."""
    await world.start_bot()
    source = make_image(320, 240, "JPEG", quality=90)
    inter = await world.edit(source, "make the hair blue", filename="photo.jpg", content_type="image/jpeg")
    result = await world.result_of(inter)

    [upload] = world.apimart.uploads
    assert upload.data == source, "the input went to the API exactly as the user sent it"
    [attachment] = result.attachments
    [submission] = world.apimart.submissions
    assert submission.task_id is not None
    assert attachment.data == world.apimart.result_bytes(submission.task_id), "posted as it came"
    output = decode(attachment.data)
    assert output.size == (320, 240) and mean_abs_diff(output, inverted(decode(source))) < 6
    images = world.bot.backend.images
    for kind in ("input", "result"):
        assert images.metrics.value("kontext_image_passed_through_total", kind=kind) == 1, kind
