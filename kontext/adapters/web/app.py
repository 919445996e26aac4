"""The bot's aiohttp web server: ``/healthz``, ``/metrics`` and (with ``IMAGE_HOST=local``) hosted files.

``/healthz`` is always open. ``/metrics`` requires ``Authorization: Bearer <METRICS_TOKEN>`` when a
token is configured (compared in constant time; the token is never logged or echoed).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from kontext.support.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger("kontext.adapters.web.app")

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'",
    "Referrer-Policy": "no-referrer",
}


#: Finds the file for ``/files/{expiry}/{signature}/{filename}``: None when malformed, forged or expired.
FileResolver = Callable[[str, str, str], Path | None]
_FILE_TYPES = {".png": "image/png", ".jpg": "image/jpeg"}


def authorized(header: str | None, token: str | None) -> bool:
    """Whether an ``Authorization`` header carries the bearer ``token`` (always, without a token)."""
    if token is None:
        return True
    scheme, _, given = (header or "").strip().partition(" ")
    # compare_digest takes as long whatever the first difference: the token cannot be guessed bytewise
    matches = hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), token.encode())
    return scheme.lower() == "bearer" and matches


def build_app(
    metrics: Metrics,
    health: Callable[[], dict[str, object]],
    files: FileResolver | None,
    *,
    metrics_token: str | None = None,
) -> web.Application:
    """The web application; ``health()`` returns a dict with at least ``ok: bool``; ``files`` serves
    the locally hosted inputs (``IMAGE_HOST=local``); ``metrics_token`` guards ``/metrics``."""
    started = time.time()

    async def healthz(request: web.Request) -> web.Response:
        state = {"uptime_s": round(time.time() - started, 1), **health()}
        return web.json_response(state, status=200 if state.get("ok") else 503, headers=_SECURITY_HEADERS)

    async def metrics_view(request: web.Request) -> web.Response:
        if not authorized(request.headers.get("Authorization"), metrics_token):
            headers = {**_SECURITY_HEADERS, "WWW-Authenticate": "Bearer"}
            return web.Response(status=401, text="unauthorized", headers=headers)
        headers = {**_SECURITY_HEADERS, "Content-Type": CONTENT_TYPE}
        return web.Response(body=metrics.render(), headers=headers)

    async def hosted_file(request: web.Request) -> web.StreamResponse:
        assert files is not None
        info = request.match_info
        path = files(info["expiry"], info["signature"], info["filename"])
        if path is None or path.suffix not in _FILE_TYPES:
            metrics.hosted_file("denied")
            raise web.HTTPNotFound(text="not found", headers=_SECURITY_HEADERS)
        metrics.hosted_file("served")
        headers = {**_SECURITY_HEADERS, "Content-Type": _FILE_TYPES[path.suffix]}
        return web.FileResponse(path, headers=headers)

    app = web.Application(client_max_size=1024)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_view)
    if files is not None:
        app.router.add_get("/files/{expiry}/{signature}/{filename}", hosted_file)
    return app


async def start_web(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (for cleanup) and the bound port (useful with port 0)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    log.info("web server listening on %s:%d", host, bound)
    return runner, bound
