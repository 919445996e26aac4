"""End-to-end harness: the real bot (bot.py's factory, real cogs) against the loopback fakes."""

from __future__ import annotations

import asyncio
import io
import socket
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import discord
import yarl
from PIL import Image

import bot as bot_module
from kontext.config import load_settings
from kontext.domain.poll_schedule import PollSchedule
from tests.fakes.apimart_fake import FakeApimart
from tests.fakes.discord import FakeDiscord, FakeInteraction, FakeMessage

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "MTA1NjY3ODkwMTIzNDU2Nzg5.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"
API_KEY = FakeApimart.DEFAULT_KEY
FAST_POLLS = PollSchedule().scaled(0.02)


def job_states(data_dir: Path) -> dict[str, str]:
    """Read job states straight from the SQLite file (as another process would)."""
    path = data_dir / "kontext.sqlite3"
    if not path.exists():
        return {}
    conn = sqlite3.connect(path, timeout=5)
    try:
        return dict(conn.execute("SELECT id, state FROM jobs").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_image(width: int = 320, height: int = 240, fmt: str = "PNG", **save: Any) -> bytes:
    """A deterministic colourful test picture (horizontal red ramp, vertical green ramp, blue 60)."""
    image = Image.new("RGB", (width, height))
    image.putdata(
        [
            (x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), 60)
            for y in range(height)
            for x in range(width)
        ]
    )
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute per-channel difference of two RGB images (b resized to a's size)."""
    a = a.convert("RGB")
    b = b.convert("RGB").resize(a.size)
    total = 0
    pa, pb = a.tobytes(), b.tobytes()
    for x, y in zip(pa, pb, strict=True):
        total += abs(x - y)
    return total / len(pa)


def inverted(image: Image.Image) -> Image.Image:
    from PIL import ImageOps

    return ImageOps.invert(image.convert("RGB"))


@dataclass
class World:
    """Both fakes, one guild with a channel and a member, and the bot(s) started against them."""

    discord: FakeDiscord
    apimart: FakeApimart
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    bots: list[Any] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.guild = self.discord.add_guild("Art Club")
        self.channel = self.guild.text_channels[0]
        self.user = self.discord.add_user("alice")
        self.discord.add_member(self.guild.id, self.user.id)
        self.env = {
            "DISCORD_TOKEN": TOKEN,
            "APIMART_API_KEY": API_KEY,
            "APIMART_BASE_URL": self.apimart.base_url,
            "DISCORD_API_BASE": self.discord.api_base,
            "DISCORD_GATEWAY_URL": self.discord.gateway_url,
            "DATA_DIR": str(self.data_dir),
            "WEB_HOST": "127.0.0.1",
            "WEB_PORT": "0",
            "ALLOW_PRIVATE_URLS": "true",
            "STATUS_UPDATE_INTERVAL_SECONDS": "0",
            "LOG_LEVEL": "DEBUG",
        }

    @property
    def bot(self) -> Any:
        return self.bots[-1]

    async def start_bot(self, schedule: PollSchedule = FAST_POLLS, /, **env: str) -> Any:
        settings = load_settings({**self.env, **env})
        bot = bot_module.create_bot(settings, poll_schedule=schedule, guild_ready_timeout=0.05)
        self.bots.append(bot)
        task = asyncio.create_task(bot.start(TOKEN), name="bot")
        self.tasks.append(task)
        waiter = asyncio.create_task(bot.wait_until_ready())
        done, _ = await asyncio.wait({waiter, task}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            waiter.cancel()
            task.result()
        assert waiter in done, "bot did not become ready"
        return bot

    async def stop_bot(self) -> None:
        bot, task = self.bots[-1], self.tasks[-1]
        if not bot.is_closed():
            await bot.close()
        await asyncio.wait_for(task, 10)

    async def close(self) -> None:
        for bot, task in zip(self.bots, self.tasks, strict=True):
            if not bot.is_closed():
                await bot.close()
            if not task.done():
                task.cancel()
            # Whatever the bot's task ended with (cancelled, or an error a test already looked at through
            # start_bot) is collected, not raised: the rest of the teardown must go on.
            await asyncio.gather(task, return_exceptions=True)
        discord.http.Route.BASE = "https://discord.com/api/v10"
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL("wss://gateway.discord.gg/")

    async def edit(
        self,
        data: bytes | None = None,
        prompt: str = "make the hair blue",
        *,
        filename: str = "photo.png",
        content_type: str | None = "image/png",
        size: int | None = None,
        user_id: int | None = None,
        channel_id: int | None = None,
        guild_id: int | None = None,
        locale: str = "en-US",
        attachment_size_limit: int | None = None,
        **options: Any,
    ) -> FakeInteraction:
        """Run `/edit` as a user with an attached file (in the world's guild unless told otherwise)."""
        attachment = self.discord.add_attachment(
            data if data is not None else make_image(),
            filename,
            content_type,
            size=size,
            channel_id=channel_id or self.channel.id,
        )
        return await self.discord.slash(
            "edit",
            {"prompt": prompt, **options},
            attachments={"image": attachment},
            user_id=user_id or self.user.id,
            guild_id=guild_id or self.guild.id,
            channel_id=channel_id or self.channel.id,
            locale=locale,
            attachment_size_limit=attachment_size_limit,
        )

    async def result_of(self, inter: FakeInteraction, timeout: float = 20.0) -> FakeMessage:
        """Wait for the status message to become a result (attachment + embed) and for the bot to
        finish its bookkeeping (state, metrics, clean-up), which follows the post."""
        result = await inter.wait_for_original(lambda m: bool(m.attachments and m.embeds), timeout=timeout)
        await self._settle(timeout)
        return result

    async def failure_of(self, inter: FakeInteraction, timeout: float = 20.0) -> str:
        """Wait for a failure: the public status line (❌ …) or an ephemeral follow-up; returns its text."""

        def check(i: FakeInteraction) -> str | None:
            for followup in i.followups:
                if followup.ephemeral:
                    return followup.content
            if i.original is not None and not i.original_deleted and i.original.content.startswith("❌"):
                return i.original.content
            return None

        text = await inter.wait_for(check, timeout=timeout)
        await self._settle(timeout)
        return text

    async def _settle(self, timeout: float) -> None:
        """Let an in-process bot finish the bookkeeping that follows a post (no-op for a subprocess bot)."""
        if self.bots and not self.bots[-1].is_closed():
            await asyncio.wait_for(self.bots[-1].backend.runner.wait_idle(), timeout)

    def ephemeral_reply(self, inter: FakeInteraction) -> str | None:
        """Text of an ephemeral reply (immediate response or follow-up), if any."""
        if inter.original is not None and inter.original.ephemeral:
            return inter.original.content
        for followup in inter.followups:
            if followup.ephemeral:
                return followup.content
        return None
