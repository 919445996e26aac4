"""kontext.adapters.images.structure: one linear pass refuses absurd structures in milliseconds, and
passes everything a camera or an editor writes (files generated here, see tests/hostile.py)."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import ExifTags, Image, ImageCms, PngImagePlugin

from kontext.adapters.images.structure import UNLIMITED, StructureLimits, check_structure
from kontext.domain.errors import ImageStructure
from tests import hostile

LIMITS = StructureLimits()
#: Generous bound for "milliseconds" on a loaded 2-CPU machine (the figures are ~0.1-6 ms).
QUICK_S = 0.25


def encode(im: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def fmt_of(data: bytes) -> str:
    return {b"\xff\xd8": "JPEG", b"\x89P": "PNG", b"GI": "GIF", b"RI": "WEBP"}[data[:2]]


def timed_check(data: bytes, limits: StructureLimits = LIMITS) -> tuple[float, Any]:
    started = time.perf_counter()
    try:
        outcome: Any = check_structure(data, fmt_of(data), limits)
    except ImageStructure as exc:
        outcome = exc
    return time.perf_counter() - started, outcome


# --- the hostile files of the issue: refused in one quick pass ------------------------------------------

HOSTILE: dict[str, tuple[Callable[[], bytes], str]] = {
    "progressive JPEG, a scan repeated 60,000 times": (lambda: hostile.scan_repeat_jpeg(60_000), "scans"),
    "progressive JPEG, a scan repeated 1.36 million times": (
        lambda: hostile.scan_repeat_jpeg(1_360_000),
        "scans",
    ),
    "4.75 million empty APP1 markers": (lambda: hostile.marker_flood_jpeg(4_750_000), "APPn/COM"),
    "4.75 million empty COM markers": (lambda: hostile.marker_flood_jpeg(4_750_000, 0xFE), "APPn/COM"),
    "19 MB of junk before the first marker": (lambda: hostile.junk_jpeg(19_000_000), "junk bytes"),
    "GIF comment of 9.5 million sub-blocks": (lambda: hostile.gif_comment_flood(9_500_000), "sub-blocks"),
    "PNG of 1.3 million text chunks": (lambda: hostile.png_text_flood(1_300_000), "ancillary"),
    "PNG of 1.5 million empty IDAT chunks": (
        lambda: hostile.png_text_flood(0)[:-12] + hostile.png_chunk(b"IDAT", b"") * 1_500_000 + b"",
        "chunks",
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_structures_are_refused_in_milliseconds(name: str) -> None:
    make, what = HOSTILE[name]
    data = make()
    elapsed, outcome = timed_check(data)
    assert isinstance(outcome, ImageStructure), outcome
    assert what in outcome.detail and "refused" in outcome.detail
    assert outcome.code == "image_structure" and outcome.private
    assert elapsed < QUICK_S, f"{name}: {elapsed * 1000:.1f} ms for {len(data) / 1e6:.1f} MB"


# --- what real encoders write passes --------------------------------------------------------------------


def camera_jpeg() -> bytes:
    """EXIF with GPS, XMP, an ICC profile, a comment: a phone photo's metadata, all at once."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Phone"
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.IFD.GPSInfo] = {ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (1.0, 2.0, 3.0)}
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return encode(
        Image.linear_gradient("L").resize((640, 480)).convert("RGB"),
        "JPEG",
        exif=exif,
        icc_profile=icc,
        xmp=b"<x:xmpmeta/>",
        comment=b"hello",
        progressive=True,
    )


def chunked_png(chunk: int) -> bytes:
    """A ~20 MB noise PNG with its image data split into ``chunk``-byte IDAT chunks."""
    data = encode(Image.frombytes("RGB", (2600, 2600), os.urandom(2600 * 2600 * 3)), "PNG", compress_level=0)
    idat_start = data.index(b"IDAT") - 4
    length = int.from_bytes(data[idat_start : idat_start + 4], "big")
    payload = data[idat_start + 8 : idat_start + 8 + length]
    parts = [hostile.png_chunk(b"IDAT", payload[i : i + chunk]) for i in range(0, len(payload), chunk)]
    return data[:idat_start] + b"".join(parts) + hostile.png_chunk(b"IEND", b"")


def animated_gif(frames: int) -> bytes:
    images = [Image.new("P", (32, 32), i % 200) for i in range(frames)]
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=40, comment=b"made by")


REAL = {
    "baseline JPEG": lambda: hostile.small_jpeg(),
    "progressive JPEG (10 scans)": lambda: hostile.progressive_jpeg(),
    "phone JPEG with EXIF, GPS, XMP, ICC and a comment": camera_jpeg,
    "20 MB PNG in libpng's 8 KiB IDAT chunks": lambda: chunked_png(8192),
    "PNG with text, ICC and EXIF": lambda: encode(
        Image.new("RGB", (64, 64)),
        "PNG",
        pnginfo=_text_chunks(12),
        icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
        exif=Image.Exif(),
    ),
    "animated GIF of 1,000 frames with a comment": lambda: animated_gif(1000),
    "49 MP 16-bit PNG": lambda: hostile.png_16bit(),
}


def _text_chunks(count: int) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    for i in range(count):
        info.add_text(f"key{i}", "value", zip=bool(i % 2))
    return info


@pytest.mark.parametrize("name", list(REAL))
def test_what_cameras_and_editors_write_passes_quickly(name: str) -> None:
    data = REAL[name]()
    elapsed, outcome = timed_check(data)
    assert not isinstance(outcome, ImageStructure), outcome.detail
    assert outcome.parts >= 1
    assert elapsed < QUICK_S, f"{name}: {elapsed * 1000:.1f} ms"


def test_a_19_mb_photo_is_checked_in_milliseconds() -> None:
    noisy = Image.frombytes("RGB", (4000, 3000), os.urandom(4000 * 3000 * 3))
    data = encode(noisy, "JPEG", quality=100, subsampling=0)
    assert len(data) > 19_000_000
    elapsed, outcome = timed_check(data)
    assert outcome.parts < 20 and elapsed < QUICK_S, elapsed


# --- thresholds are exact ---------------------------------------------------------------------------------


def test_scan_threshold_is_exact() -> None:
    at_limit = hostile.scan_repeat_jpeg(LIMITS.jpeg_scans - 10)  # the file has 10 scans of its own
    assert check_structure(at_limit, "JPEG", LIMITS).parts > LIMITS.jpeg_scans
    with pytest.raises(ImageStructure, match="more than 256 scans"):
        check_structure(hostile.scan_repeat_jpeg(LIMITS.jpeg_scans - 9), "JPEG", LIMITS)


@pytest.mark.parametrize(
    ("make", "limit", "fmt"),
    [
        (lambda n: hostile.marker_flood_jpeg(n), LIMITS.jpeg_metadata_segments, "JPEG"),
        (lambda n: hostile.png_text_flood(n), LIMITS.png_ancillary_chunks, "PNG"),
        (lambda n: hostile.gif_comment_flood(n), LIMITS.gif_extension_subblocks, "GIF"),
        (lambda n: hostile.junk_jpeg(n), LIMITS.jpeg_junk_bytes, "JPEG"),
    ],
)
def test_other_thresholds_are_exact(make: Callable[[int], bytes], limit: int, fmt: str) -> None:
    check_structure(make(limit - 1), fmt, LIMITS)  # the file's own parts may add one
    with pytest.raises(ImageStructure):
        check_structure(make(limit + 1), fmt, LIMITS)


def test_unlimited_lets_everything_through() -> None:
    assert check_structure(hostile.scan_repeat_jpeg(2000), "JPEG", UNLIMITED).parts > 2000
    assert StructureLimits.from_wire(UNLIMITED.to_wire()) == UNLIMITED
    assert StructureLimits.from_wire(None) == LIMITS
    with pytest.raises(ValueError):
        StructureLimits(jpeg_scans=-1)


# --- "clean": nothing but the pixels of one still image --------------------------------------------------


BLACK = Image.new("RGB", (8, 8))


def some_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    return exif


def png_with_text() -> bytes:
    return encode(Image.new("RGB", (8, 8)), "PNG", pnginfo=_text_chunks(1))


CLEAN_CASES = {
    "JPEG, JFIF only": (lambda: encode(Image.new("RGB", (8, 8)), "JPEG"), True),
    "JPEG, Adobe APP14 (CMYK)": (lambda: encode(Image.new("CMYK", (8, 8)), "JPEG"), True),
    "JPEG with EXIF": (lambda: encode(Image.new("RGB", (8, 8)), "JPEG", exif=some_exif()), False),
    "JPEG with a comment": (lambda: encode(Image.new("RGB", (8, 8)), "JPEG", comment=b"c"), False),
    "JPEG with bytes after EOI": (lambda: encode(Image.new("RGB", (8, 8)), "JPEG") + b"zip", False),
    "camera JPEG": (camera_jpeg, False),
    "plain PNG": (lambda: encode(Image.new("RGBA", (8, 8)), "PNG"), True),
    "palette PNG with tRNS": (lambda: encode(Image.new("P", (8, 8)), "PNG", transparency=0), True),
    "PNG with text": (png_with_text, False),
    "PNG with eXIf": (lambda: encode(Image.new("RGB", (8, 8)), "PNG", exif=some_exif()), False),
    "PNG with bytes after IEND": (lambda: encode(Image.new("RGB", (8, 8)), "PNG") + b"x", False),
    "animated PNG": (
        lambda: encode(Image.new("RGB", (8, 8)), "PNG", save_all=True, append_images=[BLACK]),
        False,
    ),
    "plain WebP": (lambda: encode(Image.new("RGB", (8, 8)), "WEBP"), True),
    "WebP with alpha": (lambda: encode(Image.new("RGBA", (8, 8), (1, 2, 3, 4)), "WEBP"), True),
    "WebP with EXIF": (lambda: encode(Image.new("RGB", (8, 8)), "WEBP", exif=some_exif()), False),
    "one-frame GIF": (lambda: encode(Image.new("P", (8, 8)), "GIF"), True),
    "animated GIF": (lambda: animated_gif(2), False),
}


@pytest.mark.parametrize("name", list(CLEAN_CASES))
def test_clean_means_nothing_but_one_still_image(name: str) -> None:
    make, clean = CLEAN_CASES[name]
    assert check_structure(make(), fmt_of(make()), LIMITS).clean is clean


def test_formats_without_a_walker_are_never_clean() -> None:
    assert check_structure(encode(Image.new("RGB", (8, 8)), "BMP"), "BMP", LIMITS).clean is False


# --- robustness: any bytes end the pass, with a count or a refusal -----------------------------------------

_PREFIXES = [hostile.small_jpeg()[:200], encode(Image.new("RGB", (8, 8)), "PNG")[:40], animated_gif(2)[:60]]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_PREFIXES), st.binary(max_size=400), st.integers(0, 400))
def test_any_bytes_end_in_a_count_or_a_refusal(prefix: bytes, tail: bytes, cut: int) -> None:
    data = (prefix + tail)[: len(prefix) + cut]
    tight = StructureLimits(jpeg_segments=20, png_chunks=20, gif_subblocks=20)
    try:
        check_structure(data, fmt_of(data), tight)
    except ImageStructure:
        pass
