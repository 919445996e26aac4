"""End to end: the hostile/odd image corpus through the REAL bot, checked on the copy that was hosted.

tests/test_images.py covers each category in depth at unit level; here each category gets ONE run through
the whole bot (Discord CDN → capped download → sandboxed normalisation → APIMart upload → the fake
API fetching that upload → result) and the assertions are about what the outside world saw: the hosted
copy (``FakeApimart.uploads``, i.e. what APIMart downloaded) is re-encoded, single-frame, metadata-free,
and the right pixels; inputs that lie about their size are refused without reading past the cap.
Bad inputs that only need a message (truncated, zero bytes, text, bombs, extreme aspect, oversize by
metadata) are in tests/test_e2e_errors.py.
"""

from __future__ import annotations

import io
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from PIL import ExifTags, Image

from kontext.adapters.http.download import CHUNK_SIZE
from tests.harness import World, decode, inverted, job_states, make_image, mean_abs_diff
from tests.pixels import level, pixel

RED, GREEN, BLUE = (220, 20, 20), (20, 200, 20), (20, 20, 220)
#: Byte strings that only occur in the sources' metadata (EXIF, GPS, XMP, ICC, comments, PNG text).
METADATA_NEEDLES = (
    b"Exif\x00",
    b"SecretCam",
    b"ASCII\x00\x00\x00GPS",
    b"xmpmeta",
    b"GPSLatitude",
    b"ICC_PROFILE",
    b"secret comment",
    b"eXIf",
    b"tEXt",
    b"iTXt",
    b"zTXt",
    b"iCCP",
)
METADATA_KEYS = {"exif", "icc_profile", "xmp", "comment", "photoshop", "adobe", "transparency"}


def encode(im: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def close(actual: tuple[int, ...], expected: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(a - e) <= tol for a, e in zip(actual, expected, strict=True))


# --- the corpus -------------------------------------------------------------------------------------


def animated(fmt: str, **kwargs: Any) -> bytes:
    frames = [Image.new("RGB", (120, 90), c) for c in (RED, GREEN, BLUE)]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=80, loop=0, **kwargs)


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (128, 96), (255, 0, 0, 0)), "JPEG", quality=95)  # pure cyan


def grey16_png() -> bytes:
    """Four 64x64 blocks of 16-bit grey 0, 1000, 32768, 65535 (clipping would make 3 of them white)."""
    row = b"".join(struct.pack("<H", v) * 64 for v in (0, 1000, 32768, 65535))
    data = encode(Image.frombytes("I;16", (256, 64), row * 64, "raw", "I;16"), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    return data


def palette_trns_png() -> bytes:
    im = Image.new("P", (128, 64), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.paste(1, (64, 0, 128, 64))
    return encode(im, "PNG", transparency=0)  # left half fully transparent, right half opaque blue


def exif_gps_jpeg() -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "SecretCam"
    exif[ExifTags.IFD.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (51.0, 30.0, 12.5),
        ExifTags.GPS.GPSLongitudeRef: "W",
        ExifTags.GPS.GPSLongitude: (0.0, 7.0, 39.0),
        ExifTags.GPS.GPSProcessingMethod: b"ASCII\x00\x00\x00GPS",
    }
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><exif:GPSLatitude>51,30N</exif:GPSLatitude></x:xmpmeta>'
    data = encode(
        Image.open(io.BytesIO(make_image(256, 192))),
        "JPEG",
        quality=95,
        exif=exif,
        xmp=xmp,
        comment=b"secret comment",
    )
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(ExifTags.IFD.GPSInfo), "the source has GPS"
    return data


def check_first_frame(hosted: Image.Image, result: Image.Image) -> None:
    assert close(pixel(hosted.convert("RGB"), (60, 45)), RED), "the first frame is the one edited"
    assert close(pixel(result.convert("RGB"), (60, 45)), tuple(255 - c for c in RED))


def check_cmyk(hosted: Image.Image, result: Image.Image) -> None:
    assert hosted.mode == "RGB"
    assert close(pixel(hosted, (64, 48)), (0, 255, 255))


def check_grey16(hosted: Image.Image, result: Image.Image) -> None:
    grey = hosted.convert("L")
    values = [level(grey, (64 * i + 32, 32)) for i in range(4)]
    assert all(abs(g - w) <= 4 for g, w in zip(values, (0, 4, 128, 255), strict=True)), values


def check_palette_alpha(hosted: Image.Image, result: Image.Image) -> None:
    assert hosted.format == "PNG" and hosted.mode == "RGBA"
    assert pixel(hosted, (20, 32))[3] == 0 and pixel(hosted, (100, 32)) == (0, 0, 255, 255)
    assert result.mode == "RGBA" and pixel(result, (20, 32))[3] == 0, "the alpha survives the edit"


def check_same_picture(source: bytes) -> Callable[[Image.Image, Image.Image], None]:
    def check(hosted: Image.Image, result: Image.Image) -> None:
        assert mean_abs_diff(hosted, decode(source)) < 6
        assert mean_abs_diff(result, inverted(decode(source))) < 8

    return check


@dataclass(frozen=True)
class Case:
    data: bytes
    filename: str
    content_type: str | None
    check: Callable[[Image.Image, Image.Image], None]


_MISLABELLED = make_image(320, 240, "JPEG", quality=95)
_EXIF = exif_gps_jpeg()
CORPUS = {
    # the name says PNG, Discord's content type says GIF, the bytes are a JPEG
    "jpeg-named-png-typed-gif": Case(
        _MISLABELLED, "photo.png", "image/gif", check_same_picture(_MISLABELLED)
    ),
    "animated-gif": Case(animated("GIF"), "anim.gif", "image/gif", check_first_frame),
    "animated-webp": Case(animated("WEBP", lossless=True), "anim.webp", "image/webp", check_first_frame),
    "cmyk-jpeg": Case(cmyk_jpeg(), "print.jpg", "image/jpeg", check_cmyk),
    "16-bit-png": Case(grey16_png(), "scan.png", "image/png", check_grey16),
    "palette-with-transparency": Case(palette_trns_png(), "logo.png", "image/png", check_palette_alpha),
    "exif-gps-xmp": Case(_EXIF, "holiday.jpg", "image/jpeg", check_same_picture(_EXIF)),
}


def assert_clean_hosted_copy(hosted: bytes, source: bytes) -> Image.Image:
    """Re-encoded by us, or (a clean JPEG that needs no change, in a server without a moderation
    log) the user's own bytes: JPEG or PNG, one frame, no metadata of any kind."""
    if hosted == source:
        assert source.startswith(b"\xff\xd8\xff"), "only a clean JPEG is ever passed on as it is"
    assert hosted.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"))
    for needle in METADATA_NEEDLES:
        assert needle not in hosted, needle
    image = decode(hosted)
    assert getattr(image, "n_frames", 1) == 1
    assert len(image.getexif()) == 0
    assert not METADATA_KEYS & set(image.info), image.info.keys()
    assert not getattr(image, "text", {}), "no PNG text chunks"
    return image


@pytest.mark.parametrize("name", list(CORPUS))
async def test_odd_inputs_are_normalised_and_edited(world: World, name: str) -> None:
    case = CORPUS[name]
    await world.start_bot()
    inter = await world.edit(case.data, filename=case.filename, content_type=case.content_type)
    result = await world.result_of(inter)

    [upload] = [u for u in world.apimart.uploads if u.status == 200]
    assert upload.data is not None
    [submission] = world.apimart.submissions
    assert submission.json["image_urls"] == [upload.url], "the API was given our hosted copy"
    fetched = [r for r in world.apimart.requests if r.endpoint == "file"]
    assert len(fetched) == 1 and upload.url and upload.url.endswith(fetched[0].path)
    hosted = assert_clean_hosted_copy(upload.data, case.data)
    [attachment] = result.attachments
    case.check(hosted, decode(attachment.data))


# --- inputs that lie about their size -----------------------------------------------------------------


class CountingSession:
    """Wraps the runner's download session and counts every body byte the bot actually consumed."""

    def __init__(self, real: aiohttp.ClientSession) -> None:
        self.real = real
        self.bytes_read = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def get(self, *args: Any, **kwargs: Any) -> aiohttp.ClientResponse:
        response = await self.real.get(*args, **kwargs)
        response.content = _CountingStream(response.content, self)  # type: ignore[assignment]
        return response


class _CountingStream:
    def __init__(self, inner: aiohttp.StreamReader, owner: CountingSession) -> None:
        self.inner = inner
        self.owner = owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def _counted(self, size: int) -> AsyncIterator[bytes]:
        async for chunk in self.inner.iter_chunked(size):
            self.owner.bytes_read += len(chunk)
            yield chunk

    def iter_chunked(self, size: int) -> AsyncIterator[bytes]:
        return self._counted(size)


@pytest.fixture
async def streaming_server() -> AsyncIterator[tuple[str, list[int]]]:
    """An HTTP server streaming 8 MiB of "image" with chunked encoding and no Content-Length."""
    sent: list[int] = [0]

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b"\x89PNG\r\n\x1a\n" + bytes(65536 - 8)
        try:
            while sent[0] < 8 * 1024 * 1024:
                await response.write(chunk)
                sent[0] += len(chunk)
            await response.write_eof()
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass
        return response

    app = web.Application()
    app.router.add_get("/big.png", big)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/big.png", sent
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("served", ["cdn-with-content-length", "chunked-without-length"])
async def test_attachment_lying_about_its_size_is_refused_within_the_cap(
    world: World, streaming_server: tuple[str, list[int]], served: str
) -> None:
    """Discord says 900 bytes; the real file is 3-8 MiB, over MAX_INPUT_MB=1. The capped download refuses
    it with the too-large message and the bot never consumes more than the cap plus one chunk."""
    bot = await world.start_bot(MAX_INPUT_MB="1")
    counter = CountingSession(bot.backend.runner.ports.downloader.session)
    bot.backend.runner.ports.downloader.session = counter
    cap = 1024 * 1024
    if served == "cdn-with-content-length":
        real = 3 * cap
        payload = world.discord.add_attachment(
            b"\x89PNG\r\n\x1a\n" + bytes(real - 8), "big.png", "image/png", size=900
        )
    else:
        url, _sent = streaming_server
        payload = {"id": "4242", "filename": "big.png", "size": 900, "url": url, "proxy_url": url}
        payload["content_type"] = "image/png"
    inter = await world.discord.slash(
        "edit",
        {"prompt": "make it blue"},
        attachments={"image": payload},
        user_id=world.user.id,
        guild_id=world.guild.id,
        channel_id=world.channel.id,
    )
    text = await world.failure_of(inter)
    assert "too large" in text and "under 1 MB" in text
    assert inter.callback_type == 5, "accepted from the (lying) metadata, refused by the capped download"
    assert counter.bytes_read <= cap + CHUNK_SIZE, counter.bytes_read
    if served == "cdn-with-content-length":
        assert counter.bytes_read == 0, "a declared Content-Length over the cap is refused before reading"
        assert "too large (3.0 MB)" in text
    else:
        assert counter.bytes_read > cap - CHUNK_SIZE, "the stream was really read up to the cap"
        assert "too large (> 1 MB)" in text, text
    assert world.apimart.uploads == [] and world.apimart.submissions == []
    await bot.backend.runner.wait_idle()
    assert list(job_states(world.data_dir).values()) == ["failed"]
