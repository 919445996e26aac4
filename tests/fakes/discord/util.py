"""Small helpers shared by the fake's modules (no state)."""

from __future__ import annotations

import io
import mimetypes
import re
import struct
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any


def iso(ts: float | None = None) -> str:
    """An ISO-8601 timestamp like Discord's (``ts`` in epoch seconds; now by default)."""
    return datetime.fromtimestamp(time.time() if ts is None else ts, UTC).isoformat()


def sniff_content_type(data: bytes, filename: str) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return "image/avif"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1"):
        return "image/heic"
    return mimetypes.guess_type(filename)[0]


#: Segments a JPEG header walk reads before giving up (Discord measures images on its own servers;
#: this fake runs in the bot's process and event loop, so a hostile upload must not stall it here).
_JPEG_HEADER_SEGMENTS = 1000
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The frame header's size, read by walking at most ``_JPEG_HEADER_SEGMENTS`` segments."""
    pos = 2
    for _ in range(_JPEG_HEADER_SEGMENTS):
        if pos + 9 > len(data) or data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return (width, height) if width and height else None
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of an image, or None if it cannot be read (tests upload junk on purpose).

    PNG, GIF and JPEG are measured from their headers alone (bounded work whatever the file holds);
    other formats with PIL.
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return width, height
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_size(data)
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return int(im.width), int(im.height)
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError):
        return None


def sanitize_filename(name: str) -> str:
    name = name.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return cleaned or "unknown"


def walk_components(components: Sequence[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """Every component of a message or modal, depth first (rows, containers, sections, labels)."""
    for comp in components or ():
        yield comp
        if isinstance(comp.get("components"), list):
            yield from walk_components(comp["components"])
        for key in ("accessory", "component"):
            if isinstance(comp.get(key), dict):
                yield from walk_components([comp[key]])
