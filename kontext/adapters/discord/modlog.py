"""The moderation log: one entry per request in the server's log channel (when one is set).

Entries are written in the server's language (its preferred locale, as set in Discord's server
settings) and show who asked, where, the prompt, model and safety value used, what it cost, input and output
thumbnails (made in the image sandbox together with the normalised input and the checked result,
so no image is kept for the log), the outcome, and denial reasons. Posting never blocks or breaks a
job. When the bot cannot post there (missing permission, channel gone), it logs that once and
remembers it for ``/kontext show`` instead of failing on every job.
"""

from __future__ import annotations

import asyncio
import logging
from enum import StrEnum

import discord

from kontext.adapters.discord.files import file_of, release
from kontext.domain.costs import LIST_PRICES, PriceTable
from kontext.domain.jobs import JobRecord, JobState
from kontext.domain.policy import Denied
from kontext.domain.values import clip
from kontext.i18n import price, t
from kontext.services.intake import EditRequest
from kontext.services.moderation import Moderation
from kontext.support.background import BackgroundTasks

log = logging.getLogger("kontext.adapters.discord.modlog")

COLOURS = {"done": discord.Colour.green(), "failed": discord.Colour.red(), "denied": discord.Colour.orange()}
#: Fields shown on a line of their own.
_WIDE_FIELDS = frozenset({"modlog_prompt", "modlog_reason", "modlog_outcome"})


class LogProblem(StrEnum):
    """Why the bot cannot post in a server's log channel (worded by ``/kontext show``)."""

    MISSING_PERMISSION = "missing permission"
    CHANNEL_NOT_FOUND = "channel not found"

    @property
    def message_key(self) -> str:
        return "log_problem_" + self.name.lower()


class ModLog:
    """Posts entries; remembers per guild why it could not (shown by ``/kontext show``)."""

    def __init__(
        self, client: discord.Client, moderation: Moderation, prices: PriceTable = LIST_PRICES
    ) -> None:
        self.client = client
        self.moderation = moderation
        self.prices = prices
        self.problems: dict[int, LogProblem] = {}
        self._posts = BackgroundTasks("modlog", log)

    def clear_problem(self, guild_id: int) -> None:
        self.problems.pop(guild_id, None)

    async def drain(self) -> None:
        """Wait for entries being posted (tests)."""
        await self._posts.drain()

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a shutdown budget
        """Let entries being posted finish (up to ``timeout``), then stop."""
        try:
            async with asyncio.timeout(timeout):
                await self._posts.drain()
        except TimeoutError:
            log.warning("moderation log entries still being posted after %.0f s; dropped", timeout)
        await self._posts.close(timeout=1)

    # --- entry points (never raise) -------------------------------------------------------------

    def denied(self, request: EditRequest, prompt: str, denial: Denied) -> None:
        if request.guild_id is None:
            return
        locale = self._locale(request.guild_id)
        fields = {
            "modlog_requester": f"<@{request.user_id}> ({request.user_id})",
            "modlog_channel": f"<#{request.channel_id}>",
            "modlog_prompt": clip(prompt, 1000),
            "modlog_model": request.options.model or t("modlog_model_default", locale),
            "modlog_outcome": t("modlog_outcome_denied", locale, rule=denial.code.removeprefix("policy_")),
            "modlog_reason": clip(denial.detail, 300),
        }
        self._posts.spawn(
            self._post(request.guild_id, "denied", "modlog_title_denied", fields, None, None, locale)
        )

    def _locale(self, guild_id: int) -> str | None:
        """The server's preferred locale (Discord's server setting), None when unknown (English)."""
        guild = self.client.get_guild(guild_id)
        return str(guild.preferred_locale) if guild is not None else None

    async def wants_thumbnails(self, job: JobRecord) -> bool:
        """Whether an entry for ``job`` would be posted (its server has a working log channel): only
        then are its thumbnails worth a decode (settings are cached; no request to Discord)."""
        if job.guild_id is None or job.guild_id in self.problems:
            return False
        return (await self.moderation.settings(job.guild_id)).log_channel_id is not None

    def finished(self, job: JobRecord, input_thumbnail: bytes | None, output_thumbnail: bytes | None) -> None:
        if job.guild_id is None:
            return
        outcome = "done" if job.state is JobState.DONE else "failed"
        locale = self._locale(job.guild_id)
        fields = {
            "modlog_requester": f"<@{job.user_id}> ({job.user_id})",
            "modlog_channel": f"<#{job.channel_id}>",
            "modlog_prompt": clip(job.prompt, 1000),
            "modlog_model": job.model,
            "modlog_safety": str(job.safety_tolerance),
            "modlog_cost": price(self.prices.money(job.cost), locale),
            "modlog_outcome": t("modlog_outcome_done", locale)
            if outcome == "done"
            else t("modlog_outcome_failed", locale, code=job.error_code or "?"),
            "modlog_job": job.id,
        }
        if job.result_message_id:
            fields["modlog_result"] = (
                f"https://discord.com/channels/{job.guild_id}/{job.channel_id}/{job.result_message_id}"
            )
        if outcome == "failed" and job.error_detail:
            fields["modlog_reason"] = clip(job.error_detail, 300)
        title = "modlog_title_done" if outcome == "done" else "modlog_title_failed"
        self._posts.spawn(
            self._post(job.guild_id, outcome, title, fields, input_thumbnail, output_thumbnail, locale)
        )

    # --- posting --------------------------------------------------------------------------------

    async def _post(
        self,
        guild_id: int,
        outcome: str,
        title: str,
        fields: dict[str, str],
        input_thumbnail: bytes | None,
        output_thumbnail: bytes | None,
        locale: str | None,
    ) -> None:
        """Post one entry; ``title`` and the field names are message ids, worded in ``locale``."""
        try:
            settings = await self.moderation.settings(guild_id)
            channel_id = settings.log_channel_id
            if channel_id is None or guild_id in self.problems:
                return
            embed = discord.Embed(title=t(title, locale), colour=COLOURS[outcome])
            for key, value in fields.items():
                embed.add_field(name=t(key, locale), value=value, inline=key not in _WIDE_FIELDS)
            files: list[discord.File] = []
            if input_thumbnail:
                files.append(file_of(input_thumbnail, _thumbnail_name("input", input_thumbnail)))
                embed.set_thumbnail(url=f"attachment://{files[-1].filename}")
            if output_thumbnail:
                files.append(file_of(output_thumbnail, _thumbnail_name("output", output_thumbnail)))
                embed.set_image(url=f"attachment://{files[-1].filename}")
            channel = self.client.get_channel(channel_id) or await self.client.fetch_channel(channel_id)
            if not isinstance(channel, discord.abc.Messageable):
                raise TypeError("not a text channel")
            try:
                await channel.send(embed=embed, files=files, allowed_mentions=discord.AllowedMentions.none())
            finally:
                release(files)
        except (discord.Forbidden, discord.NotFound, TypeError) as exc:
            reason = (
                LogProblem.MISSING_PERMISSION
                if isinstance(exc, discord.Forbidden)
                else LogProblem.CHANNEL_NOT_FOUND
            )
            self.problems[guild_id] = reason
            log.warning("moderation log of guild %s disabled until settings change: %s", guild_id, reason)
        except Exception as exc:  # noqa: BLE001 - a log entry is best effort; it must never break a job
            log.warning("could not post a moderation log entry for guild %s: %r", guild_id, exc)


def _thumbnail_name(stem: str, data: bytes) -> str:
    """``input.jpg`` or ``input.png`` (a transparent thumbnail is a PNG)."""
    return f"{stem}.png" if data.startswith(b"\x89PNG") else f"{stem}.jpg"
