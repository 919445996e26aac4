"""Input validation and normalisation, result fitting and thumbnails (pure, synchronous, CPU-bound).

Everything here runs in sandboxed worker processes (see :mod:`kontext.adapters.images.sandbox`:
killed after a wall-clock timeout, with CPU-time and address-space limits), never on the event loop.

Safety rules, in order, for every decode:

1. the byte size is checked before anything is parsed;
2. the real format is sniffed from the magic bytes (file names and content types are ignored) and
   Pillow is only allowed to open that one format (``Image.open(fp, formats=[...])``), so PSD, EPS
   and friends never reach a decoder;
3. the structure is counted in one linear pass (:mod:`.structure`: JPEG scans and markers, PNG
   chunks, GIF blocks) and absurd files are refused before Pillow walks them;
4. the declared ``width * height`` from the header is checked against our own cap before
   ``load()``. The cap is ``min(limits.max_pixels, Image.MAX_IMAGE_PIXELS)``: an image big enough for
   Pillow's ``DecompressionBombWarning`` is therefore always refused by us too, and Pillow's
   ``DecompressionBombError`` is mapped to :class:`ImageBomb`. (Warnings are not converted with
   ``warnings.catch_warnings`` because that is not thread-safe.);
5. a full ``load()`` (``verify()`` passes truncated files), first frame only; a JPEG that will be
   shrunk is decoded DCT-scaled (:mod:`.jpeg_scaling`: at 1/2, 3/8, 1/4 or 1/8 of its size, straight
   to the result's size when one of those fits, else never below it);
6. pixels are pasted into a fresh image before encoding, so no metadata (EXIF/GPS, XMP, ICC, text
   chunks, comments) survives. Colour profiles are converted to sRGB first when LittleCMS is there.
"""

from __future__ import annotations

import io
import logging
import math
import re
import time
from dataclasses import dataclass, replace
from typing import Final

from PIL import Image, ImageFile, UnidentifiedImageError

from kontext.adapters.images import jpeg_scaling
from kontext.adapters.images.formats import sniff_format
from kontext.adapters.images.structure import DEFAULT_LIMITS as DEFAULT_STRUCTURE
from kontext.adapters.images.structure import StructureLimits, check_structure
from kontext.domain.errors import (
    BrokenImage,
    ImageBadShape,
    ImageBomb,
    ImageError,
    ImageStructure,
    ImageTooHeavy,
    ImageTooLarge,
    NotAnImage,
    ResultError,
    ResultTooLarge,
)
from kontext.domain.images import MAX_LETTERBOX_ASPECT, FittedResult, ImageLimits, NormalisedImage

try:
    from PIL import ImageCms

    _SRGB: ImageCms.ImageCmsProfile | None = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
except (ImportError, OSError):  # pragma: no cover - Pillow built without LittleCMS
    ImageCms = None  # type: ignore[assignment]
    _SRGB = None

log = logging.getLogger("kontext.adapters.images.processing")

__all__ = [
    "FittedResult",
    "ImageLimits",
    "NormalisedImage",
    "fit_result",
    "normalise_image",
    "sniff_format",
]

#: A tiny image is upscaled at most this much to reach ``min_side``; smaller ones are refused.
MAX_UPSCALE: Final = 8.0
#: Letterbox colour for opaque images (neutral mid grey); transparent images get transparent bars.
LETTERBOX_RGB: Final = (128, 128, 128)
JPEG_QUALITY: Final = 92
PNG_COMPRESS_LEVEL: Final = 1
#: ``reducing_gap`` for resize: a fast box reduction first, LANCZOS for the last factor of 3.
REDUCING_GAP: Final = 3.0
#: How inputs are shrunk (after the JPEG DCT-domain draft, usually by less than 2x). The model
#: resamples them again, and Pillow's BILINEAR is antialiased when shrinking: on a 12 MP photo it
#: costs 28 ms instead of LANCZOS's 62 ms for a mean difference of 0.5/255. Results, which people
#: look at, keep LANCZOS.
INPUT_RESAMPLING: Final = Image.Resampling.BILINEAR
#: Moderation-log thumbnails: longest side and JPEG quality.
THUMBNAIL_SIDE: Final = 256
THUMBNAIL_QUALITY: Final = 80
#: Thumbnails are box-reduced by the integer part of the factor, then Lanczos-resampled over the
#: rest (below 2x): 4 ms from 1.7 MP, against 11 ms with a gap of 2 (Lanczos over up to 4x).
THUMBNAIL_REDUCING_GAP: Final = 1.0
#: A result re-encoded only to drop its metadata stays PNG at this (lossless) level.
CLEAN_PNG_COMPRESS_LEVEL: Final = 6
#: Modes that resize as they are: when shrinking, resize before widening them to 8-bit RGB(A).
_RESIZE_FIRST_MODES: Final = frozenset(
    {"RGB", "RGBA", "L", "LA", "CMYK", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
)
#: fit_result: JPEG quality ladder at full size, then downscale steps at ``_FIT_STEP_QUALITY``.
_FIT_QUALITIES: Final = (90, 80, 70, 60)
_FIT_STEP_QUALITY: Final = 75
_FIT_MAX_STEPS: Final = 12
_FIT_MIN_SIDE: Final = 64

_CONTENT_TYPES: Final = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_EXTENSIONS: Final = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
_ORIENTATION_TAG: Final = 0x0112
_TRANSPOSE: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_BOMB_PIXELS_RE: Final = re.compile(r"\((\d+) pixels\)")


# --- safe opening -------------------------------------------------------------------------------


def _pixel_cap(max_pixels: int) -> int:
    pillow_cap = Image.MAX_IMAGE_PIXELS
    return min(max_pixels, pillow_cap) if pillow_cap else max_pixels


def _mp(pixels: float) -> float:
    return round(pixels / 1_000_000, 1)


def _open_capped(data: bytes, fmt: str, max_pixels: int) -> ImageFile.ImageFile:
    """Open ``data`` as ``fmt`` only, and refuse it if its header declares too many pixels.

    Raises BrokenImage or ImageBomb. Nothing is decoded yet (no ``load()``).
    """
    cap = _pixel_cap(max_pixels)
    try:
        im = Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError as exc:
        match = _BOMB_PIXELS_RE.search(str(exc))
        pixels = int(match.group(1)) if match else 2 * cap
        raise ImageBomb(
            f"{fmt}: Pillow refused it: {exc}", megapixels=_mp(pixels), limit_mp=_mp(cap)
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BrokenImage(f"{fmt} header could not be parsed: {exc}") from exc
    width, height = im.size
    if width <= 0 or height <= 0:
        raise BrokenImage(f"{fmt} declares an empty size {width}x{height}")
    if width * height > cap:
        raise ImageBomb(
            f"{fmt} declares {width}x{height} = {width * height} pixels, cap {cap}",
            megapixels=_mp(width * height),
            limit_mp=_mp(cap),
        )
    return im


def _load(im: ImageFile.ImageFile, fmt: str) -> None:
    """Fully decode the first frame; any failure means a broken (truncated, corrupt) file."""
    try:
        im.load()
    except Image.DecompressionBombError as exc:
        limit = _mp(Image.MAX_IMAGE_PIXELS or 0)
        raise ImageBomb(f"{fmt}: {exc}", megapixels=_mp(im.width * im.height), limit_mp=limit) from exc
    except MemoryError as exc:
        raise ImageTooHeavy(f"{fmt} {im.width}x{im.height}: out of memory while decoding") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        raise BrokenImage(f"{fmt} {im.width}x{im.height} could not be decoded: {exc}") from exc


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - malformed EXIF must not fail the image; it is dropped anyway
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


# --- modes and colour ---------------------------------------------------------------------------


def _scale_to_8bit(im: Image.Image) -> Image.Image:
    """Map a 16/32-bit integer or float grey image to "L" by scaling (``convert`` would clip)."""
    if im.mode.startswith("I;16"):
        im = im.convert("I")
        lo, hi = 0.0, 65535.0
    else:
        if im.mode == "F":
            lo_v, hi_v = im.getextrema()
        else:
            im = im.convert("I") if im.mode != "I" else im
            lo_v, hi_v = im.getextrema()
        lo, hi = float(lo_v), float(hi_v)  # type: ignore[arg-type]
        if im.mode == "F" and lo >= 0 and hi <= 1.0:
            lo, hi = 0.0, 1.0
        elif lo >= 0 and hi <= 255:
            lo, hi = 0.0, 255.0
        elif lo >= 0 and hi <= 65535:
            lo, hi = 0.0, 65535.0
        if hi <= lo:
            hi = lo + 1
    scale = 255.0 / (hi - lo)
    offset = -lo * scale + (0.5 if im.mode == "I" else 0.0)  # "I" truncates: round instead
    return im.point(lambda v: v * scale + offset).convert("L")


def _working_mode(im: Image.Image) -> Image.Image:
    """Convert any decoded mode to RGB, RGBA or CMYK (CMYK is turned to RGB later, with its profile)."""
    mode = im.mode
    if mode in ("RGB", "RGBA", "CMYK"):
        if mode == "RGB" and "transparency" in im.info:
            return im.convert("RGBA")
        return im
    if mode.startswith("I") or mode == "F":
        return _scale_to_8bit(im).convert("RGB")
    if mode in ("P", "L", "1"):
        return im.convert("RGBA" if im.has_transparency_data else "RGB")
    if mode in ("LA", "La", "PA", "RGBa"):
        return im.convert("RGBA")
    try:
        return im.convert("RGB")  # RGBX, YCbCr, HSV, LAB, ...
    except ValueError as exc:
        raise BrokenImage(f"unsupported pixel mode {mode}: {exc}") from exc


def _drop_opaque_alpha(im: Image.Image) -> Image.Image:
    if im.mode == "RGBA" and im.getchannel("A").getextrema() == (255, 255):
        return im.convert("RGB")
    return im


def _to_srgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    """Apply an embedded ICC profile (to sRGB) when possible; CMYK always ends as RGB."""
    if icc and ImageCms is not None and _SRGB is not None and im.mode in ("RGB", "RGBA", "CMYK"):
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            expected = "CMYK" if im.mode == "CMYK" else "RGB"
            if src.profile.xcolor_space.strip() == expected:
                description = (src.profile.profile_description or "").lower()
                if expected == "RGB" and "srgb" in description:
                    return im  # already sRGB: nothing to do
                out_mode = "RGBA" if im.mode == "RGBA" else "RGB"
                converted = ImageCms.profileToProfile(im, src, _SRGB, outputMode=out_mode)
                if converted is not None:
                    return converted
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
            log.debug("ICC profile ignored (%s)", exc)
    if im.mode == "CMYK":
        return im.convert("RGB")
    return im


# --- geometry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    content: tuple[int, int]
    canvas: tuple[int, int]

    @property
    def letterboxed(self) -> bool:
        return self.content != self.canvas


def _canvas_for(w: int, h: int, max_aspect: float) -> tuple[int, int]:
    if w >= h:
        return (w, h) if w <= h * max_aspect + 1e-9 else (w, max(h, math.ceil(w / max_aspect - 1e-9)))
    return (w, h) if h <= w * max_aspect + 1e-9 else (max(w, math.ceil(h / max_aspect - 1e-9)), h)


def plan_geometry(width: int, height: int, limits: ImageLimits) -> _Plan:
    """Decide the content size and the canvas size (letterbox) for a ``width`` x ``height`` image.

    Raises ImageBadShape for aspect ratios beyond 1:``MAX_LETTERBOX_ASPECT`` and for images too small
    to upscale. Symmetric in width/height, so it can be planned before EXIF rotation.
    """
    short, long = min(width, height), max(width, height)
    if short < 1 or long > short * MAX_LETTERBOX_ASPECT:
        raise ImageBadShape(
            f"aspect ratio {width}x{height} is beyond 1:{MAX_LETTERBOX_ASPECT:g}", width=width, height=height
        )
    scale = 1.0
    if short < limits.min_side:
        if short * MAX_UPSCALE < limits.min_side:
            raise ImageBadShape(
                f"{width}x{height} is too small (short side < {limits.min_side / MAX_UPSCALE:g} px)",
                width=width,
                height=height,
            )
        scale = limits.min_side / short

    def sized(scale: float) -> tuple[int, int]:
        # Always from the source size, so rounding never compounds (aspect kept to within 1 px).
        if scale >= 1.0:
            return math.ceil(width * scale - 1e-9), math.ceil(height * scale - 1e-9)
        return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))

    content = sized(scale)
    canvas = _canvas_for(*content, limits.max_aspect)
    if canvas[0] * canvas[1] > limits.target_pixels:
        scale *= math.sqrt(limits.target_pixels / (canvas[0] * canvas[1]))
        while True:
            content = sized(scale)
            canvas = _canvas_for(*content, limits.max_aspect)
            if canvas[0] * canvas[1] <= limits.target_pixels or max(content) == 1:
                break
            scale *= 0.998
    return _Plan(content=content, canvas=canvas)


def _resize(
    im: Image.Image, size: tuple[int, int], shrink: Image.Resampling = Image.Resampling.LANCZOS
) -> Image.Image:
    """``im`` at ``size``: shrunk with ``shrink`` (a box reduction first when far), grown with LANCZOS."""
    if im.size == size:
        return im
    if size[0] * size[1] < im.width * im.height:
        return im.resize(size, shrink, reducing_gap=REDUCING_GAP)
    return im.resize(size, Image.Resampling.LANCZOS)


def _fresh_copy(im: Image.Image, canvas: tuple[int, int]) -> Image.Image:
    """The pixels on a brand-new image object with no ``info`` (no EXIF, ICC, XMP, text, comments),
    centred on ``canvas``. With nothing to letterbox, the new object shares the pixel memory: an
    encoder only ever reads metadata from ``info`` and its own arguments, and a 1.7 MP copy would
    cost ~3 ms and 7 MB."""
    if im.size == canvas and im.mode in ("RGB", "RGBA", "L"):
        bare = im._new(im.im)
        bare.info = {}
        return bare
    fill: tuple[int, ...] = (0, 0, 0, 0) if im.mode == "RGBA" else LETTERBOX_RGB
    out = Image.new(im.mode, canvas, fill)
    out.paste(im, ((canvas[0] - im.width) // 2, (canvas[1] - im.height) // 2))
    return out


def _encode(im: Image.Image, *, quality: int = JPEG_QUALITY) -> tuple[bytes, str, str]:
    buf = io.BytesIO()
    if im.mode == "RGBA":
        im.save(buf, "PNG", compress_level=PNG_COMPRESS_LEVEL)
        return buf.getvalue(), "image/png", "png"
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue(), "image/jpeg", "jpg"


# --- public API ---------------------------------------------------------------------------------


def normalise_image(
    data: bytes,
    limits: ImageLimits,
    structure: StructureLimits = DEFAULT_STRUCTURE,
    *,
    thumbnail: bool = True,
) -> NormalisedImage:
    """Validate ``data`` and return a metadata-free JPEG/PNG of at most ``limits.target_pixels``,
    with (``thumbnail``) a small thumbnail of it for the moderation log, made from the same decode.

    Raises ImageTooLarge, NotAnImage, ImageStructure, BrokenImage, ImageBomb or ImageBadShape.
    """
    started = time.perf_counter()
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(
            f"input is {len(data)} bytes, limit {limits.max_bytes}",
            size_mb=round(len(data) / 1024 / 1024, 1),
            limit_mb=round(limits.max_bytes / 1024 / 1024, 1),
        )
    fmt, kind = sniff_format(data)
    if fmt is None:
        raise NotAnImage(f"not a supported image ({kind}, {len(data)} bytes, starts {data[:8]!r})", kind=kind)
    check_structure(data, fmt, structure)

    im = _open_capped(data, fmt, limits.max_pixels)
    try:
        source_size = im.size
        source_mode = im.mode
        plan = plan_geometry(*source_size, limits)
        eighths = 8
        if fmt == "JPEG" and plan.content[0] < source_size[0]:
            plan, eighths = _dct_scaled(im, plan, limits)
        _load(im, fmt)
        out = _normalised_pixels(im, plan, fmt)
    finally:
        im.close()
    try:
        encoded, content_type, extension = _encode(out)
        thumb = _thumbnail_of(out) if thumbnail else b""
    except (OSError, ValueError) as exc:
        raise BrokenImage(f"{fmt} {source_size} {source_mode} could not be encoded: {exc}") from exc

    log.debug(
        "normalised %s %s %dx%d (%d B, decoded at %d/8) -> %s %dx%d%s (%d B) in %.0f ms",
        fmt,
        source_mode,
        source_size[0],
        source_size[1],
        len(data),
        eighths,
        extension,
        out.width,
        out.height,
        " letterboxed" if plan.letterboxed else "",
        len(encoded),
        (time.perf_counter() - started) * 1000,
    )
    return NormalisedImage(
        data=encoded,
        content_type=content_type,
        extension=extension,
        width=out.width,
        height=out.height,
        source_format=fmt,
        letterboxed=plan.letterboxed,
        thumbnail=thumb,
        dct_eighths=eighths,
    )


def _dct_scaled(im: ImageFile.ImageFile, plan: _Plan, limits: ImageLimits) -> tuple[_Plan, int]:
    """Set up ``im`` (a JPEG that will be shrunk) to decode DCT-scaled (:mod:`.jpeg_scaling`); the
    plan after it (the decoded size itself when that needs no resample) and the scale, in eighths."""

    def fits(size: tuple[int, int]) -> bool:
        return plan_geometry(*size, limits).content == size

    source = im.size
    wanted, direct = jpeg_scaling.choose_scale(source, plan.content, fits)
    eighths = jpeg_scaling.decode_at(im, wanted)
    if direct and eighths == wanted and fits(im.size):
        return plan_geometry(*im.size, limits), eighths
    if im.size[0] < plan.content[0] or im.size[1] < plan.content[1]:  # pragma: no cover - Pillow's draft
        raise BrokenImage(f"JPEG {source} was decoded at {im.size}, below the planned {plan.content}")
    return plan, eighths


def _normalised_pixels(im: ImageFile.ImageFile, plan: _Plan, fmt: str) -> Image.Image:
    """The decoded ``im`` resized, in sRGB, upright and pasted onto a fresh (metadata-free) canvas."""
    orientation = _orientation(im)
    icc = im.info.get("icc_profile")
    try:
        work = _to_content(im, plan.content)
        work = _to_srgb(work, icc if isinstance(icc, bytes) else None)
        work = _drop_opaque_alpha(work)
        work = _upright(work, orientation)
        canvas = plan.canvas if orientation < 5 else (plan.canvas[1], plan.canvas[0])
        return _fresh_copy(work, canvas)
    except (OSError, ValueError) as exc:
        raise BrokenImage(f"{fmt} {im.size} {im.mode} could not be processed: {exc}") from exc


def _to_content(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``im`` in a working mode at ``size``. When shrinking a mode that resizes as it is, resize
    first: a 49 MP 16-bit image is then widened to 32 bits per sample at 2 MP, not at 49 MP."""
    shrinking = size[0] * size[1] < im.width * im.height
    if shrinking and im.mode in _RESIZE_FIRST_MODES and "transparency" not in im.info:
        return _working_mode(_resize(im, size, INPUT_RESAMPLING))
    return _resize(_working_mode(im), size, INPUT_RESAMPLING)


def _upright(im: Image.Image, orientation: int) -> Image.Image:
    return im.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else im


def _thumbnail_of(im: Image.Image, max_side: int = THUMBNAIL_SIDE) -> bytes:
    """A small metadata-free JPEG (PNG when transparent) of an already decoded, upright image.

    Box-reduced by an integer factor first, then Lanczos over the last factor below 2: a 1.7 MP
    image costs ~4 ms instead of ~20 ms for a full Lanczos pass, with no visible difference at
    moderation-log size."""
    scale = min(1.0, max_side / max(im.size))
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    small = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=THUMBNAIL_REDUCING_GAP)
    return _encode(_fresh_copy(small, small.size), quality=THUMBNAIL_QUALITY)[0]


def fit_result(
    data: bytes, max_bytes: int, *, max_pixels: int, structure: StructureLimits = DEFAULT_STRUCTURE
) -> FittedResult:
    """Check a result image, sanitise it like an input, and make it fit in ``max_bytes`` (Discord's
    per-file upload limit). The result is decoded exactly once.

    A result that fits and is ``clean`` (no metadata of any kind, one still image, so also upright) is
    decoded once to check it and to make the thumbnail (a JPEG at 1/8 scale in the DCT domain) and
    passed on byte for byte. Otherwise it is decoded, turned upright (EXIF orientation), converted to
    sRGB and re-encoded without metadata: in its own family when that fits (PNG stays lossless PNG,
    JPEG at quality 92), else JPEG quality 90→60 at full size, then downscale steps (transparent
    images: PNG downscale steps).

    Raises ResultError (not a PNG/JPEG/WebP, absurd structure, broken, too many pixels; ``reason`` is a
    short English phrase for the user sentence) or ResultTooLarge.
    """
    fmt = _result_format(data)
    try:
        shape = check_structure(data, fmt, structure)
    except ImageStructure as exc:
        raise ResultError(f"result refused: {exc.detail}", reason="unusual file structure") from exc
    if len(data) <= max_bytes and shape.clean:
        return _checked_as_is(data, fmt, max_pixels)
    return _sanitised(data, fmt, max_bytes, max_pixels)


def _result_format(data: bytes) -> str:
    fmt, kind = sniff_format(data)
    if fmt is None or fmt not in _CONTENT_TYPES:
        reason = f"unsupported format {kind}" if fmt else f"not an image: {kind}"
        raise ResultError(f"result is not a PNG/JPEG/WebP image ({kind}, {len(data)} bytes)", reason=reason)
    return fmt


def _checked_as_is(data: bytes, fmt: str, max_pixels: int) -> FittedResult:
    """A clean result that fits: decoded once (to check it and for the thumbnail), posted unchanged."""
    im, (width, height) = _open_result(data, fmt, max_pixels, draft_side=THUMBNAIL_SIDE)
    with im:
        try:
            thumb = _thumbnail_of(_drop_opaque_alpha(_working_mode(im)))
        except (OSError, ValueError, ImageError) as exc:
            raise ResultError(f"result could not be converted: {exc}", reason="unreadable image") from exc
    return FittedResult(
        data, _CONTENT_TYPES[fmt], _EXTENSIONS[fmt], width, height, reencoded=False, thumbnail=thumb
    )


def _sanitised(data: bytes, fmt: str, max_bytes: int, max_pixels: int) -> FittedResult:
    """Decode once; upright, sRGB, metadata-free; in its own family if that fits, else the fit ladder."""
    im, (width, height) = _open_result(data, fmt, max_pixels)
    with im:
        try:
            work = _drop_opaque_alpha(_working_mode(im))
            work = _to_srgb(work, im.info.get("icc_profile"))
            work = _upright(work, _orientation(im))
            work = _fresh_copy(work, work.size)
            thumb = _thumbnail_of(work)
            clean = _encode_family(work, fmt) if len(data) <= max_bytes else None
        except (OSError, ValueError, ImageError) as exc:
            raise ResultError(f"result could not be converted: {exc}", reason="unreadable image") from exc
    if clean is not None and len(clean.data) <= max_bytes:
        log.debug("result %dx%d %s cleaned (metadata dropped, upright)", width, height, fmt)
        return replace(clean, thumbnail=thumb)
    fitted = _reencode_to_fit(work, max_bytes, len(data))
    if fitted is None:
        raise ResultTooLarge(f"result {width}x{height} ({len(data)} B) cannot fit in {max_bytes} B")
    log.debug(
        "result %dx%d refitted to %dx%d %s", width, height, fitted.width, fitted.height, fitted.extension
    )
    return replace(fitted, thumbnail=thumb, cleaned=True)


def _encode_family(im: Image.Image, fmt: str) -> FittedResult:
    """``im`` re-encoded without metadata in the source's family: PNG stays (lossless) PNG."""
    if fmt == "PNG" or im.mode == "RGBA":
        buf = io.BytesIO()
        im.save(buf, "PNG", compress_level=CLEAN_PNG_COMPRESS_LEVEL)
        return FittedResult(buf.getvalue(), "image/png", "png", im.width, im.height, False, cleaned=True)
    encoded, content_type, extension = _encode(im)
    return FittedResult(encoded, content_type, extension, im.width, im.height, False, cleaned=True)


def _open_result(
    data: bytes, fmt: str, max_pixels: int, *, draft_side: int | None = None
) -> tuple[ImageFile.ImageFile, tuple[int, int]]:
    """The result's decoded first frame and its size as stored; :class:`ResultError` when it is not a
    usable image. With ``draft_side`` a JPEG is decoded DCT-scaled, its longest side not below it."""
    try:
        im = _open_capped(data, fmt, max_pixels)
        size = im.size
        if draft_side is not None and fmt == "JPEG":
            scale = min(1.0, draft_side / max(size))
            im.draft(im.mode, (math.ceil(size[0] * scale), math.ceil(size[1] * scale)))
        _load(im, fmt)
    except ImageError as exc:
        reasons = {ImageBomb: "too many pixels", ImageTooHeavy: "too large to read"}
        reason = reasons.get(type(exc), "broken image")
        raise ResultError(f"result image unusable: {exc.detail}", reason=reason) from exc
    return im, size


def _encode_fit(im: Image.Image, quality: int) -> FittedResult:
    if im.mode == "RGBA":
        return FittedResult(_encode_png_small(im), "image/png", "png", im.width, im.height, reencoded=True)
    encoded, content_type, extension = _encode(im, quality=quality)
    return FittedResult(encoded, content_type, extension, im.width, im.height, reencoded=True)


def _reencode_to_fit(work: Image.Image, max_bytes: int, last: int) -> FittedResult | None:
    """Lower JPEG quality at full size first, then smaller sizes; None when nothing fits."""
    for quality in _FIT_QUALITIES if work.mode != "RGBA" else _FIT_QUALITIES[:1]:
        fitted = _encode_fit(work, quality)
        if len(fitted.data) <= max_bytes:
            return fitted
        last = len(fitted.data)
    current = work
    for _ in range(_FIT_MAX_STEPS):
        # Bytes grow roughly with the pixel count: aim a little under the limit, 20-75 % area per step.
        area = max(0.2, min(0.75, 0.9 * max_bytes / last))
        size = (int(current.width * math.sqrt(area)), int(current.height * math.sqrt(area)))
        if min(size) < _FIT_MIN_SIDE:
            return None
        current = _resize(work, size)
        fitted = _encode_fit(current, _FIT_STEP_QUALITY)
        if len(fitted.data) <= max_bytes:
            return fitted
        last = len(fitted.data)
    return None


def _encode_png_small(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=9)
    return buf.getvalue()
