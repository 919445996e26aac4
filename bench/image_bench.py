"""Image normalisation figures: time per image and event-loop lag with the worker pool.

    python bench/image_bench.py [--smoke] [--repeat N] [--threads N]

Prints, never asserts (machines are noisy). Inputs are generated here (photo-like: gradients, a fractal
and noise), so results vary a little with the machine, not with the data.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kontext.adapters.images.processing import ImageLimits, normalise_image
from kontext.adapters.images.worker import ImageWorker

LIMITS = ImageLimits(max_bytes=200 * 1024 * 1024, max_pixels=50_000_000, target_pixels=2_000_000)
#: What ``--json FILE`` writes (keys in bench/README.md; run_all.py prefixes them with "image.").
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


def time_inline(data: bytes, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        normalise_image(data, LIMITS)
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times)


async def loop_lag(run: object) -> tuple[float, float]:
    """Run the coroutine function ``run`` while a 1 ms ticker measures the loop's worst lag."""
    lags: list[float] = []

    async def ticker() -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - before - 0.001)

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    await run()  # type: ignore[operator]
    elapsed = time.perf_counter() - started
    tick.cancel()
    return max(lags), elapsed


async def concurrent(inputs: list[bytes], threads: list[int]) -> None:
    for count in threads:
        worker = ImageWorker(max_threads=count)
        try:

            async def through_worker(worker: ImageWorker = worker) -> None:
                await asyncio.gather(*(worker.normalise(data, LIMITS) for data in inputs))

            await through_worker()  # warm up the threads
            lag, elapsed = await loop_lag(through_worker)
        finally:
            worker.close()
        FIGURES[f"worker_{count}.ms"] = elapsed * 1000
        FIGURES[f"worker_{count}.max_lag_ms"] = lag * 1000
        label = f"{len(inputs)} at once, ImageWorker({count}):"
        print(f"{label:32s} {elapsed * 1000:6.0f} ms, max loop lag {lag * 1000:5.1f} ms")

    async def inline() -> None:
        for data in inputs:
            normalise_image(data, LIMITS)  # deliberately on the loop, for comparison
            await asyncio.sleep(0)

    lag, elapsed = await loop_lag(inline)
    FIGURES.update({"inline.ms": elapsed * 1000, "inline.max_lag_ms": lag * 1000})
    label = f"{len(inputs)} inline on the event loop:"
    print(f"{label:32s} {elapsed * 1000:6.0f} ms, max loop lag {lag * 1000:5.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", default="1,2", help="comma-separated ImageWorker sizes to try")
    parser.add_argument("--smoke", action="store_true", help="quick run for CI: 3 MP inputs, 2 repeats")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    width, height = (2000, 1500) if args.smoke else (4000, 3000)
    if args.smoke:
        args.repeat = min(args.repeat, 2)

    im = photo(width, height)
    jpeg = encode(im, "JPEG", quality=90)
    png = encode(im, "PNG", compress_level=6)
    jpeg_name, png_name = f"{width * height / 1e6:g} MP JPEG", f"{width}x{height} PNG"
    print(f"inputs: {jpeg_name} {len(jpeg) / 1e6:.1f} MB, {png_name} {len(png) / 1e6:.1f} MB")
    for name, data in ((jpeg_name, jpeg), (png_name, png)):
        out = normalise_image(data, LIMITS)
        median, best = time_inline(data, args.repeat)
        kind = name.split()[-1].lower()  # "jpeg" or "png"
        FIGURES[f"{kind}.megapixels"] = width * height / 1e6
        FIGURES[f"{kind}.normalise_ms_median"] = median * 1000
        FIGURES[f"{kind}.normalise_ms_best"] = best * 1000
        print(
            f"normalise {name:14s}: median {median * 1000:6.0f} ms, best {best * 1000:6.0f} ms"
            f" -> {out.extension} {out.width}x{out.height} {len(out.data) / 1e6:.2f} MB"
        )
    print(f"CPUs: {os.cpu_count()}")
    asyncio.run(concurrent([jpeg, png, jpeg, png], [int(n) for n in args.threads.split(",")]))
    if args.json:
        Path(args.json).write_text(json.dumps(FIGURES, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
