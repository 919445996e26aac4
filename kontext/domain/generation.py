"""Provider-neutral generation types: what we ask an image provider for and what it tells us back.

Any provider adapter (APIMart today) turns its wire format into these types; the runner and the
poll schedule only ever see them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

#: The Flux Kontext models users may choose from.
MODELS: Final = ("flux-kontext-pro", "flux-kontext-max")
#: Every output size the API accepts (``match_input_image`` only makes sense with an input image).
SIZES: Final = (
    "match_input_image",
    "auto",
    "1:1",
    "4:3",
    "3:4",
    "16:9",
    "9:16",
    "3:2",
    "2:3",
    "21:9",
    "9:21",
)
#: Output encodings.
RESPONSE_FORMATS: Final = ("png", "jpg")
#: The default size with an input image, and for text-to-image.
DEFAULT_EDIT_SIZE: Final = "match_input_image"
DEFAULT_IMAGINE_SIZE: Final = "16:9"


class TaskState(StrEnum):
    """A provider task's state, normalised."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True)
class GenerationRequest:
    """One generation or edit. Values are validated before (config, policy, command choices)."""

    model: str
    prompt: str
    image_url: str | None
    size: str
    response_format: str  # "png" | "jpg"
    safety_tolerance: int
    prompt_upsampling: bool


@dataclass(frozen=True)
class TaskStatus:
    """A task's status as the provider reported it, normalised."""

    task_id: str
    state: TaskState
    raw_status: str
    progress: int | None
    estimated_time: float | None
    result_urls: tuple[str, ...]
    error: str | None
    expires_at: float | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", TaskState(self.state))

    @property
    def done(self) -> bool:
        return self.state in (TaskState.COMPLETED, TaskState.FAILED)
