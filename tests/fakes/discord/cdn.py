"""The fake CDN: attachments served at signed, expiring URLs (``ex``/``is``/``hm`` like Discord's)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets

from aiohttp import web

from .base import FakeDiscordBase
from .records import RecordedRequest

#: The CDN routes (GET and HEAD), also under ``/media`` like media.discordapp.net.
CDN_ROUTE = "/{prefix:(attachments|ephemeral-attachments)}/{channel_id:\\d+}/{attachment_id:\\d+}/{filename}"


class CdnMixin(FakeDiscordBase):
    """Signed attachment URLs and the CDN handler (part of :class:`~.fake.FakeDiscord`)."""

    def _init_cdn(self, attachment_url_ttl: float) -> None:
        self.attachment_url_ttl = attachment_url_ttl
        self._cdn_secret = secrets.token_bytes(32)
        self._cdn_clock_offset = 0.0

    def _add_cdn_routes(self, app: web.Application) -> None:
        app.router.add_get(CDN_ROUTE, self._cdn_handler)  # GET and HEAD
        app.router.add_get("/media" + CDN_ROUTE, self._cdn_handler)

    def _cdn_now(self) -> float:
        return self.now() + self._cdn_clock_offset

    def _cdn_signature(self, path: str, ex: str, is_: str) -> str:
        return hmac.new(self._cdn_secret, f"{path}|{ex}|{is_}".encode(), hashlib.sha256).hexdigest()

    def sign_cdn_path(self, path: str, *, media: bool = False) -> str:
        """A signed URL for a CDN path, like ``…/attachments/C/A/f.png?ex=…&is=…&hm=…&``."""
        now = self._cdn_now()
        ex = format(int(now + self.attachment_url_ttl), "x")
        is_ = format(int(now), "x")
        hm = self._cdn_signature(path, ex, is_)
        prefix = "/media" if media else ""
        return f"{self.base_url}{prefix}{path}?ex={ex}&is={is_}&hm={hm}&"

    def expire_attachment_urls(self) -> None:
        """Make every CDN URL issued so far expired (URLs signed afterwards are valid)."""
        self._cdn_clock_offset += self.attachment_url_ttl + 1

    async def _cdn_handler(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        record = RecordedRequest(
            method=request.method,
            path=path,
            query=dict(request.query),
            headers=dict(request.headers),
            json=None,
            files=[],
            time=asyncio.get_running_loop().time(),
            kind="cdn",
            route="cdn",
        )
        self.requests.append(record)
        resp = await self._apply_faults(record)
        if resp is None:
            resp = self._serve_cdn(request)
        record.status = resp.status
        self._bump()
        return resp

    def _serve_cdn(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        not_found = web.Response(status=404, text="This content is no longer available.")
        try:
            att = self.attachments[int(info["attachment_id"])]
        except (KeyError, ValueError):
            return web.Response(status=404, text="404: Not Found")
        path = f"/{info['prefix']}/{info['channel_id']}/{info['attachment_id']}/{info['filename']}"
        if path != att.path:
            return web.Response(status=404, text="404: Not Found")
        ex, is_, hm = (request.query.get(k) for k in ("ex", "is", "hm"))
        if not ex or not is_ or not hm:
            return not_found
        if not hmac.compare_digest(hm, self._cdn_signature(path, ex, is_)):
            return not_found
        try:
            if int(ex, 16) <= self._cdn_now():
                return not_found
        except ValueError:
            return not_found
        return web.Response(
            body=att.data,
            headers={
                "Content-Type": att.content_type or "application/octet-stream",
                "Cache-Control": "public",
            },
        )
