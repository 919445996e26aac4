"""Intake: decide whether a request becomes a job, before anything slow happens.

:meth:`Intake.accept` is pure decision plus counting (microseconds, no Discord, no network): the
prompt and attachment metadata are checked, the runner holds a place in line, and moderation admits
and counts the request. Only then does the edge acknowledge the interaction and call
:meth:`Intake.start`; if acknowledging fails, :meth:`Intake.abandon` gives the place and the quota
back. Refusals carry a message key and parameters; the edge words them in the requester's language.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kontext.config import Settings
from kontext.domain.errors import ImageTooLarge, KontextError
from kontext.domain.generation import DEFAULT_EDIT_SIZE, DEFAULT_IMAGINE_SIZE
from kontext.domain.jobs import JobKind, JobRecord, new_job_id
from kontext.domain.policy import Denied, RequestFacts
from kontext.services.moderation import Admitted, Moderation
from kontext.services.runner import JobRunner
from kontext.support.logs import job_context

log = logging.getLogger("kontext.intake")

MAX_PROMPT_CHARS = 1800
#: File names taken for images when the attachment has no content type.
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


@dataclass(frozen=True)
class EditOptions:
    """What the requester asked for (already validated against the command's choices)."""

    prompt: str
    model: str | None = None
    size: str | None = None
    response_format: str = "png"
    enhance: bool = False
    safety: int | None = None


@dataclass(frozen=True)
class AttachmentInfo:
    """An attachment as Discord describes it (nothing downloaded yet)."""

    url: str
    filename: str
    content_type: str | None
    size: int


@dataclass(frozen=True)
class EditRequest:
    """One `/edit`, `/imagine`, message-command or button request, as plain facts."""

    kind: JobKind
    options: EditOptions
    user_id: int
    user_name: str
    guild_id: int | None
    channel_id: int
    locale: str
    channel_is_nsfw: bool = False
    parent_channel_id: int | None = None
    role_ids: frozenset[int] = frozenset()
    is_admin: bool = False
    attachment: AttachmentInfo | None = None
    #: A source image other than an attachment (re-roll and edit-again).
    input_url: str | None = None
    input_filename: str | None = None
    #: The kept input of the job being re-rolled (see the runner).
    input_ref: str | None = None
    parent_job_id: str | None = None


@dataclass(frozen=True)
class Refused:
    """Not accepted. ``code`` and ``params`` make the requester's sentence; ``reason`` is for the log."""

    code: str
    reason: str
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, error: KontextError) -> Refused:
        return cls(error.code, error.detail, dict(error.params))


@dataclass(frozen=True)
class Accepted:
    """Admitted and counted, holding a place in line: acknowledge, then :meth:`Intake.start`."""

    job_id: str
    request: EditRequest
    prompt: str
    admission: Admitted


@dataclass(frozen=True)
class InteractionHandle:
    """How the edge reaches the requester again (status message, delivery)."""

    application_id: int | None
    interaction_id: int
    token: str
    issued_at: float
    status_message_id: int
    attachment_size_limit: int


DeniedHook = Callable[[EditRequest, str, Denied], None]


def clean_prompt(prompt: str | None) -> str:
    """Strip control characters and whitespace; raise :class:`RefusedError` if empty or over-long."""
    text = "".join(ch for ch in (prompt or "") if ch in "\n\t" or ch.isprintable()).strip()
    if not text:
        raise RefusedError(Refused("prompt_empty", "empty prompt"))
    if len(text) > MAX_PROMPT_CHARS:
        raise RefusedError(
            Refused("prompt_too_long", "prompt too long", {"length": len(text), "limit": MAX_PROMPT_CHARS})
        )
    return text


def looks_like_image(content_type: str | None, filename: str) -> bool:
    """Whether an attachment claims to be an image (by content type, else by file name)."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media:
        return media.startswith("image/")
    return filename.lower().endswith(IMAGE_EXTENSIONS)


def check_attachment(attachment: AttachmentInfo, settings: Settings) -> None:
    """Refuse from the attachment's metadata alone, before anything is downloaded."""
    if attachment.size > settings.max_input_bytes:
        too_large = ImageTooLarge(
            f"attachment declares {attachment.size} bytes",
            size_mb=round(attachment.size / 1048576, 1),
            limit_mb=settings.max_input_mb,
        )
        raise RefusedError(Refused.of(too_large))
    if not looks_like_image(attachment.content_type, attachment.filename):
        what = attachment.content_type or attachment.filename
        raise RefusedError(Refused("attachment_not_image", f"attachment is not an image ({what!r})"))


class RefusedError(Exception):
    """Raised by the checks; carries the :class:`Refused` answer."""

    def __init__(self, refused: Refused) -> None:
        super().__init__(refused.reason)
        self.refused = refused


class Intake:
    """Accepts requests for the job runner (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        runner: JobRunner,
        moderation: Moderation,
        on_denied: DeniedHook | None = None,
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.moderation = moderation
        self.on_denied = on_denied

    async def accept(self, request: EditRequest) -> Accepted | Refused:
        """Check, hold a place in line and admit-and-count; nothing slow, nothing sent."""
        job_id = new_job_id()
        with job_context(job_id):
            try:
                prompt = clean_prompt(request.options.prompt)
                if request.attachment is not None:
                    check_attachment(request.attachment, self.settings)
                self._reserve()
            except RefusedError as refusal:
                log.info(
                    "refused /%s from user %s: %s", request.kind, request.user_id, refusal.refused.reason
                )
                return refusal.refused
            try:
                decision = await self.moderation.admit(self._facts(request, prompt))
            except BaseException:
                self.runner.release()
                raise
            if isinstance(decision, Denied):
                self.runner.release()
                if self.on_denied is not None:
                    self.on_denied(request, prompt, decision)
                log.info("refused /%s from user %s: %s", request.kind, request.user_id, decision.detail)
                return Refused(decision.code, decision.detail, dict(decision.params))
            return Accepted(job_id, request, prompt, decision)

    def _reserve(self) -> None:
        try:
            self.runner.reserve()
        except KontextError as exc:
            raise RefusedError(Refused.of(exc)) from exc

    async def abandon(self, accepted: Accepted) -> None:
        """The request will not become a job: give back its place in line and its quota."""
        self.runner.release()
        await self.moderation.refund(accepted.admission.charge)

    async def start(self, accepted: Accepted, handle: InteractionHandle) -> JobRecord:
        """Persist and start the job; on failure the quota is refunded and the error raised."""
        job = self._job(accepted, handle)
        with job_context(job.id):
            try:
                await self.runner.start_job(job)
            except BaseException:
                await self.moderation.refund(accepted.admission.charge)
                raise
            log.info(
                "accepted /%s from user %s in channel %s (model=%s size=%s)",
                job.kind,
                job.user_id,
                job.channel_id,
                job.model,
                job.size,
            )
        return job

    @staticmethod
    def _facts(request: EditRequest, prompt: str) -> RequestFacts:
        """What the policy needs to know (usage figures are filled in by moderation)."""
        return RequestFacts(
            guild_id=request.guild_id,
            channel_id=request.channel_id,
            channel_is_nsfw=request.channel_is_nsfw,
            user_id=request.user_id,
            role_ids=request.role_ids,
            is_admin=request.is_admin,
            prompt=prompt,
            requested_model=request.options.model,
            requested_safety=request.options.safety,
            now=time.time(),
            user_jobs_today=0,
            guild_jobs_today=0,
            user_last_job_at=None,
            parent_channel_id=request.parent_channel_id,
        )

    @staticmethod
    def _job(accepted: Accepted, handle: InteractionHandle) -> JobRecord:
        request, options = accepted.request, accepted.request.options
        input_url, input_filename = request.input_url, request.input_filename
        if request.attachment is not None:
            input_url, input_filename = request.attachment.url, request.attachment.filename
        default_size = DEFAULT_EDIT_SIZE if input_url or request.input_ref else DEFAULT_IMAGINE_SIZE
        return JobRecord(
            id=accepted.job_id,
            kind=request.kind,
            prompt=accepted.prompt,
            model=accepted.admission.model,
            size=options.size or default_size,
            response_format=options.response_format,
            safety_tolerance=accepted.admission.safety,
            prompt_upsampling=options.enhance,
            user_id=request.user_id,
            user_name=request.user_name,
            channel_id=request.channel_id,
            guild_id=request.guild_id,
            locale=request.locale,
            application_id=handle.application_id,
            interaction_id=handle.interaction_id,
            interaction_token=handle.token,
            token_issued_at=handle.issued_at,
            status_message_id=handle.status_message_id,
            attachment_size_limit=handle.attachment_size_limit,
            input_url=input_url,
            input_filename=input_filename,
            input_ref=request.input_ref,
            parent_job_id=request.parent_job_id,
            # the admission's time: the day its quota and money were counted on
            created_at=accepted.admission.charge.at or time.time(),
            cost=accepted.admission.cost,
        )
