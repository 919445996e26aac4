"""The fake Discord works with the real discord.py: a commands.Bot with app commands connects to it,
syncs, receives interactions and answers them over the real REST/webhook/CDN routes."""

from __future__ import annotations

import asyncio
import gc
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands, ui
from discord.ext import commands
from PIL import Image, ImageOps

from tests.fakes.discord import FakeDiscord, FakeGuild, FakeInteraction, MessageFlags

TOKEN = "MTIzNDU2Nzg5.fake.bot-token"


def make_png(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def bot_of(interaction: discord.Interaction) -> KontextTestBot:
    """The test bot an interaction reached (discord.py types ``interaction.client`` as any Client)."""
    bot = interaction.client
    assert isinstance(bot, KontextTestBot)
    return bot


def invert_png(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        out = ImageOps.invert(im.convert("RGB"))
    buf = io.BytesIO()
    out.save(buf, "PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------- the bot


class RerollButton(ui.DynamicItem[ui.Button[Any]], template=r"reroll:(?P<job>\d+)"):
    def __init__(self, job: int) -> None:
        super().__init__(
            ui.Button(label="Re-roll", custom_id=f"reroll:{job}", style=discord.ButtonStyle.primary)
        )
        self.job = job

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: ui.Item[Any], match: Any, /
    ) -> RerollButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        bot = bot_of(interaction)
        bot.clicks.append(("reroll", self.job))
        await interaction.response.send_modal(PromptModal())


class PromptModal(ui.Modal, title="Edit again"):
    prompt: ui.TextInput[Any] = ui.TextInput(label="Prompt", custom_id="prompt", max_length=500)

    def __init__(self) -> None:
        super().__init__(custom_id="kontext:prompt")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        bot = bot_of(interaction)
        bot.modal_values.append(self.prompt.value)
        await interaction.response.send_message(f"New prompt: {self.prompt.value}", ephemeral=True)


class LabelPromptModal(ui.Modal, title="Edit image"):
    prompt: ui.Label[Any] = ui.Label(text="Prompt", component=ui.TextInput(custom_id="ctx_prompt"))

    def __init__(self) -> None:
        super().__init__(custom_id="kontext:ctx")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        bot = bot_of(interaction)
        text_input = self.prompt.component
        assert isinstance(text_input, ui.TextInput)
        bot.modal_values.append(text_input.value)
        await interaction.response.defer(ephemeral=True, thinking=True)
        await interaction.followup.send("queued")


class ResultView(ui.View):
    def __init__(self, bot: KontextTestBot, job: int) -> None:
        super().__init__(timeout=60)
        self.add_item(RerollButton(job))
        bot.views.append(self)  # stopped on close, so no view-timeout task outlives the bot

    @ui.button(label="Delete", custom_id="kontext:delete", style=discord.ButtonStyle.danger)
    async def delete(self, interaction: discord.Interaction, button: ui.Button[Any]) -> None:
        bot = bot_of(interaction)
        bot.clicks.append(("delete", 0))
        await interaction.response.edit_message(content="Deleted.", embed=None, attachments=[], view=None)
        self.stop()


@app_commands.command(name="edit", description="Edit an image")
@app_commands.describe(image="The image to edit", prompt="What to change", strength="1-10")
async def edit_command(
    interaction: discord.Interaction,
    image: discord.Attachment,
    prompt: str,
    strength: app_commands.Range[int, 1, 10] = 5,
) -> None:
    bot = bot_of(interaction)
    bot.interactions.append(interaction)
    bot.received_attachments.append(image)
    await interaction.response.defer(thinking=True)
    data = await image.read()  # from the fake CDN, through discord.py's own session
    result = invert_png(data)
    embed = discord.Embed(title=prompt[:256], description=f"strength {strength}")
    embed.set_image(url="attachment://result.png")
    try:
        await interaction.edit_original_response(
            content=f"Done for {interaction.user.mention}",
            embed=embed,
            attachments=[discord.File(io.BytesIO(result), "result.png")],
            view=ResultView(bot, job=42),
        )
    except discord.HTTPException as exc:
        bot.errors.append(exc)
        return
    await interaction.followup.send("Only you can see this.", ephemeral=True)


@app_commands.command(name="ping", description="Deferred pong")
async def ping_command(interaction: discord.Interaction) -> None:
    bot = bot_of(interaction)
    bot.interactions.append(interaction)
    await bot.gate.wait()
    try:
        await interaction.response.defer()
        await interaction.edit_original_response(content="pong")
    except discord.HTTPException as exc:
        bot.errors.append(exc)


kontext_group = app_commands.Group(name="kontext", description="Server settings")
blocklist_group = app_commands.Group(name="blocklist", description="Prompt block-list", parent=kontext_group)


@blocklist_group.command(name="add", description="Block a word")
async def blocklist_add(
    interaction: discord.Interaction, word: str, role: discord.Role | None = None
) -> None:
    bot = bot_of(interaction)
    bot.interactions.append(interaction)
    suffix = f" for {role.name}" if role else ""
    await interaction.response.send_message(f"Blocked {word!r}{suffix}", ephemeral=True)


class ModelSelect(ui.View):
    def __init__(self, bot: KontextTestBot) -> None:
        super().__init__(timeout=30)
        bot.views.append(self)

    @ui.select(
        custom_id="kontext:model",
        options=[discord.SelectOption(label=m, value=m) for m in ("flux-kontext-pro", "flux-kontext-max")],
    )
    async def pick(self, interaction: discord.Interaction, select: ui.Select[Any]) -> None:
        await interaction.response.edit_message(content=f"Model: {select.values[0]}", view=None)


@app_commands.command(name="imagine", description="Text to image")
async def imagine_command(
    interaction: discord.Interaction, prompt: str, model: str = "flux-kontext-pro"
) -> None:
    bot = bot_of(interaction)
    await interaction.response.send_message(f"Choose a model for {prompt!r}", view=ModelSelect(bot))


@imagine_command.autocomplete("model")
async def model_autocomplete(
    interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    names = ("flux-kontext-pro", "flux-kontext-max")
    return [app_commands.Choice(name=n, value=n) for n in names if current in n]


@app_commands.context_menu(name="Edit image")
async def edit_image_menu(interaction: discord.Interaction, message: discord.Message) -> None:
    bot = bot_of(interaction)
    bot.interactions.append(interaction)
    bot.received_attachments.extend(message.attachments)
    await interaction.response.send_modal(LabelPromptModal())


class KontextTestBot(commands.Bot):
    def __init__(self) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            guild_ready_timeout=0.1,
        )
        self.ready_event = asyncio.Event()
        self.resumed_event = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
        self.interactions: list[discord.Interaction] = []
        self.received_attachments: list[discord.Attachment] = []
        self.clicks: list[tuple[str, int]] = []
        self.modal_values: list[str] = []
        self.errors: list[Exception] = []
        self.synced: list[app_commands.AppCommand] = []
        self.views: list[ui.View] = []

    async def setup_hook(self) -> None:
        self.add_dynamic_items(RerollButton)
        self.tree.add_command(edit_command)
        self.tree.add_command(ping_command)
        self.tree.add_command(imagine_command)
        self.tree.add_command(kontext_group)
        self.tree.add_command(edit_image_menu)
        self.synced = await self.tree.sync()

    async def on_ready(self) -> None:
        self.ready_event.set()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py sleeps 5 s before every non-initial IDENTIFY; tests do not need to."""

    async def close(self) -> None:
        for view in self.views:
            view.stop()
        await super().close()

    async def on_resumed(self) -> None:
        self.resumed_event.set()


# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord(TOKEN, heartbeat_interval_ms=250)
    await fake.start()
    old_base, old_gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    try:
        yield fake
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway
        await fake.close()


@pytest.fixture
def guild(fake: FakeDiscord) -> FakeGuild:
    return fake.add_guild("Kontext Lab", channels=("general", "art"))


@pytest.fixture
def user_id(fake: FakeDiscord, guild: FakeGuild) -> int:
    user = fake.add_user("alice")
    fake.add_member(guild.id, user.id)
    return user.id


@pytest.fixture
async def bot(fake: FakeDiscord, guild: FakeGuild, user_id: int) -> AsyncIterator[KontextTestBot]:
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    old_handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    bot = KontextTestBot()
    task = asyncio.create_task(bot.start(TOKEN))
    ready = asyncio.create_task(bot.ready_event.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()
    assert ready in done, "bot did not become ready"
    try:
        yield bot
    finally:
        await bot.close()
        await asyncio.wait_for(task, 5)
        for _ in range(3):
            await asyncio.sleep(0)
        gc.collect()
        running = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
        if running:  # the fake's side of a closing connection may still be finishing (a heartbeat ACK)
            await asyncio.wait(running, timeout=2)
        leaked = [t for t in running if not t.done()]
        loop.set_exception_handler(old_handler)
        assert not leaked, f"leaked tasks: {leaked}"
        assert not loop_errors, f"loop errors (unclosed sessions?): {loop_errors}"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def run_edit(fake: FakeDiscord, guild: FakeGuild, user_id: int, **kwargs: Any) -> FakeInteraction:
    att = fake.add_attachment(make_png(), "cat photo.png", "image/png")
    channel = guild.text_channels[0]
    return await fake.slash(
        "edit",
        {"prompt": "make it blue", "strength": 7},
        attachments={"image": att},
        user_id=user_id,
        guild_id=guild.id,
        channel_id=channel.id,
        **kwargs,
    )


# ----------------------------------------------------------------------------------------------- tests


async def test_connect_ready_and_sync(fake: FakeDiscord, guild: FakeGuild, bot: KontextTestBot) -> None:
    assert bot.user is not None and bot.user.id == fake.bot_id
    assert bot.application_id == fake.application_id
    dguild = bot.get_guild(guild.id)
    assert dguild is not None and dguild.name == "Kontext Lab"
    assert sorted(c.name for c in dguild.text_channels) == ["art", "general"]
    assert dguild.me is not None and dguild.me.guild_permissions.attach_files
    assert fake.identify_count == 1
    assert fake.identifies[0]["intents"] == discord.Intents.default().value

    # the commands the bot PUT are recorded with the right option types
    by_name = {c["name"]: c for c in fake.commands}
    assert set(by_name) == {"edit", "ping", "imagine", "kontext", "Edit image"}
    edit_opts = {o["name"]: o["type"] for o in by_name["edit"]["options"]}
    assert edit_opts == {"image": 11, "prompt": 3, "strength": 4}
    assert by_name["Edit image"]["type"] == 3
    assert {c.name for c in bot.synced} == set(by_name)
    assert fake.find_requests("PUT", rf"^/applications/{fake.application_id}/commands$")[0].status == 200

    # heartbeats are acknowledged
    await fake.wait_until(lambda: fake.heartbeats >= 3, timeout=3)
    assert bot.latency < 1.0
    assert [f.op for f in fake.gateway_log if f.op == 11]


async def test_slash_defer_edit_file_and_ephemeral_followup(
    fake: FakeDiscord, guild: FakeGuild, user_id: int, bot: KontextTestBot, http: aiohttp.ClientSession
) -> None:
    inter = await run_edit(fake, guild, user_id)
    callback = await inter.wait_for_callback()
    assert callback.type == 5
    assert inter.first_callback_delay is not None and inter.first_callback_delay < 3

    original = await inter.wait_for_original(lambda m: bool(m.attachments))
    await inter.wait_for_followups(1)

    # discord.py parsed the interaction and read the attachment from the fake CDN
    dinter = bot.interactions[0]
    assert dinter.filesize_limit == 10485760 and dinter.locale == discord.Locale.american_english
    assert dinter.guild_id == guild.id and isinstance(dinter.user, discord.Member)
    att = bot.received_attachments[0]
    assert att.filename == "cat_photo.png" and att.content_type == "image/png"
    assert (att.width, att.height) == (64, 48)

    # the original response: content, embed pointing at the uploaded file, buttons, real bytes
    assert not original.loading and not original.ephemeral
    assert original.content == f"Done for <@{user_id}>" and original.mention_ids == [user_id]
    assert [a.filename for a in original.attachments] == ["result.png"]
    result = original.attachments[0]
    assert result.data == invert_png(make_png()) and result.content_type == "image/png"
    assert sorted(original.custom_ids) == ["kontext:delete", "reroll:42"]
    payload = original.to_payload()
    assert payload["embeds"][0]["image"]["url"].startswith(f"{fake.base_url}/attachments/")
    assert original in fake.channel_messages(guild.text_channels[0].id)

    edit_req = fake.find_requests("PATCH", r"/messages/@original$")[0]
    assert edit_req.file_names == ["result.png"] and edit_req.json["attachments"] == [
        {"id": 0, "filename": "result.png"}
    ]
    assert edit_req.files[0].field == "files[0]"

    # the uploaded file is really served at its signed URL; tampering or expiry → 404
    url = result.url
    assert "?ex=" in url and "&is=" in url and "&hm=" in url
    async with http.get(url) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "image/png"
        assert await resp.read() == result.data
    tampered = url.replace("hm=", "hm=0")
    async with http.get(tampered) as resp:
        assert resp.status == 404
    async with http.get(url.split("?")[0]) as resp:
        assert resp.status == 404
    fake.expire_attachment_urls()
    async with http.get(url) as resp:
        assert resp.status == 404
    async with http.get(result.url) as resp:  # re-signed URL works again
        assert resp.status == 200

    # the follow-up is ephemeral and not a channel message
    followup = inter.followups[0]
    assert followup.flags & MessageFlags.EPHEMERAL and followup.content == "Only you can see this."
    assert followup is not original and followup not in fake.channel_messages(guild.text_channels[0].id)
    assert [e.via for e in inter.original_edits] == ["patch"]


async def test_button_dynamic_item_modal_and_view(
    fake: FakeDiscord, guild: FakeGuild, user_id: int, bot: KontextTestBot
) -> None:
    inter = await run_edit(fake, guild, user_id)
    original = await inter.wait_for_original(lambda m: bool(m.components))

    # DynamicItem → modal → modal submit parsed by discord.py
    click = await fake.click(original, "reroll:42", user_id=user_id)
    await click.wait_for(lambda i: i.modal is not None)
    assert click.callback_type == 9 and bot.clicks == [("reroll", 42)]
    assert click.modal is not None and click.modal["custom_id"] == "kontext:prompt"
    submit = await fake.submit_modal("kontext:prompt", {"prompt": "more blue"})
    reply = await submit.wait_for_original()
    assert bot.modal_values == ["more blue"]
    assert reply.content == "New prompt: more blue" and reply.ephemeral
    assert submit.payload["message"]["id"] == str(original.id)

    # a regular View button: UPDATE_MESSAGE strips the attachment, embed and buttons
    delete = await fake.click(original, "kontext:delete", user_id=user_id)
    await delete.wait_for(lambda i: i.callbacks)
    assert delete.callback_type == 7 and ("delete", 0) in bot.clicks
    assert original.content == "Deleted." and original.attachments == [] and original.components == []
    assert delete.original_edits[0].via == "callback"

    with pytest.raises(LookupError):
        await fake.click(original, "kontext:delete", user_id=user_id)


async def test_message_context_menu_and_label_modal(
    fake: FakeDiscord, guild: FakeGuild, user_id: int, bot: KontextTestBot
) -> None:
    channel = guild.text_channels[1]
    att = fake.add_attachment(make_png(10, 10), "photo.png", "image/png", size=123)
    target = fake.add_message(channel.id, user_id, "look", attachments=[att])
    inter = await fake.message_command("Edit image", target, user_id=user_id)
    await inter.wait_for(lambda i: i.modal is not None)
    assert bot.received_attachments[0].size == 123  # the lie about size reaches the bot
    assert inter.modal is not None and inter.modal["components"][0]["type"] == 18

    submit = await fake.submit_modal("kontext:ctx", {"ctx_prompt": "add a hat"})
    assert submit.payload["data"]["components"][0]["component"]["value"] == "add a hat"
    await submit.wait_for(lambda i: i.followups)
    assert bot.modal_values == ["add a hat"]
    # first follow-up after an ephemeral defer completes the loading original (like Discord)
    assert submit.followups[0] is submit.original and submit.original is not None
    assert submit.original.ephemeral and not submit.original.loading
    assert submit.original.content == "queued"

    with pytest.raises(ValueError, match="required"):
        await fake.submit_modal("kontext:ctx", {"ctx_prompt": ""})


async def test_subcommand_group_with_role_option(
    fake: FakeDiscord, guild: FakeGuild, user_id: int, bot: KontextTestBot
) -> None:
    role = fake.add_role(guild.id, "artists")
    inter = await fake.slash(
        "kontext blocklist add", {"word": "gore", "role": role.id}, user_id=user_id, guild_id=guild.id
    )
    msg = await inter.wait_for_original()
    assert msg.content == "Blocked 'gore' for artists" and msg.ephemeral
    opts = inter.payload["data"]["options"]
    assert opts[0]["type"] == 2 and opts[0]["options"][0]["type"] == 1
    assert inter.payload["data"]["resolved"]["roles"][str(role.id)]["name"] == "artists"
    with pytest.raises(LookupError):
        await fake.slash("kontext blocklist nope", {}, user_id=user_id, guild_id=guild.id)
    with pytest.raises(ValueError, match="required"):
        await fake.slash("kontext blocklist add", {}, user_id=user_id, guild_id=guild.id)
    with pytest.raises(TypeError):
        await fake.slash("kontext blocklist add", {"word": 3}, user_id=user_id, guild_id=guild.id)


async def test_autocomplete_and_select_menu(
    fake: FakeDiscord, guild: FakeGuild, user_id: int, bot: KontextTestBot
) -> None:
    auto = await fake.autocomplete(
        "imagine", {"prompt": "a cat", "model": "max"}, "model", user_id=user_id, guild_id=guild.id
    )
    choices = await auto.wait_for(lambda i: i.autocomplete_choices)
    assert auto.callback_type == 8 and choices == [{"name": "flux-kontext-max", "value": "flux-kontext-max"}]

    inter = await fake.slash("imagine", {"prompt": "a cat"}, user_id=user_id, guild_id=guild.id)
    msg = await inter.wait_for_original()
    assert msg.components[0]["components"][0]["type"] == 3
    with pytest.raises(ValueError):
        await fake.select(msg, "kontext:model", ["dall-e"], user_id=user_id)
    pick = await fake.select(msg, "kontext:model", ["flux-kontext-max"], user_id=user_id)
    await pick.wait_for(lambda i: i.callbacks)
    assert pick.callback_type == 7 and msg.content == "Model: flux-kontext-max" and msg.components == []


async def test_expired_token_and_late_ack(
    fake: FakeDiscord, guild: FakeGuild, user_id: int, bot: KontextTestBot
) -> None:
    inter = await run_edit(fake, guild, user_id)
    await inter.wait_for_followups(1)
    fake.expire_interaction(inter)
    with pytest.raises(discord.HTTPException) as excinfo:
        await bot.interactions[0].edit_original_response(content="too late")
    assert excinfo.value.status == 401 and excinfo.value.code == 50027

    # an interaction whose token expired before the bot acknowledged it: callback → 404 10062
    bot.gate.clear()
    ping = await fake.slash("ping", user_id=user_id, guild_id=guild.id)
    await fake.wait_until(lambda: len(bot.interactions) == 2)
    fake.expire_interaction(ping)
    bot.gate.set()
    await fake.wait_until(lambda: bot.errors)
    assert isinstance(bot.errors[0], discord.NotFound) and bot.errors[0].code == 10062
    assert not ping.callbacks

    # acknowledging after the 3 s window (shortened here) fails the same way
    fake.ack_deadline = 0.05
    bot.gate.clear()
    late = await fake.slash("ping", user_id=user_id, guild_id=guild.id)
    loop = asyncio.get_running_loop()
    await late.wait_for(lambda i: loop.time() > i.dispatched_at + 0.05)  # the deadline has passed
    bot.gate.set()
    await fake.wait_until(lambda: len(bot.errors) == 2)
    assert isinstance(bot.errors[1], discord.NotFound) and bot.errors[1].code == 10062

    # tokens expire interaction_token_ttl seconds after dispatch
    fake.ack_deadline, fake.interaction_token_ttl = 3.0, 0.3
    short = await fake.slash("ping", user_id=user_id, guild_id=guild.id)
    await short.wait_for_original(lambda m: m.content == "pong")
    await short.wait_for(lambda i: i.expired, timeout=2)
    with pytest.raises(discord.HTTPException) as refused:
        await bot.interactions[-1].edit_original_response(content="late")
    assert refused.value.code == 50027


async def test_rate_limited_edit_is_retried(
    fake: FakeDiscord, guild: FakeGuild, user_id: int, bot: KontextTestBot
) -> None:
    fake.fail_next("PATCH", r"^/webhooks/\d+/[^/]+/messages/@original$", 429, retry_after=0.05)
    inter = await run_edit(fake, guild, user_id)
    await inter.wait_for_followups(1)
    statuses = [r.status for r in fake.find_requests("PATCH", r"/messages/@original$")]
    assert statuses == [429, 200]
    assert inter.original is not None and inter.original.attachments

    # channel messages: discord.py's bucketed client retries too
    fake.fail_next("POST", r"^/channels/\d+/messages$", 429, retry_after=0.05)
    channel = bot.get_channel(guild.text_channels[0].id)
    assert isinstance(channel, discord.TextChannel)
    sent = await channel.send("hello")
    assert [r.status for r in fake.find_requests("POST", r"^/channels/\d+/messages$")] == [429, 200]
    assert fake.channel_messages(channel.id)[-1].id == sent.id


async def test_permissions_missing_channel_and_size_limit(
    fake: FakeDiscord, guild: FakeGuild, user_id: int, bot: KontextTestBot
) -> None:
    text, art = guild.text_channels
    fake.deny(text.id, "send")
    await fake.flush()  # CHANNEL_UPDATE with the bot's member overwrite reaches discord.py
    channel = bot.get_channel(text.id)
    assert isinstance(channel, discord.TextChannel)
    await fake.wait_until(lambda: not channel.permissions_for(channel.guild.me).send_messages)
    with pytest.raises(discord.Forbidden) as forbidden:
        await channel.send("hi")
    assert forbidden.value.code == 50013

    # interactions in that channel still work, and report the missing permission
    ping = await fake.slash("ping", user_id=user_id, guild_id=guild.id, channel_id=text.id)
    await ping.wait_for_original(lambda m: m.content == "pong")
    assert bot.interactions[-1].app_permissions.send_messages is False

    fake.delete_channel(art.id)
    with pytest.raises(discord.NotFound) as missing:
        await bot.fetch_channel(art.id)
    assert missing.value.code == 10003
    await fake.wait_until(lambda: bot.get_channel(art.id) is None)

    # uploads above the interaction's attachment_size_limit → 413 40005
    inter = await run_edit(fake, guild, user_id, attachment_size_limit=100)
    await inter.wait_for_callback()
    await fake.wait_until(lambda: bot.errors)
    assert isinstance(bot.errors[0], discord.HTTPException)
    assert (bot.errors[0].status, bot.errors[0].code) == (413, 40005)
    assert bot.interactions[-1].filesize_limit == 100


async def test_gateway_resume_replays_missed_interactions(
    fake: FakeDiscord, guild: FakeGuild, user_id: int, bot: KontextTestBot
) -> None:
    session = fake.session_id
    await fake.disconnect_gateway(resume_ok=True, hold=True)
    missed = await fake.slash("ping", user_id=user_id, guild_id=guild.id)  # while disconnected
    assert not fake.connected
    fake.release_gateway()
    await asyncio.wait_for(bot.resumed_event.wait(), 5)
    msg = await missed.wait_for_original(lambda m: m.content == "pong")
    assert msg.content == "pong"
    assert fake.resume_count == 1 and fake.identify_count == 1 and fake.session_id == session
    assert fake.resumes[0]["path"] == "/gateway-resume"
    # the missed dispatch was replayed on the resumed connection, before RESUMED
    sent = [f for f in fake.gateway_log if f.direction == "send" and f.t]
    names = [f.t for f in sent]
    replay = names.index("INTERACTION_CREATE")
    assert names[replay + 1] == "RESUMED" and sent[replay].connection == sent[replay + 1].connection
    assert sent[replay].connection != fake.dispatched("READY")[0].connection

    later = await fake.slash("ping", user_id=user_id, guild_id=guild.id)
    await later.wait_for_original(lambda m: m.content == "pong")
    seqs = [f.s for f in fake.gateway_log if f.direction == "send" and f.s is not None]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))


async def test_gateway_abrupt_drop_resumes(
    fake: FakeDiscord, guild: FakeGuild, user_id: int, bot: KontextTestBot
) -> None:
    await fake.disconnect_gateway(abrupt=True)
    await asyncio.wait_for(bot.resumed_event.wait(), 5)
    inter = await fake.slash("ping", user_id=user_id, guild_id=guild.id)
    await inter.wait_for_original(lambda m: m.content == "pong")
    assert fake.resume_count == 1 and fake.identify_count == 1


async def test_gateway_invalid_session_reidentifies(
    fake: FakeDiscord, guild: FakeGuild, user_id: int, bot: KontextTestBot
) -> None:
    bot.ready_event.clear()
    await fake.disconnect_gateway(resume_ok=False)
    await fake.wait_until(lambda: fake.identify_count == 2, timeout=5)
    assert any(f.op == 9 for f in fake.gateway_log)
    await asyncio.wait_for(bot.ready_event.wait(), 5)
    inter = await fake.slash("ping", user_id=user_id, guild_id=guild.id)
    await inter.wait_for_original(lambda m: m.content == "pong")


async def test_raw_http_contracts(
    fake: FakeDiscord, guild: FakeGuild, user_id: int, bot: KontextTestBot, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{fake.api_base}/users/@me", headers={"Authorization": "Bot wrong"}) as resp:
        assert resp.status == 401 and resp.headers["Content-Type"] == "application/json"
        assert await resp.json() == {"message": "401: Unauthorized", "code": 0}
    async with http.get(f"{fake.api_base}/users/@me", headers={"Authorization": f"Bot {TOKEN}"}) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"

    bot.gate.clear()
    inter = await fake.slash("ping", user_id=user_id, guild_id=guild.id)
    url = f"{fake.api_base}/interactions/{inter.id}/{inter.token}/callback"
    async with http.post(url, params={"with_response": "1"}, json={"type": 5}) as resp:
        body = await resp.json()
        assert resp.status == 200 and body["interaction"]["response_message_loading"] is True
        assert body["resource"]["message"]["flags"] == MessageFlags.LOADING
    async with http.post(url, params={"with_response": "1"}, json={"type": 5}) as resp:
        assert resp.status == 400 and (await resp.json())["code"] == 40060
    webhook = f"{fake.api_base}/webhooks/{fake.application_id}/{inter.token}/messages/@original"
    async with http.patch(webhook, json={"content": "x" * 2001}) as resp:
        body = await resp.json()
        assert resp.status == 400 and body["code"] == 50035 and "content" in body["errors"]
    bot.gate.set()
    await fake.wait_until(lambda: bot.errors)  # the bot's own late ack is refused
    assert isinstance(bot.errors[0], discord.HTTPException) and bot.errors[0].code == 40060


async def test_channel_messages_replies_dms_and_original_response(
    fake: FakeDiscord, guild: FakeGuild, user_id: int, bot: KontextTestBot
) -> None:
    text = guild.text_channels[0]
    user_msg = fake.add_message(text.id, user_id, "please edit")
    channel = bot.get_channel(text.id)
    assert isinstance(channel, discord.TextChannel)
    partial = channel.get_partial_message(user_msg.id)
    reply = await partial.reply(
        f"<@{user_id}> your image", file=discord.File(io.BytesIO(make_png()), "out.png"), mention_author=True
    )
    stored = fake.message(reply.id)
    assert stored.type == 19 and stored.message_reference is not None
    assert stored.mention_ids == [user_id] and stored.attachments[0].data == make_png()
    assert reply.attachments[0].url.startswith(f"{fake.base_url}/attachments/{text.id}/")
    assert await reply.attachments[0].read() == make_png()
    # discord.py sends enforce_nonce with every nonce: creating the same message again is idempotent
    first = await channel.send("result", nonce="job-1")
    again = await channel.send("result", nonce="job-1")
    assert again.id == first.id and [m.nonce for m in fake.channel_messages(text.id)].count("job-1") == 1
    await reply.edit(content="edited", allowed_mentions=discord.AllowedMentions.none())
    assert stored.content == "edited" and stored.edited_timestamp is not None and stored.mention_ids == []
    await reply.delete()
    assert stored.deleted and stored not in fake.channel_messages(text.id)

    dm_user = await bot.fetch_user(user_id)
    dm = await dm_user.send("hello in private")
    assert fake.channel(dm.channel.id).type == 1 and fake.channel_messages(dm.channel.id)[
        0
    ].content.startswith("hello")
    fake.user(user_id).dms_open = False
    with pytest.raises(discord.Forbidden) as closed:
        await dm_user.send("again")
    assert closed.value.code == 50007

    # interaction.original_response() / delete_original_response()
    inter = await run_edit(fake, guild, user_id)
    await inter.wait_for_followups(1)
    original = await bot.interactions[-1].original_response()
    assert inter.original is not None
    assert original.id == inter.original.id and original.attachments[0].filename == "result.png"
    await bot.interactions[-1].delete_original_response()
    assert inter.original_deleted

    # a guild added while connected arrives as GUILD_CREATE
    second = fake.add_guild("Second")
    await fake.flush()
    await fake.wait_until(lambda: bot.get_guild(second.id) is not None)


async def test_wrong_token_fails_login(fake: FakeDiscord) -> None:
    client = commands.Bot(command_prefix="!", intents=discord.Intents.default())
    with pytest.raises(discord.LoginFailure):
        await client.login("not-the-token")
    await client.close()
