"""``IMAGE_HOST=apimart``: the provider's own upload endpoint (APIMart: public for 72 h, surely reachable)."""

from __future__ import annotations

from kontext.domain.errors import ApiError, HostingError
from kontext.services.ports import HostedImage, ImageProvider, StatusAttacher


class ApimartHost:
    """Uploads with the same API key; APIMart expires the file itself (no delete endpoint)."""

    name = "apimart"

    def __init__(self, provider: ImageProvider) -> None:
        self.provider = provider

    async def put(
        self, job_id: str, data: bytes, content_type: str, extension: str, attach: StatusAttacher | None
    ) -> HostedImage:
        try:
            url = await self.provider.upload(data, f"{job_id}.{extension}", content_type)
        except ApiError as exc:
            raise HostingError(f"APIMart upload failed: {exc.detail}", status=exc.status) from exc
        return HostedImage(url=url, handle=None)

    async def delete(self, handle: str | None) -> None:
        return None
