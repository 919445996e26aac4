"""kontext.adapters.images.worker: image work runs in its own threads, bounded, and never on the event loop."""

from __future__ import annotations

import asyncio
import io
import threading
import time

import pytest
from PIL import Image

from kontext.adapters.images import worker as image_worker
from kontext.adapters.images import processing as images
from kontext.domain.errors import NotAnImage
from kontext.adapters.images.worker import ImageWorker
from kontext.adapters.images.processing import ImageLimits, NormalisedImage


def big_jpeg() -> bytes:
    im = Image.linear_gradient("L").resize((4000, 3000)).convert("RGB")  # 12 MP
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


async def test_normalise_runs_off_the_loop_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []
    real = images.normalise_image

    def spy(data: bytes, limits: ImageLimits) -> NormalisedImage:
        threads.append(threading.current_thread())
        return real(data, limits)

    monkeypatch.setattr(images, "normalise_image", spy)
    data = big_jpeg()

    lags: list[float] = []

    async def ticker() -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - before - 0.005)

    worker = ImageWorker(max_threads=2)
    tick = asyncio.create_task(ticker())
    try:
        out = await worker.normalise(data, ImageLimits())
    finally:
        tick.cancel()
        worker.close()
    assert (out.width, out.height) == (1632, 1224)
    [thread] = threads
    assert thread is not threading.current_thread()
    assert thread.name.startswith("kontext-image")
    assert lags  # the loop kept ticking while the image was processed (no timing asserted)


async def test_fit_result_and_thumbnail_through_the_worker() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (600, 300), (10, 20, 30)).save(buf, "PNG")
    worker = ImageWorker()
    try:
        fitted = await worker.fit_result(buf.getvalue(), 10**6, max_pixels=10**7)
        thumb = await worker.thumbnail(buf.getvalue(), 64)
    finally:
        worker.close()
    assert (fitted.width, fitted.height, fitted.reencoded) == (600, 300, False)
    assert Image.open(io.BytesIO(thumb)).size == (64, 32)


async def test_errors_propagate() -> None:
    worker = ImageWorker()
    try:
        with pytest.raises(NotAnImage):
            await worker.normalise(b"", ImageLimits())
    finally:
        worker.close()


async def test_concurrency_is_bounded_and_cancellation_is_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    started: list[bytes] = []
    lock = threading.Lock()
    active = 0
    peak = 0

    def blocking(data: bytes, max_side: int = 256) -> bytes:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            started.append(data)
        release.wait(5)
        with lock:
            active -= 1
        return data

    monkeypatch.setattr(image_worker.images, "thumbnail", blocking)
    worker = ImageWorker(max_threads=2)
    try:
        tasks = [asyncio.create_task(worker.thumbnail(bytes([i]))) for i in range(5)]
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(started) == 2:
                break
        assert len(started) == 2 and worker.running == 2
        # cancel a running job and a queued one: the queued one never starts, the slot of the
        # running one stays taken until its thread is done.
        tasks[0].cancel()
        tasks[4].cancel()
        await asyncio.sleep(0.05)
        assert worker.running == 2 and len(started) == 2
        release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        release.set()
        worker.close()
    assert isinstance(results[0], asyncio.CancelledError) and isinstance(results[4], asyncio.CancelledError)
    assert results[1:4] == [b"\x01", b"\x02", b"\x03"]
    assert peak == 2
    assert sorted(started) == [b"\x00", b"\x01", b"\x02", b"\x03"]
    # the cancelled caller's thread finishes on its own; its slot comes back when it does
    for _ in range(200):
        if worker.running == 0:
            break
        await asyncio.sleep(0.01)
    assert worker.running == 0


async def test_closed_worker_refuses_work() -> None:
    worker = ImageWorker()
    worker.close()
    with pytest.raises(RuntimeError):
        await worker.thumbnail(b"x")


def test_max_threads_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ImageWorker(0)
