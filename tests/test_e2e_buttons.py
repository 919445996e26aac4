"""End to end: result buttons (also after a restart), the "Edit image" message command and /imagine."""

from __future__ import annotations

from typing import Any

from tests.fakes.discord import FakeInteraction, FakeMessage, Perm
from tests.harness import World, decode, inverted, make_image, mean_abs_diff


def text_input_id(modal: dict[str, Any]) -> str:
    """The custom_id of the (single) text input of a modal, whatever its layout."""
    for comp in modal["components"]:
        inner = comp.get("components") or [comp.get("component") or comp]
        for item in inner:
            if item.get("type") == 4:
                return str(item["custom_id"])
    raise AssertionError(f"no text input in {modal}")


async def answer_modal(world: World, inter: FakeInteraction, prompt: str) -> FakeInteraction:
    callback = await inter.wait_for_callback()
    assert callback.type == 9, "a modal is opened"
    modal = inter.modal
    assert modal is not None
    return await world.discord.submit_modal(modal["custom_id"], {text_input_id(modal): prompt})


async def first_result(world: World, source: bytes) -> tuple[FakeInteraction, FakeMessage, str]:
    inter = await world.edit(source, "make the hair blue")
    result = await world.result_of(inter)
    job_id = world.apimart.submissions[-1].idempotency_key
    assert job_id is not None, "the bot submits with its job id as the idempotency key"
    return inter, result, job_id


async def test_reroll_runs_the_same_prompt_on_the_same_input(world: World) -> None:
    await world.start_bot()
    source = make_image(200, 150)
    _inter, result, job_id = await first_result(world, source)
    click = await world.discord.click(result, f"kx:reroll:{job_id}", user_id=world.user.id)
    again = await world.result_of(click)
    first, second = world.apimart.submissions
    assert second.json["prompt"] == first.json["prompt"] and second.idempotency_key != job_id
    assert mean_abs_diff(decode(again.attachments[0].data), inverted(decode(source))) < 6
    job = await world.bot.backend.store.get_job(second.idempotency_key)
    assert job.parent_job_id == job_id


async def test_reroll_works_after_discord_s_attachment_link_expired(world: World) -> None:
    """Signed CDN links die after about a day; the kept normalised input outlives them."""
    await world.start_bot()
    source = make_image(200, 150)
    _inter, result, job_id = await first_result(world, source)
    world.discord.expire_attachment_urls()
    downloads = len(world.discord.find_requests(kind="cdn"))
    click = await world.discord.click(result, f"kx:reroll:{job_id}", user_id=world.user.id)
    again = await world.result_of(click)
    assert mean_abs_diff(decode(again.attachments[0].data), inverted(decode(source))) < 6
    assert len(world.discord.find_requests(kind="cdn")) == downloads, "the expired link was not even tried"
    kept = list((world.data_dir / "inputs").iterdir())
    assert [p.name.split(".")[0] for p in kept] == [job_id], "one copy, kept for the first job"


async def test_without_kept_inputs_a_late_reroll_says_the_image_is_gone(world: World) -> None:
    await world.start_bot(KEEP_INPUTS="false")
    _inter, result, job_id = await first_result(world, make_image(200, 150))
    world.discord.expire_attachment_urls()
    click = await world.discord.click(result, f"kx:reroll:{job_id}", user_id=world.user.id)
    text = await world.failure_of(click)
    assert "couldn't download your attachment" in text
    assert not (world.data_dir / "inputs").exists()
    assert len(world.apimart.submissions) == 1


async def test_edit_again_edits_the_result_multi_turn(world: World) -> None:
    await world.start_bot()
    source = make_image(200, 150)
    _inter, result, job_id = await first_result(world, source)
    click = await world.discord.click(result, f"kx:again:{job_id}", user_id=world.user.id)
    submitted = await answer_modal(world, click, "now undo the colours")
    second = await world.result_of(submitted)
    assert world.apimart.submissions[-1].json["prompt"] == "now undo the colours"
    # the fake inverts colours: editing the result again brings back the original picture
    assert mean_abs_diff(decode(second.attachments[0].data), decode(source)) < 8


async def test_delete_only_by_requester_or_moderator(world: World) -> None:
    await world.start_bot()
    _inter, result, job_id = await first_result(world, make_image())
    stranger = world.discord.add_user("stranger")
    world.discord.add_member(world.guild.id, stranger.id)
    denied = await world.discord.click(result, f"kx:delete:{job_id}", user_id=stranger.id)
    callback = await denied.wait_for_callback()
    assert callback.type == 4 and callback.data is not None and callback.data["flags"] & 64
    assert "Only the requester" in callback.data["content"]
    assert not world.discord.message(result.id).deleted

    moderator = world.discord.add_user("moderator")
    world.discord.add_member(
        world.guild.id, moderator.id, permissions=Perm.DEFAULT_EVERYONE | Perm.MANAGE_MESSAGES
    )
    await world.discord.click(result, f"kx:delete:{job_id}", user_id=moderator.id)
    await world.discord.wait_until(lambda: world.discord.message(result.id).deleted, timeout=10)


async def test_requester_can_delete(world: World) -> None:
    await world.start_bot()
    _inter, result, job_id = await first_result(world, make_image())
    await world.discord.click(result, f"kx:delete:{job_id}", user_id=world.user.id)
    await world.discord.wait_until(lambda: world.discord.message(result.id).deleted, timeout=10)


async def test_buttons_work_after_a_restart(world: World) -> None:
    await world.start_bot()
    _inter, result, job_id = await first_result(world, make_image())
    await world.stop_bot()
    await world.start_bot()
    click = await world.discord.click(result, f"kx:reroll:{job_id}", user_id=world.user.id)
    await world.result_of(click)
    assert len(world.apimart.submissions) == 2


async def test_edit_image_message_command(world: World) -> None:
    await world.start_bot()
    source = make_image(180, 120)
    attachment = world.discord.add_attachment(source, "cat.png", "image/png", channel_id=world.channel.id)
    message = world.discord.add_message(world.channel.id, world.user.id, "my cat", attachments=[attachment])
    await world.discord.flush()
    inter = await world.discord.message_command("Edit image", message, user_id=world.user.id)
    submitted = await answer_modal(world, inter, "give the cat a hat")
    result = await world.result_of(submitted)
    assert world.apimart.submissions[-1].json["prompt"] == "give the cat a hat"
    assert mean_abs_diff(decode(result.attachments[0].data), inverted(decode(source))) < 6


async def test_message_command_on_a_message_without_image(world: World) -> None:
    await world.start_bot()
    message = world.discord.add_message(world.channel.id, world.user.id, "just text")
    await world.discord.flush()
    inter = await world.discord.message_command("Edit image", message, user_id=world.user.id)
    callback = await inter.wait_for_callback()
    assert callback.type == 4 and callback.data is not None and callback.data["flags"] & 64
    assert "no image" in callback.data["content"]


async def test_imagine_text_to_image(world: World) -> None:
    await world.start_bot()
    inter = await world.discord.slash(
        "imagine",
        {"prompt": "a lighthouse at dusk", "aspect": "9:16"},
        user_id=world.user.id,
        guild_id=world.guild.id,
        channel_id=world.channel.id,
    )
    result = await world.result_of(inter)
    [submission] = world.apimart.submissions
    assert "image_urls" not in submission.json
    assert submission.json["size"] == "9:16"
    image = decode(result.attachments[0].data).convert("RGB")
    assert image.size == (144, 256)
    assert image.getpixel((10, 10)) == world.apimart.colour_for("a lighthouse at dusk")
    assert result.embeds[0]["title"] == "Generated image"


async def test_commands_are_localised_for_chinese_clients(world: World) -> None:
    await world.start_bot()
    edit = world.discord.command("edit")
    assert edit["name_localizations"]["zh-CN"] == "编辑图片"
    assert edit["description_localizations"]["zh-CN"].startswith("用 AI 编辑图片")
    options = {o["name"]: o for o in edit["options"]}
    assert options["prompt"]["name_localizations"]["zh-CN"] == "提示词"
    kontext = world.discord.command("kontext")
    subs = {o["name"]: o for o in kontext["options"]}
    assert subs["blocklist"]["name_localizations"]["zh-CN"] == "屏蔽词"
    menu = world.discord.command("Edit image", type=3)
    assert menu["name_localizations"]["zh-CN"] == "编辑图片"
