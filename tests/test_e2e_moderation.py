"""End to end: /kontext settings change what the next /edit does, refusals submit nothing, the log works."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.fakes.discord import FakeInteraction, Perm
from tests.harness import World, make_image
from tests.waiting import eventually_async


async def admin(world: World) -> int:
    user = world.discord.add_user("mod")
    world.discord.add_member(world.guild.id, user.id, permissions=Perm.DEFAULT_EVERYONE | Perm.MANAGE_GUILD)
    return user.id


async def kontext(
    world: World, path: str, options: dict[str, Any] | None = None, *, user_id: int
) -> FakeInteraction:
    inter = await world.discord.slash(
        "kontext " + path,
        options or {},
        user_id=user_id,
        guild_id=world.guild.id,
        channel_id=world.channel.id,
    )
    await inter.wait_for_callback()
    return inter


def reply_text(inter: FakeInteraction) -> str:
    data = inter.callbacks[0].data or {}
    texts = [data.get("content") or ""]
    for embed in data.get("embeds") or []:
        texts.append(embed.get("title", ""))
        texts += [f"{f['name']}: {f['value']}" for f in embed.get("fields", [])]
    return "\n".join(texts)


def fail_the_next_acknowledgement(world: World) -> None:
    """Discord answers the next interaction callback 404 Unknown interaction (the 3 s passed)."""
    world.discord.fail_next(
        "POST",
        r"/interactions/\d+/[^/]+/callback",
        404,
        body={"message": "Unknown interaction", "code": 10062},
    )


async def refused(world: World, inter: FakeInteraction) -> str:
    callback = await inter.wait_for_callback()
    assert callback.type == 4 and callback.data is not None, "refusals are replies"
    assert callback.data["flags"] & 64, "refusals are ephemeral replies"
    return callback.data["content"]


async def test_commands_are_declared_for_manage_server_only(world: World) -> None:
    await world.start_bot()
    [command] = [c for c in world.discord.commands if c["name"] == "kontext"]
    assert int(command["default_member_permissions"]) == Perm.MANAGE_GUILD
    assert command.get("contexts") in (None, [0]) or command.get("dm_permission") is False
    names = {o["name"] for o in command["options"]}
    assert {
        "show",
        "safety",
        "nsfw-safety",
        "models",
        "channels",
        "roles",
        "blocklist",
        "cooldown",
        "quota",
        "log-channel",
        "reset",
    } <= names


async def test_non_admin_cannot_change_settings(world: World) -> None:
    bot = await world.start_bot()
    inter = await kontext(world, "safety", {"value": 6}, user_id=world.user.id)
    data = inter.callbacks[0].data
    assert data is not None and data["flags"] & 64
    assert "Manage Server" in reply_text(inter)
    assert (await bot.backend.moderation.settings(world.guild.id)).safety is None


async def test_safety_settings_reach_the_api_and_users_can_only_go_stricter(world: World) -> None:
    bot = await world.start_bot()
    mod = await admin(world)
    nsfw = world.discord.add_channel(world.guild.id, "after-dark", nsfw=True)
    await kontext(world, "safety", {"value": 1}, user_id=mod)
    await kontext(world, "nsfw-safety", {"value": 5}, user_id=mod)

    async def safety_used(**kwargs: Any) -> int:
        before = len(world.apimart.submissions)
        inter = await world.edit(**kwargs)
        await world.result_of(inter)
        assert len(world.apimart.submissions) == before + 1
        return int(world.apimart.submissions[-1].json["safety_tolerance"])

    assert await safety_used() == 1
    assert await safety_used(channel_id=nsfw.id) == 5
    assert await safety_used(channel_id=nsfw.id, safety=3) == 3, "a stricter request is honoured"
    assert await safety_used(safety=6) == 1, "a looser request is clamped to the server's value"
    assert bot.backend.moderation is not None


@pytest.mark.parametrize(
    "case", ["blocklist", "channel", "role", "cooldown", "user-quota", "server-quota", "model"]
)
async def test_each_rule_refuses_with_its_message_and_submits_nothing(world: World, case: str) -> None:
    await world.start_bot()
    mod = await admin(world)
    other = world.discord.add_channel(world.guild.id, "art-only")
    role = world.discord.add_role(world.guild.id, "Artists")
    prompt = "make the hair blue"
    first_ok = False
    if case == "blocklist":
        await kontext(world, "blocklist add", {"entry": "forbidden"}, user_id=mod)
        prompt = "make it ＦＯＲ bidden\u200b please"  # full-width, spacing and zero-width do not bypass it
    elif case == "channel":
        await kontext(world, "channels", {"action": "add", "channel": other.id}, user_id=mod)
    elif case == "role":
        await kontext(world, "roles", {"action": "add", "role": role.id}, user_id=mod)
    elif case == "cooldown":
        await kontext(world, "cooldown", {"seconds": 600}, user_id=mod)
        first_ok = True
    elif case == "user-quota":
        await kontext(world, "quota", {"user": 1}, user_id=mod)
        first_ok = True
    elif case == "server-quota":
        await kontext(world, "quota", {"server": 1}, user_id=mod)
        first_ok = True
    elif case == "model":
        await kontext(world, "models", {"allowed": "flux-kontext-pro"}, user_id=mod)
    if first_ok:
        await world.result_of(await world.edit())
    submitted = len(world.apimart.submissions)
    extra: dict[str, Any] = {"model": "flux-kontext-max"} if case == "model" else {}
    text = await refused(world, await world.edit(prompt=prompt, **extra))
    expected = {
        "blocklist": "does not allow",
        "channel": f"<#{other.id}>",
        "role": f"<@&{role.id}>",
        "cooldown": "wait",
        "user-quota": "<t:",
        "server-quota": "<t:",
        "model": "flux-kontext-max",
    }[case]
    assert expected in text
    assert len(world.apimart.submissions) == submitted, "a refused request submits nothing"


async def test_moderation_log_receives_entries_with_thumbnails(world: World) -> None:
    bot = await world.start_bot()
    mod = await admin(world)
    log_channel = world.discord.add_channel(world.guild.id, "mod-log")
    await world.discord.flush()
    await kontext(world, "log-channel", {"channel": log_channel.id}, user_id=mod)
    await kontext(world, "blocklist add", {"entry": "secret*plan"}, user_id=mod)
    await world.result_of(await world.edit(prompt="make the sky purple"))
    await refused(world, await world.edit(prompt="reveal the secret evil plan"))
    await bot.backend.modlog.drain()

    def entries() -> list[Any]:
        return world.discord.channel_messages(log_channel.id)

    await world.discord.wait_until(lambda: len(entries()) >= 2, timeout=10)
    done, denied = sorted(entries(), key=lambda m: m.embeds[0]["title"])
    assert done.embeds[0]["title"] == "Edit done"
    fields = {f["name"]: f["value"] for f in done.embeds[0]["fields"]}
    assert fields["Prompt"] == "make the sky purple" and fields["Safety"] == "2"
    assert fields["Requester"].startswith(f"<@{world.user.id}>")
    assert {a.filename for a in done.attachments} == {"input.jpg", "output.jpg"}
    assert denied.embeds[0]["title"] == "Request denied"
    assert "blocked" in {f["name"]: f["value"] for f in denied.embeds[0]["fields"]}["Outcome"]
    assert all(m.allowed_mentions == {"parse": []} or not m.mention_ids for m in entries())


async def test_log_channel_without_permission_is_reported_once_in_show(world: World) -> None:
    bot = await world.start_bot()
    mod = await admin(world)
    log_channel = world.discord.add_channel(world.guild.id, "mod-log")
    world.discord.deny(log_channel.id, "send")
    await world.discord.flush()
    await kontext(world, "log-channel", {"channel": log_channel.id}, user_id=mod)
    for _ in range(3):
        await world.result_of(await world.edit())
    await bot.backend.modlog.drain()
    posts = [
        r
        for r in world.discord.requests
        if r.method == "POST" and f"/channels/{log_channel.id}/messages" in r.path
    ]
    assert len(posts) <= 1, "after the first refusal the bot stops trying"
    show = await kontext(world, "show", user_id=mod)
    assert "can't post there" in reply_text(show)


async def test_settings_survive_a_restart_and_show_usage(world: World) -> None:
    await world.start_bot()
    mod = await admin(world)
    await kontext(world, "safety", {"value": 0}, user_id=mod)
    await kontext(world, "quota", {"user": 5, "server": 50}, user_id=mod)
    await world.result_of(await world.edit())
    await world.stop_bot()

    bot = await world.start_bot()
    settings = await bot.backend.moderation.settings(world.guild.id)
    assert settings.safety == 0 and settings.user_daily_quota == 5 and settings.guild_daily_quota == 50
    show = await kontext(world, "show", user_id=mod)
    text = reply_text(show)
    assert "5 per user, 50 per server" in text
    assert "1 job;" in text and f"<@{world.user.id}>: 1" in text  # one job, not "1 jobs"
    await world.result_of(await world.edit())
    assert world.apimart.submissions[-1].json["safety_tolerance"] == 0

    reset = await kontext(world, "reset", user_id=mod)
    assert "defaults" in reply_text(reset)
    assert (await bot.backend.moderation.settings(world.guild.id)).safety is None
    await asyncio.sleep(0)


async def test_allow_lists_add_remove_clear(world: World) -> None:
    bot = await world.start_bot()
    mod = await admin(world)
    one = world.discord.add_channel(world.guild.id, "one")
    two = world.discord.add_channel(world.guild.id, "two")
    role = world.discord.add_role(world.guild.id, "Artists")
    await world.discord.flush()
    await kontext(world, "channels", {"action": "add", "channel": one.id}, user_id=mod)
    await kontext(world, "channels", {"action": "add", "channel": two.id}, user_id=mod)
    await kontext(world, "channels", {"action": "add", "channel": two.id}, user_id=mod)
    assert (await bot.backend.moderation.settings(world.guild.id)).channels == [one.id, two.id]
    await kontext(world, "channels", {"action": "remove", "channel": one.id}, user_id=mod)
    assert (await bot.backend.moderation.settings(world.guild.id)).channels == [two.id]
    missing = await kontext(world, "roles", {"action": "add"}, user_id=mod)
    assert "Please pick" in reply_text(missing)
    await kontext(world, "roles", {"action": "add", "role": role.id}, user_id=mod)
    await kontext(world, "channels", {"action": "clear"}, user_id=mod)
    await kontext(world, "roles", {"action": "clear"}, user_id=mod)
    settings = await bot.backend.moderation.settings(world.guild.id)
    assert settings.channels == [] and settings.roles == []


@pytest.mark.parametrize("allow", [False, True])
async def test_direct_messages_follow_allow_dms(world: World, allow: bool) -> None:
    await world.start_bot(ALLOW_DMS=str(allow).lower(), DEFAULT_SAFETY_TOLERANCE="3")
    dm = world.discord.dm_channel(world.user.id)
    attachment = world.discord.add_attachment(make_image(), "dm.png", "image/png", channel_id=dm.id)
    inter = await world.discord.slash(
        "edit", {"prompt": "make it blue"}, attachments={"image": attachment}, user_id=world.user.id
    )
    if not allow:
        assert "only work in servers" in await refused(world, inter)
        assert world.apimart.submissions == []
    else:
        await world.result_of(inter)
        assert world.apimart.submissions[-1].json["safety_tolerance"] == 3


async def test_the_operator_s_default_safety_applies_to_every_server_until_an_admin_chooses(
    world: World,
) -> None:
    """DEFAULT_SAFETY_TOLERANCE is the default of every server's setting, not only of DMs."""
    await world.start_bot(DEFAULT_SAFETY_TOLERANCE="4")
    mod = await admin(world)
    await world.result_of(await world.edit())
    assert world.apimart.submissions[-1].json["safety_tolerance"] == 4
    assert "4 (default)" in reply_text(await kontext(world, "show", user_id=mod))
    await kontext(world, "safety", {"value": 1}, user_id=mod)
    await world.result_of(await world.edit())
    assert world.apimart.submissions[-1].json["safety_tolerance"] == 1


async def test_replies_stay_inside_discord_limits_with_the_longest_lists(world: World) -> None:
    """500 channels and 500 roles allowed, 200 long block-list entries: every reply is valid for
    Discord (the fake refuses an embed field over 1,024 characters or an embed over 6,000) and the
    full lists come as a file."""
    bot = await world.start_bot()
    mod = await admin(world)
    channels = list(range(10**17, 10**17 + 499))
    roles = list(range(2 * 10**17, 2 * 10**17 + 500))
    entries = [f"forbidden phrase number {i:03d} " + "x" * 60 for i in range(200)]
    await bot.backend.moderation.change(world.guild.id, channels=channels, roles=roles, blocklist=entries)

    added = await kontext(world, "channels", {"action": "add", "channel": world.channel.id}, user_id=mod)
    for inter in (added, await kontext(world, "show", user_id=mod)):
        callback = inter.callbacks[0]
        assert callback.data is not None
        [embed] = callback.data["embeds"]
        assert all(len(field["value"]) <= 1024 for field in embed["fields"])
        assert sum(len(field["name"]) + len(field["value"]) for field in embed["fields"]) <= 6000
        assert "more (the full list is attached)" in reply_text(inter)
        [lists] = callback.files
        text = lists.data.decode()
        assert all(str(i) in text for i in [*channels, world.channel.id, *roles]), "every id is in the file"

    listed = await kontext(world, "blocklist list", user_id=mod)
    data = listed.callbacks[0].data or {}
    assert len(data["content"]) <= 2000 and "more (the full list is attached)" in data["content"]
    assert listed.callbacks[0].files[0].data.decode().splitlines() == entries


async def test_a_request_that_never_started_does_not_use_up_the_quota(world: World) -> None:
    """Quota counts accepted jobs only: when the acknowledgement fails (Discord answered 404 Unknown
    interaction), or the bot cannot start the job after it, the daily edit is given back."""
    bot = await world.start_bot()
    await bot.backend.moderation.change(world.guild.id, user_daily_quota=1)
    fail_the_next_acknowledgement(world)
    await world.edit()

    async def nothing_counted() -> bool:
        acknowledged = world.discord.find_requests("POST", "callback")
        total, _ = await bot.backend.moderation.usage_today(world.guild.id)
        return bool(acknowledged) and acknowledged[0].status == 404 and total == 0

    await eventually_async(nothing_counted)

    original_start = bot.backend.runner.start_job

    async def refuse_once(job: object) -> None:
        bot.backend.runner.start_job = original_start
        bot.backend.runner.accepting = False
        try:
            await original_start(job)
        finally:
            bot.backend.runner.accepting = True

    bot.backend.runner.start_job = refuse_once
    assert "restarting" in await world.failure_of(await world.edit())

    await world.result_of(await world.edit())  # the one edit of the day still works
    denied = await world.edit()
    await denied.wait_for_callback()
    assert "used your 1 edit for today" in (world.ephemeral_reply(denied) or "")
    assert len(world.apimart.submissions) == 1
