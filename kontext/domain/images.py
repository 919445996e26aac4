"""Image value types shared by the runner and the image adapter (no pixels are touched here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: Images more elongated than this are refused; between ``ImageLimits.max_aspect`` and this, letterboxed.
MAX_LETTERBOX_ASPECT: Final = 8.0


@dataclass(frozen=True)
class ImageLimits:
    """Limits for one normalisation (built from the bot's settings)."""

    #: Input file size cap in bytes (checked first).
    max_bytes: int = 20 * 1024 * 1024
    #: Decompression-bomb cap on the declared ``width * height``, checked before decoding.
    max_pixels: int = 50_000_000
    #: The normalised output has at most this many pixels (downscale only).
    target_pixels: int = 2_000_000
    #: Short side below this: upscaled (up to 8x) or refused.
    min_side: int = 64
    #: Flux Kontext works between 3:7 and 7:3; beyond that, letterboxed (up to 1:8) or refused.
    max_aspect: float = 7 / 3

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_pixels <= 0 or self.target_pixels <= 0 or self.min_side <= 0:
            raise ValueError("image limits must be positive")
        if not 1.0 <= self.max_aspect <= MAX_LETTERBOX_ASPECT:
            raise ValueError(f"max_aspect must be between 1 and {MAX_LETTERBOX_ASPECT}")


@dataclass(frozen=True)
class NormalisedImage:
    """The bot's own metadata-free copy of an input, ready to be hosted."""

    data: bytes
    content_type: str  # "image/jpeg" or "image/png"
    extension: str  # "jpg" or "png"
    width: int
    height: int
    source_format: str  # Pillow format name of the input: "PNG", "JPEG", "WEBP", "GIF", ...
    letterboxed: bool
    #: A small metadata-free JPEG/PNG of the same picture for the moderation log, made in the same
    #: decode (so the normalised copy itself need not be kept until the job ends).
    thumbnail: bytes = b""
    #: DCT scaling applied while decoding a JPEG, in eighths (8 = none; 4, 3, 2, 1: decoded at k/8 size).
    dct_eighths: int = 8


@dataclass(frozen=True)
class FittedResult:
    """A result image that fits the upload limit it will be delivered under, upright and metadata-free."""

    data: bytes
    content_type: str
    extension: str
    width: int
    height: int
    #: Re-encoded (lower quality or smaller) to fit the upload limit: the requester is told.
    reencoded: bool
    #: A small thumbnail for the moderation log, made from the same (single) decode.
    thumbnail: bytes = b""
    #: Re-encoded only to drop metadata (EXIF, GPS, text, ICC …) and apply the EXIF orientation.
    cleaned: bool = False
