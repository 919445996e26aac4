"""What a file really is, from its first bytes (file names and content types are never trusted).

:func:`sniff_format` returns the one Pillow format allowed to open the bytes, and a short, safe word
for the user sentence when they are not an image we can read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from PIL import Image

__all__ = ["sniff_format"]

_AVIF_BRANDS: Final = frozenset({b"avif", b"avis"})
_HEIF_BRANDS: Final = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
)
_BMP_HEADER_SIZES: Final = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


def _riff(kind: bytes) -> Callable[[bytes], bool]:
    return lambda head: head[:4] == b"RIFF" and head[8:12] == kind


def _bmp(head: bytes) -> bool:
    header_size = int.from_bytes(head[14:18], "little")
    return head[:2] == b"BM" and len(head) >= 18 and header_size in _BMP_HEADER_SIZES


#: (test on the first 64 bytes, Pillow format, kind) for the images we decode.
_IMAGES: Final[tuple[tuple[Callable[[bytes], bool], str, str], ...]] = (
    (lambda head: head.startswith(b"\x89PNG\r\n\x1a\n"), "PNG", "png"),
    (lambda head: head.startswith(b"\xff\xd8\xff"), "JPEG", "jpeg"),
    (_riff(b"WEBP"), "WEBP", "webp"),
    (lambda head: head[:6] in (b"GIF87a", b"GIF89a"), "GIF", "gif"),
    (_bmp, "BMP", "bmp"),
    (lambda head: head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), "TIFF", "tiff"),
)

#: (test, kind) for things that are not images we decode, to say what they are instead.
_OTHERS: Final[tuple[tuple[Callable[[bytes], bool], str], ...]] = (
    (lambda head: head.startswith(b"%PDF"), "pdf"),
    (lambda head: head.startswith(b"8BPS"), "psd"),
    (lambda head: head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL ")), "jxl"),
    (lambda head: head.startswith((b"\x00\x00\x01\x00", b"\x00\x00\x02\x00")), "ico"),
    (lambda head: head.startswith((b"PK\x03\x04", b"\x1f\x8b", b"7z\xbc\xaf", b"Rar!", b"BZh")), "archive"),
    (lambda head: head.startswith(b"\x1a\x45\xdf\xa3") or _riff(b"AVI ")(head), "video"),
    (lambda head: head.startswith((b"ID3", b"OggS", b"fLaC")) or _riff(b"WAVE")(head), "audio"),
)

_HEIF_STATE: bool | None = None


def heif_available() -> bool:
    """Register pillow-heif's HEIF opener if it is installed (optional dependency)."""
    global _HEIF_STATE
    if _HEIF_STATE is None:
        try:
            import pillow_heif  # type: ignore[import-not-found, unused-ignore]

            pillow_heif.register_heif_opener()
            _HEIF_STATE = True
        except Exception:  # noqa: BLE001 - ImportError, or a pillow-heif built for another Pillow
            _HEIF_STATE = False
    return _HEIF_STATE


def avif_available() -> bool:
    Image.init()
    return "AVIF" in Image.OPEN


def sniff_format(data: bytes) -> tuple[str | None, str]:
    """Identify ``data`` from its magic bytes.

    Returns ``(pillow_format, kind)``: ``pillow_format`` is the Pillow format name to open it with
    (None when it is not an image we can open); ``kind`` is a short, safe word for the user sentence:
    ``png jpeg webp gif bmp tiff avif heic`` for images, otherwise one of ``empty pdf svg html text
    archive video audio psd jxl ico unknown``.
    """
    head = data[:64]
    if not head:
        return None, "empty"
    for test, fmt, kind in _IMAGES:
        if test(head):
            return fmt, kind
    if head[4:8] == b"ftyp":
        return _iso_media(data)
    for test, kind in _OTHERS:
        if test(head):
            return None, kind
    return None, _text_kind(head)


def _iso_media(data: bytes) -> tuple[str | None, str]:
    """AVIF, HEIC, or a video: the brands of an ISO-BMFF ``ftyp`` box."""
    box_size = int.from_bytes(data[:4], "big")
    box = data[8 : min(max(box_size, 16), 256)]
    brands = {box[0:4]} | {box[i : i + 4] for i in range(8, len(box) - 3, 4)}
    if brands & _AVIF_BRANDS:
        return ("AVIF" if avif_available() else None), "avif"
    if brands & _HEIF_BRANDS:
        return ("HEIF" if heif_available() else None), "heic"
    return None, "video"


def _text_kind(head: bytes) -> str:
    """svg, html, text or unknown for bytes that matched no signature."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in head.lower()):
        return "svg"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "html"
    decoded = _utf8_prefix(head)
    if decoded and all(ch.isprintable() or ch in "\t\r\n" for ch in decoded):
        return "text"
    return "unknown"


def _utf8_prefix(head: bytes) -> str | None:
    """``head`` decoded as UTF-8, allowing a multi-byte character cut at the end of the sample."""
    for cut in range(4):
        try:
            return head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None
