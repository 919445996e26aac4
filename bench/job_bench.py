"""End-to-end job figures: the real bot against the loopback fakes, N `/edit` jobs started at once.

    python bench/job_bench.py [--smoke] [--jobs N] [--scale F] [--seed S]

The bot is started exactly like the end-to-end tests do (:class:`tests.harness.World`,
``bot.create_bot(settings, poll_schedule=...)``, real cogs, discord.py, aiohttp and SQLite), with the
DEFAULT adaptive :class:`~kontext.domain.poll_schedule.PollSchedule` scaled by ``--scale`` and the fake's task
durations (5-40 s, estimate off by up to ±30 %) scaled by the same factor, so polls per job equal
those of real time while the run takes a twentieth of it. ``STATUS_UPDATE_INTERVAL_SECONDS`` is the
default (1.5 s) scaled the same way.

Unlike the tests, both fakes run on their own event loop in a second thread, so the loop whose lag
is measured runs only the bot (the GIL is still shared, which makes the figures pessimistic).

Prints, never asserts (machines are noisy). Phases:

1. single job on an idle bot (repeated): defer delay, time to the first status edit, overhead;
2. N jobs at once (1 MP inputs, N distinct users, MAX_CONCURRENT_JOBS=N so all run together):
   overhead per job = dispatch → result edit minus the fake task's duration, split into its parts;
   polls and Discord REST requests per job; lag of the bot's event loop (1 ms ticker);
3. memory: N jobs again under tracemalloc, with Discord's 3 s acknowledgement deadline lifted and
   every task held until all N are submitted, then finished together (all N in flight at once):
   peak RSS delta (VmHWM, reset via /proc/self/clear_refs) and tracemalloc peak. Both include what
   the in-process fakes keep (inputs, uploads, results, recorded requests); that is printed too.

Jobs that miss Discord's 3 s acknowledgement deadline in phase 2 are counted, not hidden.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import logging
import math
import random
import re
import resource
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from kontext.domain.poll_schedule import PollSchedule  # noqa: E402
from tests.fakes.apimart_fake import FakeApimart  # noqa: E402
from tests.fakes.discord import FakeDiscord, FakeInteraction  # noqa: E402
from tests.harness import API_KEY, TOKEN, World  # noqa: E402

T = TypeVar("T")

REAL_DURATION = (5.0, 40.0)  #: fake task durations in real seconds (before scaling)
ESTIMATE_ERROR = 0.3  #: the task's estimated_time is its duration × uniform(1 ± this)
STATUS_INTERVAL = 1.5  #: STATUS_UPDATE_INTERVAL_SECONDS default, scaled like the schedule
INPUT_SIZE = (1152, 864)  #: ~1 MP inputs
TICK = 0.001  #: loop-lag ticker interval
HOLD = 3600.0  #: memory phase: fake task duration until every job is submitted (then the clock jumps)


# --------------------------------------------------------------------------------------- plumbing


class FakeLoop:
    """An event loop in a daemon thread that runs both fakes (and everything that touches them)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fakes", daemon=True)
        self.thread.start()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the fakes' loop and await its result from the caller's loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class LagTicker:
    """Sleeps ``TICK`` in a loop on the current event loop and records each oversleep."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.recording = False
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(TICK)
            if self.recording:
                self.lags.append(time.perf_counter() - before - TICK)

    def start(self) -> None:
        self._task = asyncio.create_task(self._tick(), name="lag-ticker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


class LogCounter(logging.Handler):
    """Counts the bot's warnings and errors (by message template) instead of printing each."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[tuple[str, str]] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if "voice will NOT be supported" in str(record.msg):
            return  # discord.py at import; not about the bot
        self.counts[(record.levelname, str(record.msg))] += 1

    def report(self) -> None:
        for (level, msg), count in self.counts.most_common(5):
            print(f"  bot log: {count} × {level} {msg!r}")
        self.counts.clear()


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


def photo(width: int, height: int, seed: int) -> Image.Image:
    """A photo-like picture (gradients, a fractal, noise); ``seed`` moves the fractal window."""
    size = (width, height)
    x = -2.2 + 0.15 * seed
    r = Image.linear_gradient("L").resize(size)
    g = Image.effect_mandelbrot(size, (x, -1.2, x + 3.2, 1.2), 48)
    b = Image.radial_gradient("L").resize(size)
    noise = Image.effect_noise(size, 24)
    return Image.merge("RGB", (Image.blend(r, noise, 0.3), g, Image.blend(b, noise, 0.3)))


def make_inputs() -> list[tuple[bytes, str, str]]:
    """Four ~1 MP inputs: two JPEG (like phone photos), two PNG (like screenshots)."""
    inputs = []
    for i in range(4):
        image = photo(*INPUT_SIZE, seed=i)
        out = io.BytesIO()
        if i % 2 == 0:
            image.save(out, "JPEG", quality=90)
            inputs.append((out.getvalue(), f"photo{i}.jpg", "image/jpeg"))
        else:
            image.save(out, "PNG")
            inputs.append((out.getvalue(), f"shot{i}.png", "image/png"))
    return inputs


def proc_status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_kb() -> int:
    value = proc_status_kb("VmRSS")
    return value if value is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def hwm_kb() -> int:
    value = proc_status_kb("VmHWM")
    return value if value is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_hwm() -> bool:
    """Reset the peak-RSS counter (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def retained_bytes(*roots: object) -> int:
    """Bytes held in bytes/bytearray objects reachable from the fakes' own objects (deduplicated)."""
    seen: set[int] = set()
    total = 0
    stack: list[object] = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, bytes | bytearray):
            total += len(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif type(obj).__module__.startswith("tests.fakes") and hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())
    return total


# --------------------------------------------------------------------------------------- a run


@dataclass
class JobFigures:
    ok: bool
    acked: bool = True
    duration: float = math.nan  #: the fake task's duration (scaled seconds)
    defer: float = math.nan  #: dispatch → first interaction callback
    first_status: float = math.nan  #: dispatch → first edit of the status message
    total: float = math.nan  #: dispatch → result edit
    intake: float = math.nan  #: dispatch → submit request received by the fake
    fake_submit: float = math.nan  #: the fake's submit handling (downloads + inverts the input)
    detect: float = math.nan  #: task finished → the poll that saw it
    deliver: float = math.nan  #: that poll → result edit (download, re-encode, upload to Discord)
    polls: int = 0
    rest: Counter[str] = field(default_factory=Counter)

    @property
    def overhead(self) -> float:
        return self.total - self.duration


@dataclass
class Burst:
    jobs: list[JobFigures]
    wall: float
    lags: list[float]
    unattributed_rest: Counter[str]
    cdn_gets: int
    peak_running: int = 0  #: most jobs running in the bot's scheduler at once


class Bench:
    def __init__(self, fakes: FakeLoop, world: World, scale: float, rng: random.Random) -> None:
        self.fakes = fakes
        self.world = world
        self.scale = scale
        self.rng = rng
        self.users = [world.user.id]
        self.counter = 0

    async def fake(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` on the fakes' loop (their state is only touched there)."""

        async def call() -> T:
            return fn()

        return await self.fakes.run(call())

    async def ensure_users(self, count: int) -> None:
        def add() -> None:
            while len(self.users) < count:
                user = self.world.discord.add_user(f"user{len(self.users)}")
                self.world.discord.add_member(self.world.guild.id, user.id)
                self.users.append(user.id)

        await self.fake(add)

    def script_tasks(self, count: int, hold: float | None) -> None:
        lo, hi = REAL_DURATION
        for _ in range(count):
            if hold is not None:
                self.world.apimart.script(duration=hold, estimated_time=hold)
                continue
            duration = self.rng.uniform(lo, hi) * self.scale
            estimate = duration * self.rng.uniform(1 - ESTIMATE_ERROR, 1 + ESTIMATE_ERROR)
            self.world.apimart.script(duration=duration, estimated_time=round(estimate, 3))

    async def burst(
        self,
        count: int,
        inputs: list[tuple[bytes, str, str]],
        ticker: LagTicker,
        *,
        hold: float | None = None,
    ) -> Burst:
        """Dispatch ``count`` `/edit` interactions at once and wait until every one has ended.

        With ``hold``, every task lasts ``hold`` seconds until all jobs are submitted; then the fake's
        clock jumps ahead so that all of them finish together (all ``count`` jobs in flight at once).
        """
        world = self.world
        await self.ensure_users(count)
        prompts = []
        for _ in range(count):
            self.counter += 1
            prompts.append(f"bench edit number {self.counter}")

        def prepare() -> tuple[int, int]:
            # drop scripts left by jobs of an earlier burst that never reached the fake (not acknowledged)
            world.apimart._scripts.clear()
            self.script_tasks(count, hold)
            return len(world.discord.requests), len(world.apimart.requests)

        discord_start, apimart_start = await self.fake(prepare)

        async def dispatch() -> list[FakeInteraction]:
            return list(
                await asyncio.gather(
                    *(
                        world.edit(
                            inputs[i % len(inputs)][0],
                            prompts[i],
                            filename=inputs[i % len(inputs)][1],
                            content_type=inputs[i % len(inputs)][2],
                            user_id=self.users[i],
                        )
                        for i in range(count)
                    )
                )
            )

        ack_deadline = world.discord.ack_deadline

        def finished(inter: FakeInteraction) -> bool:
            if not inter.callbacks:  # the bot gives up after Discord's "Unknown interaction"
                return (
                    ack_deadline is not None
                    and asyncio.get_running_loop().time() > inter.dispatched_at + ack_deadline + 2
                )
            if inter.original is None:
                return bool(inter.followups and inter.followups[0].ephemeral)
            return bool(inter.original.attachments and inter.original.embeds) or (
                inter.original.content.startswith("❌") or inter.original.ephemeral
            )

        def submitted_or_ended(inters: list[FakeInteraction]) -> bool:
            # a task (not just a submission): the fake creates it after fetching the input
            prompts_in = {task.request.get("prompt") for task in world.apimart.tasks.values()}
            return all(p in prompts_in or finished(i) for i, p in zip(inters, prompts, strict=True))

        scheduler = world.bot.backend.runner.scheduler
        peak = 0

        async def sample() -> None:
            nonlocal peak
            while True:
                peak = max(peak, scheduler.running_total)
                await asyncio.sleep(0.005)

        sampler = asyncio.create_task(sample())
        timeout = REAL_DURATION[1] * self.scale * 2 + 60 + count * 0.5
        ticker.lags.clear()
        ticker.recording = True
        started = time.perf_counter()
        inters = await self.fakes.run(dispatch())
        try:
            if hold is not None:
                await self.fakes.run(world.discord.wait_until(lambda: submitted_or_ended(inters), timeout))
                await self.fake(lambda: world.apimart.advance(hold))
            await self.fakes.run(
                world.discord.wait_until(lambda: all(finished(i) for i in inters), timeout=timeout)
            )
            await asyncio.wait_for(world.bot.backend.runner.wait_idle(), 30)
        except TimeoutError:
            print(f"  !! not all jobs ended within {timeout:.0f} s; figures cover those that did")
        wall = time.perf_counter() - started
        sampler.cancel()
        ticker.recording = False
        lags = list(ticker.lags)
        await asyncio.sleep(0.05)  # let the fakes record the last replies
        burst = await self.fake(
            lambda: self.collect(inters, prompts, discord_start, apimart_start, wall, lags)
        )
        burst.peak_running = peak
        return burst

    def collect(
        self,
        inters: list[FakeInteraction],
        prompts: list[str],
        discord_start: int,
        apimart_start: int,
        wall: float,
        lags: list[float],
    ) -> Burst:
        apimart = self.world.apimart
        submit_at: dict[str, float] = {}
        poll_times: dict[str, list[float]] = {}
        for req in apimart.requests[apimart_start:]:
            if req.endpoint == "submit" and req.body:
                try:
                    submit_at.setdefault(json.loads(req.body)["prompt"], req.at)
                except (ValueError, KeyError, TypeError):
                    pass
            elif req.endpoint == "task":
                poll_times.setdefault(req.path.rsplit("/", 1)[-1], []).append(req.at)
        task_by_prompt = {
            s.json["prompt"]: apimart.tasks[s.task_id]
            for s in apimart.submissions
            if s.task_id and isinstance(s.json, dict)
        }
        by_token = {inter.token: inter for inter in inters}
        rest: dict[str, Counter[str]] = {inter.token: Counter() for inter in inters}
        unattributed: Counter[str] = Counter()
        cdn_gets = 0
        for req in self.world.discord.requests[discord_start:]:
            if req.kind == "cdn":
                cdn_gets += 1
                continue
            kind, token = classify(req.method, req.path)
            if token in by_token:
                rest[token][kind] += 1
            else:
                unattributed[kind] += 1

        jobs = []
        for inter, prompt in zip(inters, prompts, strict=True):
            result_at = next(
                (e.time for e in inter.original_edits if e.message.attachments and e.message.embeds), None
            )
            task = task_by_prompt.get(prompt)
            figures = JobFigures(
                ok=result_at is not None and task is not None,
                acked=bool(inter.callbacks)
                and inter.callbacks[0].delay < (self.world.discord.ack_deadline or 3),
                rest=rest[inter.token],
            )
            if inter.first_callback_delay is not None:
                figures.defer = inter.first_callback_delay
            if inter.original_edits:
                figures.first_status = inter.original_edits[0].time - inter.dispatched_at
            if result_at is None or task is None:
                jobs.append(figures)
                continue
            end = task.created + task.script.duration
            polls = sorted(poll_times.get(task.id, []))
            seen = next((t for t in polls if t >= end), None)
            figures.duration = task.script.duration
            figures.total = result_at - inter.dispatched_at
            figures.polls = apimart.polls[task.id]
            if prompt in submit_at:
                figures.intake = submit_at[prompt] - inter.dispatched_at
                figures.fake_submit = task.created - submit_at[prompt]
            if seen is not None:
                figures.detect = seen - end
                figures.deliver = result_at - seen
            jobs.append(figures)
        return Burst(jobs, wall, lags, unattributed, cdn_gets)


def classify(method: str, path: str) -> tuple[str, str | None]:
    """A Discord REST request's kind and the interaction token it belongs to (if any)."""
    if m := re.search(r"/interactions/\d+/([^/]+)/callback", path):
        return "callback", m.group(1)
    if m := re.search(r"/webhooks/\d+/([^/]+)/messages/@original", path):
        return f"{method} @original", m.group(1)
    if m := re.search(r"/webhooks/\d+/([^/]+)(/messages/\d+)?$", path):
        if method == "POST":
            return "POST followup", m.group(1)
        return ("PATCH status message" if method == "PATCH" else f"{method} webhook message"), m.group(1)
    if re.search(r"/channels/\d+/messages", path):
        return f"{method} channel message", None
    return f"{method} other", None


# --------------------------------------------------------------------------------------- output


def row(label: str, values: list[float], unit: float = 1000.0, fmt: str = "8.0f") -> str:
    values = [v * unit for v in values if not math.isnan(v)]
    if not values:
        return f"  {label:<34}{'-':>8}"
    cells = [statistics.mean(values), pct(values, 50), pct(values, 95), max(values)]
    return f"  {label:<34}" + "".join(f"{c:{fmt}}" for c in cells)


def print_burst(burst: Burst, count: int) -> None:
    ok = [j for j in burst.jobs if j.ok]
    late = sum(not j.acked for j in burst.jobs)
    print(f"  delivered {len(ok)}/{count} in {burst.wall:.1f} s; not acknowledged within 3 s: {late}")
    print(f"  {'per job':<34}{'mean':>8}{'p50':>8}{'p95':>8}{'max':>8}")
    print(row("overhead (ms)", [j.overhead for j in ok]))
    print(row("  intake: dispatch → submit (ms)", [j.intake for j in ok]))
    print(row("  fake's submit handling (ms)", [j.fake_submit for j in ok]))
    print(row("  detection: done → seen (ms)", [j.detect for j in ok]))
    print(row("  delivery: seen → result (ms)", [j.deliver for j in ok]))
    print(row("defer, first callback (ms)", [j.defer for j in burst.jobs]))
    print(row("first status edit (ms)", [j.first_status for j in burst.jobs]))
    print(row("fake task duration (s)", [j.duration for j in ok], 1, "8.2f"))
    print(row("polls", [float(j.polls) for j in ok], 1, "8.1f"))
    print(row("Discord REST requests", [float(sum(j.rest.values())) for j in burst.jobs], 1, "8.1f"))
    kinds = sorted({k for j in burst.jobs for k in j.rest})
    for kind in kinds:
        print(row(f"  {kind}", [float(j.rest[kind]) for j in burst.jobs], 1, "8.1f"))
    print(f"  most jobs running at once: {burst.peak_running}")
    extra = ", ".join(f"{k} {v}" for k, v in sorted(burst.unattributed_rest.items())) or "none"
    print(f"  other REST requests (whole burst): {extra}; CDN downloads: {burst.cdn_gets}")
    lags = burst.lags
    if lags:
        print(
            f"  bot event-loop lag ({TICK * 1000:g} ms ticker, {len(lags)} ticks):"
            f" max {max(lags) * 1000:.1f} ms, p99 {pct(lags, 99) * 1000:.1f} ms,"
            f" p50 {pct(lags, 50) * 1000:.2f} ms"
        )


# --------------------------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> None:
    scale = args.scale
    rng = random.Random(args.seed)
    inputs = make_inputs()
    sizes = ", ".join(f"{len(d) / 1e6:.2f} MB {n.rsplit('.', 1)[1].upper()}" for d, n, _ in inputs)
    lo, hi = REAL_DURATION
    print(
        f"scale {scale:g}: PollSchedule().scaled({scale:g}),"
        f" fake durations uniform {lo:g}-{hi:g} s × {scale:g} = {lo * scale:.2f}-{hi * scale:.2f} s"
        f" (estimate ±{ESTIMATE_ERROR:.0%}),"
        f" status interval {STATUS_INTERVAL * scale:g} s"
    )
    print(
        f"inputs {INPUT_SIZE[0]}x{INPUT_SIZE[1]} ({sizes}); fakes on their own loop/thread;"
        f" task durations and detection latency are scaled time (÷ {scale:g} for real time), the rest real"
    )
    fakes = FakeLoop()
    tmp = tempfile.TemporaryDirectory(prefix="kontext-bench-")
    schedule = PollSchedule().scaled(scale)

    async def open_world() -> World:
        discord_fake = FakeDiscord(TOKEN)
        await discord_fake.start()
        apimart_fake = FakeApimart(API_KEY)
        await apimart_fake.start()
        return World(discord_fake, apimart_fake, Path(tmp.name) / "data")

    world = await fakes.run(open_world())
    ticker = LagTicker()
    logs = LogCounter()
    logging.getLogger().addHandler(logs)
    try:
        await world.start_bot(
            schedule,
            LOG_LEVEL="WARNING",
            STATUS_UPDATE_INTERVAL_SECONDS=f"{STATUS_INTERVAL * scale:g}",
            MAX_CONCURRENT_JOBS=str(max(8, args.jobs)),
            MAX_QUEUED_JOBS=str(max(200, args.jobs * 2)),
        )
        ticker.start()
        bench = Bench(fakes, world, scale, rng)

        # 1. single job, idle bot
        print(f"\n[1] single job on an idle bot ({args.single} runs, one after another)")
        singles: list[JobFigures] = []
        for _ in range(args.single):
            singles.extend((await bench.burst(1, inputs, ticker)).jobs)
        print(f"  {'per job':<34}{'mean':>8}{'p50':>8}{'p95':>8}{'max':>8}")
        print(row("defer, first callback (ms)", [j.defer for j in singles]))
        print(row("first status edit (ms)", [j.first_status for j in singles]))
        print(row("overhead (ms)", [j.overhead for j in singles if j.ok]))
        print(row("  detection: done → seen (ms)", [j.detect for j in singles if j.ok]))
        print(row("polls", [float(j.polls) for j in singles if j.ok], 1, "8.1f"))
        logs.report()

        # 2. N at once: timing
        print(f"\n[2] {args.jobs} jobs at once ({args.jobs} users, MAX_CONCURRENT_JOBS={max(8, args.jobs)})")
        burst = await bench.burst(args.jobs, inputs, ticker)
        print_burst(burst, args.jobs)
        logs.report()

        # 3. N at once: memory
        print(
            f"\n[3] memory: {args.jobs} jobs in flight at once, under tracemalloc (3 s ack deadline lifted;"
            " tasks held until all are submitted, then all finish together)"
        )
        await bench.fake(lambda: setattr(world.discord, "ack_deadline", None))
        gc.collect()
        fakes_before = await bench.fake(lambda: retained_bytes(world.discord, world.apimart))
        exact_peak = reset_hwm()
        rss_before, hwm_before = rss_kb(), hwm_kb()
        tracemalloc.start()
        memory = await bench.burst(args.jobs, inputs, ticker, hold=HOLD)
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        hwm_after = hwm_kb()
        gc.collect()
        rss_after = rss_kb()
        fakes_after = await bench.fake(lambda: retained_bytes(world.discord, world.apimart))
        fake_mb = (fakes_after - fakes_before) / 1e6
        bot_mb = traced_peak / 1e6 - fake_mb
        ok = sum(j.ok for j in memory.jobs)
        print(
            f"  delivered {ok}/{args.jobs} in {memory.wall:.1f} s;"
            f" most jobs running at once: {memory.peak_running}"
        )
        print(row("  defer without a deadline (ms)", [j.defer for j in memory.jobs]).replace("  ", "", 1))
        logs.report()
        print(f"  RSS before {rss_before / 1024:.0f} MB")
        note = (
            ""
            if exact_peak
            else f" (peak counter not resettable; peak before was {hwm_before / 1024:.0f} MB)"
        )
        peak_mb = (hwm_after - rss_before) / 1024
        print(f"  peak RSS delta: {peak_mb:.0f} MB{note}; minus the fakes' data ≈ {peak_mb - fake_mb:.0f} MB")
        print(f"  RSS retained after the burst (after gc): {(rss_after - rss_before) / 1024:+.0f} MB")
        print(
            f"  tracemalloc peak: {traced_peak / 1e6:.0f} MB"
            " (Python allocations only, not Pillow's pixel buffers)"
        )
        print(
            f"  of which the fakes keep (inputs, uploads, results, recorded requests): ~{fake_mb:.0f} MB;"
            f" bot ≈ {bot_mb:.0f} MB, {bot_mb / args.jobs:.2f} MB/job"
        )
    finally:
        await ticker.stop()
        await world.close()

        async def close_fakes() -> None:
            await world.discord.close()
            await world.apimart.close()

        await fakes.run(close_fakes())
        fakes.close()
        tmp.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="quick run for CI (20 jobs, 2 single runs)")
    parser.add_argument("--jobs", type=int, help="jobs started at once (default 200, smoke 20)")
    parser.add_argument("--single", type=int, help="single-job runs (default 5, smoke 2)")
    parser.add_argument("--scale", type=float, default=0.05, help="time scale of schedule and durations")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.jobs is None:
        args.jobs = 20 if args.smoke else 200
    if args.single is None:
        args.single = 2 if args.smoke else 5
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
