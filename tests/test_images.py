"""kontext.adapters.images.processing against a corpus generated here (no files are downloaded or shipped)."""

from __future__ import annotations

import io
import random
import struct
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import ExifTags, Image, ImageCms, JpegImagePlugin, PngImagePlugin

from kontext.adapters.images import processing as images
from kontext.adapters.images.processing import ImageLimits, fit_result, normalise_image
from kontext.domain.errors import (
    BrokenImage,
    ImageBadShape,
    ImageBomb,
    ImageTooLarge,
    NotAnImage,
    ResultError,
    ResultTooLarge,
)
from tests.pixels import level, pixel

LIMITS = ImageLimits()  # 20 MiB, 50 MP cap, 2 MP target, min side 64, 7:3
RED, GREEN, BLUE = (220, 20, 20), (20, 200, 20), (20, 20, 220)


# --- corpus helpers -----------------------------------------------------------------------------


def encode(im: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def quadrants(w: int, h: int, mode: str = "RGB") -> Image.Image:
    """Red top-left, green top-right, blue bottom-left, white bottom-right."""
    im = Image.new(mode, (w, h), (255, 255, 255))
    im.paste(RED, (0, 0, w // 2, h // 2))
    im.paste(GREEN, (w // 2, 0, w, h // 2))
    im.paste(BLUE, (0, h // 2, w // 2, h))
    return im


def noise(w: int, h: int, seed: int = 1) -> Image.Image:
    return Image.frombytes("RGB", (w, h), random.Random(seed).randbytes(w * h * 3))


def png_chunk(tag: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))


def craft_png(w: int, h: int, *, bit_depth: int = 8, colour_type: int = 2, idat: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat or zlib.compress(b"\x00" * 16))
        + png_chunk(b"IEND", b"")
    )


def decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def close(actual: tuple[int, ...], expected: tuple[int, ...], tol: int = 6) -> bool:
    return len(actual) == len(expected) and all(
        abs(a - e) <= tol for a, e in zip(actual, expected, strict=True)
    )


def assert_quadrants(out: Image.Image, tol: int = 12) -> None:
    w, h = out.size
    rgb = out.convert("RGB")
    assert close(pixel(rgb, (w // 4, h // 4)), RED, tol)
    assert close(pixel(rgb, (3 * w // 4, h // 4)), GREEN, tol)
    assert close(pixel(rgb, (w // 4, 3 * h // 4)), BLUE, tol)
    assert close(pixel(rgb, (3 * w // 4, 3 * h // 4)), (255, 255, 255), tol)


# --- every accepted format ----------------------------------------------------------------------

FORMATS = [
    ("PNG", {}),
    ("JPEG", {"quality": 95}),
    ("WEBP", {"lossless": True}),
    ("GIF", {}),
    ("BMP", {}),
    ("TIFF", {"compression": "tiff_lzw"}),
    ("AVIF", {"quality": 90}),  # native in Pillow >= 11.3 (the project's minimum)
]


@pytest.mark.parametrize(("fmt", "kwargs"), FORMATS)
def test_each_format_is_normalised_to_a_clean_jpeg(fmt: str, kwargs: dict[str, Any]) -> None:
    data = encode(quadrants(320, 240), fmt, **kwargs)
    out = normalise_image(data, LIMITS)
    assert (out.source_format, out.content_type, out.extension) == (fmt, "image/jpeg", "jpg")
    assert (out.width, out.height, out.letterboxed) == (320, 240, False)
    im = decode(out.data)
    assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (320, 240))
    assert_quadrants(im, tol=20 if fmt == "AVIF" else 12)


def test_heic_with_pillow_heif() -> None:
    import pillow_heif  # in the test extra; optional for running the bot

    pillow_heif.register_heif_opener()
    data = encode(quadrants(320, 240), "HEIF", quality=95)
    assert data[4:12] == b"ftypheic"
    out = normalise_image(data, LIMITS)
    assert (out.source_format, out.width, out.height) == ("HEIF", 320, 240)
    assert_quadrants(decode(out.data), tol=20)


def test_format_is_sniffed_not_guessed_from_a_name() -> None:
    # A JPEG body; there is no filename or content type to be fooled by, only bytes.
    assert images.sniff_format(encode(quadrants(64, 64), "JPEG")) == ("JPEG", "jpeg")
    assert images.sniff_format(encode(quadrants(64, 64), "PNG")) == ("PNG", "png")
    assert images.sniff_format(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == ("WEBP", "webp")


# --- not images ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", "empty"),
        (b"hello, this is a text file renamed to cat.png\n" * 20, "text"),
        ("中文文本也不是图片。".encode() * 20, "text"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "pdf"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>', "svg"),
        (b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "svg"),
        (b"<!DOCTYPE html><html><body>Access denied</body></html>", "html"),
        (b"8BPS\x00\x01" + b"\x00" * 40, "psd"),
        (b"PK\x03\x04\x14\x00" + b"\x00" * 40, "archive"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", "video"),
        (b"BM not really a bitmap", "text"),
        (bytes(range(256)) * 4, "unknown"),
        (b"\x00" * 1000, "unknown"),
    ],
)
def test_not_an_image(data: bytes, kind: str) -> None:
    with pytest.raises(NotAnImage) as info:
        normalise_image(data, LIMITS)
    assert info.value.params == {"kind": kind}


@pytest.mark.parametrize(("fmt", "kind"), [("PDF", "pdf"), ("ICO", "ico"), ("PPM", None), ("TGA", None)])
def test_real_files_of_formats_we_do_not_accept(fmt: str, kind: str | None) -> None:
    data = encode(quadrants(64, 64), fmt)
    with pytest.raises(NotAnImage) as info:
        normalise_image(data, LIMITS)
    if kind:
        assert info.value.params == {"kind": kind}


# --- broken images ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_truncated_file_is_broken(fmt: str) -> None:
    data = encode(noise(256, 256), fmt)
    with pytest.raises(BrokenImage):
        normalise_image(data[: len(data) // 2], LIMITS)


def test_signature_only_and_bad_crc_are_broken() -> None:
    with pytest.raises(BrokenImage):
        normalise_image(b"\x89PNG\r\n\x1a\n", LIMITS)
    data = bytearray(encode(noise(64, 64), "PNG"))
    data[40] ^= 0xFF  # inside IDAT: its CRC no longer matches
    with pytest.raises(BrokenImage):
        normalise_image(bytes(data), LIMITS)


# --- size and decompression bombs ---------------------------------------------------------------


def test_file_larger_than_limit_is_refused_before_sniffing() -> None:
    limits = ImageLimits(max_bytes=1024 * 1024)
    with pytest.raises(ImageTooLarge) as info:
        normalise_image(b"\x00" * (1024 * 1024 * 3 // 2), limits)
    assert info.value.params == {"size_mb": 1.5, "limit_mb": 1.0}
    # exactly at the limit is fine
    data = encode(quadrants(64, 64), "PNG")
    assert normalise_image(data, ImageLimits(max_bytes=len(data))).width == 64


def test_crafted_ihdr_declaring_100000x100000_is_a_bomb() -> None:
    data = craft_png(100_000, 100_000)
    assert len(data) < 100
    with pytest.raises(ImageBomb) as info:
        normalise_image(data, LIMITS)
    assert info.value.params == {"megapixels": 10_000.0, "limit_mp": 50.0}


def test_header_cap_applies_before_any_decoding() -> None:
    # 8000x8000 = 64 MP (below Pillow's own limit) with garbage pixel data: if anything tried to
    # decode it, this would be a BrokenImage, not an ImageBomb.
    data = craft_png(8000, 8000, idat=b"garbage")
    with pytest.raises(ImageBomb) as info:
        normalise_image(data, LIMITS)
    assert info.value.params == {"megapixels": 64.0, "limit_mp": 50.0}


def test_big_mostly_empty_png_is_a_bomb() -> None:
    data = encode(Image.new("1", (8000, 8000)), "PNG", optimize=True)
    assert len(data) < 100_000  # 64 MP in a few KB
    with pytest.raises(ImageBomb) as info:
        normalise_image(data, LIMITS)
    assert info.value.params == {"megapixels": 64.0, "limit_mp": 50.0}


def test_pillow_warning_zone_is_refused_too() -> None:
    # 100 MP: above Pillow's MAX_IMAGE_PIXELS (warning zone) even when our own cap is set higher.
    data = craft_png(10_000, 10_000)
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(ImageBomb) as info:
        normalise_image(data, ImageLimits(max_pixels=150_000_000))
    assert info.value.params["megapixels"] == 100.0
    assert Image.MAX_IMAGE_PIXELS is not None, "Pillow's bomb check is on"
    assert info.value.params["limit_mp"] == round(Image.MAX_IMAGE_PIXELS / 1e6, 1)


def test_jpeg_with_patched_huge_dimensions_is_a_bomb() -> None:
    data = bytearray(encode(quadrants(64, 64), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 65000, 65000)  # height, width
    with pytest.raises(ImageBomb) as info:
        normalise_image(bytes(data), LIMITS)
    assert info.value.params["megapixels"] == 4225.0


def test_own_pixel_cap() -> None:
    data = encode(quadrants(2000, 1000), "PNG")
    with pytest.raises(ImageBomb) as info:
        normalise_image(data, ImageLimits(max_pixels=1_000_000))
    assert info.value.params == {"megapixels": 2.0, "limit_mp": 1.0}


# --- animations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "kwargs"), [("GIF", {}), ("WEBP", {"lossless": True})])
def test_animation_uses_first_frame(fmt: str, kwargs: dict[str, Any]) -> None:
    frames = [Image.new("RGB", (100, 80), c) for c in (RED, GREEN, BLUE)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **kwargs)
    src = Image.open(io.BytesIO(data))
    assert getattr(src, "n_frames", 1) == 3  # only multi-frame formats have the attribute
    out = normalise_image(data, LIMITS)
    assert (out.width, out.height, out.source_format) == (100, 80, fmt)
    assert close(pixel(decode(out.data), (50, 40)), RED, 8)


# --- modes --------------------------------------------------------------------------------------


def test_cmyk_jpeg_adobe_inverted() -> None:
    cmyk = Image.new("CMYK", (128, 64), (255, 0, 0, 0))  # pure cyan
    cmyk.paste((0, 0, 0, 255), (64, 0, 128, 64))  # black
    data = encode(cmyk, "JPEG", quality=95)
    src = Image.open(io.BytesIO(data))
    assert (src.mode, "adobe" in src.info) == ("CMYK", True)
    out = decode(normalise_image(data, LIMITS).data)
    assert out.mode == "RGB"
    assert close(pixel(out, (20, 32)), (0, 255, 255), 8)
    assert close(pixel(out, (100, 32)), (0, 0, 0), 8)


def test_cmyk_with_its_icc_profile_is_converted_to_srgb() -> None:
    # A CMYK image tagged with an sRGB profile is nonsense for LittleCMS: it must fall back, not fail.
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), "JPEG", icc_profile=srgb)
    out = decode(normalise_image(data, LIMITS).data)
    assert close(pixel(out, (32, 32)), (255, 0, 0), 8)
    assert "icc_profile" not in out.info


def _grey_blocks(values: list[float], mode: str) -> Image.Image:
    """64x64 blocks of the given values (built from raw bytes: paste() mangles 16-bit values)."""
    fmt = {"I;16": "<H", "I": "<i", "F": "<f"}[mode]
    row = b"".join(struct.pack(fmt, v) * 64 for v in values)
    raw = {"I;16": "I;16", "I": "I;32S", "F": "F;32F"}[mode]
    return Image.frombytes(mode, (64 * len(values), 64), row * 64, "raw", raw)


def _block_values(out: Image.Image, n: int) -> list[float]:
    return [level(out.convert("L"), (64 * i + 32, 32)) for i in range(n)]


def test_16bit_grey_png_is_scaled_not_clipped() -> None:
    src = _grey_blocks([0, 1000, 32768, 65535], "I;16")
    assert src.getpixel((160, 32)) == 32768
    data = encode(src, "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    values = _block_values(decode(normalise_image(data, LIMITS).data), 4)
    for got, want in zip(values, [0, 4, 128, 255], strict=True):
        assert abs(got - want) <= 2, values  # clipping would give [0, 255, 255, 255]


def test_16bit_rgb_png_is_scaled() -> None:
    row = b"\x00" + struct.pack(">HHH", 0x8000, 0xFFFF, 0x0100) * 64
    data = craft_png(64, 64, bit_depth=16, colour_type=2, idat=zlib.compress(row * 64))
    out = decode(normalise_image(data, LIMITS).data)
    assert close(pixel(out, (32, 32)), (128, 255, 1), 3)


def test_32bit_integer_and_float_tiff() -> None:
    data = encode(_grey_blocks([0, 30000, 65535], "I"), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I"
    values = _block_values(decode(normalise_image(data, LIMITS).data), 3)
    assert all(abs(g - w) <= 2 for g, w in zip(values, [0, 117, 255], strict=True)), values
    floats = _grey_blocks([0.0, 0.5], "F")
    values = _block_values(decode(normalise_image(encode(floats, "TIFF"), LIMITS).data), 2)
    assert abs(values[0]) <= 2 and abs(values[1] - 128) <= 2, values


def test_palette_png_with_trns_becomes_rgba_png() -> None:
    im = Image.new("P", (128, 64), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.paste(1, (64, 0, 128, 64))
    data = encode(im, "PNG", transparency=0)
    out = normalise_image(data, LIMITS)
    assert (out.content_type, out.extension) == ("image/png", "png")
    res = decode(out.data)
    assert res.mode == "RGBA"
    assert pixel(res, (20, 32))[3] == 0
    assert res.getpixel((100, 32)) == (0, 0, 255, 255)


def test_la_png_keeps_its_alpha() -> None:
    la = Image.new("LA", (128, 64), (100, 255))
    la.paste((100, 128), (0, 0, 64, 64))
    out = decode(normalise_image(encode(la, "PNG"), LIMITS).data)
    assert out.mode == "RGBA"
    assert out.getpixel((20, 32)) == (100, 100, 100, 128)
    assert out.getpixel((100, 32)) == (100, 100, 100, 255)


def test_opaque_rgba_is_sent_as_jpeg() -> None:
    out = normalise_image(encode(quadrants(128, 64, "RGBA"), "PNG"), LIMITS)
    assert out.content_type == "image/jpeg"
    assert_quadrants(decode(out.data))


def test_one_bit_image() -> None:
    im = Image.new("1", (128, 64), 0)
    im.paste(1, (64, 0, 128, 64))
    out = decode(normalise_image(encode(im, "PNG"), LIMITS).data)
    assert out.mode == "RGB"
    assert close(pixel(out, (20, 32)), (0, 0, 0), 4)
    assert close(pixel(out, (100, 32)), (255, 255, 255), 4)


# --- EXIF orientation and metadata --------------------------------------------------------------


def _exif(orientation: int = 1, *, gps: bool = False) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "SecretCam"
    if gps:
        exif[ExifTags.IFD.GPSInfo] = {
            ExifTags.GPS.GPSLatitudeRef: "N",
            ExifTags.GPS.GPSLatitude: (51.0, 30.0, 12.5),
            ExifTags.GPS.GPSLongitudeRef: "W",
            ExifTags.GPS.GPSLongitude: (0.0, 7.0, 39.0),
            ExifTags.GPS.GPSProcessingMethod: b"ASCII\x00\x00\x00GPS",
        }
    return exif


def test_exif_orientation_6_is_applied() -> None:
    im = Image.new("RGB", (200, 100), RED)
    im.paste(BLUE, (100, 0, 200, 100))
    data = encode(im, "JPEG", exif=_exif(6), quality=95)
    out = normalise_image(data, LIMITS)
    assert (out.width, out.height) == (100, 200)
    res = decode(out.data)
    assert close(pixel(res, (50, 40)), RED, 10)  # left edge is now on top
    assert close(pixel(res, (50, 160)), BLUE, 10)
    assert res.getexif().get(ExifTags.Base.Orientation) is None


def test_orientation_and_letterbox_together() -> None:
    data = encode(Image.new("RGB", (3000, 1000), RED), "JPEG", exif=_exif(8))
    out = normalise_image(data, LIMITS)
    assert out.letterboxed and out.height > out.width
    assert out.height / out.width <= 7 / 3 + 1e-6
    assert out.width * out.height <= LIMITS.target_pixels


def test_exif_gps_xmp_icc_and_comments_are_gone_from_jpeg() -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><exif:GPSLatitude>51,30N</exif:GPSLatitude></x:xmpmeta>'
    data = encode(
        quadrants(256, 128),
        "JPEG",
        exif=_exif(1, gps=True),
        icc_profile=icc,
        comment=b"secret comment",
        xmp=xmp,
    )
    src = Image.open(io.BytesIO(data))
    assert b"GPS" in data and b"Exif" in data and b"secret" in data and src.getexif().get_ifd(0x8825)
    out = normalise_image(data, LIMITS)
    res = decode(out.data)
    assert len(res.getexif()) == 0
    assert not {"exif", "icc_profile", "xmp", "comment", "photoshop", "adobe"} & set(res.info)
    for needle in (b"GPS", b"Exif", b"secret", b"SecretCam", b"xmpmeta", b"ICC_PROFILE", b"http://ns.adobe"):
        assert needle not in out.data
    assert_quadrants(res)


def test_png_text_chunks_exif_and_icc_are_gone() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "secret text")
    info.add_text("Software", "secret zipped " * 20, zip=True)
    info.add_itxt("Description", "secret international", lang="en")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = quadrants(128, 64, "RGBA")
    src.putpixel((0, 0), (0, 0, 0, 0))  # some real transparency: the output stays PNG
    data = encode(src, "PNG", pnginfo=info, exif=_exif(1, gps=True), icc_profile=icc)
    for chunk in (b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP"):
        assert chunk in data
    out = normalise_image(data, LIMITS)
    assert out.content_type == "image/png"
    for needle in (b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP", b"secret", b"GPS", b"SecretCam"):
        assert needle not in out.data
    res = decode(out.data)
    assert isinstance(res, PngImagePlugin.PngImageFile) and res.text == {}
    assert len(res.getexif()) == 0


# --- geometry -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("w", "h"), [(1, 10_000), (10_000, 1), (900, 100), (100, 900)])
def test_extreme_aspect_ratio_is_a_bad_shape(w: int, h: int) -> None:
    with pytest.raises(ImageBadShape) as info:
        normalise_image(encode(Image.new("L", (w, h), 128), "PNG"), LIMITS)
    assert info.value.params == {"width": w, "height": h}
    assert "aspect ratio" in info.value.detail


def test_wide_image_is_letterboxed_within_7_to_3() -> None:
    data = encode(Image.new("RGB", (3000, 1000), RED), "PNG")
    out = normalise_image(data, LIMITS)
    assert out.letterboxed
    assert (out.width, out.height) == (2155, 924)
    assert out.width / out.height <= 7 / 3
    assert out.width * out.height <= LIMITS.target_pixels
    res = decode(out.data)
    assert close(pixel(res, (1000, 5)), images.LETTERBOX_RGB, 4)
    assert close(pixel(res, (1000, 462)), RED, 6)
    assert close(pixel(res, (1000, 918)), images.LETTERBOX_RGB, 4)


def test_tall_transparent_image_gets_transparent_bars() -> None:
    src = Image.new("RGBA", (100, 800), (0, 200, 0, 200))
    out = normalise_image(encode(src, "PNG"), LIMITS)
    assert out.letterboxed and out.content_type == "image/png"
    assert (out.width, out.height) == (343, 800)
    res = decode(out.data)
    assert res.getpixel((2, 400)) == (0, 0, 0, 0)
    assert res.getpixel((171, 400)) == (0, 200, 0, 200)


def test_8_to_1_is_the_letterbox_limit() -> None:
    out = normalise_image(encode(Image.new("RGB", (800, 100), RED), "PNG"), LIMITS)
    assert (out.width, out.height, out.letterboxed) == (800, 343, True)


def test_tiny_image_is_upscaled_to_min_side() -> None:
    out = normalise_image(encode(quadrants(10, 10), "PNG"), LIMITS)
    assert (out.width, out.height, out.letterboxed) == (64, 64, False)
    assert_quadrants(decode(out.data), tol=40)


def test_too_tiny_image_is_a_bad_shape() -> None:
    with pytest.raises(ImageBadShape) as info:
        normalise_image(encode(quadrants(4, 4), "PNG"), LIMITS)
    assert info.value.params == {"width": 4, "height": 4}
    assert "too small" in info.value.detail


@pytest.mark.parametrize(("fmt", "size"), [("JPEG", (1500, 1125)), ("PNG", (1632, 1224))])
def test_huge_image_is_downscaled_to_target(fmt: str, size: tuple[int, int]) -> None:
    """A 12 MP PNG is resampled to the 2 MP target; a 12 MP JPEG is decoded straight to 3/8 (1.7 MP)."""
    data = encode(quadrants(4000, 3000), fmt)
    out = normalise_image(data, LIMITS)
    assert (out.width, out.height) == size
    assert out.dct_eighths == (3 if fmt == "JPEG" else 8)
    assert out.width * out.height <= LIMITS.target_pixels
    assert abs(out.width / out.height - 4 / 3) < 0.01
    assert_quadrants(decode(out.data))


def test_debug_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="kontext.adapters.images.processing")
    normalise_image(encode(quadrants(300, 200), "PNG"), LIMITS)
    [record] = [r for r in caplog.records if r.name == "kontext.adapters.images.processing"]
    assert "PNG RGB 300x200" in record.getMessage() and "-> jpg 300x200" in record.getMessage()


@settings(max_examples=300, deadline=None)
@given(w=st.integers(1, 40_000), h=st.integers(1, 40_000), target=st.integers(10_000, 4_000_000))
def test_plan_geometry_properties(w: int, h: int, target: int) -> None:
    limits = ImageLimits(target_pixels=target)
    try:
        plan = images.plan_geometry(w, h, limits)
    except ImageBadShape:
        assert max(w, h) > 8 * min(w, h) or min(w, h) * 8 < limits.min_side
        return
    (cw, ch), (W, H) = plan.content, plan.canvas
    assert W * H <= target
    assert max(W, H) <= min(W, H) * limits.max_aspect + 1e-6
    assert cw <= W and ch <= H and (cw == W or ch == H)
    # aspect kept to within rounding
    assert abs(cw / ch - w / h) <= (w / h) * (1 / min(cw, ch) + 1 / max(cw, ch)) * 1.01 + 1e-9
    if min(w, h) >= limits.min_side:
        assert cw <= w and ch <= h  # never upscaled unless tiny
    flipped = images.plan_geometry(h, w, limits)  # symmetric: can be planned before EXIF rotation
    assert (flipped.content, flipped.canvas) == ((ch, cw), (H, W))


# --- fit_result ---------------------------------------------------------------------------------


def test_fit_result_returns_a_small_result_unchanged() -> None:
    data = encode(quadrants(256, 256), "PNG")
    res = fit_result(data, 10 * 1024 * 1024, max_pixels=50_000_000)
    assert res.data is data
    assert (res.content_type, res.extension, res.width, res.height, res.reencoded) == (
        "image/png",
        "png",
        256,
        256,
        False,
    )
    webp = encode(quadrants(64, 64), "WEBP")
    assert fit_result(webp, 10**6, max_pixels=10**6).content_type == "image/webp"


def test_fit_result_reencodes_to_fit() -> None:
    data = encode(noise(1024, 1024), "PNG")  # ~3 MB of noise
    limit = 600_000
    res = fit_result(data, limit, max_pixels=50_000_000)
    assert res.reencoded and len(res.data) <= limit
    assert (res.content_type, res.extension) == ("image/jpeg", "jpg")
    im = decode(res.data)
    assert (im.format, im.size) == ("JPEG", (res.width, res.height))


def test_fit_result_downscales_when_quality_is_not_enough() -> None:
    data = encode(noise(1024, 1024), "PNG")
    res = fit_result(data, 100_000, max_pixels=50_000_000)
    assert len(res.data) <= 100_000 and res.width < 1024
    assert abs(res.width / res.height - 1) < 0.01


def test_fit_result_transparent_stays_png() -> None:
    im = noise(512, 512).convert("RGBA")
    im.putalpha(128)
    res = fit_result(encode(im, "PNG"), 300_000, max_pixels=50_000_000)
    assert res.content_type == "image/png" and len(res.data) <= 300_000
    assert pixel(decode(res.data), (10, 10))[3] == 128


def test_fit_result_impossible() -> None:
    with pytest.raises(ResultTooLarge):
        fit_result(encode(noise(512, 512), "PNG"), 500, max_pixels=50_000_000)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<html>upstream error</html>", "not an image: html"),
        (b"", "not an image: empty"),
        (encode(quadrants(64, 64), "GIF"), "unsupported format gif"),
        (encode(noise(128, 128), "PNG")[:3000], "broken image"),
        (craft_png(20_000, 20_000), "too many pixels"),
    ],
)
def test_fit_result_refuses(data: bytes, reason: str) -> None:
    with pytest.raises(ResultError) as info:
        fit_result(data, 10**7, max_pixels=50_000_000)
    assert type(info.value) is ResultError
    assert info.value.params == {"reason": reason}


# --- thumbnails (made with the normalised image / the fitted result, from the same decode) -------------


def test_normalise_returns_an_upright_metadata_free_thumbnail() -> None:
    data = encode(quadrants(1200, 600), "JPEG", exif=_exif(6, gps=True))
    out = normalise_image(data, LIMITS)
    thumb = decode(out.thumbnail)
    assert (thumb.format, thumb.size) == ("JPEG", (128, 256))  # rotated, longest side 256
    assert len(thumb.getexif()) == 0 and not {"exif", "icc_profile", "comment"} & set(thumb.info)
    assert len(out.thumbnail) < 20_000
    transparent = normalise_image(encode(quadrants(1000, 500, "RGBA").convert("LA"), "PNG"), LIMITS)
    assert decode(transparent.thumbnail).size == (256, 128)


def test_fit_result_returns_a_thumbnail() -> None:
    res = fit_result(encode(quadrants(1200, 600), "JPEG"), 10**7, max_pixels=50_000_000)
    thumb = decode(res.thumbnail)
    assert thumb.format == "JPEG" and max(thumb.size) <= 256 and len(thumb.getexif()) == 0


# --- results are sanitised like inputs ---------------------------------------------------------


def sideways(picture: Image.Image) -> Image.Image:
    """How a camera stores ``picture`` with EXIF orientation 6 (displayed rotated 90° clockwise)."""
    return picture.transpose(Image.Transpose.ROTATE_90)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_result_that_fits_but_has_exif_is_turned_upright_and_stripped(fmt: str) -> None:
    picture = quadrants(300, 200)
    data = encode(
        sideways(picture), fmt, exif=_exif(6, gps=True), **({"quality": 95} if fmt != "PNG" else {})
    )
    assert Image.open(io.BytesIO(data)).getexif().get(0x0112) == 6
    res = fit_result(data, 10**7, max_pixels=50_000_000)
    assert res.cleaned and not res.reencoded, "cleaned, not shrunk: no 're-encoded to fit' note"
    out = decode(res.data)
    assert out.size == (300, 200) == (res.width, res.height), "upright"
    assert_quadrants(out)
    assert len(out.getexif()) == 0 and b"GPS" not in res.data and b"Exif" not in res.data
    if fmt == "PNG":
        assert out.format == "PNG", "a PNG result is cleaned losslessly"


def test_large_result_with_exif_is_reencoded_upright() -> None:
    picture = noise(1200, 800)
    picture.paste(RED, (0, 0, 600, 400))
    data = encode(sideways(picture), "PNG", exif=_exif(6, gps=True))
    res = fit_result(data, 400_000, max_pixels=50_000_000)
    assert res.reencoded and res.cleaned and len(res.data) <= 400_000
    out = decode(res.data)
    assert out.width > out.height, "upright"
    assert close(pixel(out.convert("RGB"), (10, 10)), RED, tol=40)
    assert len(out.getexif()) == 0 and b"GPS" not in res.data


@pytest.mark.parametrize(
    "extra",
    [
        {"pnginfo": "text"},
        {"icc_profile": "srgb"},
        {"trailing": b"hidden payload after IEND"},
    ],
)
def test_fitting_png_result_with_any_metadata_is_cleaned(extra: dict[str, Any]) -> None:
    im = quadrants(128, 96)
    if "pnginfo" in extra:
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", "prompt and seed")
        data = encode(im, "PNG", pnginfo=info)
    elif "icc_profile" in extra:
        data = encode(
            im, "PNG", icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
        )
    else:
        data = encode(im, "PNG") + extra["trailing"]
    res = fit_result(data, 10**7, max_pixels=50_000_000)
    assert res.cleaned and res.data != data
    assert b"prompt and seed" not in res.data and b"hidden payload" not in res.data
    assert b"iCCP" not in res.data and b"tEXt" not in res.data
    assert_quadrants(decode(res.data))


def test_clean_jpeg_result_is_passed_on_byte_for_byte_and_decoded_at_thumbnail_scale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = encode(quadrants(2048, 1536), "JPEG", quality=90)  # JFIF only: clean
    decoded: list[tuple[int, int]] = []
    real_load = JpegImagePlugin.JpegImageFile.load

    def spy(self: JpegImagePlugin.JpegImageFile) -> Any:
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", spy)
    res = fit_result(data, 10**7, max_pixels=50_000_000)
    assert res.data is data and not res.cleaned and not res.reencoded
    assert (res.width, res.height) == (2048, 1536)
    assert set(decoded) == {(256, 192)}, "decoded once, at 1/8 scale (the check and the thumbnail)"


def test_truncated_clean_result_is_still_refused() -> None:
    data = encode(noise(256, 256), "JPEG", quality=90)[:-2000]
    with pytest.raises(ResultError) as info:
        fit_result(data, 10**7, max_pixels=50_000_000)
    assert info.value.params == {"reason": "broken image"}
