"""Kept inputs in the data directory: the :class:`~kontext.services.ports.InputArchive` of one machine.

Each normalised input (already small and metadata-free) is written once as
``DATA_DIR/inputs/<job id>.<ext>`` and swept with the job records after ``RETENTION_DAYS``. With
several processes on different machines, a re-roll answered by another process finds no copy here
and falls back to Discord's link; ``IMAGE_HOST=s3`` keeps inputs in the bucket instead.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

log = logging.getLogger("kontext.storage.inputs")

_REF = re.compile(r"^[0-9a-f]{8,40}\.(jpg|png)$")


class DirectoryArchive:
    """Files under one directory; references are file names, checked before any use."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def keep(self, job_id: str, data: bytes, extension: str) -> str | None:
        ref = f"{job_id}.{extension}"
        if not _REF.match(ref):
            return None
        try:
            await asyncio.to_thread(self._write, ref, data)
        except OSError as exc:
            log.warning("could not keep the input of job %s: %s", job_id, exc)
            return None
        return ref

    def _write(self, ref: str, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = self.directory / f".{ref}.part"
        partial.write_bytes(data)
        partial.replace(self.directory / ref)

    async def load(self, ref: str) -> bytes | None:
        if not _REF.match(ref):
            return None
        try:
            return await asyncio.to_thread((self.directory / ref).read_bytes)
        except OSError:
            return None

    async def sweep(self, before: float) -> int:
        return await asyncio.to_thread(self._sweep, before)

    def _sweep(self, before: float) -> int:
        removed = 0
        if not self.directory.is_dir():
            return 0
        for path in self.directory.iterdir():
            try:
                if path.stat().st_mtime < before:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
        return removed


class NoArchive:
    """``KEEP_INPUTS=false``: nothing is kept; Re-roll uses Discord's link while it is valid."""

    async def keep(self, job_id: str, data: bytes, extension: str) -> str | None:
        return None

    async def load(self, ref: str) -> bytes | None:
        return None

    async def sweep(self, before: float) -> int:
        return 0
