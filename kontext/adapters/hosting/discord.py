"""``IMAGE_HOST=discord``: the input rides on the bot's own status message; its signed CDN URL is public."""

from __future__ import annotations

from kontext.domain.errors import HostingError
from kontext.services.ports import HostedImage, StatusAttacher


class DiscordHost:
    """No public server needed; the attachment disappears when the result replaces it."""

    name = "discord"

    async def put(
        self, job_id: str, data: bytes, content_type: str, extension: str, attach: StatusAttacher | None
    ) -> HostedImage:
        if attach is None:
            raise HostingError("discord host needs a live status message to attach to")
        try:
            url = await attach(data, f"input-{job_id}.{extension}", content_type)
        except HostingError:
            raise
        except Exception as exc:
            raise HostingError(f"attaching the input to the status message failed: {exc!r}") from exc
        return HostedImage(url=url, handle=None)

    async def delete(self, handle: str | None) -> None:
        return None
