"""Typed pixel reads: Pillow types ``getpixel`` for every mode at once (a number, a tuple or None)."""

from __future__ import annotations

from PIL import Image


def pixel(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    """The bands of one pixel of a multi-band image (RGB, RGBA, LA, CMYK …)."""
    value = image.getpixel(xy)
    assert isinstance(value, tuple), f"a {image.mode} pixel is not a tuple of bands: {value!r}"
    return value


def level(image: Image.Image, xy: tuple[int, int]) -> float:
    """The value of one pixel of a single-band image (L, I, I;16, F)."""
    value = image.getpixel(xy)
    assert isinstance(value, int | float), f"a {image.mode} pixel is not a single value: {value!r}"
    return value
