"""What the fake records: HTTP requests, gateway frames, interaction callbacks and edits."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import FakeMessage


@dataclass
class RecordedFile:
    """A file part of a multipart request."""

    field: str
    filename: str
    content_type: str | None
    data: bytes = dataclasses.field(repr=False)  # (``field`` is an attribute name in this class)

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class RecordedRequest:
    """One HTTP request the fake received (API or CDN)."""

    method: str
    path: str  #: relative to ``api_base`` for API requests, the URL path for CDN requests
    query: dict[str, str]
    headers: dict[str, str]
    json: Any  #: the JSON body, or the parsed ``payload_json`` of a multipart body
    files: list[RecordedFile]
    time: float  #: ``loop.time()`` when received
    kind: str = "api"  #: "api" or "cdn"
    route: str | None = None
    status: int | None = None
    response: Any = None

    @property
    def file_names(self) -> list[str]:
        return [f.filename for f in self.files]


@dataclass
class GatewayFrame:
    """One gateway frame, as sent ("send") or received ("recv") by the fake."""

    direction: str
    op: int | None
    t: str | None
    s: int | None
    d: Any
    time: float
    connection: int


@dataclass
class CallbackRecord:
    """An interaction callback (``POST /interactions/{id}/{token}/callback``)."""

    type: int
    data: dict[str, Any] | None
    time: float  #: ``loop.time()``
    delay: float  #: seconds since the interaction was dispatched
    files: list[RecordedFile] = field(default_factory=list)


@dataclass
class EditRecord:
    """One edit of an interaction's original response."""

    time: float
    via: str  #: "patch", "callback" (UPDATE_MESSAGE) or "followup" (first follow-up after a defer)
    body: dict[str, Any]
    file_names: list[str]
    message: FakeMessage  #: snapshot of the message after the edit
