"""Image normalisation figures: inline and through the sandbox, the process hop, event-loop lag,
and what hostile files cost.

    python bench/image_bench.py [--smoke] [--repeat N] [--json FILE]

Prints, never asserts (machines are noisy); ``--json FILE`` also writes the figures (stable keys,
listed below). Inputs are generated here (photo-like: gradients, a fractal and noise; the hostile
files of tests/hostile.py), so results vary a little with the machine, not with the data.

Normalisation is timed as the bot does it by default, with no moderation log: no thumbnail
(``jpeg.sandbox_thumbnail_ms_median``: with one).

Keys: ``{jpeg,png}.{megapixels,mb,inline_ms_median,inline_ms_best,inline_cpu_ms,sandbox_ms_median,
sandbox_ms_best,sandbox_cpu_ms,hop_ms}``, ``jpeg.sandbox_thumbnail_ms_median``,
``tiny.{inline_ms,sandbox_ms_median,sandbox_ms_best,worker_cpu_ms,hop_ms}``, ``worker_start_ms``,
``concurrent.{sandbox_ms,sandbox_max_lag_ms,inline_ms,inline_max_lag_ms}``, ``hostile.<name>.ms``,
``kill.{timeout_s,ms}``. ``hop_ms`` is the sandbox's median minus the inline median: what the
process hop adds to one image (on a busy machine it also holds the wait for a CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli import repeat_main

from kontext.adapters.images import structure
from kontext.adapters.images.processing import ImageLimits, normalise_image
from kontext.adapters.images.sandbox import ImageSandbox, SandboxLimits
from kontext.domain.errors import ImageError

# Every sandbox worker re-runs this script's top level as it starts: keep it to modules the fork
# server already has (kontext, Pillow); the hostile-file generators are imported when used.

LIMITS = ImageLimits(max_bytes=200 * 1024 * 1024, max_pixels=50_000_000, target_pixels=2_000_000)
FIGURES: dict[str, float] = {}


def photo(width: int, height: int) -> Image.Image:
    size = (width, height)
    r = Image.linear_gradient("L").resize(size)
    g = Image.effect_mandelbrot(size, (-2.2, -1.2, 1.0, 1.2), 64)
    b = Image.radial_gradient("L").resize(size)
    noise = Image.effect_noise(size, 24)
    return Image.merge("RGB", (Image.blend(r, noise, 0.3), g, Image.blend(b, noise, 0.3)))


def encode(im: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def inline_times(data: bytes, repeat: int, *, thumbnail: bool = False) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds of ``normalise_image`` in this process, ``repeat`` times."""
    walls, cpus = [], []
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        normalise_image(data, LIMITS, thumbnail=thumbnail)
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


async def sandbox_times(
    box: ImageSandbox, data: bytes, repeat: int, *, thumbnail: bool = False
) -> tuple[list[float], list[float]]:
    """Sequential jobs, each given a ready worker (the steady state: spares are started ahead).
    Wall-clock seconds, and the CPU seconds each worker used (its start, the request, the work)."""
    walls, cpus = [], []
    for _ in range(repeat):
        await wait_for(lambda: box.ready == box.limits.workers)
        cpu_before = box.metrics.value("kontext_image_worker_cpu_seconds_total")
        started = time.perf_counter()
        await box.normalise(data, LIMITS, thumbnail=thumbnail)
        walls.append(time.perf_counter() - started)
        cpus.append(box.metrics.value("kontext_image_worker_cpu_seconds_total") - cpu_before)
    return walls, cpus


async def wait_for(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.perf_counter() + seconds
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("sandbox workers did not start")
        await asyncio.sleep(0.005)


async def loop_lag(run: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """Run ``run()`` while a 1 ms ticker measures the loop's worst lag; (lag, elapsed) in seconds."""
    lags: list[float] = []

    async def ticker() -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - before - 0.001)

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    await run()
    elapsed = time.perf_counter() - started
    tick.cancel()
    return max(lags), elapsed


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


async def per_image(box: ImageSandbox, inputs: dict[str, bytes], repeat: int) -> None:
    for kind, data in inputs.items():
        inline, inline_cpu = inline_times(data, repeat)
        boxed, boxed_cpu = await sandbox_times(box, data, repeat)
        figures = {
            "inline_ms_median": ms(statistics.median(inline)),
            "inline_ms_best": ms(min(inline)),
            "inline_cpu_ms": ms(statistics.median(inline_cpu)),
            "sandbox_ms_median": ms(statistics.median(boxed)),
            "sandbox_ms_best": ms(min(boxed)),
            "sandbox_cpu_ms": ms(statistics.median(boxed_cpu)),
            "hop_ms": ms(statistics.median(boxed) - statistics.median(inline)),
        }
        if kind == "jpeg":  # with a moderation log, the worker also makes the log's thumbnail
            with_thumbnail, _ = await sandbox_times(box, data, repeat, thumbnail=True)
            figures["sandbox_thumbnail_ms_median"] = ms(statistics.median(with_thumbnail))
        FIGURES.update({f"{kind}.{key}": value for key, value in figures.items()})
        print(
            f"normalise {kind:4s} {FIGURES[f'{kind}.megapixels']:g} MP ({FIGURES[f'{kind}.mb']:.1f} MB): "
            f"inline {figures['inline_ms_median']:4.0f} ms (best {figures['inline_ms_best']:.0f}, "
            f"CPU {figures['inline_cpu_ms']:.0f}); sandbox {figures['sandbox_ms_median']:4.0f} ms "
            f"(best {figures['sandbox_ms_best']:.0f}, worker CPU {figures['sandbox_cpu_ms']:.0f}): "
            f"hop {figures['hop_ms']:+.0f} ms"
            + (
                f"; with a thumbnail {figures['sandbox_thumbnail_ms_median']:.0f} ms"
                if "sandbox_thumbnail_ms_median" in figures
                else ""
            )
        )


async def hop(box: ImageSandbox, repeat: int) -> None:
    """The process hop alone: a tiny image (the work itself is ~0.2 ms), and a worker start."""
    tiny = encode(photo(64, 64), "PNG")
    inline = statistics.median(inline_times(tiny, repeat * 4)[0])
    walls, cpus = await sandbox_times(box, tiny, repeat * 4)
    starts = []
    for _ in range(repeat):
        started = time.perf_counter()
        worker = await box._new_worker()  # what a job waits for when no spare is ready
        starts.append(time.perf_counter() - started)
        box._retire(worker)
    FIGURES.update(
        {
            "tiny.inline_ms": ms(inline),
            "tiny.sandbox_ms_median": ms(statistics.median(walls)),
            "tiny.sandbox_ms_best": ms(min(walls)),
            "tiny.worker_cpu_ms": ms(statistics.median(cpus)),
            "tiny.hop_ms": ms(statistics.median(walls) - inline),
            "worker_start_ms": ms(statistics.median(starts)),
        }
    )
    median = ms(statistics.median(walls))
    print(
        f"process hop (64x64 PNG): inline {ms(inline):.1f} ms; sandbox median {median:.1f} ms"
        f" (best {ms(min(walls)):.1f}, worker CPU {ms(statistics.median(cpus)):.1f}); a worker start when no "
        f"spare is ready: {ms(statistics.median(starts)):.1f} ms"
    )


async def concurrent(box: ImageSandbox, inputs: list[bytes]) -> None:
    async def through_sandbox() -> None:
        await asyncio.gather(*(box.normalise(data, LIMITS, owner=n) for n, data in enumerate(inputs)))

    await wait_for(lambda: box.ready == box.limits.workers)
    lag, elapsed = await loop_lag(through_sandbox)
    FIGURES.update({"concurrent.sandbox_ms": ms(elapsed), "concurrent.sandbox_max_lag_ms": ms(lag)})
    label = f"{len(inputs)} at once, sandbox ({box.limits.workers} workers):"
    print(f"{label:36s} {elapsed * 1000:6.0f} ms, max loop lag {lag * 1000:5.1f} ms")

    async def inline() -> None:
        for data in inputs:
            normalise_image(data, LIMITS)  # deliberately on the loop, for comparison
            await asyncio.sleep(0)

    lag, elapsed = await loop_lag(inline)
    FIGURES.update({"concurrent.inline_ms": ms(elapsed), "concurrent.inline_max_lag_ms": ms(lag)})
    label = f"{len(inputs)} inline on the event loop:"
    print(f"{label:36s} {elapsed * 1000:6.0f} ms, max loop lag {lag * 1000:5.1f} ms")


def hostile() -> Any:
    from tests import hostile as generators

    return generators


HOSTILE: dict[str, Callable[[], bytes]] = {
    "scans_60k": lambda: hostile().scan_repeat_jpeg(60_000),
    "scans_1360k": lambda: hostile().scan_repeat_jpeg(1_360_000),
    "app1_4750k": lambda: hostile().marker_flood_jpeg(4_750_000),
    "gif_comment_9500k": lambda: hostile().gif_comment_flood(9_500_000),
    "png_text_1300k": lambda: hostile().png_text_flood(1_300_000),
    "png16_49mp": lambda: hostile().png_16bit(),
}


async def hostile_files(box: ImageSandbox, names: list[str]) -> None:
    for name in names:
        data = HOSTILE[name]()
        await wait_for(lambda: box.ready == box.limits.workers)
        started = time.perf_counter()
        try:
            out = await box.normalise(data, LIMITS)
            outcome = f"normalised to {out.width}x{out.height}"
        except ImageError as exc:
            outcome = f"refused: {exc.code}"
        elapsed = time.perf_counter() - started
        FIGURES[f"hostile.{name}.ms"] = ms(elapsed)
        print(f"hostile {name:18s} {len(data) / 1e6:5.1f} MB: {elapsed * 1000:6.0f} ms, {outcome}")


async def kill(timeout_s: float) -> None:
    """Without the pre-check, the 60,000-scan JPEG decodes for ~10 s: how precisely is it killed?"""
    box = ImageSandbox(SandboxLimits(timeout_s=timeout_s), structure_limits=structure.UNLIMITED)
    box.start()
    try:
        data = hostile().scan_repeat_jpeg(60_000)
        await wait_for(lambda: box.ready == box.limits.workers)
        started = time.perf_counter()
        try:
            await box.normalise(data, LIMITS)
        except ImageError as exc:
            outcome = exc.code
        elapsed = time.perf_counter() - started
    finally:
        await box.close()
    FIGURES.update({"kill.timeout_s": timeout_s, "kill.ms": ms(elapsed)})
    print(f"60,000-scan JPEG, no pre-check, timeout {timeout_s:g} s: {outcome} after {elapsed * 1000:.0f} ms")


async def run(args: argparse.Namespace) -> None:
    width, height = (2000, 1500) if args.smoke else (4000, 3000)
    im = photo(width, height)
    inputs = {"jpeg": encode(im, "JPEG", quality=90), "png": encode(im, "PNG", compress_level=6)}
    for kind, data in inputs.items():
        FIGURES.update({f"{kind}.megapixels": width * height / 1e6, f"{kind}.mb": round(len(data) / 1e6, 2)})
    print(f"CPUs: {os.cpu_count()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    box = ImageSandbox(SandboxLimits())  # the defaults: 2 workers, 10 s, 512 MiB
    box.start()
    try:
        await wait_for(lambda: box.ready == box.limits.workers)
        await box.normalise(inputs["jpeg"], LIMITS)  # warm-up
        await per_image(box, inputs, args.repeat)
        await hop(box, args.repeat)
        await concurrent(box, [inputs["jpeg"], inputs["png"], inputs["jpeg"], inputs["png"]])
        names = ["scans_60k", "app1_4750k"] if args.smoke else list(HOSTILE)
        await hostile_files(box, names)
    finally:
        await box.close()
    await kill(1.0 if args.smoke else 2.0)


def main() -> None:
    repeat_main(
        __doc__, run, FIGURES, repeat=5, smoke_repeat=2, smoke_help="quick run for CI: 3 MP inputs, 2 repeats"
    )


if __name__ == "__main__":
    main()
