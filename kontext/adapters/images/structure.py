"""Cheap structural pre-checks: count what a decoder would walk, before it walks it.

Pillow walks JPEG markers before the first scan, PNG chunks and GIF blocks in *Python*, one call per
part, and libjpeg decodes every scan of a progressive JPEG again over the whole image. A file that is
small on disk can therefore hold millions of parts and cost minutes of CPU and hundreds of MiB (a
progressive JPEG whose last scan is repeated 1.36 million times; 4.75 million empty APP1 markers; a
GIF comment of 9.5 million one-byte sub-blocks; 1.3 million PNG text chunks). :func:`check_structure`
counts those parts in ONE linear pass over the bytes, at C speed where the format allows (a regular
expression skips entropy-coded JPEG data, ``struct.unpack_from`` jumps from chunk to chunk, GIF
sub-blocks are a tight loop), and stops at the first count over its threshold. A 19 MB file is
checked in milliseconds, hostile or not.

The thresholds (:class:`StructureLimits`) are far above what cameras and editors write; each is
justified next to its field and in SECURITY.md. The pass also tells whether the file carries anything
besides the pixels of one still image and how to render them (EXIF/GPS, XMP, ICC, comments, text,
thumbnails, animation, bytes after the end): a result that is ``clean`` can be posted as it is.

Truncated or malformed structure is not judged here: the walk just stops, and the decoder reports it.
"""

from __future__ import annotations

import re
import struct
from dataclasses import asdict, dataclass, fields
from typing import Any, Final

from kontext.domain.errors import ImageStructure

__all__ = ["DEFAULT_LIMITS", "UNLIMITED", "Structure", "StructureLimits", "check_structure"]


@dataclass(frozen=True)
class StructureLimits:
    """How many parts of each kind a file may have. Defaults: see each field and SECURITY.md."""

    #: Scans (SOS) in a JPEG. Baseline files have 1; libjpeg's standard progressive script writes 10
    #: (6 for greyscale), Photoshop's "progressive" 3-5, mozjpeg a similar handful. Each scan of a
    #: progressive file is decoded over the whole image again. 256 is also the default limit of
    #: NVIDIA's nvImageCodec, set after a security review of libjpeg-turbo.
    jpeg_scans: int = 256
    #: APPn and COM segments in a JPEG. A camera writes under 10 (JFIF/EXIF, XMP, ICC, MPF, maker
    #: notes); an ICC profile can span at most 255 APP2 segments (one-byte sequence number); extended
    #: XMP (depth maps) a few dozen more. Pillow keeps every one in a Python list before decoding.
    jpeg_metadata_segments: int = 1024
    #: All segments (markers) in a JPEG except restart markers: the above plus DQT/DHT/SOF/DRI, about
    #: 2 per scan. Far above 256 scans x 2 + 1024.
    jpeg_segments: int = 4096
    #: Bytes before the first scan that belong to no segment (junk, fill bytes). Encoders write none;
    #: Pillow skips them one Python call per byte.
    jpeg_junk_bytes: int = 65_536
    #: Chunks in a PNG. 20 MB of image data in libpng's default 8 KiB IDAT chunks is 2,560 chunks;
    #: this allows IDAT chunks down to ~200 bytes. Pillow handles each chunk in Python.
    png_chunks: int = 100_000
    #: Ancillary chunks (all but IHDR, PLTE, IDAT, IEND and the APNG frame chunks fcTL/fdAT) in a PNG.
    #: Editors write a handful (text chunks: Software, dates, a comment; gAMA/cHRM/sRGB/iCCP/pHYs);
    #: libpng itself stops keeping ancillary chunks after 1,000 by default (``user_chunk_cache_max``).
    png_ancillary_chunks: int = 1_000
    #: Data sub-blocks of GIF comment, application and plain-text extensions. NETSCAPE looping is 1; an
    #: XMP packet parses as a few hundred (its 258-byte "magic trailer" alone is 257); an embedded ICC
    #: profile of a few KB is ~20. Pillow joins comment sub-blocks one Python call at a time.
    gif_extension_subblocks: int = 10_000
    #: All sub-blocks in a GIF. Encoders write full 255-byte image-data sub-blocks, so a 20 MB GIF has
    #: ~82,000 (plus one graphic-control sub-block per frame).
    gif_subblocks: int = 200_000

    def __post_init__(self) -> None:
        if any(getattr(self, f.name) < 0 for f in fields(self)):
            raise ValueError("structure limits must not be negative")

    def to_wire(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: Any) -> StructureLimits:
        if not isinstance(data, dict):
            return cls()
        names = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in data.items() if k in names})


#: The thresholds in force (see each field of :class:`StructureLimits`).
DEFAULT_LIMITS: Final = StructureLimits()
#: No structural limit at all (benchmarks and tests that must reach the decoder).
UNLIMITED: Final = StructureLimits(**{f.name: 2**62 for f in fields(StructureLimits)})


@dataclass(frozen=True)
class Structure:
    """What the pass found: how many parts it walked, and whether the file is nothing but pixels."""

    parts: int
    #: True when the file holds one still image and nothing else: no EXIF/GPS, XMP, ICC profile,
    #: comments, text, thumbnails, animation or bytes after its end (so it is also upright).
    clean: bool
    #: Scans (SOS) of a JPEG (0 for other formats).
    scans: int = 0


def _refuse(fmt: str, what: str, limit: int, where: int) -> ImageStructure:
    return ImageStructure(f"{fmt} has more than {limit:,} {what} (within its first {where:,} bytes); refused")


def check_structure(data: bytes, fmt: str, limits: StructureLimits) -> Structure:
    """Count the parts of ``data`` (already sniffed as Pillow format ``fmt``) in one pass.

    Raises :class:`ImageStructure` as soon as a count passes its limit. Formats without a walker
    (WebP, BMP, TIFF, HEIF, AVIF) are parsed by C code or are bounded by the sandbox's limits; they
    are reported as not ``clean`` unless :func:`_walk_webp` can tell.
    """
    walker = _WALKERS.get(fmt)
    if walker is None:
        return Structure(parts=0, clean=False)
    return walker(data, limits)


# --- JPEG ---------------------------------------------------------------------------------------------

#: The next marker: 0xFF followed by anything but a stuffed zero, a restart marker or another fill 0xFF.
_JPEG_MARKER: Final = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_SOS, _EOI, _COM = 0xDA, 0xD9, 0xFE
#: Markers without a length field (TEM, SOI); restart markers never match :data:`_JPEG_MARKER`.
_JPEG_STANDALONE: Final = frozenset({0x01, 0xD8})
#: APPn segments that are decoding parameters, not metadata: JFIF (APP0) and Adobe (APP14, colour transform).
_JPEG_PLAIN_APP: Final = frozenset({(0xE0, b"JFIF\x00"), (0xEE, b"Adobe")})


class _JpegCount:
    def __init__(self, limits: StructureLimits) -> None:
        self.limits = limits
        self.scans = self.metadata = self.segments = self.junk = 0
        self.clean = True

    def skipped(self, count: int, where: int) -> None:
        """``count`` bytes between segments before the first scan (Pillow walks them byte by byte)."""
        if self.scans == 0 and count:
            self.junk += count
            if self.junk > self.limits.jpeg_junk_bytes:
                raise _refuse("JPEG", "junk bytes before its first scan", self.limits.jpeg_junk_bytes, where)

    def segment(self, marker: int, ident: bytes, where: int) -> None:
        self.segments += 1
        if self.segments > self.limits.jpeg_segments:
            raise _refuse("JPEG", "markers", self.limits.jpeg_segments, where)
        if marker == _SOS:
            self.scans += 1
            if self.scans > self.limits.jpeg_scans:
                raise _refuse("JPEG", "scans", self.limits.jpeg_scans, where)
        elif 0xE0 <= marker <= 0xEF or marker == _COM:
            self.metadata += 1
            if self.metadata > self.limits.jpeg_metadata_segments:
                raise _refuse("JPEG", "APPn/COM segments", self.limits.jpeg_metadata_segments, where)
            if (marker, ident) not in _JPEG_PLAIN_APP:
                self.clean = False


def _walk_jpeg(data: bytes, limits: StructureLimits) -> Structure:
    count = _JpegCount(limits)
    size = len(data)
    pos = 2  # after SOI
    in_scan = False
    while (match := _JPEG_MARKER.search(data, pos)) is not None:
        start = match.start()
        if not in_scan:
            count.skipped(start - pos, start)
        marker = data[start + 1]
        if marker == _EOI:
            if start + 2 < size:
                count.clean = False  # bytes after the end: hidden data, or more images (MPF)
            break
        if marker in _JPEG_STANDALONE:
            count.segment(marker, b"", start)
            pos, in_scan = start + 2, False
            continue
        length = int.from_bytes(data[start + 2 : start + 4], "big")
        count.segment(marker, data[start + 4 : start + 9], start)
        pos, in_scan = start + 2 + max(length, 2), marker == _SOS
    return Structure(parts=count.segments, clean=count.clean, scans=count.scans)


# --- PNG ----------------------------------------------------------------------------------------------

_PNG_CHUNK: Final = struct.Struct(">I4s")
#: Not counted as ancillary: the critical chunks and APNG's per-frame chunks (frames, not metadata).
_PNG_NOT_ANCILLARY: Final = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND", b"fcTL", b"fdAT"})
#: A clean still PNG has only these: pixels, palette, transparency and how to render them.
_PNG_CLEAN: Final = frozenset(
    {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"pHYs", b"bKGD"}
)


def _walk_png(data: bytes, limits: StructureLimits) -> Structure:
    size = len(data)
    pos = 8  # after the signature
    chunks = ancillary = 0
    clean = True
    unpack = _PNG_CHUNK.unpack_from
    while pos + 8 <= size:
        length, kind = unpack(data, pos)
        chunks += 1
        if chunks > limits.png_chunks:
            raise _refuse("PNG", "chunks", limits.png_chunks, pos)
        if kind not in _PNG_NOT_ANCILLARY:
            ancillary += 1
            if ancillary > limits.png_ancillary_chunks:
                raise _refuse("PNG", "ancillary (text/metadata) chunks", limits.png_ancillary_chunks, pos)
        clean = clean and kind in _PNG_CLEAN
        pos += 12 + length
        if kind == b"IEND":
            clean = clean and pos >= size
            break
    return Structure(parts=chunks, clean=clean)


# --- GIF ----------------------------------------------------------------------------------------------

_GIF_EXTENSION, _GIF_IMAGE, _GIF_TRAILER = 0x21, 0x2C, 0x3B
_GIF_GRAPHIC_CONTROL = 0xF9


def _gif_subblocks(data: bytes, pos: int, budget: int) -> tuple[int, int]:
    """Skip a chain of sub-blocks from ``pos``; (position after its terminator, sub-blocks seen).

    Stops early once more than ``budget`` sub-blocks were seen (the caller refuses the file).
    """
    size = len(data)
    count = 0
    while pos < size:
        length = data[pos]
        pos += length + 1
        if length == 0:
            break
        count += 1
        if count > budget:
            break
    return pos, count


def _colour_table(packed: int) -> int:
    """Bytes of the colour table announced by a GIF ``packed`` field (0 when there is none)."""
    return 3 << ((packed & 7) + 1) if packed & 0x80 else 0


class _GifCount:
    def __init__(self, limits: StructureLimits) -> None:
        self.limits = limits
        self.subblocks = self.extension_subblocks = self.blocks = self.frames = 0
        self.clean = True

    def budget(self, extension: bool) -> int:
        left = self.limits.gif_subblocks - self.subblocks
        if extension:
            left = min(left, self.limits.gif_extension_subblocks - self.extension_subblocks)
        return max(0, left)

    def add(self, count: int, extension: bool, where: int) -> None:
        self.blocks += 1
        self.subblocks += count
        if extension:
            self.extension_subblocks += count
            self.clean = False
            if self.extension_subblocks > self.limits.gif_extension_subblocks:
                raise _refuse(
                    "GIF", "comment/application sub-blocks", self.limits.gif_extension_subblocks, where
                )
        if self.subblocks > self.limits.gif_subblocks:
            raise _refuse("GIF", "sub-blocks", self.limits.gif_subblocks, where)


def _walk_gif(data: bytes, limits: StructureLimits) -> Structure:
    size = len(data)
    if size < 13:
        return Structure(parts=0, clean=False)
    count = _GifCount(limits)
    pos = 13 + _colour_table(data[10])
    while pos < size:
        block = data[pos]
        if block == _GIF_EXTENSION and pos + 1 < size:
            counted = data[pos + 1] != _GIF_GRAPHIC_CONTROL
            pos, seen = _gif_subblocks(data, pos + 2, count.budget(counted))
            count.add(seen, counted, pos)
        elif block == _GIF_IMAGE and pos + 10 <= size:
            count.frames += 1
            count.clean = count.clean and count.frames == 1
            pos += 10 + _colour_table(data[pos + 9]) + 1  # descriptor, local table, LZW code size
            pos, seen = _gif_subblocks(data, pos, count.budget(False))
            count.add(seen, False, pos)
        else:
            count.clean = count.clean and block == _GIF_TRAILER and pos + 1 >= size
            break
    return Structure(parts=count.blocks, clean=count.clean)


# --- WebP (results only: is it a plain still image?) ---------------------------------------------------

_WEBP_PLAIN: Final = frozenset({b"VP8 ", b"VP8L", b"VP8X", b"ALPH"})
_WEBP_VP8X_EXTRAS: Final = 0x2E  # ICC, EXIF, XMP and animation flags of the VP8X chunk


def _walk_webp(data: bytes, limits: StructureLimits) -> Structure:
    """RIFF chunks of a WebP (libwebp parses them in C; this only decides ``clean``)."""
    size = min(len(data), 8 + int.from_bytes(data[4:8], "little"))
    clean = size == len(data)
    pos, chunks = 12, 0
    while pos + 8 <= size and chunks <= limits.png_chunks:
        kind = data[pos : pos + 4]
        length = int.from_bytes(data[pos + 4 : pos + 8], "little")
        clean = clean and kind in _WEBP_PLAIN
        if kind == b"VP8X" and pos + 9 <= size:
            clean = clean and not data[pos + 8] & _WEBP_VP8X_EXTRAS
        chunks += 1
        pos += 8 + length + (length & 1)
    return Structure(parts=chunks, clean=clean)


_WALKERS: Final = {"JPEG": _walk_jpeg, "PNG": _walk_png, "GIF": _walk_gif, "WEBP": _walk_webp}
