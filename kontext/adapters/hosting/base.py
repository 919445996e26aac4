"""The image-host port: put the normalised input somewhere APIMart can fetch it, delete it after."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

#: Uploads bytes as an attachment of the job's status message and returns its CDN URL.
StatusAttacher = Callable[[bytes, str, str], Awaitable[str]]


@dataclass(frozen=True)
class HostedImage:
    """A public URL and the handle needed to delete it (None when the host cleans up by itself)."""

    url: str
    handle: str | None = None


class ImageHost(Protocol):
    """Where the normalised, metadata-free input copy is made public for the API."""

    name: str

    async def put(
        self, job_id: str, data: bytes, content_type: str, extension: str, attach: StatusAttacher | None
    ) -> HostedImage:
        """Publish ``data``; raise :class:`kontext.domain.errors.HostingError` on failure."""
        ...

    async def delete(self, handle: str | None) -> None:
        """Remove a hosted file (best effort, never raises)."""
        ...
