"""The bot as a user runs it (``python bot.py --env-file FILE``, its own process), watched from outside.

* :class:`BotProcess` starts it with the caller's environment minus every bot setting (``bot.py``
  lets the environment win over the env file, so a stray ``LOG_LEVEL`` would change what is
  measured), its log in a file, and waits until ``/healthz`` says it is connected.
* :func:`read_usage` reads ``/proc``: CPU time (utime + stime of the bot and of every process below
  it, plus what its reaped children used: cutime + cstime) and resident memory (VmRSS summed over the
  same processes; VmHWM of the bot itself).
* :class:`Sampler` reads both every ``interval`` seconds (and, optionally, the jobs the bot holds:
  ``jobs_running`` + ``jobs_waiting`` of its ``/healthz``) on the driver's event loop.

Nothing here touches the bot's code or its settings beyond the env file it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_LOG_LINE = re.compile(r" (WARNING|ERROR|CRITICAL)\s+(\S+) \[job=[^\]]*\] (.*)")


# --------------------------------------------------------------------------------------- /proc


@dataclass(frozen=True)
class Usage:
    """One reading of a process tree (``t`` is ``time.monotonic()``, like the fakes' loop clocks)."""

    t: float
    cpu_s: float  #: utime + stime + cutime + cstime of every process in the tree (10 ms ticks)
    rss_kb: int  #: VmRSS summed over the tree
    hwm_kb: int  #: VmHWM of the root (its peak RSS since it started)
    processes: int
    #: CPU time of the tree's live threads from ``/proc/<pid>/task/<tid>/schedstat``: exact to the
    #: nanosecond but blind to threads that have ended; for short windows (an idle bot's CPU rate)
    run_s: float = 0.0


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rsplit(")", 1)[1].split()  # [0] is field 3 (state)


def _status_kb(pid: int, *keys: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in keys:
            found[key] = int(rest.split()[0])
    return found


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (via ``/proc/<pid>/task/<tid>/children``)."""
    seen = [pid]
    i = 0
    while i < len(seen):
        current = seen[i]
        i += 1
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError):
                    seen.extend(int(child) for child in (task / "children").read_text().split())
    return seen


def _run_ns(pid: int) -> int:
    """On-CPU nanoseconds of the live threads of ``pid`` (first field of each thread's schedstat)."""
    total = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int((task / "schedstat").read_text().split()[0])
    return total


def loop_thread_cpu_s(pid: int) -> float:
    """On-CPU seconds of the main thread of ``pid`` (the bot's event loop), from its schedstat."""
    try:
        return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return math.nan


def read_usage(pid: int) -> Usage:
    """CPU and memory of ``pid`` and its descendants now (raises OSError once ``pid`` is gone)."""
    now = time.monotonic()
    root = _stat_fields(pid)
    ticks = rss = run_ns = 0
    pids = descendants(pid)
    for member in pids:
        try:
            fields = root if member == pid else _stat_fields(member)
            ticks += int(fields[11]) + int(fields[12])  # utime + stime (all threads)
            # cutime + cstime: its children already reaped (the bot's, and the image workers the
            # sandbox's fork server has reaped: without those, image work would not count)
            ticks += int(fields[13]) + int(fields[14])
            rss += _status_kb(member, "VmRSS").get("VmRSS", 0)
        except (OSError, IndexError, ValueError):
            continue  # a child that just exited
        run_ns += _run_ns(member)
    hwm = _status_kb(pid, "VmHWM").get("VmHWM", 0)
    return Usage(now, ticks / CLK_TCK, rss, hwm, len(pids), run_ns / 1e9)


def loadavg() -> tuple[float, float, float]:
    try:
        one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    except (OSError, ValueError):
        return (float("nan"),) * 3
    return float(one), float(five), float(fifteen)


def _cpu_ticks() -> list[int] | None:
    """The all-CPU line of ``/proc/stat``: user, nice, system, idle, iowait, irq, softirq, steal…"""
    try:
        return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None


def machine_steal_s() -> float:
    """CPU seconds the hypervisor gave to other guests while this machine's CPUs wanted to run
    (``steal`` in ``/proc/stat``, all CPUs, since boot; 0 on bare metal). Time stolen from the bot
    shows in its latencies though no process here used it."""
    values = _cpu_ticks()
    if values is None:
        return float("nan")
    return values[7] / CLK_TCK if len(values) > 7 else 0.0


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot (``/proc/stat``), to tell how loaded
    it was while a scenario ran."""
    values = _cpu_ticks()
    if values is None:
        return float("nan"), float("nan")
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


# --------------------------------------------------------------------------------------- the bot


class BotFailed(RuntimeError):
    """The bot exited or never became ready; the message ends with the tail of its log."""


@dataclass
class BotProcess:
    """``python bot.py --env-file env_file`` (or ``script --env-file env_file``) in its own process,
    logging to ``log_path``."""

    env_file: Path
    log_path: Path
    web_port: int
    environ: dict[str, str]
    #: The script to run instead of ``bot.py`` (e.g. the floor bot of ``bench/job_floor.py``).
    script: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> None:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, str(self.script or "bot.py"), "--env-file", str(self.env_file)],
            cwd=ROOT,
            env=self.environ,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        """Until ``/healthz`` answers 200 (connected to the gateway and accepting jobs); raises
        :class:`BotFailed` if the bot exits first. Bound it with ``asyncio.timeout``."""
        while True:
            if self.process is None or self.process.poll() is not None:
                raise BotFailed(f"the bot exited during start-up\n{self.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(
                    f"{self.base_url}/healthz", timeout=aiohttp.ClientTimeout(total=2)
                ) as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.05)  # the bot is another process: ask it again

    async def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM (the bot shuts down cleanly), SIGKILL after ``grace`` s; returns the exit status."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait, 10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def log_counts(self) -> Counter[tuple[str, str]]:
        """Warnings and errors in the bot's log, by level and logger."""
        counts: Counter[tuple[str, str]] = Counter()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return counts
        for line in text.splitlines():
            match = _LOG_LINE.search(line)
            if match and match.group(1) in ("WARNING", "ERROR", "CRITICAL"):
                counts[(match.group(1), f"{match.group(2)} {match.group(3)[:70]}")] += 1
        return counts


# --------------------------------------------------------------------------------------- sampling


@dataclass
class Sampler:
    """Reads :func:`read_usage` (and optionally the jobs held, from ``/healthz``) every ``interval`` s
    in the background."""

    pid: int
    interval: float = 0.1
    metrics_url: str | None = None
    session: aiohttp.ClientSession | None = None
    usage: list[Usage] = field(default_factory=list)
    held: list[tuple[float, int]] = field(default_factory=list)  #: (t, jobs_running + jobs_waiting)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def now(self) -> Usage:
        reading = read_usage(self.pid)
        self.usage.append(reading)
        return reading

    async def _run(self) -> None:
        tick = time.monotonic()
        while True:
            with contextlib.suppress(OSError):
                self.now()
            if self.metrics_url and self.session is not None:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                    self.held.append((time.monotonic(), await self._held()))
            tick = max(tick + self.interval, time.monotonic())
            await asyncio.sleep(tick - time.monotonic())  # a sampling period, not a wait for anything

    async def _held(self) -> int:
        """Jobs held, from ``/healthz`` (a few fields; a full ``/metrics`` render five times a second
        would itself load the bot being measured)."""
        assert self.session is not None and self.metrics_url is not None
        async with self.session.get(self.metrics_url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            state = await resp.json(content_type=None)
        return int(state["jobs_running"]) + int(state["jobs_waiting"])

    def between(self, start: float, end: float) -> list[Usage]:
        return [u for u in self.usage if start <= u.t <= end]

    def peak_held(self, start: float = float("-inf"), end: float = float("inf")) -> int:
        return max((n for t, n in self.held if start <= t <= end), default=0)
