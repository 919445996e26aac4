"""Kontext entry point: load `.env`, validate settings, build the bot, run it until SIGTERM/SIGINT.

python bot.py           run the bot
python bot.py --check   validate the configuration and exit (0 ok, 2 bad) without connecting
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import discord
import yarl
from aiohttp import web
from discord.ext import commands
from dotenv import load_dotenv

from kontext.adapters.apimart.client import ApimartClient
from kontext.config import ConfigError, Settings, load_settings
from kontext.adapters.discord.reporter import DiscordReporter
from kontext.adapters.hosting import LocalHost, build_host
from kontext.adapters.images.worker import ImageWorker
from kontext.adapters.discord.interactions import Intake
from kontext.services.runner import JobRunner
from kontext.support.logs import setup_logging
from kontext.support.metrics import Metrics
from kontext.domain.jobs import JobRecord
from kontext.services.moderation import Moderation
from kontext.adapters.discord.modlog import ModLog
from kontext.domain.policy import BotDefaults
from kontext.domain.poll_schedule import PollSchedule
from kontext.adapters.storage.sqlite import SqliteStore
from kontext.adapters.discord.translator import KontextTranslator
from kontext.adapters.web.app import build_app, start_web

log = logging.getLogger("kontext.bot")

EXTENSIONS = ("cogs.edit", "cogs.settings")


# The bot never joins voice channels: silence discord.py's start-up warnings about voice libraries.
discord.VoiceClient.warn_nacl = False
discord.VoiceClient.warn_dave = False


def point_discord_at(settings: Settings) -> None:
    """Aim discord.py's REST and gateway at the configured servers (a proxy, or a test fake)."""
    discord.http.Route.BASE = settings.discord_api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


class KontextBot(commands.Bot):
    """The bot: owns the HTTP session, store, job runner and web server for its lifetime."""

    def __init__(
        self, settings: Settings, *, poll_schedule: PollSchedule | None = None, **options: Any
    ) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),  # nothing pings unless a call says so
            **options,
        )
        self.settings = settings
        self.poll_schedule = poll_schedule
        self.metrics = Metrics()
        self.result_view_factory: Callable[[JobRecord], discord.ui.View | None] | None = None
        self.web_port: int | None = None
        self._web_runner: web.AppRunner | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closing_started = False

    # set in setup_hook
    store: SqliteStore
    runner: JobRunner
    intake: Intake
    images: ImageWorker
    moderation: Moderation
    modlog: ModLog

    def reporter_for(self, job: JobRecord) -> DiscordReporter:
        return DiscordReporter(self, job, self.result_view_factory)

    def health(self) -> dict[str, object]:
        connected = not self.is_closed() and self.is_ready()
        return {
            "ok": connected and self.runner.accepting,
            "discord_connected": connected,
            "latency_ms": round(self.latency * 1000) if connected and self.latency == self.latency else None,
            "jobs_running": self.runner.scheduler.running_total,
            "jobs_waiting": self.runner.scheduler.waiting_count,
        }

    async def setup_hook(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=s.http_timeout_s, sock_read=s.http_timeout_s
            ),
            headers={"User-Agent": "KontextBot/0.1 (+https://github.com/)"},
        )
        self.store = SqliteStore(s.database_path)
        await self.store.open()
        apimart = ApimartClient(
            self._session, s.apimart_base_url, s.apimart_api_key, timeout=s.http_timeout_s
        )
        host = build_host(s, apimart)
        self.images = ImageWorker(max_threads=max(1, min(2, (os.cpu_count() or 2) - 1)))
        self.runner = JobRunner(
            settings=s,
            store=self.store,
            apimart=apimart,
            host=host,
            images=self.images,
            session=self._session,
            reporters=self.reporter_for,
            metrics=self.metrics,
            schedule=self.poll_schedule,
        )
        self.moderation = Moderation(
            self.store,
            BotDefaults(
                default_model=s.default_model, default_safety=s.default_safety, allow_dms=s.allow_dms
            ),
        )
        self.modlog = ModLog(self, self.moderation, self.images)
        self.runner.on_finished = self.modlog.finished
        self.intake = Intake(s, self.runner, self.moderation, self.modlog)
        if s.web_enabled:
            local = host if isinstance(host, LocalHost) else None
            app = build_app(self.metrics, self.health, local)
            self._web_runner, self.web_port = await start_web(app, s.web_host, s.web_port)
            if local is not None:
                self._sweeper = asyncio.create_task(self._sweep_hosted(local), name="hosted-sweeper")
        await self.tree.set_translator(KontextTranslator())
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        await self._sync_commands()
        self._maintenance = asyncio.create_task(self._prune_forever(), name="retention")
        resumed = await self.runner.resume_all()
        if resumed:
            log.info("resumed %d unfinished job(s)", resumed)

    async def _sync_commands(self) -> None:
        guild_id = self.settings.dev_guild_id
        if guild_id:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d command(s) to dev guild %s", len(synced), guild_id)
        else:
            synced = await self.tree.sync()
            log.info("synced %d global command(s) (may take up to an hour to show everywhere)", len(synced))

    async def _prune_forever(self) -> None:
        """Forget finished jobs and usage older than RETENTION_DAYS (at start, then daily)."""
        while True:
            before = time.time() - self.settings.retention_days * 86400
            try:
                jobs, usage = await self.store.prune(before)
                if jobs or usage:
                    log.info("retention: removed %d old job(s) and %d usage row(s)", jobs, usage)
            except Exception:
                log.exception("retention pruning failed")
            await asyncio.sleep(86400)

    async def _sweep_hosted(self, host: LocalHost) -> None:
        while True:
            removed = await asyncio.to_thread(host.sweep)
            if removed:
                log.info("removed %d expired hosted file(s)", removed)
            await asyncio.sleep(min(300, max(10, host.ttl_s / 4)))

    async def on_ready(self) -> None:
        log.info(
            "connected as %s (id %s) to %d guild(s)",
            self.user,
            getattr(self.user, "id", "?"),
            len(self.guilds),
        )

    async def close(self) -> None:
        if self._closing_started:
            return await super().close()
        self._closing_started = True
        started = time.monotonic()
        if hasattr(self, "runner"):
            await self.runner.stop()
        if hasattr(self, "moderation"):
            await self.moderation.flush()
        if hasattr(self, "modlog"):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.modlog.drain(), 5)
        for background in (self._sweeper, self._maintenance):
            if background is not None:
                background.cancel()
        if self._web_runner is not None:
            await self._web_runner.cleanup()
        await super().close()
        if hasattr(self, "images"):
            self.images.close()
        if self._session is not None:
            await self._session.close()
        if hasattr(self, "store"):
            await self.store.close()
        log.info("shut down in %.1f s", time.monotonic() - started)


def create_bot(settings: Settings, **options: Any) -> KontextBot:
    """The bot's factory (used by ``main`` and by the end-to-end tests)."""
    point_discord_at(settings)
    return KontextBot(settings, **options)


async def run_bot(settings: Settings) -> int:
    bot = create_bot(settings)
    loop = asyncio.get_running_loop()
    if sys.platform != "win32":  # Windows event loops have no signal handlers; Ctrl+C still works
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(
                sig,
                lambda s=sig: (
                    log.info("received %s, shutting down", s.name),
                    asyncio.ensure_future(bot.close()),
                ),
            )
    try:
        async with bot:
            await bot.start(settings.discord_token)
    except discord.LoginFailure:
        log.error(
            "Discord rejected DISCORD_TOKEN (401 Unauthorized); reset the token in the developer portal"
        )
        return 2
    except discord.PrivilegedIntentsRequired:
        log.error(
            "Discord refused the gateway intents; this bot needs no privileged intents — check the portal"
        )
        return 2
    except (aiohttp.ClientError, OSError, sqlite3.Error) as exc:
        log.error(
            "could not start: %s (Discord API %s, data dir %s)",
            exc,
            settings.discord_api_base,
            settings.data_dir,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Kontext: AI image editing for Discord")
    parser.add_argument("--check", action="store_true", help="validate the configuration and exit")
    parser.add_argument("--env-file", default=".env", help="dotenv file to load (default .env)")
    args = parser.parse_args(argv)
    load_dotenv(args.env_file, override=False)
    try:
        settings = load_settings(os.environ)
    except ConfigError as exc:
        print(f"kontext: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(
            f"kontext: configuration OK (image host {settings.image_host}, data dir {settings.data_dir}, "
            f"APIMart {settings.apimart_base_url})"
        )
        return 0
    setup_logging(
        settings.log_level,
        json_lines=settings.log_json,
        secrets=[settings.discord_token, settings.apimart_api_key],
    )
    return asyncio.run(run_bot(settings))


if __name__ == "__main__":
    sys.exit(main())
