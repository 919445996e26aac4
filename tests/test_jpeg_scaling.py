"""kontext.adapters.images.jpeg_scaling: which DCT scale a JPEG is decoded at, and that 3/8 works."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageChops, ImageFile, ImageStat

from kontext.adapters.images import jpeg_scaling, processing
from kontext.adapters.images.jpeg_scaling import DIRECT_SHARE, choose_scale, decode_at, scaled_size
from kontext.domain.images import ImageLimits
from tests.test_images import assert_quadrants, decode, encode, quadrants

LIMITS = ImageLimits()  # 2 MP target


def fits(size: tuple[int, int]) -> bool:
    return processing.plan_geometry(*size, LIMITS).content == size


def photo(w: int, h: int) -> Image.Image:
    size = (w, h)
    g = Image.effect_mandelbrot(size, (-2.2, -1.2, 1.0, 1.2), 64)
    return Image.merge(
        "RGB", (Image.linear_gradient("L").resize(size), g, Image.radial_gradient("L").resize(size))
    )


def opened(data: bytes) -> ImageFile.ImageFile:
    im = Image.open(io.BytesIO(data), formats=["JPEG"])
    assert isinstance(im, ImageFile.ImageFile)
    return im


def test_this_pillow_decodes_at_three_eighths() -> None:
    """If this fails after a Pillow upgrade, 3/8 is no longer offered (12 MP inputs then cost a
    resample again): adapt ``_set_three_eighths`` to the new Pillow's ``draft``."""
    assert jpeg_scaling.SCALES == (4, 3, 2, 1)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ((4000, 3000), (3, True)),  # 12 MP phone photo: 3/8 = 1500x1125, 1.7 MP, no resample
        ((4032, 3024), (3, True)),  # iPhone 12 MP: 1512x1134
        ((3264, 2448), (4, True)),  # 8 MP: 1/2 = 1632x1224 is the target itself
        ((8000, 6000), (2, False)),  # 48 MP: 1/4 = 3 MP, then resampled to 2 MP
        ((4608, 3456), (3, False)),  # 16 MP: 3/8 = 2.2 MP, just over; resampled from there
        ((2000, 1500), (8, False)),  # 3 MP: 1/2 would be 0.75 MP, too small: a full decode
    ],
)
def test_choose_scale(source: tuple[int, int], expected: tuple[int, bool]) -> None:
    content = processing.plan_geometry(*source, LIMITS).content
    assert choose_scale(source, content, fits) == expected


def test_without_three_eighths_a_12mp_jpeg_is_decoded_at_half_and_resampled() -> None:
    content = processing.plan_geometry(4000, 3000, LIMITS).content
    assert choose_scale((4000, 3000), content, fits, scales=(4, 2, 1)) == (4, False)


@settings(max_examples=300, deadline=None)
@given(w=st.integers(64, 12_000), h=st.integers(64, 12_000), target=st.integers(100_000, 8_000_000))
def test_chosen_scale_is_direct_and_close_or_covers_the_plan(w: int, h: int, target: int) -> None:
    limits = ImageLimits(target_pixels=target)
    if max(w, h) > min(w, h) * 2.33:
        return  # letterboxed shapes are planned the same way; the plan itself is tested elsewhere
    content = processing.plan_geometry(w, h, limits).content
    eighths, direct = choose_scale(
        (w, h), content, lambda s: processing.plan_geometry(*s, limits).content == s
    )
    size = scaled_size((w, h), eighths) if eighths < 8 else (w, h)
    if direct:
        assert DIRECT_SHARE * content[0] * content[1] <= size[0] * size[1] <= content[0] * content[1]
        assert processing.plan_geometry(*size, limits).content == size
    else:
        assert size[0] >= content[0] and size[1] >= content[1], "never decoded below the plan"


@pytest.mark.parametrize("size", [(4000, 3000), (4001, 2999), (3999, 3001), (17, 9)])
def test_three_eighths_decodes_to_libjpegs_size(size: tuple[int, int]) -> None:
    im = opened(encode(quadrants(*size), "JPEG", quality=90))
    assert decode_at(im, 3) == 3
    im.load()
    assert im.size == scaled_size(size, 3) == (-(-size[0] * 3 // 8), -(-size[1] * 3 // 8))


@pytest.mark.parametrize("progressive", [False, True])
def test_three_eighths_looks_like_a_resampled_half_decode(progressive: bool) -> None:
    data = encode(photo(2400, 1800), "JPEG", quality=90, progressive=progressive)
    im = opened(data)
    decode_at(im, 3)
    im.load()
    reference = decode(data).resize(im.size, Image.Resampling.LANCZOS)
    mean_difference = sum(ImageStat.Stat(ImageChops.difference(im.convert("RGB"), reference)).mean) / 3
    assert mean_difference < 2.0, "the same picture, antialiased"


@pytest.mark.parametrize("eighths", [4, 2, 1])
def test_public_scales(eighths: int) -> None:
    im = opened(encode(quadrants(4001, 2999), "JPEG"))
    assert decode_at(im, eighths) == eighths
    im.load()
    assert im.size == scaled_size((4001, 2999), eighths)


def test_a_cmyk_jpeg_is_decoded_at_three_eighths() -> None:
    data = encode(quadrants(4000, 3000).convert("CMYK"), "JPEG", quality=92)
    out = processing.normalise_image(data, LIMITS)
    assert (out.width, out.height, out.dct_eighths) == (1500, 1125, 3)
    assert_quadrants(decode(out.data), tol=24)


def test_without_three_eighths_normalising_falls_back_to_half_and_resample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jpeg_scaling, "SCALES", (4, 2, 1))
    out = processing.normalise_image(encode(quadrants(4000, 3000), "JPEG"), LIMITS)
    assert (out.width, out.height, out.dct_eighths) == (1632, 1224, 4)
    assert_quadrants(decode(out.data))


def test_a_rotated_12mp_jpeg_is_decoded_at_three_eighths_and_turned() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = processing.normalise_image(encode(quadrants(4000, 3000), "JPEG", exif=exif), LIMITS)
    assert (out.width, out.height, out.dct_eighths) == (1125, 1500, 3)


def test_no_thumbnail_when_not_asked() -> None:
    data = encode(quadrants(4000, 3000), "JPEG")
    assert processing.normalise_image(data, LIMITS, thumbnail=False).thumbnail == b""
    assert len(processing.normalise_image(data, LIMITS).thumbnail) > 100
