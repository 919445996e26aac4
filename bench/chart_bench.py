"""Usage chart figures: the first chart (worker start), later charts, and the event loop meanwhile.

    python bench/chart_bench.py [--smoke] [--repeat N] [--json FILE]

Prints, never asserts (machines are noisy); ``--json FILE`` also writes the figures (stable keys,
listed in bench/README.md). Charts are 90 days of two models (the largest the command draws) in
Simplified Chinese, and 7 days in English. The event loop's lag is what a 1 ms ticker on it sees:
while the worker process draws, and, for comparison, while the same chart is drawn in a thread of
this process (matplotlib holds the GIL), and while nothing happens (the floor).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli import repeat_main

from kontext.adapters.charts import ChartRenderer, UsageChart

FIGURES: dict[str, Any] = {}
TICK_S = 0.001


def chart(days: int, locale: str) -> UsageChart:
    rng = random.Random(days)
    pro = tuple(rng.randint(0, 40) for _ in range(days))
    most = tuple(rng.randint(0, 15) for _ in range(days))
    last = datetime.date(2026, 1, 10)
    return UsageChart(
        days=tuple(last - datetime.timedelta(days=days - 1 - i) for i in range(days)),
        jobs={"flux-kontext-pro": pro, "flux-kontext-max": most},
        cost=tuple(p * 0.04 + m * 0.08 for p, m in zip(pro, most, strict=True)),
        currency="USD",
        locale=locale,
        title=f"Kontext usage, {days} days",
        jobs_label="Jobs",
        cost_label="Cost",
    )


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def cpu_s(pid: int) -> float:
    """CPU seconds a process has used (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def with_ticker(run: Callable[[], Awaitable[Any]]) -> list[float]:
    """Run ``run()`` while a ticker on this loop records how late each 1 ms sleep wakes (ms)."""
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(TICK_S)
            lags.append((time.perf_counter() - before - TICK_S) * 1000)

    task = asyncio.create_task(ticker())
    try:
        await run()
    finally:
        done.set()
        await task
    return lags


def lag_figures(lags: list[float]) -> dict[str, float]:
    ordered = sorted(lags) or [float("nan")]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "loop_lag_ms_p50": round(statistics.median(ordered), 2),
        "loop_lag_ms_p99": round(p99, 2),
        "loop_lag_ms_max": round(ordered[-1], 2),
    }


async def first_and_warm(renderer: ChartRenderer, repeat: int) -> None:
    big, small = chart(90, "zh_CN"), chart(7, "en")
    started = time.perf_counter()
    png = await renderer.render(big)
    FIGURES["first_render_ms"] = ms(time.perf_counter() - started)
    print(f"first chart (worker start, imports, fonts): {FIGURES['first_render_ms']:7.0f} ms")
    pid = renderer.pid
    assert pid is not None
    for name, data in (("render", big), ("small", small)):
        times = []
        worker_cpu, own_cpu = cpu_s(pid), time.process_time()
        for _ in range(repeat):
            started = time.perf_counter()
            png = await renderer.render(data)
            times.append(time.perf_counter() - started)
        FIGURES[name] = {
            "ms_median": ms(statistics.median(times)),
            "ms_best": ms(min(times)),
            "ms_max": ms(max(times)),
            "worker_cpu_ms": ms((cpu_s(pid) - worker_cpu) / repeat),
            "bot_cpu_ms": ms((time.process_time() - own_cpu) / repeat),
            "png_kb": round(len(png) / 1024, 1),
        }
        figures = FIGURES[name]
        print(
            f"later charts, {len(data.days):2d} days ({repeat}x): median {figures['ms_median']:5.0f} ms,"
            f" best {figures['ms_best']:5.0f}, worker CPU {figures['worker_cpu_ms']:5.0f} ms,"
            f" bot CPU {figures['bot_cpu_ms']:4.1f} ms, PNG {figures['png_kb']} KB"
        )
    FIGURES["worker_rss_mb"] = round(rss_mb(pid), 1)
    print(f"worker resident memory: {FIGURES['worker_rss_mb']} MB")


async def lag(renderer: ChartRenderer, repeat: int) -> None:
    big = chart(90, "zh_CN")

    async def in_worker() -> None:
        for _ in range(repeat):
            await renderer.render(big)

    async def in_thread() -> None:
        from kontext.adapters.charts import draw, fonts  # matplotlib, in this process

        fonts.register()
        await asyncio.to_thread(draw.render_png, big)  # warm-up: imports and font caches
        for _ in range(repeat):
            await asyncio.to_thread(draw.render_png, big)

    for name, run in (("idle", lambda: asyncio.sleep(1.0)), ("render", in_worker), ("thread", in_thread)):
        figures = lag_figures(await with_ticker(run))
        FIGURES.setdefault(name, {}).update(figures)
        print(
            f"event-loop lag, {name:6s}: p50 {figures['loop_lag_ms_p50']:5.2f} ms,"
            f" p99 {figures['loop_lag_ms_p99']:6.2f} ms, max {figures['loop_lag_ms_max']:6.2f} ms"
        )


async def run(args: argparse.Namespace) -> None:
    renderer = ChartRenderer()
    try:
        await first_and_warm(renderer, args.repeat)
        await lag(renderer, max(2, args.repeat // 2))
    finally:
        await renderer.close()


def main() -> None:
    repeat_main(
        __doc__,
        run,
        FIGURES,
        repeat=20,
        smoke_repeat=3,
        smoke_help="quick run for CI: 3 charts per measurement",
    )


if __name__ == "__main__":
    main()
