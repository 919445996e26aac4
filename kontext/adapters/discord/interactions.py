"""Interactions at the edge: turn a Discord interaction into an intake request, acknowledge, refuse.

The decision is :class:`kontext.services.intake.Intake`'s (Discord-free); this module only gathers
the facts from the interaction, defers within Discord's 3-second window, and shows refusals
privately. :func:`report_unexpected` is the one error boundary: anything a command, button or
modal did not expect ends in a private apology to the user and a traceback for the operator, so no
interaction is ever left on "thinking…".
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import aiohttp
import discord

from kontext.domain.errors import KontextError
from kontext.domain.jobs import JobKind, JobRecord
from kontext.i18n import error_text, t
from kontext.services.foreground import Foreground
from kontext.services.intake import (
    Accepted,
    AttachmentInfo,
    EditOptions,
    EditRequest,
    Intake,
    InteractionHandle,
    Refused,
    looks_like_image,
)
from kontext.support.metrics import Metrics

log = logging.getLogger("kontext.interactions")

NO_PINGS = discord.AllowedMentions.none()
#: Discord's upload limit for a server without boosts (and when an interaction does not say).
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024


def locale_of(interaction: discord.Interaction[Any]) -> str:
    return str(interaction.locale)


def is_admin(interaction: discord.Interaction[Any]) -> bool:
    """Manage Server or Administrator in this channel (what server settings require)."""
    permissions = interaction.permissions
    return bool(permissions.manage_guild or permissions.administrator)


def attachment_info(attachment: discord.Attachment) -> AttachmentInfo:
    return AttachmentInfo(attachment.url, attachment.filename, attachment.content_type, attachment.size)


def first_image(message: discord.Message) -> discord.Attachment | None:
    """The first attachment of a message that looks like an image."""
    for attachment in message.attachments:
        if looks_like_image(attachment.content_type, attachment.filename):
            return attachment
    return None


def request_from(
    interaction: discord.Interaction[Any],
    options: EditOptions,
    *,
    kind: JobKind,
    attachment: discord.Attachment | None = None,
    input_url: str | None = None,
    input_filename: str | None = None,
    input_ref: str | None = None,
    parent_job_id: str | None = None,
) -> EditRequest:
    """The plain facts of a request, read off the interaction."""
    channel = interaction.channel
    parent_id = channel.parent_id if isinstance(channel, discord.Thread) else None
    is_nsfw = bool(channel.is_nsfw()) if channel is not None and hasattr(channel, "is_nsfw") else False
    roles = getattr(interaction.user, "roles", [])
    return EditRequest(
        kind=kind,
        options=options,
        user_id=interaction.user.id,
        user_name=str(interaction.user),
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id or 0,
        locale=locale_of(interaction),
        channel_is_nsfw=is_nsfw,
        parent_channel_id=parent_id,
        role_ids=frozenset(role.id for role in roles),
        is_admin=is_admin(interaction),
        attachment=attachment_info(attachment) if attachment is not None else None,
        input_url=input_url,
        input_filename=input_filename,
        input_ref=input_ref,
        parent_job_id=parent_job_id,
    )


async def reply_privately(interaction: discord.Interaction[Any], text: str) -> None:
    """Tell only the requester, whether or not the interaction was already acknowledged."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_PINGS)
        else:
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_PINGS)
    except (discord.HTTPException, aiohttp.ClientError) as exc:
        log.warning("could not send a private reply: %r", exc)


async def _withdraw_thinking(interaction: discord.Interaction[Any]) -> None:
    """Delete a public "thinking…" placeholder, so the next notice can be private."""
    if interaction.response.type is discord.InteractionResponseType.deferred_channel_message:
        with contextlib.suppress(discord.HTTPException, aiohttp.ClientError):
            await interaction.delete_original_response()


async def report_unexpected(interaction: discord.Interaction[Any], error: BaseException) -> None:
    """The error boundary: log the traceback, apologise privately, never leave "thinking…" behind."""
    original = getattr(error, "original", None) or error
    log.error(
        "interaction %s (%s) failed",
        interaction.id,
        getattr(interaction.command, "qualified_name", None) or interaction.type.name,
        exc_info=(type(original), original, original.__traceback__),
    )
    await _withdraw_thinking(interaction)
    await reply_privately(interaction, t("internal", locale_of(interaction)))


class InteractionIntake:
    """Runs a request through the intake and answers Discord (see the module docstring)."""

    def __init__(
        self, intake: Intake, foreground: Foreground | None = None, metrics: Metrics | None = None
    ) -> None:
        self.intake = intake
        #: Marks each acknowledgement in progress, so job steps give way to it.
        self.foreground = foreground or Foreground()
        self.metrics = metrics or Metrics()

    async def refuse(self, interaction: discord.Interaction[Any], text: str) -> None:
        await reply_privately(interaction, text)

    async def _acknowledge(
        self, interaction: discord.Interaction[Any], request: EditRequest
    ) -> tuple[Accepted, int] | None:
        """Accept and defer (the status message's id), or answer a refusal privately (None)."""
        decision = await self.intake.accept(request)
        if isinstance(decision, Refused):
            await reply_privately(interaction, t(decision.code, request.locale, **decision.params))
            return None
        try:
            deferred = await interaction.response.defer(thinking=True)
            # from the interaction's creation (its snowflake's time) to Discord's answer to the defer
            self.metrics.acknowledged(time.time() - interaction.created_at.timestamp())
            # Discord names the "thinking…" message in its answer; asking for it again costs a request
            status_id = deferred.message_id if deferred else None
            if status_id is None:
                status_id = (await interaction.original_response()).id
        except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
            # Nothing was accepted: the user sees Discord's own "did not respond" notice.
            await self.intake.abandon(decision)
            log.warning("could not acknowledge /%s from user %s: %r", request.kind, request.user_id, exc)
            return None
        except BaseException:
            await self.intake.abandon(decision)
            raise
        return decision, status_id

    async def submit(
        self,
        interaction: discord.Interaction[Any],
        options: EditOptions,
        *,
        kind: JobKind,
        attachment: discord.Attachment | None = None,
        input_url: str | None = None,
        input_filename: str | None = None,
        input_ref: str | None = None,
        parent_job_id: str | None = None,
    ) -> JobRecord | None:
        """Accept, defer and start one job; returns it, or None when refused."""
        request = request_from(
            interaction,
            options,
            kind=kind,
            attachment=attachment,
            input_url=input_url,
            input_filename=input_filename,
            input_ref=input_ref,
            parent_job_id=parent_job_id,
        )
        with self.foreground.acknowledging():
            acknowledged = await self._acknowledge(interaction, request)
        if acknowledged is None:
            return None
        decision, status_id = acknowledged
        handle = InteractionHandle(
            application_id=interaction.application_id,
            interaction_id=interaction.id,
            token=interaction.token,
            issued_at=interaction.created_at.timestamp(),
            status_message_id=status_id,
            attachment_size_limit=interaction.filesize_limit or DEFAULT_UPLOAD_LIMIT,
        )
        try:
            return await self.intake.start(decision, handle)
        except KontextError as exc:
            log.warning("could not start the job: %s", exc.detail)
            await _withdraw_thinking(interaction)
            await reply_privately(interaction, error_text(exc, request.locale))
            return None
