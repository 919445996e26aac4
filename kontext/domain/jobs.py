"""The job record: everything needed to run, resume and deliver one edit, persisted write-ahead.

State machine (each state is persisted BEFORE the side effect that follows it)::

    received ──host──▶ hosted ──▶ submitting ──submit──▶ submitted ──poll──▶ delivering ──post──▶ done
        │                 │            │                     │                    │
        └─────────────────┴────────────┴─────────────────────┴────────────────────┴──▶ failed

A job found in ``submitting`` after a restart may or may not have reached the provider: it is
reported failed and never submitted again (a second submit costs money).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field, fields
from enum import StrEnum


class JobState(StrEnum):
    RECEIVED = "received"  # accepted from Discord; input not yet hosted
    HOSTED = "hosted"  # normalised input is on the image host (hosted_url set); never submitted
    SUBMITTING = "submitting"  # a submit request may be on the wire: never submitted again
    SUBMITTED = "submitted"  # task_id known: poll it
    DELIVERING = "delivering"  # result is being posted (idempotent re-delivery on resume)
    DONE = "done"
    FAILED = "failed"


FINAL_STATES = frozenset({JobState.DONE, JobState.FAILED})
ACTIVE_STATES = frozenset(set(JobState) - FINAL_STATES)


class JobKind(StrEnum):
    EDIT = "edit"  # an input image and a prompt
    IMAGINE = "imagine"  # text to image


class DeliveryKind(StrEnum):
    ORIGINAL = "original"  # the status message (interaction response) became the result
    CHANNEL = "channel"  # a new channel message (the interaction token had expired or failed)


def new_job_id() -> str:
    """Short, time-ordered, unguessable id (fits Discord's 25-char nonce and custom_id budget)."""
    return f"{int(time.time() * 1000):x}{secrets.token_hex(4)}"


@dataclass
class JobRecord:
    """One job. Discord ids are ints; times are Unix seconds."""

    id: str
    kind: JobKind
    prompt: str
    model: str
    size: str
    response_format: str
    safety_tolerance: int
    prompt_upsampling: bool
    user_id: int
    channel_id: int
    guild_id: int | None = None
    locale: str = "en-US"
    user_name: str = ""
    state: JobState = JobState.RECEIVED
    application_id: int | None = None
    interaction_id: int | None = None
    interaction_token: str | None = None
    token_issued_at: float | None = None
    status_message_id: int | None = None
    attachment_size_limit: int = 10 * 1024 * 1024
    input_url: str | None = None
    input_filename: str | None = None
    #: The kept copy of the normalised input (see :class:`~kontext.services.ports.InputArchive`).
    input_ref: str | None = None
    parent_job_id: str | None = None
    host_name: str | None = None
    hosted_url: str | None = None
    host_handle: str | None = None
    task_id: str | None = None
    result_url: str | None = None
    result_attachment_url: str | None = None
    result_message_id: int | None = None
    delivery: DeliveryKind | None = None
    error_code: str | None = None
    error_detail: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    submitted_at: float | None = None
    finished_at: float | None = None
    #: The price held for this job at admission (micros); 0 once it is known it was never billed.
    cost: int = 0

    def __post_init__(self) -> None:
        # rows read back from storage carry plain strings
        self.kind = JobKind(self.kind)
        self.state = JobState(self.state)
        if self.delivery is not None:
            self.delivery = DeliveryKind(self.delivery)

    @classmethod
    def column_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def elapsed(self, now: float | None = None) -> float:
        end = self.finished_at if self.finished_at is not None else (now or time.time())
        return max(0.0, end - self.created_at)
