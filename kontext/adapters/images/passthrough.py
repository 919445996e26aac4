"""Clean images that need no pixel work, recognised from their headers and passed on undecoded.

Normalisation exists to make an input small, upright, sRGB and metadata-free; result fitting, to make
a result fit its upload limit, upright and metadata-free. Some files already are all of that:

* an input that is a **clean JPEG** (no metadata of any kind, so upright; 8-bit greyscale or YCbCr;
  no bigger than the normaliser's target, needing neither letterbox nor upscaling), complete up to
  its end marker: the normaliser would only re-encode it (a generation of JPEG loss, ~15 ms of CPU);
* a result that is a **clean JPEG or PNG** within its upload limit and the pixel cap, complete (a PNG's
  every chunk checksum verified): it is posted byte for byte anyway.

When no thumbnail is wanted either (the server keeps no moderation log, the only use of thumbnails),
such a file needs no decoding at all, so no worker is started for it (~25 ms of CPU for the process
alone). The checks here read headers with slices and ``struct`` (bounded pure Python, no decoder),
after :func:`~.structure.check_structure`'s walk; anything unusual returns None and the file goes to
the sandbox, which decodes it and reports any problem the usual way. Files over :data:`MAX_BYTES` are
not looked at (the walk would hold the event loop for more than ~2 ms).
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

from kontext.adapters.images.formats import sniff_format
from kontext.adapters.images.processing import plan_geometry
from kontext.adapters.images.structure import StructureLimits, check_structure
from kontext.domain.errors import ImageError
from kontext.domain.images import FittedResult, ImageLimits, NormalisedImage

__all__ = ["MAX_BYTES", "MAX_SCANS", "clean_input", "clean_result"]

#: Larger files always go to the sandbox (the structure walk costs ~0.4 ms per MiB on the loop).
MAX_BYTES: Final = 4 * 1024 * 1024

#: Scans of a JPEG passed on undecoded: baseline files have 1, libjpeg's progressive script 10,
#: Photoshop and mozjpeg a handful. More go to the sandbox, which decodes them under its time limit.
MAX_SCANS: Final = 16
#: JPEG start-of-frame markers of the Huffman processes every decoder supports: baseline, extended
#: sequential, progressive (not lossless, hierarchical or arithmetic-coded).
_SOF_PLAIN: Final = frozenset({0xC0, 0xC1, 0xC2})
_SOF_ANY: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_SOS, _EOI = 0xDA, b"\xff\xd9"
_PNG_CHUNK: Final = struct.Struct(">I4s")
_PNG_IHDR: Final = struct.Struct(">IIBBBBB")
#: PNG colour types passed on as they are: greyscale, RGB, RGBA (8 bits per sample).
_PNG_PLAIN_COLOUR: Final = frozenset({0, 2, 6})


def _jpeg_frame(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, components) of a plain 8-bit JPEG frame, from the segments before its first scan."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD9:
            return None  # fill bytes or a marker without a length: not what an encoder writes here
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _SOF_ANY:
            if marker not in _SOF_PLAIN or length < 8 or pos + 10 > len(data):
                return None
            precision = data[pos + 4]
            height, width = struct.unpack_from(">HH", data, pos + 5)
            components = data[pos + 9]
            return (width, height, components) if precision == 8 else None
        if marker == _SOS or length < 2:
            return None
        pos += 2 + length
    return None


def _png_intact(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, colour type) of a plain 8-bit, non-interlaced PNG whose chunk checksums all
    match and whose last chunk is IEND; None otherwise."""
    pos, size, header = 8, len(data), None
    while pos + 12 <= size:
        length, kind = _PNG_CHUNK.unpack_from(data, pos)
        end = pos + 12 + length
        if end > size:
            return None
        body = memoryview(data)[pos + 4 : pos + 8 + length]
        if zlib.crc32(body) != int.from_bytes(data[end - 4 : end], "big"):
            return None
        if kind == b"IHDR" and length == _PNG_IHDR.size:
            width, height, depth, colour, _, _, interlace = _PNG_IHDR.unpack_from(data, pos + 8)
            if depth == 8 and colour in _PNG_PLAIN_COLOUR and interlace == 0:
                header = (width, height, colour)
        if kind == b"IEND":
            return header if end == size else None
        pos = end
    return None


def _clean(data: bytes, fmt: str, structure: StructureLimits) -> bool:
    """Nothing but the pixels of one still image, and (a JPEG) no more scans than encoders write."""
    try:
        found = check_structure(data, fmt, structure)
    except ImageError:
        return False  # the sandbox refuses it with the proper message
    return found.clean and found.scans <= MAX_SCANS


def clean_input(data: bytes, limits: ImageLimits, structure: StructureLimits) -> NormalisedImage | None:
    """``data`` as its own normalised copy, when it is a clean JPEG the normaliser would not change."""
    if len(data) > min(MAX_BYTES, limits.max_bytes) or not data.endswith(_EOI):
        return None
    if sniff_format(data)[0] != "JPEG" or not _clean(data, "JPEG", structure):
        return None
    frame = _jpeg_frame(data)
    if frame is None or frame[2] not in (1, 3):
        return None
    width, height, _ = frame
    if width * height > limits.max_pixels:
        return None
    try:
        plan = plan_geometry(width, height, limits)
    except ImageError:
        return None
    if plan.content != (width, height) or plan.canvas != (width, height):
        return None
    return NormalisedImage(
        data=data,
        content_type="image/jpeg",
        extension="jpg",
        width=width,
        height=height,
        source_format="JPEG",
        letterboxed=False,
    )


def clean_result(
    data: bytes, max_bytes: int, max_pixels: int, structure: StructureLimits
) -> FittedResult | None:
    """``data`` as it is, when it is a clean, complete JPEG or PNG within ``max_bytes`` and ``max_pixels``."""
    if len(data) > min(MAX_BYTES, max_bytes):
        return None
    fmt = sniff_format(data)[0]
    if fmt == "JPEG" and data.endswith(_EOI) and _clean(data, fmt, structure):
        frame = _jpeg_frame(data)
        size = None if frame is None or frame[2] not in (1, 3) else frame[:2]
        kind = ("image/jpeg", "jpg")
    elif fmt == "PNG" and _clean(data, fmt, structure):
        header = _png_intact(data)
        size = None if header is None else header[:2]
        kind = ("image/png", "png")
    else:
        return None
    if size is None or not 0 < size[0] * size[1] <= max_pixels:
        return None
    return FittedResult(data, kind[0], kind[1], size[0], size[1], reencoded=False)
