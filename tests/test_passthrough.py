"""Clean images passed on undecoded (kontext.adapters.images.passthrough) and where the sandbox uses them."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from kontext.adapters.images import passthrough
from kontext.adapters.images.passthrough import clean_input, clean_result
from kontext.adapters.images.sandbox import ImageSandbox, SandboxLimits
from kontext.adapters.images.structure import DEFAULT_LIMITS
from kontext.domain.images import ImageLimits
from tests.test_images import noise, png_chunk

LIMITS = ImageLimits()  # 2 MP target, min side 64, 7:3
TEN_MB = 10 * 1024 * 1024


def encode(im: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def jpeg(w: int = 640, h: int = 480, **kwargs: Any) -> bytes:
    return encode(noise(w, h), "JPEG", quality=85, **kwargs)


def png(w: int = 320, h: int = 240, mode: str = "RGB", **kwargs: Any) -> bytes:
    return encode(noise(w, h).convert(mode), "PNG", **kwargs)


# --- inputs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"progressive": True}, {"optimize": True}], ids=str)
def test_a_clean_jpeg_that_needs_no_change_is_its_own_normalised_copy(kwargs: dict[str, Any]) -> None:
    data = jpeg(**kwargs)
    image = clean_input(data, LIMITS, DEFAULT_LIMITS)
    assert image is not None
    assert image.data is data and (image.width, image.height) == (640, 480)
    assert (image.content_type, image.extension, image.source_format) == ("image/jpeg", "jpg", "JPEG")
    assert not image.letterboxed and image.thumbnail == b""


def test_a_greyscale_jpeg_passes_too() -> None:
    data = encode(noise(300, 200).convert("L"), "JPEG")
    image = clean_input(data, LIMITS, DEFAULT_LIMITS)
    assert image is not None and (image.width, image.height) == (300, 200)


def _exif_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: must be applied, so the file must be decoded
    return jpeg(exif=exif.tobytes())


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (_exif_jpeg, "EXIF (orientation, GPS) must be stripped and applied"),
        (lambda: jpeg(icc_profile=b"\0" * 200), "an ICC profile means a colour conversion"),
        (lambda: jpeg(comment=b"hello"), "a comment is metadata"),
        (lambda: jpeg(1900, 1200), "2.28 MP is over the 2 MP target: it must be downscaled"),
        (lambda: jpeg(1200, 300), "4:1 must be letterboxed to 7:3"),
        (lambda: jpeg(40, 60), "a short side under 64 px must be upscaled"),
        (lambda: encode(noise(200, 200).convert("CMYK"), "JPEG"), "CMYK must be converted"),
        (lambda: jpeg()[:-2], "no end marker: truncated"),
        (lambda: jpeg() + b"trailing", "bytes after the end"),
        (lambda: png(), "PNG inputs are normalised (to a much smaller JPEG)"),
        (lambda: encode(noise(200, 200), "WEBP"), "WebP inputs are normalised"),
    ],
)
def test_anything_else_goes_to_the_sandbox(make: Any, why: str) -> None:
    assert clean_input(make(), LIMITS, DEFAULT_LIMITS) is None, why


def test_a_jpeg_with_more_scans_than_encoders_write_goes_to_the_sandbox() -> None:
    data = bytearray(jpeg(64, 64, progressive=True))
    sos = data.rindex(b"\xff\xda")
    last_scan = bytes(data[sos:-2])
    repeated = bytes(data[:sos]) + last_scan * (passthrough.MAX_SCANS + 1) + b"\xff\xd9"
    assert clean_input(repeated, LIMITS, DEFAULT_LIMITS) is None


def test_a_file_over_the_inline_cap_is_not_looked_at(monkeypatch: pytest.MonkeyPatch) -> None:
    data = jpeg()
    monkeypatch.setattr(passthrough, "MAX_BYTES", len(data) - 1)
    assert clean_input(data, LIMITS, DEFAULT_LIMITS) is None
    assert clean_input(data, ImageLimits(max_bytes=len(data) - 1), DEFAULT_LIMITS) is None


def test_patched_dimensions_are_what_is_judged() -> None:
    """The frame header is read, not guessed: a 640x480 file patched to say 4000x3000 is too big."""
    data = bytearray(jpeg())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, 3000, 4000)
    assert clean_input(bytes(data), LIMITS, DEFAULT_LIMITS) is None


# --- results ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_a_clean_png_result_that_fits_is_passed_on_with_its_size(mode: str) -> None:
    data = png(mode=mode)
    fitted = clean_result(data, TEN_MB, 50_000_000, DEFAULT_LIMITS)
    assert fitted is not None
    assert fitted.data is data and (fitted.width, fitted.height) == (320, 240)
    assert (fitted.content_type, fitted.extension) == ("image/png", "png")
    assert not fitted.reencoded and not fitted.cleaned and fitted.thumbnail == b""


def test_a_clean_jpeg_result_is_passed_on() -> None:
    fitted = clean_result(jpeg(), TEN_MB, 50_000_000, DEFAULT_LIMITS)
    assert fitted is not None and fitted.content_type == "image/jpeg" and fitted.width == 640


def _corrupt_idat(data: bytes) -> bytes:
    broken = bytearray(data)
    broken[data.index(b"IDAT") + 10] ^= 0xFF  # inside the compressed pixels; the CRC no longer matches
    return bytes(broken)


def _with_text(data: bytes) -> bytes:
    iend = data.rindex(b"IEND") - 4
    return data[:iend] + png_chunk(b"tEXt", b"Comment\0hi") + data[iend:]


@pytest.mark.parametrize(
    ("make", "limit", "why"),
    [
        (lambda: png(), 1000, "over the upload limit: must be refitted"),
        (lambda: _corrupt_idat(png()), TEN_MB, "a chunk whose checksum does not match"),
        (lambda: png()[:-12], TEN_MB, "no IEND: truncated"),
        (lambda: _with_text(png()), TEN_MB, "a text chunk is metadata"),
        (lambda: _interlaced(), TEN_MB, "interlaced PNGs are decoded"),
        (lambda: encode(noise(64, 64).convert("I;16"), "PNG"), TEN_MB, "16-bit: scaled by the sandbox"),
        (lambda: encode(noise(64, 64).convert("P"), "PNG"), TEN_MB, "palette: converted by the sandbox"),
        (lambda: _exif_jpeg(), TEN_MB, "EXIF orientation must be applied"),
        (lambda: encode(noise(64, 64), "WEBP"), TEN_MB, "WebP goes to the sandbox"),
        (lambda: b"\x89PNG\r\n\x1a\n", TEN_MB, "a signature alone"),
    ],
)
def test_other_results_go_to_the_sandbox(make: Any, limit: int, why: str) -> None:
    assert clean_result(make(), limit, 50_000_000, DEFAULT_LIMITS) is None, why


def _interlaced() -> bytes:
    data = bytearray(png(64, 64))
    struct.pack_into(">B", data, 8 + 8 + 12, 1)  # IHDR interlace method
    crc = zlib.crc32(bytes(data[12:29]))
    struct.pack_into(">I", data, 29, crc)
    return bytes(data)


def test_the_pixel_cap_holds_for_results_passed_on() -> None:
    assert clean_result(png(), TEN_MB, 320 * 240 - 1, DEFAULT_LIMITS) is None


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_no_damaged_file_makes_the_checks_raise_or_lie(data: st.DataObject) -> None:
    """Flipped, cut or inserted bytes: the checks never raise, and a file they pass on has the size a
    decoder reads from it (a file damaged inside a table can pass: it is refused downstream, like a
    file no decoder here was asked to read)."""
    source = data.draw(st.sampled_from([jpeg(96, 80), jpeg(96, 80, progressive=True), png(50, 40)]))
    raw = bytearray(source)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            raw[pos] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del raw[pos : pos + data.draw(st.integers(1, 64))]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
    mutated = bytes(raw)
    for found in (
        clean_input(mutated, LIMITS, DEFAULT_LIMITS),
        clean_result(mutated, TEN_MB, 50_000_000, DEFAULT_LIMITS),
    ):
        if found is not None:
            try:
                with Image.open(io.BytesIO(mutated)) as im:
                    size = im.size
            except (OSError, SyntaxError, ValueError):
                continue
            assert size == (found.width, found.height)


# --- in the sandbox -----------------------------------------------------------------------------


def passed_through(box: ImageSandbox, kind: str | None = None) -> float:
    """Images used as they came (of one kind, or both), from the sandbox's metrics."""
    kinds = [kind] if kind else ["input", "result"]
    return sum(box.metrics.value("kontext_image_passed_through_total", kind=k) for k in kinds)


@pytest.fixture
async def sandbox() -> AsyncIterator[ImageSandbox]:
    box = ImageSandbox(SandboxLimits(workers=1))
    try:
        yield box
    finally:
        await box.close()


async def test_without_thumbnails_clean_files_never_start_a_worker(sandbox: ImageSandbox) -> None:
    image = await sandbox.normalise(jpeg(), LIMITS, owner=1, thumbnail=False)
    result = await sandbox.fit_result(png(), TEN_MB, max_pixels=50_000_000, owner=1, thumbnail=False)
    assert image.thumbnail == b"" and result.thumbnail == b""
    assert passed_through(sandbox, "input") == 1 and passed_through(sandbox, "result") == 1
    assert sandbox.ready == 0 and sandbox.running == 0, "no worker was ever started"


async def test_with_thumbnails_the_same_files_are_decoded_in_a_worker(sandbox: ImageSandbox) -> None:
    data = jpeg()
    image = await sandbox.normalise(data, LIMITS, owner=1)
    result = await sandbox.fit_result(png(), TEN_MB, max_pixels=50_000_000, owner=1)
    assert image.thumbnail.startswith(b"\xff\xd8") and result.thumbnail.startswith(b"\xff\xd8")
    assert image.data != data, "normalised (re-encoded) in the worker"
    assert passed_through(sandbox) == 0


async def test_without_thumbnails_other_files_still_go_to_a_worker(sandbox: ImageSandbox) -> None:
    image = await sandbox.normalise(_exif_jpeg(), LIMITS, owner=1, thumbnail=False)
    assert image.data != _exif_jpeg() and b"Exif" not in image.data
    assert passed_through(sandbox) == 0
