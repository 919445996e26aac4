"""One measured bot: ``python bot.py`` in its own process against fresh fakes in this one.

A :class:`Session` starts the fakes (:mod:`fakes_server`), writes the bot's env file, starts the bot
(:mod:`botproc`), waits until it is connected, and samples its CPU, memory and held jobs. It plays
users (``/edit`` with a ~1 MP JPEG from a user of its own each), runs the lag probe
(:mod:`lag_probe`) on request, and reads the machine's load. Leaving it stops everything it started.

While a session is open, this process runs without Python's cyclic garbage collector (collected
once when the session ends): a full collection of the fakes' records took up to 150 ms with 500
jobs, and a pause of the fakes would be counted as the bot's latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from botproc import BotFailed, BotProcess, Sampler, Usage, machine_cpu_s, machine_steal_s, read_usage
from fakes_server import BenchFakes, TaskShape, clean_environ, free_port, write_env_file
from jobstats import Collected, Dispatched, Pending, collect
from lag_probe import read_samples

from tests.fakes.apimart_fake import FakeTask

BENCH = Path(__file__).resolve().parent
WARM_UP = TaskShape(0.3, 0.6)
PROBE_INTERVAL = 0.02  #: seconds between two /healthz requests of the lag probe
Figures = dict[str, float | int | None]


@contextlib.asynccontextmanager
async def bounded(seconds: float, what: str) -> AsyncIterator[None]:
    """Give up waiting after ``seconds`` and say so; the figures then cover what did happen."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        print(f"  !! {what}: not within {seconds:.0f} s; the figures cover what happened")


# --------------------------------------------------------------------------------------- helpers


class LoopTicker:
    """Sleeps 5 ms in a loop on this process's event loop and records each oversleep: how late the
    fakes (and the driver) were themselves, the floor under every time they record."""

    TICK = 0.005

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.TICK)
            after = time.monotonic()
            self.samples.append((after, after - before - self.TICK))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fakes-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def between(self, start: float, end: float) -> list[float]:
        return [lag for t, lag in self.samples if start <= t <= end]


@dataclass
class MachineMark:
    """CPU seconds used so far by the whole machine, the bot, this process and the probe."""

    t: float
    machine: float
    bot: float
    own: float
    probe: float
    steal: float


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


@dataclass
class Batch:
    """Jobs dispatched together and what became of them."""

    dispatched: list[Dispatched]
    collected: Collected
    started: float  #: first dispatch (time.monotonic())
    dispatched_by: float  #: last dispatch
    ended: float  #: every job ended and the bot was idle again
    cpu0: Usage
    cpu1: Usage
    #: CPU time the hypervisor gave to other guests while the /edits arrived (all CPUs; a burst's
    #: defers are answered within that second, so time stolen then shows in them)
    arrival_steal_s: float = 0.0


# --------------------------------------------------------------------------------------- session


class Session:
    """One bot process against fresh fakes (see the module docstring)."""

    def __init__(
        self,
        name: str,
        users: int,
        overrides: dict[str, str],
        inputs: list[tuple[bytes, str]],
        environ: dict[str, str] | None = None,
        *,
        watch_metrics: bool = True,
        script: Path | None = None,
    ) -> None:
        self.name = name
        self.script = script
        self.watch_metrics = watch_metrics
        self.overrides = overrides
        self.inputs = inputs
        self.environ = environ or {}
        self.fakes = BenchFakes(users)
        self.tmp = Path(tempfile.mkdtemp(prefix=f"kontext-bench-{name}-"))
        self.http: aiohttp.ClientSession | None = None
        self.bot: BotProcess | None = None
        self.sampler: Sampler | None = None
        self.ticker = LoopTicker()
        self.probe: subprocess.Popen[bytes] | None = None
        self.probe_file = self.tmp / "probe.txt"
        self.counter = 0
        self.mark: MachineMark | None = None

    async def __aenter__(self) -> Session:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def _start(self) -> None:
        await self.fakes.start()
        web_port = free_port()
        env_file = self.tmp / "bot.env"
        write_env_file(env_file, self.fakes.bot_env(self.tmp / "data", web_port, **self.overrides))
        self.http = aiohttp.ClientSession()
        environ = clean_environ({"PYTHONUNBUFFERED": "1", **self.environ})
        self.bot = BotProcess(env_file, self.tmp / "bot.log", web_port, environ, self.script)
        self.bot.start()
        try:
            async with asyncio.timeout(60):
                await self.bot.wait_ready(self.http)
                await self.fakes.discord.wait_until(lambda: self.fakes.has_command("edit"), math.inf)
        except TimeoutError:
            raise BotFailed(f"the bot was not ready within 60 s\n{self.bot.log_tail()}") from None
        metrics = f"{self.bot.base_url}/healthz" if self.watch_metrics else None
        self.sampler = Sampler(self.bot.pid, 0.2, metrics, self.http)
        self.sampler.start()
        self.ticker.start()
        # the fakes must not pause to collect garbage while they time the bot: their pauses would
        # show up as the bot's latency (a full collection here took up to 150 ms at 500 jobs)
        gc.collect()
        gc.disable()

    async def __aexit__(self, *exc: object) -> None:
        gc.enable()
        gc.collect()
        self.stop_probe()
        if self.sampler is not None:
            await self.sampler.stop()
        await self.ticker.stop()
        if self.bot is not None and self.bot.process is not None:
            code = await self.bot.stop()
            for (level, what), count in self.bot.log_counts().most_common(4):
                print(f"  bot log: {count} × {level} {what}")
            if code not in (0, None, -signal.SIGKILL):
                print(f"  !! the bot exited with status {code}; log tail:\n{self.bot.log_tail(15)}")
        if self.http is not None:
            await self.http.close()
        await self.fakes.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def pid(self) -> int:
        assert self.bot is not None
        return self.bot.pid

    def usage(self) -> Usage:
        assert self.sampler is not None
        return self.sampler.now()

    # --- the lag probe ----------------------------------------------------------------------

    def start_probe(self) -> None:
        assert self.bot is not None
        command = [sys.executable, str(BENCH / "lag_probe.py"), f"{self.bot.base_url}/healthz"]
        command += ["--out", str(self.probe_file), "--interval", str(PROBE_INTERVAL)]
        self.probe = subprocess.Popen(command, stdin=subprocess.DEVNULL)

    def stop_probe(self) -> None:
        if self.probe is not None and self.probe.poll() is None:
            self.probe.terminate()
            try:
                self.probe.wait(10)
            except subprocess.TimeoutExpired:
                self.probe.kill()
                self.probe.wait(10)

    def probe_cpu(self) -> float:
        if self.probe is not None and self.probe.poll() is None:
            with contextlib.suppress(OSError):
                return read_usage(self.probe.pid).cpu_s
        return 0.0

    def lags(self, start: float, end: float) -> list[float]:
        """The probe's answer times (s) for requests sent in [start, end]; failed ones count as inf."""
        return [
            rtt if status == 200 else math.inf
            for sent, rtt, status in read_samples(str(self.probe_file))
            if start <= sent <= end
        ]

    # --- the machine ------------------------------------------------------------------------

    def mark_machine(self) -> None:
        busy, _ = machine_cpu_s()
        mark = (busy, self.usage().cpu_s, own_cpu(), self.probe_cpu(), machine_steal_s())
        self.mark = MachineMark(time.monotonic(), *mark)

    def machine_figures(self) -> Figures:
        """How many CPUs were busy since :meth:`mark_machine`: in all, the bot, this process (fakes and
        driver), every other process on the machine (the load others put on it) and the hypervisor
        (CPU time stolen for other guests)."""
        m = self.mark
        if m is None:
            return {}
        elapsed = time.monotonic() - m.t
        busy, _ = machine_cpu_s()
        bot = self.usage().cpu_s - m.bot
        fakes = own_cpu() - m.own
        probe = self.probe_cpu() - m.probe
        total = (busy - m.machine) / elapsed
        stolen = (machine_steal_s() - m.steal) / elapsed
        return {
            "cpus": os.cpu_count(),
            "machine_cpus_busy": round(total, 2),
            "bot_cpus_busy": round(bot / elapsed, 2),
            "fakes_cpus_busy": round(fakes / elapsed, 2),
            # /proc/stat counts stolen time as busy: it is neither ours nor another process's
            "others_cpus_busy": round(max(0.0, total - stolen - (bot + fakes + probe) / elapsed), 2),
            "steal_cpus": round(stolen, 3),
        }

    def fake_lags(self, start: float, end: float) -> Figures:
        lags = [lag * 1000 for lag in self.ticker.between(start, end)]
        ordered = sorted(lags)
        p99 = ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] if ordered else math.nan
        return {"fakes_loop_lag_ms_p99": p99, "fakes_loop_lag_ms_max": max(lags, default=math.nan)}

    # --- jobs -------------------------------------------------------------------------------

    async def dispatch(self, i: int) -> Dispatched:
        """User ``i`` runs ``/edit`` with one of the inputs attached."""
        self.counter += 1
        data, filename = self.inputs[self.counter % len(self.inputs)]
        prompt = f"{self.name} job {self.counter}: make the sky purple"
        inter, attachment_id = await self.fakes.edit(i, prompt, data, filename)
        return Dispatched(inter, prompt, attachment_id)

    async def dispatch_paced(self, count: int, window: float) -> list[Dispatched]:
        """``count`` /edits from ``count`` users, evenly spread over ``window`` seconds."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        dispatched = []
        for i in range(count):
            delay = start + window * i / max(1, count) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # the arrival schedule, not a wait for anything
            dispatched.append(await self.dispatch(i))
        return dispatched

    async def wait_ended(self, dispatched: Sequence[Dispatched]) -> None:
        """Until every job has ended (result, failure, refusal, or lost) and the bot is idle again."""
        loop = asyncio.get_running_loop()
        pending = Pending(dispatched, self.fakes.discord.ack_deadline)
        await self.fakes.discord.wait_until(lambda: pending.all_ended(loop.time()), math.inf)
        await self.wait_idle()

    async def wait_idle(self) -> None:
        """Until the bot's ``/healthz`` says no job is running or waiting (its bookkeeping is done)."""
        assert self.http is not None and self.bot is not None
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                async with self.http.get(f"{self.bot.base_url}/healthz") as resp:
                    state = await resp.json()
                if "jobs_running" not in state or "jobs_waiting" not in state:
                    raise BotFailed(f"/healthz no longer says jobs_running and jobs_waiting: {state}")
                if state["jobs_running"] == 0 and state["jobs_waiting"] == 0:
                    return
            await asyncio.sleep(0.05)  # the bot is another process: ask it again

    async def wait_submitted(self, dispatched: Sequence[Dispatched]) -> list[FakeTask]:
        """Until every job has a task at the fake (or has ended); returns the tasks made so far."""
        loop = asyncio.get_running_loop()
        apimart = self.fakes.apimart
        wanted = {d.prompt: d for d in dispatched}
        tasks: dict[str, FakeTask] = {}
        checked = -math.inf

        def all_submitted() -> bool:
            nonlocal checked
            now = loop.time()
            if now - checked < 0.05:
                return False
            checked = now
            for sub in apimart.submissions:  # a task id is set once the fake has made the task
                prompt = sub.json.get("prompt") if isinstance(sub.json, dict) else None
                if prompt in wanted and sub.task_id and prompt not in tasks:
                    tasks[prompt] = apimart.tasks[sub.task_id]
            left = [d for prompt, d in wanted.items() if prompt not in tasks]
            return Pending(left, self.fakes.discord.ack_deadline, every=0).all_ended(now)

        async with bounded(len(dispatched) * 0.5 + 120, "every job submitted"):
            await self.fakes.discord.wait_until(all_submitted, math.inf)
        return list(tasks.values())

    async def run(self, count: int, window: float, script: Callable[[int], None], limit_s: float) -> Batch:
        """Script ``count`` tasks, dispatch ``count`` /edits over ``window`` s, wait (up to ``limit_s``)
        until all have ended, and collect their figures."""
        discord_from, apimart_from = len(self.fakes.discord.requests), len(self.fakes.apimart.requests)
        script(count)
        cpu0 = self.usage()
        steal0 = machine_steal_s()
        started = time.monotonic()
        dispatched = await self.dispatch_paced(count, window)
        dispatched_by = time.monotonic()
        arrival_steal = machine_steal_s() - steal0
        async with bounded(limit_s, f"all {count} jobs ended"):
            await self.wait_ended(dispatched)
        ended = time.monotonic()
        cpu1 = self.usage()
        collected = collect(self.fakes, dispatched, discord_from, apimart_from, ended)
        return Batch(dispatched, collected, started, dispatched_by, ended, cpu0, cpu1, arrival_steal)

    async def warm_up(self, count: int) -> None:
        """A few short jobs first: imports, thread pools, connections and caches are made once."""
        if count > 0:
            rng = random.Random(0)
            await self.run(count, 0.0, lambda n: self.fakes.script_tasks(n, WARM_UP, rng), limit_s=60)

    async def idle_cpu_rate(self, seconds: float) -> float:
        """CPU seconds per second the bot uses doing nothing (plus the probe's and the sampler's
        requests, when they run). From schedstat: utime + stime count 10 ms ticks, too coarse here."""
        before = self.usage()
        await asyncio.sleep(seconds)  # a measurement window
        after = self.usage()
        return (after.run_s - before.run_s) / (after.t - before.t)

    # --- Python allocations (bench/pyalloc) -------------------------------------------------

    async def alloc_snapshot(self, path: Path) -> dict[str, Any]:
        """Ask the bot's ``sitecustomize`` hook (bench/pyalloc) for its Python allocations (SIGUSR1)."""
        lines = len(await asyncio.to_thread(_lines, path))
        os.kill(self.pid, signal.SIGUSR1)
        async with asyncio.timeout(120):
            while True:
                done = await asyncio.to_thread(_lines, path)
                if len(done) > lines:
                    result: dict[str, Any] = json.loads(done[lines])
                    return result
                await asyncio.sleep(0.05)  # the bot writes the file from its signal handler: look again


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
