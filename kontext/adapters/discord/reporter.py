"""The Discord side of a job: one status message, the result post, failure notices.

Works from the stored job record alone (application id + interaction token + message ids), so a job
resumed after a restart reports exactly like a live one. Inside the interaction token's 15-minute
window the status message is edited; after it, the result goes to the channel as a new message that
mentions the requester and replies to the original. Channel posts carry the job id as an enforced
nonce, so a re-delivery after a crash cannot post twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import discord

from kontext.adapters.discord.files import attachment
from kontext.adapters.discord.interactions import DEFAULT_UPLOAD_LIMIT
from kontext.domain.errors import DeliveryError
from kontext.domain.events import (
    Delivered,
    Done,
    Downloading,
    Editing,
    Failed,
    Note,
    Queued,
    StatusEvent,
    Uploading,
    Waiting,
)
from kontext.domain.jobs import DeliveryKind, JobKind, JobRecord
from kontext.domain.values import clip
from kontext.i18n import error_text, t
from kontext.services.ports import RouteTooSmall

log = logging.getLogger("kontext.discord")

TOKEN_LIFETIME_S = 15 * 60
#: How many of the channel's recent messages are searched for an earlier post of a result.
EARLIER_POST_SCAN = 100
TOKEN_SAFETY_MARGIN_S = 30
_TOKEN_GONE_CODES = {50027, 10015, 10062, 10008}
NO_PINGS = discord.AllowedMentions.none()

ViewFactory = Callable[[JobRecord], "discord.ui.View | None"]


NOTE_KEYS = {Note.LETTERBOXED: "letterboxed_note", Note.REENCODED: "reencoded_note"}


def status_text(event: StatusEvent, locale: str | None) -> str:
    """The status line for ``event`` in the requester's language."""
    match event:
        case Uploading():
            return t("status_uploading", locale)
        case Waiting(position=position):
            return t("status_waiting", locale, position=position)
        case Queued(elapsed=elapsed):
            return t("status_queued", locale, elapsed=elapsed)
        case Editing(progress=None, elapsed=elapsed):
            return t("status_editing_noprogress", locale, elapsed=elapsed)
        case Editing(progress=progress, elapsed=elapsed):
            return t("status_editing", locale, progress=progress, elapsed=elapsed)
        case Downloading(elapsed=elapsed):
            return t("status_downloading", locale, elapsed=elapsed)


def _carries_job(message: discord.Message, job_id: str) -> bool:
    """Whether a message is a result of ``job_id`` (its buttons or its embed footer name the job)."""
    for row in message.components:
        for item in getattr(row, "children", ()):
            if job_id in (getattr(item, "custom_id", None) or ""):
                return True
    return any(embed.footer.text == f"job {job_id}" for embed in message.embeds)


def _token_gone(exc: discord.HTTPException) -> bool:
    return isinstance(exc, discord.NotFound) or exc.code in _TOKEN_GONE_CODES or exc.status == 401


def result_embed(job: JobRecord, elapsed: int, filename: str) -> discord.Embed:
    """The embed shown with a result: prompt, model, requester and time taken."""
    title = t("result_title_imagine" if job.kind is JobKind.IMAGINE else "result_title", job.locale)
    prompt = clip(job.prompt, 1000)
    embed = discord.Embed(title=title, colour=discord.Colour.blurple())
    embed.add_field(name=t("field_prompt", job.locale), value=prompt, inline=False)
    embed.add_field(name=t("field_model", job.locale), value=job.model, inline=True)
    embed.add_field(name=t("field_requester", job.locale), value=f"<@{job.user_id}>", inline=True)
    embed.add_field(
        name=t("field_time", job.locale), value=t("seconds", job.locale, elapsed=elapsed), inline=True
    )
    embed.set_image(url=f"attachment://{filename}")
    embed.set_footer(text=f"job {job.id}")
    return embed


class DiscordReporter:
    """The :class:`~kontext.services.ports.Reporter` port on discord.py webhooks and channel messages."""

    def __init__(
        self, client: discord.Client, job: JobRecord, view_factory: ViewFactory | None = None
    ) -> None:
        self.client = client
        self.job = job
        self.view_factory = view_factory
        self._token_dead = False
        self._channel_only = False  # the status message cannot be edited: results go to the channel
        self._fallback = False  # ... because Discord kept failing, not because the token expired

    # --- helpers ------------------------------------------------------------------------------

    def token_alive(self) -> bool:
        job = self.job
        if self._token_dead or not job.interaction_token or not job.application_id or not job.token_issued_at:
            return False
        return time.time() < job.token_issued_at + TOKEN_LIFETIME_S - TOKEN_SAFETY_MARGIN_S

    def _webhook(self) -> discord.Webhook:
        assert self.job.application_id is not None and self.job.interaction_token is not None
        webhook = discord.Webhook.partial(
            self.job.application_id, self.job.interaction_token, client=self.client
        )
        webhook.type = (
            discord.WebhookType.application
        )  # an interaction's follow-up webhook (allows ephemeral)
        return webhook

    async def _channel(self) -> discord.abc.Messageable:
        channel = self.client.get_channel(self.job.channel_id)
        if channel is None:
            try:
                channel = await self.client.fetch_channel(self.job.channel_id)
            except discord.HTTPException as exc:
                raise DeliveryError(
                    f"channel {self.job.channel_id} unavailable: {exc.status} {exc.code}"
                ) from exc
        if not isinstance(channel, discord.abc.Messageable):
            raise DeliveryError(f"channel {self.job.channel_id} cannot receive messages")
        return channel

    def _requester_only(self) -> discord.AllowedMentions:
        """Ping the requester and nobody else (no @everyone, roles or reply pings)."""
        return discord.AllowedMentions(
            everyone=False, roles=False, users=[discord.Object(self.job.user_id)], replied_user=False
        )

    def _reference(self) -> discord.MessageReference | None:
        if self.job.status_message_id is None:
            return None
        return discord.MessageReference(
            message_id=self.job.status_message_id, channel_id=self.job.channel_id, fail_if_not_exists=False
        )

    # --- Reporter -----------------------------------------------------------------------------

    async def status(self, event: StatusEvent) -> None:
        if not self.token_alive() or self.job.status_message_id is None:
            return
        try:
            await self._webhook().edit_message(
                self.job.status_message_id,
                content=status_text(event, self.job.locale),
                allowed_mentions=NO_PINGS,
            )
        except discord.HTTPException as exc:
            if _token_gone(exc):
                self._token_dead = True
            log.info("status edit failed: %s %s", exc.status, exc.code)

    async def attach_input(self, data: bytes, filename: str, content_type: str) -> str:
        if not self.token_alive() or self.job.status_message_id is None:
            raise DeliveryError("no live status message to carry the input")
        with attachment(data, filename) as file:
            message = await self._webhook().edit_message(self.job.status_message_id, attachments=[file])
        if not message.attachments:
            raise DeliveryError("Discord returned no attachment for the input")
        return message.attachments[0].url

    async def delivery_limit(self) -> int:
        """The upload limit of the way the result will go now: the interaction's (the larger of the
        requester's Nitro and the server's boost), or only the server's for a post as the bot."""
        if self._via_original():
            return self.job.attachment_size_limit
        return await self._server_upload_limit()

    async def deliver(self, done: Done) -> Delivered:
        if self._via_original():
            delivered = await self._edit_original(done)
            if delivered is not None:
                return delivered
            limit = await self._server_upload_limit()
            if len(done.result.data) > limit:
                raise RouteTooSmall(limit)
        return await self._post_result(done)

    def _via_original(self) -> bool:
        return self.token_alive() and not self._channel_only and self.job.status_message_id is not None

    async def _server_upload_limit(self) -> int:
        guild_id = self.job.guild_id
        if guild_id is None:
            return DEFAULT_UPLOAD_LIMIT
        guild = self.client.get_guild(guild_id)
        if guild is None:
            try:
                guild = await self.client.fetch_guild(guild_id)
            except discord.HTTPException as exc:
                log.info("could not read the server's upload limit (%s); assuming 10 MiB", exc.status)
                return DEFAULT_UPLOAD_LIMIT
        return max(DEFAULT_UPLOAD_LIMIT, guild.filesize_limit)

    def _result_parts(self, done: Done) -> tuple[str, discord.Embed, discord.ui.View | None]:
        filename = f"kontext-{self.job.id}.{done.result.extension}"
        view = self.view_factory(self.job) if self.view_factory else None
        return filename, result_embed(self.job, done.elapsed, filename), view

    async def _edit_original(self, done: Done) -> Delivered | None:
        """The status message becomes the result; None when it must go to the channel instead."""
        job = self.job
        assert job.status_message_id is not None
        filename, embed, view = self._result_parts(done)
        notes = [t(NOTE_KEYS[note], job.locale) for note in done.notes]
        text = "\n".join([t("status_done", job.locale, elapsed=done.elapsed), *notes])
        try:
            with attachment(done.result.data, filename) as file:
                message = await self._webhook().edit_message(
                    job.status_message_id,
                    content=text,
                    embed=embed,
                    attachments=[file],
                    allowed_mentions=NO_PINGS,
                    view=view,
                )
        except discord.HTTPException as exc:
            if _token_gone(exc):
                log.info("interaction token no longer valid (%s); delivering to the channel", exc.code)
                self._token_dead = True
            elif exc.status >= 500:  # Discord kept failing (after discord.py's retries): keep the result
                log.warning("editing the status message failed (%s); delivering to the channel", exc.status)
                self._channel_only = self._fallback = True
            else:
                raise DeliveryError(f"editing the status message failed: {exc.status} {exc.code}") from exc
            return None
        url = message.attachments[0].url if message.attachments else None
        return Delivered(DeliveryKind.ORIGINAL, message.id, url)

    async def _post_result(self, done: Done) -> Delivered:
        """A new channel message as the bot, unless an earlier run of this job already posted it."""
        job = self.job
        channel = await self._channel()
        earlier = await self._earlier_post(channel)
        if earlier is not None:
            log.info(
                "the result was already posted (message %s) before a restart; not posting it again",
                earlier.id,
            )
            return Delivered(
                DeliveryKind.CHANNEL, earlier.id, earlier.attachments[0].url if earlier.attachments else None
            )
        filename, embed, view = self._result_parts(done)
        key = "fallback_delivery" if self._fallback else "late_delivery"
        try:
            with attachment(done.result.data, filename) as file:
                sent = await channel.send(
                    content=t(key, job.locale, mention=f"<@{job.user_id}>"),
                    embed=embed,
                    file=file,
                    view=view if view is not None else discord.utils.MISSING,
                    allowed_mentions=self._requester_only(),
                    reference=self._reference() or discord.utils.MISSING,
                    nonce=job.id[:25],
                )
        except discord.HTTPException as exc:
            raise DeliveryError(
                f"posting to channel {job.channel_id} failed: {exc.status} {exc.code}"
            ) from exc
        return Delivered(DeliveryKind.CHANNEL, sent.id, sent.attachments[0].url if sent.attachments else None)

    async def _earlier_post(self, channel: discord.abc.Messageable) -> discord.Message | None:
        """A result of this job the bot already posted here (Discord's nonce only de-duplicates for a few
        minutes; a restart can come later). Found by the job id in its buttons or embed footer."""
        me = self.client.user
        if me is None:
            return None
        since = discord.Object(discord.utils.time_snowflake(datetime.fromtimestamp(self.job.created_at, UTC)))
        try:
            async for message in channel.history(limit=EARLIER_POST_SCAN, after=since):
                if message.author.id == me.id and _carries_job(message, self.job.id):
                    return message
        except discord.HTTPException as exc:
            log.warning("could not read the channel's recent messages (%s %s)", exc.status, exc.code)
        return None

    async def fail(self, failed: Failed) -> None:
        job, error = self.job, failed.error
        text = error_text(error, job.locale)
        if self.token_alive() and job.status_message_id is not None:
            webhook = self._webhook()
            try:
                if error.private:
                    await webhook.delete_message(job.status_message_id)
                    await webhook.send(content=f"❌ {text}", ephemeral=True, allowed_mentions=NO_PINGS)
                else:
                    await webhook.edit_message(
                        job.status_message_id,
                        content=t("status_failed", job.locale, reason=text),
                        embed=None,
                        attachments=[],
                        view=None,
                        allowed_mentions=NO_PINGS,
                    )
                return
            except discord.HTTPException as exc:
                if not _token_gone(exc):
                    log.warning(
                        "could not show the failure on the status message: %s %s", exc.status, exc.code
                    )
                    return
                self._token_dead = True
        if isinstance(error, DeliveryError):
            return  # the channel itself is the problem; do not try it again
        channel = await self._channel()
        try:
            await channel.send(
                content=t("late_failure", job.locale, mention=f"<@{job.user_id}>", reason=text),
                allowed_mentions=self._requester_only(),
                reference=self._reference() or discord.utils.MISSING,
                nonce=f"f{job.id}"[:25],
            )
        except discord.HTTPException as exc:
            log.warning(
                "could not post the failure to channel %s: %s %s", job.channel_id, exc.status, exc.code
            )
