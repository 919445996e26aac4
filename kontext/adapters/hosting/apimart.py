"""``IMAGE_HOST=apimart``: APIMart's own upload endpoint (public for 72 h, certainly reachable by the API)."""

from __future__ import annotations

from kontext.adapters.apimart.client import ApimartClient
from kontext.domain.errors import ApiError, HostingError
from kontext.adapters.hosting.base import HostedImage, StatusAttacher


class ApimartHost:
    """Uploads with the same API key; APIMart expires the file itself (no delete endpoint)."""

    name = "apimart"

    def __init__(self, client: ApimartClient) -> None:
        self.client = client

    async def put(
        self, job_id: str, data: bytes, content_type: str, extension: str, attach: StatusAttacher | None
    ) -> HostedImage:
        try:
            url = await self.client.upload_image(data, f"{job_id}.{extension}", content_type)
        except ApiError as exc:
            raise HostingError(f"APIMart upload failed: {exc.detail}", status=exc.status) from exc
        return HostedImage(url=url, handle=None)

    async def delete(self, handle: str | None) -> None:
        return None
