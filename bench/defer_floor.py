"""The floor under the bot's acknowledgement time: a discord.py bot that does nothing but defer.

    python bench/defer_floor.py [--smoke] [--json FILE] [--count N] [--window S]

Starts the same fakes as the job benchmarks (:mod:`fakes_server`) and, in its own process, the
smallest bot discord.py allows with the Kontext bot's client settings (``AutoShardedBot``, guilds
intent only, an ``/edit`` command taking an attachment and a prompt) whose command does one thing:
``await interaction.response.defer(thinking=True)``. No database, no policy, no job. Then ``--count``
users (500) run ``/edit`` within ``--window`` seconds (1), twice, and it prints what the fakes saw:

* ``defer_ms_p50`` / ``_p99`` / ``_max``: dispatch of INTERACTION_CREATE → the callback arriving;
* ``cpu_ms_per_interaction``: the minimal bot's CPU time over the burst ÷ interactions (parsing the
  gateway event, building the interaction, the command tree, the callback request);
* ``fakes_cpus_busy`` and ``fakes_loop_lag_ms_p99``: how busy the fakes' own process was.

This is what any discord.py bot pays on this machine before it does any work of its own: the Kontext
bot's ``job.burst.defer_ms_*`` cannot be lower. Prints, never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import discord
import minimal_bot
from botproc import read_usage
from fakes_server import BenchFakes, clean_environ, free_port, make_inputs, write_env_file
from jobstats import pct
from session import LoopTicker, bounded, own_cpu

BENCH = Path(__file__).resolve().parent


# --------------------------------------------------------------------------------------- the bot


def serve_bot(env_file: Path) -> None:
    """The minimal bot (run in its own process with ``--serve-bot ENV_FILE``)."""

    async def defer(interaction: discord.Interaction[Any], image: discord.Attachment, prompt: str) -> None:
        await interaction.response.defer(thinking=True)

    minimal_bot.run(minimal_bot.settings(env_file), defer)


# --------------------------------------------------------------------------------------- the driver


async def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as http:
        while True:
            if process.poll() is not None:
                raise RuntimeError("the minimal bot exited during start-up")
            try:
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)  # another process: ask again


async def _burst(fakes: BenchFakes, count: int, window: float, tag: str) -> list[float]:
    """``count`` /edits within ``window`` s; the defer delay of each (inf if none within 10 s)."""
    inputs = make_inputs(2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    inters = []
    for i in range(count):
        delay = start + window * i / max(1, count) - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # the arrival schedule
        data, filename = inputs[i % len(inputs)]
        inter, _ = await fakes.edit(i, f"{tag} {i}", data, filename)
        inters.append(inter)
    async with bounded(count * 0.05 + 30, "every interaction acknowledged"):
        await fakes.discord.wait_until(lambda: all(inter.callbacks for inter in inters), math.inf)
    return [inter.callbacks[0].delay if inter.callbacks else math.inf for inter in inters]


def _start_bot(env_file: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, str(BENCH / "defer_floor.py"), "--serve-bot", str(env_file)]
    return subprocess.Popen(command, env=clean_environ(), stdin=subprocess.DEVNULL)


async def run(count: int, window: float, repeats: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="kontext-floor-"))
    figures: dict[str, Any] = {"interactions": count, "window_s": window}
    try:
        async with BenchFakes(users=count) as fakes:
            port = free_port()
            env_file = tmp / "bot.env"
            write_env_file(env_file, fakes.bot_env(tmp / "data", port))
            process = _start_bot(env_file)
            try:
                async with asyncio.timeout(60):
                    await _wait_ready(f"http://127.0.0.1:{port}/healthz", process)
                    await fakes.discord.wait_until(lambda: fakes.has_command("edit"), math.inf)
                await _burst(fakes, 20, 0.5, "warm-up")
                ticker = LoopTicker()
                ticker.start()
                delays: list[float] = []
                cpu = own = elapsed = 0.0
                for i in range(repeats):
                    u0, own0, t0 = read_usage(process.pid), own_cpu(), time.monotonic()
                    delays += await _burst(fakes, count, window, f"burst {i}")
                    u1, own1, t1 = read_usage(process.pid), own_cpu(), time.monotonic()
                    cpu += u1.cpu_s - u0.cpu_s
                    own += own1 - own0
                    elapsed += t1 - t0
                    await asyncio.sleep(1.0)  # let the machine settle between bursts
                await ticker.stop()
            finally:
                process.terminate()
                process.wait(20)
        lags = sorted(lag * 1000 for _, lag in ticker.samples)
        ms = [d * 1000 for d in delays]
        figures |= {
            "defer_ms_p50": round(pct(ms, 50), 1),
            "defer_ms_p99": round(pct(ms, 99), 1),
            "defer_ms_max": round(max(ms), 1),
            "not_acknowledged": sum(1 for d in delays if math.isinf(d)),
            "cpu_ms_per_interaction": round(cpu / (count * repeats) * 1000, 2),
            "bot_cpus_busy": round(cpu / elapsed, 2),
            "fakes_cpus_busy": round(own / elapsed, 2),
            "fakes_loop_lag_ms_p99": round(pct(lags, 99), 1),
            "cpus": os.cpu_count(),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--serve-bot", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help="a quick run (50 interactions, once)")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--count", type=int, help="interactions per burst (default 500)")
    parser.add_argument("--window", type=float, default=1.0, help="seconds over which they arrive")
    args = parser.parse_args(argv)
    if args.serve_bot:
        serve_bot(args.serve_bot)
        return 0
    count = args.count or (50 if args.smoke else 500)
    figures = asyncio.run(run(count, args.window, 1 if args.smoke else 2))
    print(f"minimal discord.py bot (defer only), {count} /edits within {args.window:g} s:")
    for key, value in figures.items():
        print(f"  {key:26} {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
