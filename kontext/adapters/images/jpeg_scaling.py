"""How big to decode a JPEG that will be shrunk: libjpeg's DCT scaling, chosen per image.

libjpeg-turbo can decode a JPEG at k/8 of its size inside the inverse DCT, for less work than a full
decode, and the result is already antialiased. Pillow's public :meth:`~PIL.Image.Image.draft` offers
1/2, 1/4 and 1/8. The 3/8 scale matters most: it takes a 12 MP phone photo (4000x3000) straight to
1500x1125 (1.7 MP), inside the default 2 MP target, with no resample at all: ~38 ms here, against
~34 ms for a 1/2 decode plus ~28 ms to shrink its 3 MP to 2 MP.

:func:`choose_scale` decodes *straight to* a scale when its size fits the plan and keeps at least
``DIRECT_SHARE`` of the planned pixels (no resample); otherwise at the smallest scale not below the
planned size (a resample follows, from far fewer pixels than the original).

Pillow has no public way to ask for 3/8. libjpeg turns Pillow's ``scale_denom`` of 3 into its 3/8
IDCT, so :func:`decode_at` sets, for 3, the same three attributes ``draft`` sets for 1/2 (decoder
configuration, size, tile extent). A probe at import decodes a tiny JPEG that way and checks size and
colour: should a Pillow release change these internals, 3/8 is simply not offered (the public
scales still are) and ``tests/test_jpeg_scaling.py`` fails to say so.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable
from typing import Final

from PIL import Image, ImageFile

log = logging.getLogger("kontext.adapters.images.jpeg_scaling")

__all__ = ["DIRECT_SHARE", "SCALES", "choose_scale", "decode_at", "scaled_size"]

#: Decode straight to a DCT scale (no resample) when it keeps at least this share of the pixels the
#: plan asks for: at most ~11 % fewer per side, and the model works at ~1 MP anyway.
DIRECT_SHARE: Final = 0.8
#: Scales Pillow's public ``draft`` can ask for, in eighths.
_PUBLIC: Final = (4, 2, 1)
#: libjpeg's 3/8 IDCT, reached through Pillow's ``scale_denom`` of 3.
_THREE_EIGHTHS: Final = 3


def scaled_size(size: tuple[int, int], eighths: int) -> tuple[int, int]:
    """The size libjpeg decodes ``size`` to at ``eighths``/8 (it rounds up: ``jdiv_round_up``)."""
    return math.ceil(size[0] * eighths / 8), math.ceil(size[1] * eighths / 8)


def _set_three_eighths(im: ImageFile.ImageFile) -> bool:
    """Configure ``im`` (opened, not loaded) to decode at 3/8; False when Pillow would not do it."""
    size = scaled_size(im.size, _THREE_EIGHTHS)
    half = (max(1, im.size[0] // 2), max(1, im.size[1] // 2))
    if im.draft(im.mode, half) is None or im.decoderconfig != (2, 0) or len(im.tile) != 1:
        return False
    decoder, _, offset, args = im.tile[0]
    im.decoderconfig = (_THREE_EIGHTHS, 0)
    im._size = size
    im.tile = [ImageFile._Tile(decoder, (0, 0, *size), offset, args)]
    return True


def _probe() -> bool:
    """Whether this Pillow decodes at 3/8 the way :func:`decode_at` asks (size and colour right)."""
    colour = (200, 40, 90)
    buf = io.BytesIO()
    Image.new("RGB", (40, 24), colour).save(buf, "JPEG", quality=95)
    try:
        with Image.open(buf, formats=["JPEG"]) as im:
            if not isinstance(im, ImageFile.ImageFile) or not _set_three_eighths(im):
                return False
            im.load()
            pixel = im.getpixel((7, 4))
            if im.size != (15, 9) or not isinstance(pixel, tuple):
                return False
            return all(abs(int(got) - want) <= 8 for got, want in zip(pixel, colour, strict=True))
    except Exception as exc:  # noqa: BLE001 - any failure just means: no 3/8 with this Pillow
        log.warning("JPEG 3/8 DCT scaling is not available with this Pillow: %r", exc)
        return False


#: The DCT scales offered, in eighths, largest first (8, a full decode, is always possible).
SCALES: Final[tuple[int, ...]] = (4, 3, 2, 1) if _probe() else _PUBLIC


def choose_scale(
    source: tuple[int, int],
    content: tuple[int, int],
    fits: Callable[[tuple[int, int]], bool],
    scales: tuple[int, ...] | None = None,
) -> tuple[int, bool]:
    """The scale (eighths) to decode a ``source``-sized JPEG at for a ``content``-sized result, and
    whether that decode *is* the result (``fits(size)``: the size needs no resample).

    Straight to a scale when its pixels are within [``DIRECT_SHARE``, 1] of ``content``'s and it
    fits; else the smallest scale not below ``content`` on either side (8: a full decode)."""
    scales = SCALES if scales is None else scales
    wanted = content[0] * content[1]
    for eighths in scales:
        size = scaled_size(source, eighths)
        if DIRECT_SHARE * wanted <= size[0] * size[1] <= wanted and fits(size):
            return eighths, True
    covering = [
        k for k in scales if all(s >= c for s, c in zip(scaled_size(source, k), content, strict=True))
    ]
    return min(covering, default=8), False


def decode_at(im: ImageFile.ImageFile, eighths: int) -> int:
    """Make ``im`` (a JPEG opened, not loaded) decode at ``eighths``/8; returns the scale it will use."""
    if eighths >= 8:
        return 8
    if eighths == _THREE_EIGHTHS:
        return _THREE_EIGHTHS if _THREE_EIGHTHS in SCALES and _set_three_eighths(im) else 8
    # Pillow picks the largest power-of-two reduction that keeps the image at least this size.
    floor = (max(1, im.size[0] * eighths // 8), max(1, im.size[1] * eighths // 8))
    source = im.size
    im.draft(im.mode, floor)
    return max(1, round(8 * im.size[0] / source[0]))
