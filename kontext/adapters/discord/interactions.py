"""Turning a Discord interaction into an accepted job: quick checks, defer, persist, start.

Everything before the defer is pure and fast (microseconds), so the acknowledgement always lands
well inside Discord's 3-second window; every refusal is an ephemeral, localised sentence plus one
log line. Downloads, decoding and hosting happen in the job runner, after the defer.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

import aiohttp
import discord

from kontext.domain import jobs as m
from kontext.config import Settings
from kontext.domain.errors import BusyError, ImageTooLarge, KontextError, ShuttingDown
from kontext.i18n import error_text, t
from kontext.services.runner import JobRunner
from kontext.support.logs import job_context
from kontext.services.moderation import Moderation
from kontext.adapters.discord.modlog import ModLog
from kontext.domain.policy import Denied, RequestFacts

log = logging.getLogger("kontext.adapters.discord.interactions")

MAX_PROMPT_CHARS = 1800
IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".webp",
    ".gif",
    ".bmp",
    ".tif",
    ".tiff",
    ".avif",
    ".heic",
    ".heif",
)


class Refusal(Exception):
    """A request refused before anything was accepted; ``text`` is shown to the requester only."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(reason)
        self.text = text
        self.reason = reason


@dataclass(frozen=True)
class EditOptions:
    """What the requester asked for (already validated against the choices)."""

    prompt: str
    model: str | None = None
    size: str | None = None
    response_format: str = "png"
    enhance: bool = False
    safety: int | None = None


def clean_prompt(prompt: str | None, locale: str | None) -> str:
    """Strip control characters and whitespace; refuse empty or over-long prompts."""
    text = "".join(ch for ch in (prompt or "") if ch in "\n\t" or ch.isprintable()).strip()
    if not text:
        raise Refusal(t("prompt_empty", locale), "empty prompt")
    if len(text) > MAX_PROMPT_CHARS:
        raise Refusal(
            t("prompt_too_long", locale, length=len(text), limit=MAX_PROMPT_CHARS), "prompt too long"
        )
    return text


def check_attachment(attachment: discord.Attachment, settings: Settings, locale: str | None) -> None:
    """Refuse from the attachment's metadata alone, before anything is downloaded."""
    if attachment.size > settings.max_input_bytes:
        error = ImageTooLarge(
            f"attachment declares {attachment.size} bytes",
            size_mb=f"{attachment.size / 1048576:.1f}",
            limit_mb=f"{settings.max_input_mb:g}",
        )
        raise Refusal(error_text(error, locale), error.detail)
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    if content_type and not content_type.startswith("image/"):
        raise Refusal(t("attachment_not_image", locale), f"attachment content type {content_type!r}")
    if not content_type and not attachment.filename.lower().endswith(IMAGE_EXTENSIONS):
        raise Refusal(t("attachment_not_image", locale), f"attachment name {attachment.filename!r}")


def facts_of(interaction: discord.Interaction, prompt: str, options: EditOptions) -> RequestFacts:
    """What the policy needs to know about a request (usage figures are filled in by Moderation)."""
    channel = interaction.channel
    parent_id = getattr(channel, "parent_id", None) if isinstance(channel, discord.Thread) else None
    is_nsfw = bool(channel.is_nsfw()) if channel is not None and hasattr(channel, "is_nsfw") else False
    roles = getattr(interaction.user, "roles", [])
    permissions = interaction.permissions
    return RequestFacts(
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id or 0,
        channel_is_nsfw=is_nsfw,
        user_id=interaction.user.id,
        role_ids=frozenset(role.id for role in roles),
        is_admin=bool(permissions.manage_guild or permissions.administrator),
        prompt=prompt,
        requested_model=options.model,
        requested_safety=options.safety,
        now=time.time(),
        user_jobs_today=0,
        guild_jobs_today=0,
        user_last_job_at=None,
        parent_channel_id=parent_id,
    )


class Intake:
    """Accepts `/edit` and `/imagine` requests for the job runner."""

    def __init__(self, settings: Settings, runner: JobRunner, moderation: Moderation, modlog: ModLog) -> None:
        self.settings = settings
        self.runner = runner
        self.moderation = moderation
        self.modlog = modlog

    async def refuse(self, interaction: discord.Interaction, text: str) -> None:
        """Tell only the requester, whether or not the interaction was already acknowledged."""
        try:
            if interaction.response.is_done():
                await interaction.followup.send(
                    text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
                )
            else:
                await interaction.response.send_message(
                    text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
                )
        except discord.HTTPException as exc:
            log.warning("could not send a refusal: %s %s", exc.status, exc.code)

    async def submit(
        self,
        interaction: discord.Interaction,
        options: EditOptions,
        *,
        kind: str,
        attachment: discord.Attachment | None = None,
        input_url: str | None = None,
        input_filename: str | None = None,
        parent_job_id: str | None = None,
    ) -> m.JobRecord | None:
        """Validate, defer, persist and start one job; returns it, or None when refused."""
        locale = str(interaction.locale)
        job_id = m.new_job_id()
        with job_context(job_id):
            try:
                prompt = clean_prompt(options.prompt, locale)
                if attachment is not None:
                    check_attachment(attachment, self.settings, locale)
                    input_url, input_filename = attachment.url, attachment.filename
                if not self.runner.accepting:
                    raise Refusal(error_text(ShuttingDown(), locale), "shutting down")
                if self.runner.scheduler.waiting_count >= self.settings.max_queued_jobs:
                    raise Refusal(
                        error_text(BusyError(limit=self.settings.max_queued_jobs), locale), "queue full"
                    )
                decision = await self.moderation.admit(facts_of(interaction, prompt, options))
                if isinstance(decision, Denied):
                    self.modlog.denied(
                        guild_id=interaction.guild_id,
                        channel_id=interaction.channel_id or 0,
                        user_id=interaction.user.id,
                        prompt=prompt,
                        model=options.model,
                        denial=decision,
                    )
                    raise Refusal(t(decision.code, locale, **decision.params), decision.detail)
            except Refusal as refusal:
                log.info("refused /%s from user %s: %s", kind, interaction.user.id, refusal.reason)
                await self.refuse(interaction, refusal.text)
                return None

            try:
                await interaction.response.defer(thinking=True)
                status = await interaction.original_response()
            except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
                # Nothing was accepted: the user sees Discord's own "did not respond" notice.
                log.warning("could not acknowledge /%s from user %s: %r", kind, interaction.user.id, exc)
                return None
            default_size = "match_input_image" if input_url else "16:9"
            job = m.JobRecord(
                id=job_id,
                kind=kind,
                prompt=prompt,
                model=decision.model,
                size=options.size or default_size,
                response_format=options.response_format,
                safety_tolerance=decision.safety,
                prompt_upsampling=options.enhance,
                user_id=interaction.user.id,
                user_name=str(interaction.user),
                channel_id=interaction.channel_id or 0,
                guild_id=interaction.guild_id,
                locale=locale,
                application_id=interaction.application_id,
                interaction_id=interaction.id,
                interaction_token=interaction.token,
                token_issued_at=interaction.created_at.timestamp(),
                status_message_id=status.id,
                attachment_size_limit=getattr(interaction, "filesize_limit", None) or 10 * 1024 * 1024,
                input_url=input_url,
                input_filename=input_filename,
                parent_job_id=parent_job_id,
                created_at=time.time(),
            )
            try:
                await self.runner.start_job(job)
            except KontextError as exc:
                log.warning("could not start the job: %s", exc.detail)
                # remove the public "thinking" message first, so the notice can be private
                with contextlib.suppress(discord.HTTPException):
                    await interaction.delete_original_response()
                await self.refuse(interaction, error_text(exc, locale))
                return None
            log.info(
                "accepted /%s from user %s in channel %s (model=%s size=%s)",
                kind,
                job.user_id,
                job.channel_id,
                job.model,
                job.size,
            )
            return job
