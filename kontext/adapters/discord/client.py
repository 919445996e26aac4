"""The discord.py client: gateway shards, command tree, extensions, and the error boundary.

What the bot does lives behind :class:`Backend` (built by :mod:`kontext.app`); this class only
does the Discord part of starting and stopping: aim discord.py at the configured servers, run this
process's shards (``SHARD_COUNT``/``SHARD_IDS``; by default all of Discord's recommended count),
space session starts as Discord requires across every process (one IDENTIFY per
``max_concurrency`` bucket per 5 s, through the backend's session-start gate), load the cogs, sync
the commands, and route unexpected command errors to
:func:`~kontext.adapters.discord.interactions.report_unexpected`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.ext import commands

from kontext.adapters.discord.interactions import InteractionIntake, report_unexpected
from kontext.adapters.discord.modlog import ModLog
from kontext.adapters.discord.translator import KontextTranslator
from kontext.config import ConfigError, Settings
from kontext.domain.jobs import JobRecord
from kontext.domain.usage import UsageReport
from kontext.services.moderation import Moderation
from kontext.services.ports import SessionStartGate
from kontext.services.runner import JobRunner
from kontext.services.usage_report import UsageReports
from kontext.support import heap

log = logging.getLogger("kontext.bot")

EXTENSIONS = ("cogs.edit", "cogs.settings", "cogs.usage")
#: Discord's spacing of session starts within one ``max_concurrency`` bucket is 5 s; a little more,
#: so that the time a grant takes to become an IDENTIFY on the wire never brings two closer.
IDENTIFY_SPACING_S = 5.25
#: How long the start-up check of the gateway URL may take (seconds).
GATEWAY_CHECK_TIMEOUT_S = 20.0
#: Connections to Discord's API kept open and reused. discord.py's default has no limit, so a burst
#: of 500 /edits opened ~500 new connections (a TCP and TLS handshake each, ~1 s of CPU in all)
#: just to acknowledge them; 64 keep-alive connections carry far more than Discord lets a bot send.
DISCORD_HTTP_CONNECTIONS = 64

# The bot never joins voice channels: silence discord.py's start-up warnings about voice libraries.
discord.VoiceClient.warn_nacl = False
discord.VoiceClient.warn_dave = False

ViewFactory = Callable[[JobRecord], discord.ui.View | None]


class Backend(Protocol):
    """What the cogs and the client use of the application (see :class:`kontext.app.App`)."""

    settings: Settings
    interactions: InteractionIntake
    moderation: Moderation
    modlog: ModLog
    runner: JobRunner
    session_gate: SessionStartGate
    usage: UsageReports

    async def usage_chart(self, report: UsageReport, locale: str) -> bytes | None:
        """The chart of a usage report as a PNG in the reader's language (None if it cannot be drawn)."""
        ...

    async def start(self, bot: KontextBot) -> None:
        """Build and start everything that needs the running loop (before the gateway connects)."""
        ...

    async def resume(self) -> int:
        """Resume unfinished jobs (after commands are synced); returns how many."""
        ...

    async def close(self) -> None: ...


def point_discord_at(settings: Settings) -> None:
    """Aim discord.py's REST and gateway at the configured servers (a proxy, or a test fake)."""
    discord.http.Route.BASE = settings.discord_api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


class KontextTree(app_commands.CommandTree[Any]):
    """The command tree with the bot's error boundary."""

    async def on_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        if isinstance(error, app_commands.CheckFailure):
            return  # the check has already told the user
        await report_unexpected(interaction, error)


class KontextBot(commands.AutoShardedBot):
    """The Discord client of one bot process (one or more gateway shards)."""

    def __init__(self, settings: Settings, backend: Backend, **options: Any) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),  # nothing pings unless a call says so
            tree_cls=KontextTree,
            shard_count=settings.shard_count,
            shard_ids=list(settings.shard_ids) if settings.shard_ids else None,  # type: ignore[arg-type]
            **options,
        )
        self.settings = settings
        self.backend = backend
        self.result_view_factory: ViewFactory | None = None
        self.max_concurrency = 1
        self._closing_started = False

    def connected(self) -> bool:
        """Ready, and every shard's gateway connection open (not reconnecting)."""
        if self.is_closed() or not self.is_ready():
            return False
        return not any(shard.is_closed() for shard in self.shards.values())

    async def login(self, token: str) -> None:
        if not isinstance(self.http.connector, aiohttp.BaseConnector):  # discord.py's own: unlimited
            self.http.connector = aiohttp.TCPConnector(limit=DISCORD_HTTP_CONNECTIONS)
        await super().login(token)

    async def setup_hook(self) -> None:
        await self.backend.start(self)
        await self._check_gateway()
        await self._plan_shards()
        await self.tree.set_translator(KontextTranslator())
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        await self._sync_commands()
        resumed = await self.backend.resume()
        if resumed:
            log.info("resumed %d unfinished job(s)", resumed)

    async def _check_gateway(self) -> None:
        """Open one websocket to the configured gateway and close it: a wrong ``DISCORD_GATEWAY_URL``
        is then one clear line at start, not discord.py retrying a refused handshake forever."""
        url = yarl.URL(str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)).update_query(
            v=10, encoding="json"
        )
        try:
            socket = await asyncio.wait_for(self.http.ws_connect(str(url)), GATEWAY_CHECK_TIMEOUT_S)
        except aiohttp.WSServerHandshakeError as exc:
            raise ConfigError(
                "DISCORD_GATEWAY_URL", f"the gateway refused the websocket (HTTP {exc.status}); check the URL"
            ) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ConfigError(
                "DISCORD_GATEWAY_URL", f"cannot connect to the gateway ({type(exc).__name__})"
            ) from None
        await socket.close()

    async def _plan_shards(self) -> None:
        """Read Discord's recommended shard count and session-start concurrency (GET /gateway/bot).

        Fixing the count here keeps discord.py on the configured gateway URL (``DISCORD_GATEWAY_URL``)."""
        recommended, _url, limits = await self.http.get_bot_gateway()
        self.max_concurrency = max(1, int(limits.get("max_concurrency", 1)))
        if self.shard_count is None:
            self.shard_count = recommended
        log.info(
            "running shard(s) %s of %d (session starts: %d at a time)",
            ",".join(map(str, self.shard_ids or range(self.shard_count))),
            self.shard_count,
            self.max_concurrency,
        )

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Wait for this shard's session-start slot, shared by every process of the bot."""
        bucket = (shard_id or 0) % self.max_concurrency
        await self.backend.session_gate.wait_turn(bucket, IDENTIFY_SPACING_S)

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

    async def on_ready(self) -> None:
        log.info(
            "connected as %s (id %s) to %d guild(s)",
            self.user,
            getattr(self.user, "id", "?"),
            len(self.guilds),
        )
        heap.settle()  # modules, caches, settings: alive for good, never walked by the collector again

    async def close(self) -> None:
        if self._closing_started:
            await super().close()
            return
        self._closing_started = True
        await self.backend.close()
        await super().close()
