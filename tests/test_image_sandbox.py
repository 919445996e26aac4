"""kontext.adapters.images.sandbox: image work in killable worker processes.

Every image is handled by a fresh process with a wall-clock timeout, a CPU-time limit and an
address-space limit; an overrunning, crashing or lying worker ends in a typed error for that job
only, and the pool goes on. One owner never holds every worker. Hostile files are generated
(tests/hostile.py); misbehaving workers come from tests/sandbox_targets.py.
"""

from __future__ import annotations

import asyncio
import io
import math
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from PIL import ExifTags, Image

from kontext.adapters.images import processing, sandbox, structure, wire
from kontext.adapters.images.sandbox import ImageSandbox, SandboxLimits
from kontext.domain.errors import (
    BrokenImage,
    ImageBomb,
    ImageStructure,
    ImageTooHeavy,
    ImageTooSlow,
    NotAnImage,
    ResultError,
    ShuttingDown,
)
from kontext.domain.images import ImageLimits
from tests import hostile, sandbox_targets
from tests.waiting import eventually

LIMITS = ImageLimits()
MakeSandbox = Callable[..., ImageSandbox]


@pytest.fixture
async def make_sandbox() -> AsyncIterator[MakeSandbox]:
    made: list[ImageSandbox] = []

    def make(*, structure_limits: Any = None, test_ops: bool = False, **limits: Any) -> ImageSandbox:
        target = sandbox_targets.serve if test_ops else sandbox.child.serve
        box = ImageSandbox(SandboxLimits(**limits), structure_limits=structure_limits, target=target)
        box.start()
        made.append(box)
        return box

    try:
        yield make
    finally:
        for box in made:
            await box.close()


def encode(im: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def photo_12mp() -> bytes:
    return encode(Image.linear_gradient("L").resize((4000, 3000)).convert("RGB"), "JPEG", quality=90)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# --- the work itself ---------------------------------------------------------------------------------


async def test_normalising_in_a_worker_gives_the_same_image_as_inline(make_sandbox: MakeSandbox) -> None:
    data = photo_12mp()
    box = make_sandbox()
    out = await box.normalise(data, LIMITS, owner=1)
    inline = processing.normalise_image(data, LIMITS)
    assert out == inline, "same bytes, same thumbnail, same fields"
    assert out.dct_eighths == 3, "a 12 MP JPEG is decoded at 3/8 scale (DCT) inside the sandbox"
    assert len(out.thumbnail) < 30_000


async def test_a_worker_is_a_fresh_limited_low_priority_process(make_sandbox: MakeSandbox) -> None:
    box = make_sandbox(test_ops=True, timeout_s=2.5, memory_bytes=300 * 1024 * 1024)
    await eventually(lambda: box.ready == 2, 20)
    first, _ = await box.run("facts", {}, b"", owner=1, reply_cap=0)
    second, _ = await box.run("facts", {}, b"", owner=1, reply_cap=0)
    assert first["pid"] != second["pid"], "one job per process"
    assert os.getpid() not in (first["pid"], first["ppid"]), "forked by the fork server, not by the bot"
    assert first["nice"] >= os.nice(0) + 5
    assert first["cpu"] == [3, 4], "RLIMIT_CPU: the timeout rounded up; SIGKILL a second later"
    soft, hard = first["as"]
    assert soft == hard and 300 * 1024 * 1024 < soft < 2 * 1024**3
    assert first["core"] == [0, 0]
    assert first["oom_score_adj"] == "1000", "the OOM killer takes a worker before the bot"
    assert first["rehearsal_images"] == 1, "the fork server left it a JPEG to rehearse on while a spare"
    targets = [target for fd, target in first["fds"].items() if int(fd) > 2]  # not stdin/out/err
    assert sum(t.startswith("socket:") for t in targets) == 1, "its own connection, none of the bot's"
    assert not [t for t in targets if t.startswith("/") and t != "/dev/null"], "no file of the bot's"
    await eventually(lambda: gone(first["pid"]) and gone(second["pid"]), 5)


async def test_typed_errors_cross_the_process_boundary(make_sandbox: MakeSandbox) -> None:
    box = make_sandbox()
    with pytest.raises(NotAnImage) as not_image:
        await box.normalise(b"%PDF-1.7 not an image", LIMITS)
    assert not_image.value.params == {"kind": "pdf"}
    with pytest.raises(ImageBomb) as bomb:
        await box.normalise(hostile.png_chunk(b"x", b"")[:0] + _huge_png_header(), LIMITS)
    assert bomb.value.params["limit_mp"] == 50.0
    with pytest.raises(ImageStructure) as refused:
        await box.normalise(hostile.scan_repeat_jpeg(60_000), LIMITS)
    assert "more than 256 scans" in refused.value.detail


def _huge_png_header() -> bytes:
    import struct
    import zlib

    return (
        b"\x89PNG\r\n\x1a\n"
        + hostile.png_chunk(b"IHDR", struct.pack(">IIBBBBB", 20_000, 20_000, 8, 2, 0, 0, 0))
        + hostile.png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + hostile.png_chunk(b"IEND", b"")
    )


# --- the hostile corpus of the issue, through the sandbox with the default limits ----------------------

CORPUS: dict[str, tuple[Callable[[], bytes], type[Exception] | None]] = {
    "scan-repeat JPEG, 60,000 scans": (lambda: hostile.scan_repeat_jpeg(60_000), ImageStructure),
    "scan-repeat JPEG, 1.36 million scans": (lambda: hostile.scan_repeat_jpeg(1_360_000), ImageStructure),
    "4.75 million empty APP1": (lambda: hostile.marker_flood_jpeg(4_750_000), ImageStructure),
    "4.75 million empty COM": (lambda: hostile.marker_flood_jpeg(4_750_000, 0xFE), ImageStructure),
    "GIF of 9.5 million comment sub-blocks": (lambda: hostile.gif_comment_flood(9_500_000), ImageStructure),
    "PNG of 1.3 million text chunks": (lambda: hostile.png_text_flood(1_300_000), ImageStructure),
    "49 MP 16-bit RGB PNG": (lambda: hostile.png_16bit(), None),
    "49 MP 16-bit grey PNG": (lambda: hostile.png_16bit(colour=False), None),
}


@pytest.mark.parametrize("name", list(CORPUS))
async def test_hostile_files_end_in_a_refusal_or_a_normalised_image(
    make_sandbox: MakeSandbox, name: str
) -> None:
    make, refusal = CORPUS[name]
    data = make()
    box = make_sandbox()  # defaults: 10 s, 512 MiB, the default structure limits
    await eventually(lambda: box.ready == 2, 20)
    started = time.perf_counter()
    if refusal is None:
        out = await box.normalise(data, LIMITS, owner=7)
        assert out.width * out.height <= LIMITS.target_pixels and out.source_format == "PNG"
        assert (out.width, out.height) == (1414, 1414)
    else:
        with pytest.raises(refusal):
            await box.normalise(data, LIMITS, owner=7)
    elapsed = time.perf_counter() - started
    print(f"{name}: {len(data) / 1e6:.2f} MB, {elapsed * 1000:.0f} ms")
    assert elapsed < (1.0 if refusal else box.limits.timeout_s), elapsed


# --- what a worker can do wrong, and what the job gets --------------------------------------------------


async def test_a_decode_past_the_timeout_is_killed_and_the_pool_goes_on(make_sandbox: MakeSandbox) -> None:
    """Without the pre-check, the 60,000-scan JPEG decodes for ~10 s: the worker is killed at 1.5 s."""
    box = make_sandbox(timeout_s=1.5, structure_limits=structure.UNLIMITED)
    await eventually(lambda: box.ready == 2, 20)
    started = time.perf_counter()
    with pytest.raises(ImageTooSlow) as slow:
        await box.normalise(hostile.scan_repeat_jpeg(60_000), LIMITS, owner=1)
    elapsed = time.perf_counter() - started
    assert 1.5 <= elapsed < 3.0, elapsed
    assert "killed" in slow.value.detail and slow.value.code == "image_too_slow"
    assert box.metrics.value("kontext_image_workers_lost_total", cause="timeout") == 1
    out = await box.normalise(hostile.small_jpeg(), LIMITS, owner=1)
    assert out.width == 320


async def test_cpu_time_limit_ends_a_worker_the_bot_would_still_wait_for(make_sandbox: MakeSandbox) -> None:
    box = make_sandbox(test_ops=True, timeout_s=30, cpu_seconds=1)
    with pytest.raises(ImageTooSlow) as slow:
        await box.run("burn", {}, b"", owner=1, reply_cap=0)
    assert "CPU time" in slow.value.detail and "SIGXCPU" in slow.value.detail
    assert box.metrics.value("kontext_image_workers_lost_total", cause="timeout") == 1, "a time limit"
    assert box.metrics.value("kontext_image_workers_lost_total", cause="died") == 0


async def test_address_space_limit_refuses_a_memory_hog(make_sandbox: MakeSandbox) -> None:
    box = make_sandbox(test_ops=True, memory_bytes=64 * 1024 * 1024)
    with pytest.raises(ImageTooHeavy):
        await box.run("allocate", {}, b"", owner=1, reply_cap=0)


async def test_a_49_mp_image_beyond_a_small_memory_budget_is_too_heavy(make_sandbox: MakeSandbox) -> None:
    box = make_sandbox(memory_bytes=96 * 1024 * 1024)
    with pytest.raises(ImageTooHeavy) as heavy:
        await box.normalise(hostile.png_16bit(), LIMITS)
    assert heavy.value.code == "image_too_heavy"


@pytest.mark.parametrize(
    ("op", "error", "words"),
    [
        ("segfault", BrokenImage, "SIGSEGV"),
        ("abort", BrokenImage, "SIGABRT"),
        ("sigkill", ImageTooHeavy, "OOM killer"),
    ],
)
async def test_a_crashed_worker_fails_only_its_job(
    make_sandbox: MakeSandbox, op: str, error: type[Exception], words: str
) -> None:
    box = make_sandbox(test_ops=True)
    with pytest.raises(error) as crashed:
        await box.run(op, {}, b"", owner=1, reply_cap=0)
    assert words in str(crashed.value)
    assert (await box.normalise(hostile.small_jpeg(), LIMITS)).width == 320


@pytest.mark.parametrize("op", ["garbage", "huge"])
async def test_a_malformed_reply_is_not_trusted(make_sandbox: MakeSandbox, op: str) -> None:
    box = make_sandbox(test_ops=True)
    with pytest.raises(BrokenImage) as broken:
        await box.run(op, {}, b"", owner=1, reply_cap=1000)
    assert "malformed" in broken.value.detail


def test_reply_fields_are_checked_before_use() -> None:
    png = encode(Image.new("RGB", (8, 8)), "PNG")
    good = {
        "ok": True,
        "content_type": "image/png",
        "extension": "png",
        "width": 8,
        "height": 8,
        "source_format": "PNG",
        "letterboxed": False,
        "dct_eighths": 8,
    }
    assert sandbox._normalised(good, [png, b""]).width == 8
    for bad in ({"width": -1}, {"width": True}, {"dct_eighths": 5}, {"content_type": "text/html"}):
        with pytest.raises(BrokenImage):
            sandbox._normalised({**good, **bad}, [png, b""])
    with pytest.raises(BrokenImage, match="not the image/png"):
        sandbox._normalised(good, [b"<html>", b""])
    with pytest.raises(ResultError):
        sandbox._fitted(
            {**good, "unchanged": False, "reencoded": False, "cleaned": True}, [b"GIF89a", b""], png
        )


def test_only_known_errors_and_plain_parameters_come_back() -> None:
    error = wire.error_from(
        {"error": "SystemExit", "detail": "x" * 5000, "params": {"a": {"nested": 1}, "b": 2}}
    )
    assert type(error) is BrokenImage and error.params == {"b": 2} and len(error.detail) < 2100
    assert type(wire.error_from({"error": "ImageBomb", "params": {"megapixels": 99}})) is ImageBomb


# --- fairness, cancellation, shutdown -------------------------------------------------------------------


async def test_one_owner_never_holds_every_worker(make_sandbox: MakeSandbox) -> None:
    box = make_sandbox(test_ops=True, workers=2)
    assert box.limits.per_owner == 1
    hogs = [asyncio.create_task(box.run("hold", {}, b"", owner=666, reply_cap=0)) for _ in range(2)]
    await eventually(lambda: box.running == 1 and box.scheduler.waiting_count == 1, 20)
    held = box.pids()
    started = time.perf_counter()
    out = await box.normalise(hostile.small_jpeg(), LIMITS, owner=1)
    assert out.width == 320 and time.perf_counter() - started < 5
    assert box.running == 1, "the other owner's job ran beside the hog, not after it"
    for task in hogs:
        task.cancel()
    await asyncio.gather(*hogs, return_exceptions=True)
    await eventually(lambda: all(gone(pid) for pid in held - box.pids()), 5)


async def test_cancelling_a_job_kills_its_worker_at_once(make_sandbox: MakeSandbox) -> None:
    box = make_sandbox(test_ops=True, timeout_s=60)
    job = asyncio.create_task(box.run("burn", {}, b"", owner=1, reply_cap=0))
    await eventually(lambda: box.running == 1, 20)
    [pid] = [p for p in box.pids() if p not in {w.pid for w in box._spares}]
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    await eventually(lambda: gone(pid), 5)
    assert box.running == 0


async def test_close_kills_every_worker_and_refuses_new_work(make_sandbox: MakeSandbox) -> None:
    box = make_sandbox(test_ops=True)
    job = asyncio.create_task(box.run("hold", {}, b"", owner=1, reply_cap=0))
    await eventually(lambda: box.running == 1 and box.ready == 2, 20)
    pids = box.pids()
    await box.close()
    with pytest.raises(ShuttingDown):
        await job
    with pytest.raises(ShuttingDown):
        await box.normalise(hostile.small_jpeg(), LIMITS)
    await eventually(lambda: all(gone(pid) for pid in pids), 5)


async def test_a_worker_that_never_says_it_is_ready_is_killed() -> None:
    """A spare counts only once it has rehearsed and sent its ready byte; one that never does is
    killed at the timeout, and a job that had to wait for it is told (it never gets a half-ready
    worker)."""
    box = ImageSandbox(SandboxLimits(workers=1, timeout_s=1), target=sandbox_targets.never_ready)
    box.start()
    try:
        with pytest.raises(OSError, match="did not get ready"):
            await box.normalise(hostile.small_jpeg(), LIMITS)
        assert box.ready == 0 and not box.pids()
    finally:
        await box.close()


async def test_a_spare_that_died_is_skipped(make_sandbox: MakeSandbox) -> None:
    box = make_sandbox(workers=1)
    await eventually(lambda: box.ready == 1, 20)
    [pid] = box.pids()
    os.kill(pid, 9)  # the OOM killer, say, picked an idle worker
    await eventually(lambda: not box._spares[0].alive, 5)
    assert (await box.normalise(hostile.small_jpeg(), LIMITS)).width == 320


async def test_a_spare_that_died_unnoticed_costs_the_job_nothing(make_sandbox: MakeSandbox) -> None:
    """The spare is killed and gone before the event loop has seen its sentinel: the request finds
    a closed connection, and the job simply gets another worker."""
    box = make_sandbox(workers=1)
    await eventually(lambda: box.ready == 1, 20)
    [pid] = box.pids()
    os.kill(pid, 9)
    deadline = time.monotonic() + 10
    while not gone(pid) and time.monotonic() < deadline:  # no await: the loop must not notice yet
        os.sched_yield()
    assert box._spares[0].alive, "not noticed yet"
    assert (await box.normalise(hostile.small_jpeg(), LIMITS)).width == 320
    assert pid not in box.pids()
    assert box.metrics.value("kontext_image_workers_lost_total", cause="dead_on_arrival") == 1


async def test_the_event_loop_keeps_running_while_workers_decode(make_sandbox: MakeSandbox) -> None:
    box = make_sandbox()
    data = photo_12mp()
    await box.normalise(data, LIMITS)
    lags: list[float] = []

    async def ticker() -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.002)
            lags.append(time.perf_counter() - before - 0.002)

    tick = asyncio.create_task(ticker())
    try:
        await asyncio.gather(*(box.normalise(data, LIMITS, owner=n) for n in range(4)))
    finally:
        tick.cancel()
    print(f"max event-loop lag with 4 x 12 MP through the sandbox: {max(lags) * 1000:.1f} ms")
    assert max(lags) < 0.25


# --- results --------------------------------------------------------------------------------------------


async def test_a_clean_result_comes_back_as_the_same_bytes(make_sandbox: MakeSandbox) -> None:
    box = make_sandbox()
    data = encode(Image.new("RGB", (300, 200), (10, 20, 30)), "PNG")
    fitted = await box.fit_result(data, 10**6, max_pixels=10**7, owner=1)
    assert fitted.data is data, "not copied back from the worker"
    assert not fitted.cleaned and not fitted.reencoded and fitted.thumbnail.startswith(b"\xff\xd8")


async def test_a_result_with_exif_is_cleaned_in_the_sandbox(make_sandbox: MakeSandbox) -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.IFD.GPSInfo] = {ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (1.0, 2.0, 3.0)}
    data = encode(Image.new("RGB", (200, 300), (200, 10, 10)), "JPEG", exif=exif)
    fitted = await make_sandbox().fit_result(data, 10**6, max_pixels=10**7)
    out = Image.open(io.BytesIO(fitted.data))
    assert fitted.cleaned and out.size == (300, 200) and len(out.getexif()) == 0


async def test_result_failures_in_the_sandbox_are_result_errors(make_sandbox: MakeSandbox) -> None:
    box = make_sandbox(timeout_s=1, structure_limits=structure.UNLIMITED)
    with pytest.raises(ResultError) as slow:
        await box.fit_result(hostile.scan_repeat_jpeg(60_000), 10**8, max_pixels=10**8)
    assert slow.value.params == {"reason": "too slow to read"} and not slow.value.private
    strict = make_sandbox()
    with pytest.raises(ResultError) as odd:
        await strict.fit_result(hostile.marker_flood_jpeg(5000), 10**8, max_pixels=10**8)
    assert odd.value.params == {"reason": "unusual file structure"}


def test_limits() -> None:
    assert SandboxLimits().per_owner == 1 and SandboxLimits(workers=4).per_owner == 3
    assert SandboxLimits(workers=1).per_owner == 1
    assert SandboxLimits(timeout_s=2.5).cpu_s == math.ceil(2.5)
    with pytest.raises(ValueError):
        SandboxLimits(workers=0)


def test_the_fork_server_preloads_what_the_main_script_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers re-run a path-run main script (``python bot.py``) as they start: the fork server
    imports it (by name) and what it imported first, so that costs a worker ~1 ms, not ~0.4 s."""
    import types

    script = types.ModuleType("__main__")
    script.__file__ = "/srv/kontext/bot.py"
    script.asyncio = asyncio  # type: ignore[attr-defined]
    script.ImageSandbox = ImageSandbox  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "__main__", script)
    assert sandbox._main_preload() == ["asyncio", "bot", "kontext.adapters.images.sandbox"]
    script.__spec__ = types.SimpleNamespace(name="pytest.__main__")  # type: ignore[assignment]
    assert sandbox._main_preload() == [], "python -m package: workers do not re-run it"
