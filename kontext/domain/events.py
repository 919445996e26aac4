"""What the runner tells the requester's side about a job. The reporter words and shows them.

Status events replace one another on the status line; :class:`Done` and :class:`Failed` end the job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from kontext.domain.errors import KontextError
from kontext.domain.images import FittedResult
from kontext.domain.jobs import DeliveryKind


@dataclass(frozen=True)
class Uploading:
    """The input is being fetched, checked and made public for the provider."""


@dataclass(frozen=True)
class Waiting:
    """The job waits for a free slot; ``position`` 1 is next."""

    position: int


@dataclass(frozen=True)
class Queued:
    """Submitted; the provider has not started yet."""

    elapsed: int


@dataclass(frozen=True)
class Editing:
    """The provider is working; ``progress`` in percent when it says."""

    progress: int | None
    elapsed: int


@dataclass(frozen=True)
class Downloading:
    """The result is being fetched and fitted for delivery."""

    elapsed: int


StatusEvent = Uploading | Waiting | Queued | Editing | Downloading


class Note(StrEnum):
    """Something the requester should know about their result."""

    LETTERBOXED = "letterboxed"  # the input was padded to an aspect ratio the model supports
    REENCODED = "reencoded"  # the result was re-encoded to fit the upload limit


@dataclass(frozen=True)
class Done:
    """The result, ready to post."""

    result: FittedResult
    elapsed: int
    notes: tuple[Note, ...] = field(default=())


@dataclass(frozen=True)
class Failed:
    """The job ended without a result."""

    error: KontextError


@dataclass(frozen=True)
class Delivered:
    """Where a result ended up."""

    kind: DeliveryKind
    message_id: int | None
    attachment_url: str | None
