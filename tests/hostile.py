"""Hostile image files, generated (never shipped): the structures of the "killable sandbox" issue.

Each generator builds a file that is valid enough for Pillow to start working on it, and absurd in
one structural dimension: a progressive JPEG whose smallest scan is repeated, marker floods, a GIF
comment of one-byte sub-blocks, a PNG of text chunks, a 49-megapixel 16-bit PNG.
"""

from __future__ import annotations

import functools
import io
import re
import struct
import zlib

from PIL import Image

_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each segment of a well-formed JPEG; a scan's end includes its data."""
    pos, out = 2, []
    while pos < len(data):
        marker = data[pos + 1]
        if marker == 0xD9:
            out.append((marker, pos, pos + 2))
            break
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:
            found = _MARKER.search(data, end)
            assert found is not None
            end = found.start()
        out.append((marker, pos, end))
        pos = end
    return out


@functools.lru_cache(maxsize=4)
def progressive_jpeg(width: int = 1024, height: int = 768) -> bytes:
    """A smooth progressive JPEG (libjpeg's standard 10-scan script)."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", progressive=True, quality=90)
    return out.getvalue()


def scan_repeat_jpeg(repeats: int, width: int = 1024, height: int = 768) -> bytes:
    """A progressive JPEG whose smallest scan (a 12-byte chroma refinement) follows ``repeats`` more
    times before EOI. libjpeg decodes every copy over the whole image: ~0.17 ms each at 1024x768."""
    data = progressive_jpeg(width, height)
    segments = jpeg_segments(data)
    scans = [s for s in segments if s[0] == 0xDA]
    _, start, end = min(scans, key=lambda s: s[2] - s[1])
    eoi = segments[-1][1]
    return data[:eoi] + data[start:end] * repeats + data[eoi:]


@functools.lru_cache(maxsize=2)
def small_jpeg() -> bytes:
    out = io.BytesIO()
    Image.linear_gradient("L").resize((320, 240)).convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue()


def marker_flood_jpeg(count: int, marker: int = 0xE1) -> bytes:
    """``count`` empty segments (APP1 by default, COM with 0xFE) right after SOI: 4 bytes each."""
    data = small_jpeg()
    return data[:2] + bytes((0xFF, marker, 0x00, 0x02)) * count + data[2:]


def junk_jpeg(count: int) -> bytes:
    """``count`` junk bytes between SOI and the first segment (Pillow skips them one call each)."""
    data = small_jpeg()
    return data[:2] + b"\x00" * count + data[2:]


def _gif_parts() -> tuple[bytes, bytes]:
    out = io.BytesIO()
    Image.linear_gradient("L").resize((120, 90)).convert("P").save(out, "GIF")
    data = out.getvalue()
    head_end = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    return data[:head_end], data[head_end:]


def gif_comment_flood(subblocks: int) -> bytes:
    """A GIF whose first block is a comment of ``subblocks`` one-byte sub-blocks (2 bytes each)."""
    head, rest = _gif_parts()
    return head + b"\x21\xfe" + b"\x01x" * subblocks + b"\x00" + rest


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_text_flood(chunks: int) -> bytes:
    """A small PNG with ``chunks`` tEXt chunks (14 bytes each) before its image data."""
    out = io.BytesIO()
    Image.linear_gradient("L").resize((64, 64)).save(out, "PNG")
    data = out.getvalue()
    ihdr_end = 8 + 25
    return data[:ihdr_end] + png_chunk(b"tEXt", b"k\x00v") * chunks + data[ihdr_end:]


@functools.lru_cache(maxsize=2)
def png_16bit(width: int = 7000, height: int = 7000, colour: bool = True) -> bytes:
    """A ``width`` x ``height`` 16-bit PNG (RGB, or grey) with a smooth picture: 49 MP by default,
    ~1-2 MB on disk, 294 MB of raw samples for RGB (Pillow keeps it as 8-bit RGB: 196 MB)."""
    channels = 3 if colour else 1
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2 if colour else 0, 0, 0, 0)
    pack = struct.Struct(f">{channels}H").pack
    row_pixels = b"".join(pack(*([x * 65535 // max(1, width - 1)] * channels)) for x in range(width))
    same_as_above = b"\x02" + bytes(len(row_pixels))  # "Up" filter, zero differences
    compressor = zlib.compressobj(6)
    parts = []
    for y in range(height):
        if y % 512 == 0:  # a new band: the ramp, alternately mirrored
            parts.append(compressor.compress(b"\x00" + (row_pixels if (y // 512) % 2 else row_pixels[::-1])))
        else:
            parts.append(compressor.compress(same_as_above))
    parts.append(compressor.flush())
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", b"".join(parts))
        + png_chunk(b"IEND", b"")
    )
