"""``IMAGE_HOST=local``: the bot's own web server serves files under signed, expiring, unguessable paths.

URL shape: ``{PUBLIC_BASE_URL}/files/{expiry}/{signature}/{name}.{ext}`` where ``name`` is 128 random
bits and ``signature`` is an HMAC-SHA256 over name, extension and expiry with a secret kept in the
data dir. Files are deleted after the job and by a periodic sweep once expired.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from pathlib import Path

from kontext.domain.errors import HostingError
from kontext.services.ports import HostedImage, StatusAttacher

log = logging.getLogger("kontext.adapters.hosting.local")

CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg"}
_NAME_RE = re.compile(r"^[0-9a-f]{32}$")
_SIG_RE = re.compile(r"^[0-9a-f]{64}$")


def load_secret(path: Path) -> bytes:
    """Read the signing secret, creating it (mode 0600) on first start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        secret = path.read_bytes()
        if len(secret) >= 32:
            os.chmod(path, 0o600)
            return secret
    except FileNotFoundError:
        pass
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secret)
    os.chmod(path, 0o600)
    return secret


class LocalHost:
    """Writes files under ``directory``; :meth:`resolve` is the web server's only way to find them."""

    name = "local"

    def __init__(self, directory: Path, public_base_url: str, secret: bytes, ttl_s: int) -> None:
        self.directory = directory
        self.public_base_url = public_base_url.rstrip("/")
        self.secret = secret
        self.ttl_s = ttl_s
        directory.mkdir(parents=True, exist_ok=True)

    def _sign(self, name: str, ext: str, expiry: int) -> str:
        return hmac.new(self.secret, f"{name}.{ext}:{expiry}".encode(), hashlib.sha256).hexdigest()

    def url_for(self, name: str, ext: str, expiry: int) -> str:
        return f"{self.public_base_url}/files/{expiry}/{self._sign(name, ext, expiry)}/{name}.{ext}"

    async def put(
        self, job_id: str, data: bytes, content_type: str, extension: str, attach: StatusAttacher | None
    ) -> HostedImage:
        if extension not in CONTENT_TYPES:
            raise HostingError(f"local host only serves png/jpg, not {extension!r}")
        name = secrets.token_hex(16)
        expiry = int(time.time()) + self.ttl_s
        path = self.directory / f"{name}.{extension}"
        try:
            await asyncio.to_thread(path.write_bytes, data)
        except OSError as exc:
            raise HostingError(f"writing {path.name} failed: {exc}") from exc
        log.debug("hosted %s (%d bytes) until %d", path.name, len(data), expiry)
        return HostedImage(url=self.url_for(name, extension, expiry), handle=path.name)

    def resolve(self, expiry: str, signature: str, filename: str, now: float | None = None) -> Path | None:
        """The file for a request path, or None if malformed, tampered with, expired or gone."""
        name, _, ext = filename.partition(".")
        if ext not in CONTENT_TYPES or not _NAME_RE.match(name) or not _SIG_RE.match(signature):
            return None
        if not (expiry.isascii() and expiry.isdigit()) or len(expiry) > 12:
            return None
        if not hmac.compare_digest(self._sign(name, ext, int(expiry)), signature):
            return None
        if int(expiry) < (now if now is not None else time.time()):
            return None
        path = self.directory / f"{name}.{ext}"
        return path if path.is_file() else None

    async def delete(self, handle: str | None) -> None:
        if not handle or not re.match(r"^[0-9a-f]{32}\.(png|jpg)$", handle):
            return
        try:
            await asyncio.to_thread((self.directory / handle).unlink, True)
        except OSError as exc:
            log.warning("could not delete hosted file %s: %s", handle, exc)

    def sweep(self, now: float | None = None) -> int:
        """Delete files older than the TTL (blocking; run in a thread). Returns how many went."""
        cutoff = (now if now is not None else time.time()) - self.ttl_s
        removed = 0
        for path in self.directory.iterdir():
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
        return removed
