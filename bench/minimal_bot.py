"""The smallest discord.py bot with the Kontext bot's client settings, for the floor benchmarks.

:func:`run` starts an ``AutoShardedBot`` (guilds intent only) pointed at the fakes named in the env
file, with one ``/edit`` command (an attachment and a prompt) whose body is the caller's, and the
``/healthz`` the bench sessions wait on. ``bench/defer_floor.py`` and ``bench/job_floor.py`` run it
in a process of their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import discord
import yarl
from aiohttp import web
from discord import app_commands
from discord.ext import commands
from dotenv import dotenv_values

Edit = Callable[[discord.Interaction[Any], discord.Attachment, str], Awaitable[None]]


def settings(env_file: Path) -> dict[str, str]:
    """The env file the bench wrote for the bot."""
    return {key: value or "" for key, value in dotenv_values(env_file).items()}


def run(
    env: dict[str, str],
    edit: Edit,
    *,
    jobs_running: Callable[[], int] = lambda: 0,
    started: Callable[[aiohttp.ClientSession], None] | None = None,
) -> None:
    """Run the bot until it is stopped; ``started`` gets an HTTP session once the loop runs."""
    discord.http.Route.BASE = env["DISCORD_API_BASE"]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(env["DISCORD_GATEWAY_URL"])
    intents = discord.Intents.none()
    intents.guilds = True
    bot = commands.AutoShardedBot(command_prefix=commands.when_mentioned, intents=intents, help_command=None)

    @bot.tree.command(name="edit", description="Edit an image")
    @app_commands.describe(image="The picture", prompt="What to change")
    async def edit_command(
        interaction: discord.Interaction[Any], image: discord.Attachment, prompt: str
    ) -> None:
        await edit(interaction, image, prompt)

    async def healthz(request: web.Request) -> web.Response:
        body = {"jobs_running": jobs_running(), "jobs_waiting": 0}
        return web.json_response(body, status=200 if bot.is_ready() else 503)

    async def setup_hook() -> None:
        if started is not None:
            started(aiohttp.ClientSession())
        await bot.tree.sync()
        app = web.Application()
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", int(env["WEB_PORT"])).start()

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    bot.run(env["DISCORD_TOKEN"], log_handler=None)
