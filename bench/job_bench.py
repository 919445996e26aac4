"""Job figures of the bot alone: ``python bot.py`` in its own process against the fakes in this one.

    python bench/job_bench.py [--smoke] [--json FILE] [--only idle,burst_small,burst,inflight,pyalloc]

Three kinds of process (bench/README.md has the whole picture):

* **the bot**: ``python bot.py --env-file <tmp>/bot.env``, exactly as a user runs it. The env file
  holds the bot's defaults except the two secrets, the three endpoints (the fakes),
  ``ALLOW_PRIVATE_URLS=true`` (the fakes are on loopback), ``WEB_HOST=127.0.0.1``, a free
  ``WEB_PORT``, ``DATA_DIR`` in a temporary directory and, where a scenario needs many jobs in flight,
  ``MAX_CONCURRENT_JOBS`` / ``MAX_QUEUED_JOBS`` (printed with each scenario). Its CPU time and memory
  are read from ``/proc/<pid>`` (:mod:`botproc`), the jobs it holds from its ``/healthz``.
* **this process**: the fakes of Discord and APIMart (:mod:`fakes_server`) and the driver that plays
  the users (:mod:`session`). Timings and request counts come from the fakes' records
  (:mod:`jobstats`); a 5 ms ticker on this loop says how late the fakes themselves were (the floor
  under every latency they report).
* **the lag probe** (:mod:`lag_probe`): a small process that times ``GET /healthz`` on the bot every
  20 ms: the bot's event-loop lag seen from outside.

Scenarios (each with a fresh bot and fresh fakes, and short warm-up jobs first):

``idle``         one job at a time on an idle bot (a 1 MP JPEG in, a PNG result that fits):
                 overhead, CPU per job (less the idle bot's own CPU; no probe running), defer.
``burst_small``, ``burst``
                 N ``/edit``s from N users within 1 s (100 and 500): defer p50/p99/max, none lost,
                 requests per job whatever the queue length (MAX_CONCURRENT_JOBS=100, the others
                 wait in line; MAX_QUEUED_JOBS=N), CPU per job, loop lag, RSS.
``inflight``     N jobs (1,000) in flight at once (MAX_CONCURRENT_JOBS=N): the fake holds every task
                 until all are submitted (each says it needs an hour, so the bot polls it every 8 s),
                 keeps them all in flight 10 s more, then lets them finish over 10 s. RSS growth per
                 job in flight; loop lag while filling up, holding and finishing.
``pyalloc``      the ``inflight`` shape with 200 jobs and the bot under :mod:`tracemalloc` (loaded by
                 bench/pyalloc/sitecustomize.py): the Python bytes held per job and where they are.

Prints, never asserts; ``--json FILE`` writes the figures (keys in bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botproc import loop_thread_cpu_s
from fakes_server import INPUT_SIZE, TaskShape, make_inputs
from jobstats import Collected, JobFigures, collect, mean, pct, requests_per_job, top
from session import BENCH, Batch, Figures, Session, bounded

HOLD = 3600.0  #: how long a held task lasts until it is released (the estimate it reports, by default)
HOLD_POLL = 8.0  #: the default schedule's longest delay while a task's estimate is far ahead
SCENARIOS = ("idle", "burst_small", "burst", "inflight", "pyalloc")


@dataclass(frozen=True)
class Config:
    smoke: bool
    idle_jobs: int
    burst_small: int
    burst: int
    burst_window: float  #: seconds over which a burst's /edits arrive
    burst_concurrency: int  #: MAX_CONCURRENT_JOBS in the bursts
    inflight: int
    pyalloc: int  #: jobs in flight while the bot runs under tracemalloc
    inflight_rate: float  #: /edits per second while filling up
    steady: float  #: seconds all jobs stay in flight
    hold_estimate: float  #: the estimate a held task reports (long: the bot polls it every 8 s)
    release_over: float  #: seconds over which the held tasks finish
    warm_up: int  #: short jobs run first in the burst and in-flight scenarios
    repeats: dict[str, int]  #: how many times each burst runs (one bot, one after another)
    shape: TaskShape  #: the fake's task durations
    seed: int


# --------------------------------------------------------------------------------------- figures


def job_figures(batch: Batch) -> Figures:
    """The figures every scenario with jobs reports (keys in bench/README.md)."""
    jobs = batch.collected.jobs
    done = [j for j in jobs if j.outcome == "done"]
    outcomes = Counter(j.outcome for j in jobs)
    rest = batch.collected.rest_per_job()
    apimart = batch.collected.apimart_per_job()
    ms = 1000.0
    return {
        "jobs": len(jobs),
        "done": outcomes["done"],
        "failed": outcomes["failed"],
        "refused": outcomes["refused"],
        "lost": outcomes["lost"],
        "late_acks": sum(not j.acked for j in jobs),
        "arrival_window_s": round(batch.dispatched_by - batch.started, 3),
        "wall_s": round(batch.ended - batch.started, 2),
        "defer_ms_p50": pct([j.defer * ms for j in jobs], 50),
        "defer_ms_p99": pct([j.defer * ms for j in jobs], 99),
        "defer_ms_max": top(j.defer * ms for j in jobs),
        "first_status_ms_p50": pct([j.first_status * ms for j in jobs], 50),
        "overhead_ms_mean": mean(j.overhead * ms for j in done),
        "overhead_ms_p50": pct([j.overhead * ms for j in done], 50),
        "overhead_ms_max": top(j.overhead * ms for j in done),
        "intake_ms_mean": mean(j.intake * ms for j in done),
        "delivery_ms_mean": mean(j.deliver * ms for j in done),
        "e2e_minus_task_ms_mean": mean(j.e2e_minus_task * ms for j in done),
        "fake_submit_ms_mean": mean(j.fake_submit * ms for j in done),
        "detect_ms_mean": mean(j.detect * ms for j in done),
        "detect_ms_max": top(j.detect * ms for j in done),
        "task_s_mean": mean(j.duration for j in done),
        "slot_wait_s_max": top(j.slot_wait for j in jobs),
        "polls_per_job_mean": mean(float(j.polls) for j in done),
        "rest_per_job_mean": mean(rest),
        "rest_per_job_max": top(rest),
        "rest_unattributed": sum(batch.collected.rest_unattributed.values()),
        "rest_rate_limited": batch.collected.rate_limited,
        "apimart_per_job_mean": mean(apimart),
        "apimart_per_job_max": top(apimart),
        "requests_per_job": requests_per_job(mean(rest), mean(apimart)),
        "cdn_downloads": batch.collected.cdn_gets,
    }


def cpu_per_job_ms(batch: Batch, idle_rate: float) -> tuple[float, float]:
    """(CPU ms per job less the idle rate over the batch's time, raw CPU ms per job)."""
    jobs = max(1, len(batch.dispatched))
    used = batch.cpu1.cpu_s - batch.cpu0.cpu_s
    net = used - idle_rate * (batch.cpu1.t - batch.cpu0.t)
    return net * 1000 / jobs, used * 1000 / jobs


def lag_figures(prefix: str, lags: list[float]) -> Figures:
    ms = [lag * 1000 for lag in lags]
    return {
        f"{prefix}_ms_p50": pct(ms, 50),
        f"{prefix}_ms_p99": pct(ms, 99),
        f"{prefix}_ms_max": top(ms),
        f"{prefix}_samples": len(ms),
    }


def by_queue_wait(jobs: list[JobFigures], rest: list[float]) -> tuple[float, float]:
    """Most REST requests of a job that started at once, and of one that waited ≥ 1 s for a slot."""
    at_once = [r for j, r in zip(jobs, rest, strict=True) if not j.slot_wait >= 1.0]
    waited = [r for j, r in zip(jobs, rest, strict=True) if j.slot_wait >= 1.0]
    return top(at_once), top(waited)


def merge(batches: Sequence[Batch]) -> Batch:
    """Batches run one after another, as one."""
    return Batch(
        [d for b in batches for d in b.dispatched],
        Collected(
            [j for b in batches for j in b.collected.jobs],
            sum((b.collected.rest_unattributed for b in batches), Counter()),
            sum((b.collected.apimart_unattributed for b in batches), Counter()),
            sum(b.collected.cdn_gets for b in batches),
            sum(b.collected.rate_limited for b in batches),
        ),
        batches[0].started,
        batches[-1].dispatched_by,
        batches[-1].ended,
        batches[0].cpu0,
        batches[-1].cpu1,
        sum(b.arrival_steal_s for b in batches),
    )


# --------------------------------------------------------------------------------------- printing


def fmt(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def print_jobs(f: Figures) -> None:
    print(
        f"  ended: {f['done']} done, {f['failed']} failed, {f['refused']} refused, {f['lost']} lost"
        f" ({f['late_acks']} not acknowledged within 3 s); arrivals over {fmt(f['arrival_window_s'], 2)} s,"
        f" all ended after {fmt(f['wall_s'], 1)} s"
    )
    print(
        f"  defer (ms): p50 {fmt(f['defer_ms_p50'], 1)}, p99 {fmt(f['defer_ms_p99'], 1)},"
        f" max {fmt(f['defer_ms_max'], 1)}; first status edit p50 {fmt(f['first_status_ms_p50'])} ms"
    )
    print(
        f"  overhead (ms): mean {fmt(f['overhead_ms_mean'])}, p50 {fmt(f['overhead_ms_p50'])},"
        f" max {fmt(f['overhead_ms_max'])}  (= dispatch→submit {fmt(f['intake_ms_mean'])}"
        f" + result seen→posted {fmt(f['delivery_ms_mean'])}, means)"
    )
    print(
        f"  end to end minus the task: {fmt(f['e2e_minus_task_ms_mean'])} ms mean (with the fake's submit"
        f" work {fmt(f['fake_submit_ms_mean'])} ms and detection {fmt(f['detect_ms_mean'])} ms, max"
        f" {fmt(f['detect_ms_max'])} ms); tasks {fmt(f['task_s_mean'], 1)} s mean"
    )
    print(
        f"  per job: {fmt(f['rest_per_job_mean'], 1)} Discord REST requests"
        f" (max {fmt(f['rest_per_job_max'], 1)}; {f['rest_rate_limited']} answered 429),"
        f" {fmt(f['apimart_per_job_mean'], 1)} APIMart requests (max {fmt(f['apimart_per_job_max'], 1)}),"
        f" {fmt(f['polls_per_job_mean'], 1)} polls"
    )


def print_kinds(collected: Collected) -> None:
    kinds: Counter[str] = Counter()
    for job in collected.jobs:
        kinds.update(job.rest)
    jobs = max(1, len(collected.jobs))
    parts = [f"{kind} {count / jobs:.2f}" for kind, count in sorted(kinds.items())]
    other = ", ".join(f"{k} {v}" for k, v in sorted(collected.rest_unattributed.items())) or "none"
    print(f"  REST per job by kind: {', '.join(parts)}; not attributable to a job: {other}")


def print_lag(f: Figures, prefix: str, label: str) -> None:
    print(
        f"  {label}: p50 {fmt(f.get(prefix + '_ms_p50'), 1)}, p99 {fmt(f.get(prefix + '_ms_p99'), 1)},"
        f" max {fmt(f.get(prefix + '_ms_max'), 1)} ms ({f.get(prefix + '_samples')} samples)"
    )


def print_machine(f: Figures) -> None:
    print(
        f"  machine: {fmt(f.get('machine_cpus_busy'), 2)} of {f.get('cpus')} CPUs busy on average: bot"
        f" {fmt(f.get('bot_cpus_busy'), 2)}, fakes+driver {fmt(f.get('fakes_cpus_busy'), 2)},"
        f" other processes {fmt(f.get('others_cpus_busy'), 2)}, stolen by the hypervisor"
        f" {fmt(f.get('steal_cpus'), 3)}; fakes' own loop lag p99"
        f" {fmt(f.get('fakes_loop_lag_ms_p99'), 1)} ms, max {fmt(f.get('fakes_loop_lag_ms_max'), 1)} ms"
    )


def settings_text(overrides: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in overrides.items()) or "bot defaults"


# --------------------------------------------------------------------------------------- scenarios


async def scenario_idle(
    cfg: Config, inputs: list[tuple[bytes, str]], rng: random.Random, script: Path | None = None
) -> Figures:
    """``script``: another bot to measure the same way (``bench/job_floor.py``'s floor bot)."""
    who = f"the floor bot ({script.name}" if script else "an idle bot (bot defaults"
    print(
        f"\n[idle] {cfg.idle_jobs} jobs one after another on {who}; tasks"
        f" {cfg.shape.lo:g}-{cfg.shape.hi:g} s; 1 MP JPEG in, PNG result that fits; no probe running)"
    )
    async with Session("idle", 2, {}, inputs, watch_metrics=False, script=script) as session:
        await session.warm_up(1 if cfg.smoke else 2)
        idle_rate = await session.idle_cpu_rate(0.5 if cfg.smoke else 3.0)
        session.mark_machine()
        batches = []

        def tasks(n: int) -> None:
            session.fakes.script_tasks(n, cfg.shape, rng)

        for _ in range(cfg.idle_jobs):
            batches.append(await session.run(1, 0.0, tasks, limit_s=cfg.shape.hi + 60))
        batch = merge(batches)
        figures = job_figures(batch)
        figures.update(arrival_window_s=None, wall_s=round(sum(b.ended - b.started for b in batches), 2))
        net, raw = cpu_per_job_ms(batch, idle_rate)
        each = [(b.cpu1.run_s - b.cpu0.run_s - idle_rate * (b.cpu1.t - b.cpu0.t)) * 1000 for b in batches]
        figures.update(cpu_ms_per_job=net, cpu_ms_per_job_raw=raw, idle_cpu_ms_per_s=idle_rate * 1000)
        figures.update(cpu_ms_per_job_median=statistics.median(each), cpu_ms_per_job_max=max(each))
        figures.update(session.machine_figures())
        figures.update(session.fake_lags(batch.started, batch.ended))
        figures["rss_mb"] = round(session.usage().rss_kb / 1024, 1)
        # the probe's floor: how fast the idle bot answers /healthz
        session.start_probe()
        probe_start = time.monotonic()
        await asyncio.sleep(0.5 if cfg.smoke else 2.0)  # a measurement window
        session.stop_probe()
        figures.update(lag_figures("probe_idle", session.lags(probe_start, time.monotonic())))
    print_jobs(figures)
    print_kinds(batch.collected)
    print(
        f"  bot CPU per job: {fmt(net, 1)} ms (raw {fmt(raw, 1)} ms, less the idle bot's"
        f" {fmt(figures['idle_cpu_ms_per_s'], 2)} ms/s); job by job: median"
        f" {fmt(figures['cpu_ms_per_job_median'], 1)} ms, max {fmt(figures['cpu_ms_per_job_max'], 1)} ms;"
        f" RSS {figures['rss_mb']} MB"
    )
    print_lag(figures, "probe_idle", "the idle bot's /healthz answer time (the probe's floor)")
    print_machine(figures)
    return figures


async def scenario_burst(
    cfg: Config, key: str, count: int, inputs: list[tuple[bytes, str]], rng: random.Random
) -> Figures:
    concurrency = min(cfg.burst_concurrency, count)
    overrides = {"MAX_CONCURRENT_JOBS": str(concurrency), "MAX_QUEUED_JOBS": str(max(200, count))}
    repeats = cfg.repeats.get(key, 1)
    print(
        f"\n[{key}] {count} /edits from {count} users within {cfg.burst_window:g} s, {repeats} time(s)"
        f" ({settings_text(overrides)}, other settings default; tasks {cfg.shape.lo:g}-{cfg.shape.hi:g} s)"
    )
    async with Session(key, count, overrides, inputs) as session:
        await session.warm_up(cfg.warm_up)
        session.start_probe()
        idle_rate = await session.idle_cpu_rate(0.5 if cfg.smoke else 2.0)
        baseline = session.usage()
        session.mark_machine()
        limit = math.ceil(count / concurrency) * (cfg.shape.hi + 20) + 120

        def script(n: int) -> None:
            session.fakes.script_tasks(n, cfg.shape, rng)

        batches: list[Batch] = []
        for i in range(repeats):
            batches.append(await session.run(count, cfg.burst_window, script, limit_s=limit))
            print_run(i + 1, batches[-1], idle_rate)
        batch = merge(batches)
        peak_kb = tree_peak_kb(session, batch.started, batch.ended)
        figures = job_figures(batch)
        figures.update(session.machine_figures())
        session.stop_probe()
        lags = [lag for b in batches for lag in session.lags(b.started, b.ended)]
        figures.update(lag_figures("loop_lag", lags))
        figures.update(session.fake_lags(batch.started, batch.ended))
        assert session.sampler is not None
        held = session.sampler.peak_held(batch.started, batch.ended)
    net, raw = cpu_per_job_ms(batch, idle_rate)
    at_once, waited = by_queue_wait(batch.collected.jobs, batch.collected.rest_per_job())
    p99s = [pct([j.defer * 1000 for j in b.collected.jobs], 99) for b in batches]
    figures.update(
        jobs=count,
        jobs_total=len(batch.dispatched),
        runs=repeats,
        arrival_window_s=round(max(b.dispatched_by - b.started for b in batches), 3),
        wall_s=round(statistics.median(b.ended - b.started for b in batches), 2),
        defer_ms_p99_best_run=min(p99s),
        defer_ms_p99_worst_run=max(p99s),
        arrival_steal_ms_worst_run=round(max(b.arrival_steal_s for b in batches) * 1000),
        concurrency=concurrency,
        cpu_ms_per_job=net,
        cpu_ms_per_job_raw=raw,
        held_peak=held,
        rest_per_job_max_started_at_once=at_once,
        rest_per_job_max_waited_in_line=waited,
        rss_mb_baseline=round(baseline.rss_kb / 1024, 1),
        rss_mb_peak=round(peak_kb / 1024, 1),
        rss_growth_mb=round((peak_kb - baseline.rss_kb) / 1024, 1),
        rss_growth_kb_per_job_held=round((peak_kb - baseline.rss_kb) / max(1, held), 1),
    )
    print(f"  all {repeats} run(s) together ({len(batch.dispatched)} jobs; 'ended after': the median run):")
    print_jobs(figures)
    print(
        f"  most REST requests of one job: {fmt(at_once, 1)} if it started at once,"
        f" {fmt(waited, 1)} if it waited in line (up to {fmt(figures['slot_wait_s_max'], 1)} s)"
    )
    print_kinds(batch.collected)
    print(
        f"  bot CPU per job: {fmt(net, 1)} ms (raw {fmt(raw, 1)}); RSS {figures['rss_mb_baseline']} MB →"
        f" peak {figures['rss_mb_peak']} MB with up to {held} jobs held"
        f" ({fmt(figures['rss_growth_kb_per_job_held'])} kB per job)"
    )
    print_lag(figures, "loop_lag", "bot event-loop lag (/healthz answer time)")
    print_machine(figures)
    return figures


def print_run(number: int, batch: Batch, idle_rate: float) -> None:
    jobs = batch.collected.jobs
    defers = [j.defer * 1000 for j in jobs]
    outcomes = Counter(j.outcome for j in jobs)
    cpu, _ = cpu_per_job_ms(batch, idle_rate)
    print(
        f"  run {number}: defer p50 {fmt(pct(defers, 50), 1)}, p99 {fmt(pct(defers, 99), 1)},"
        f" max {fmt(top(defers), 1)} ms; {outcomes['done']} done, {outcomes['lost']} lost;"
        f" CPU {fmt(cpu, 1)} ms/job; ended after {batch.ended - batch.started:.1f} s;"
        f" {batch.arrival_steal_s * 1000:.0f} ms of CPU stolen by the hypervisor while they arrived"
    )


@dataclass
class InFlight:
    """An in-flight run: the jobs, when each phase ended, and the RSS readings while all were held."""

    batch: Batch
    filled: float
    held_until: float
    held: int
    rss_in_flight_kb: float
    loop_busy_filling: float  #: share of the fill time the bot's event-loop thread was on a CPU


def tree_peak_kb(session: Session, start: float, end: float) -> float:
    """The most RSS of the bot's process tree (bot, fork server, image workers) sampled between
    ``start`` and ``end`` (every 200 ms; the root's own ``VmHWM`` leaves the workers out, so peak
    minus a whole-tree baseline could even come out negative)."""
    assert session.sampler is not None
    readings = session.sampler.between(start, end)
    return float(max(u.rss_kb for u in readings)) if readings else math.nan


async def hold_release(session: Session, cfg: Config, count: int) -> InFlight:
    """Dispatch ``count`` /edits with held tasks, hold them all ``cfg.steady`` s, release, wait."""
    fakes = session.fakes
    discord_from, apimart_from = len(fakes.discord.requests), len(fakes.apimart.requests)
    fakes.hold_tasks(count, HOLD, cfg.hold_estimate)
    cpu0 = session.usage()
    loop_cpu0 = loop_thread_cpu_s(session.pid)
    started = time.monotonic()
    dispatched = await session.dispatch_paced(count, count / cfg.inflight_rate)
    dispatched_by = time.monotonic()
    tasks = await session.wait_submitted(dispatched)
    filled = time.monotonic()
    loop_busy = (loop_thread_cpu_s(session.pid) - loop_cpu0) / max(1e-9, filled - started)
    await asyncio.sleep(cfg.steady)  # the measurement window: every job in flight
    held_until = time.monotonic()
    assert session.sampler is not None
    readings = session.sampler.between(filled, held_until)
    held = session.sampler.peak_held(filled, held_until)
    fakes.release_tasks(tasks, lambda i: cfg.release_over * i / max(1, len(tasks)))
    async with bounded(cfg.release_over + HOLD_POLL + 60 + count * 0.1, f"all {count} jobs ended"):
        await session.wait_ended(dispatched)
    ended = time.monotonic()
    collected = collect(fakes, dispatched, discord_from, apimart_from, ended)
    batch = Batch(dispatched, collected, started, dispatched_by, ended, cpu0, session.usage())
    rss = statistics.median(u.rss_kb for u in readings) if readings else math.nan
    return InFlight(batch, filled, held_until, held, rss, loop_busy)


async def scenario_inflight(cfg: Config, inputs: list[tuple[bytes, str]]) -> Figures:
    count = cfg.inflight
    overrides = {"MAX_CONCURRENT_JOBS": str(min(1000, count)), "MAX_QUEUED_JOBS": str(max(200, count))}
    print(
        f"\n[inflight] {count} jobs in flight at once ({settings_text(overrides)}, other settings default):"
        f" {count} /edits at {cfg.inflight_rate:g}/s, every task held until all are submitted, all held"
        f" {cfg.steady:g} s more, then finishing over {cfg.release_over:g} s"
    )
    async with Session("inflight", count, overrides, inputs) as session:
        await session.warm_up(cfg.warm_up)
        session.start_probe()
        baseline = session.usage()
        session.mark_machine()
        run = await hold_release(session, cfg, count)
        batch = run.batch
        peak_kb = tree_peak_kb(session, batch.started, batch.ended)
        figures = job_figures(batch)
        figures.update(session.machine_figures())
        session.stop_probe()
        figures.update(lag_figures("loop_lag", session.lags(batch.started, batch.ended)))
        figures.update(lag_figures("loop_lag_filling", session.lags(batch.started, run.filled)))
        figures.update(lag_figures("loop_lag_holding", session.lags(run.filled, run.held_until)))
        figures.update(lag_figures("loop_lag_finishing", session.lags(run.held_until, batch.ended)))
        figures.update(session.fake_lags(batch.started, batch.ended))
    after = batch.cpu1
    net, _ = cpu_per_job_ms(batch, 0.0)
    growth_kb = run.rss_in_flight_kb - baseline.rss_kb
    figures.update(
        held_in_window=run.held,
        fill_s=round(run.filled - batch.started, 1),
        loop_thread_busy_filling=round(run.loop_busy_filling, 2),
        cpu_ms_per_job=net,
        rss_mb_baseline=round(baseline.rss_kb / 1024, 1),
        rss_mb_in_flight=round(run.rss_in_flight_kb / 1024, 1),
        rss_growth_mb=round(growth_kb / 1024, 1),
        rss_growth_kb_per_job=round(growth_kb / max(1, run.held), 1),
        rss_mb_peak=round(peak_kb / 1024, 1),
        rss_peak_growth_mb=round((peak_kb - baseline.rss_kb) / 1024, 1),
        rss_mb_after=round(after.rss_kb / 1024, 1),
    )
    print_jobs(figures)
    print_kinds(batch.collected)
    print(
        f"  filled in {figures['fill_s']} s (the bot's event-loop thread on a CPU"
        f" {100 * run.loop_busy_filling:.0f} % of that time); {run.held} jobs held by the bot in the"
        f" {cfg.steady:g} s window"
    )
    print(
        f"  RSS: {figures['rss_mb_baseline']} MB idle → {figures['rss_mb_in_flight']} MB with all in"
        f" flight (+{figures['rss_growth_mb']} MB, {fmt(figures['rss_growth_kb_per_job'])} kB per job);"
        f" peak {figures['rss_mb_peak']} MB (+{figures['rss_peak_growth_mb']} MB);"
        f" {figures['rss_mb_after']} MB after"
    )
    print(f"  bot CPU per job: {fmt(net, 1)} ms (everything: probe, idle time and polls while held)")
    print_lag(figures, "loop_lag", "bot event-loop lag, whole run")
    print_lag(figures, "loop_lag_filling", "  while filling up")
    print_lag(figures, "loop_lag_holding", "  all in flight")
    print_lag(figures, "loop_lag_finishing", "  while finishing")
    print_machine(figures)
    return figures


async def scenario_pyalloc(cfg: Config, inputs: list[tuple[bytes, str]]) -> Figures:
    count = cfg.pyalloc
    overrides = {"MAX_CONCURRENT_JOBS": str(min(1000, count)), "MAX_QUEUED_JOBS": str(max(200, count))}
    print(
        f"\n[pyalloc] Python allocations with {count} jobs in flight (the inflight scenario's shape;"
        f" {settings_text(overrides)}); the bot runs under tracemalloc (bench/pyalloc/sitecustomize.py),"
        " so only memory is reported"
    )
    with tempfile.TemporaryDirectory(prefix="kontext-alloc-") as tmp:
        path = Path(tmp) / "alloc.jsonl"
        pythonpath = os.pathsep.join(filter(None, [str(BENCH / "pyalloc"), os.environ.get("PYTHONPATH")]))
        environ = {"PYTHONPATH": pythonpath, "KONTEXT_BENCH_ALLOC_FILE": str(path)}
        async with Session("pyalloc", count, overrides, inputs, environ) as session:
            await session.warm_up(cfg.warm_up)
            base = await session.alloc_snapshot(path)
            fakes = session.fakes
            fakes.hold_tasks(count, HOLD, cfg.hold_estimate)
            dispatched = await session.dispatch_paced(count, count / cfg.inflight_rate)
            tasks = await session.wait_submitted(dispatched)
            loaded = await session.alloc_snapshot(path)
            fakes.release_tasks(tasks, lambda i: cfg.release_over * i / max(1, len(tasks)))
            async with bounded(cfg.release_over + HOLD_POLL + 60 + count * 0.1, f"all {count} jobs ended"):
                await session.wait_ended(dispatched)
            after = await session.alloc_snapshot(path)
    held = len(tasks)
    mb = 1024 * 1024
    figures: Figures = {
        "jobs": count,
        "held": held,
        "py_mb_baseline": round(base["current"] / mb, 1),
        "py_mb_in_flight": round(loaded["current"] / mb, 1),
        "py_growth_kb_per_job": round((loaded["current"] - base["current"]) / 1024 / max(1, held), 1),
        "py_peak_growth_mb_filling": round((loaded["peak"] - base["current"]) / mb, 1),
        "py_peak_growth_mb_finishing": round((after["peak"] - base["current"]) / mb, 1),
        "py_mb_retained_after": round((after["current"] - base["current"]) / mb, 1),
    }
    print(
        f"  Python allocations: {figures['py_mb_baseline']} MB idle → {figures['py_mb_in_flight']} MB with"
        f" {held} jobs in flight ({figures['py_growth_kb_per_job']} kB per job); at most"
        f" +{figures['py_peak_growth_mb_filling']} MB while filling up,"
        f" +{figures['py_peak_growth_mb_finishing']} MB while finishing;"
        f" {figures['py_mb_retained_after']:+} MB held after"
    )
    print("  changed most since idle, with all in flight (allocation site: kB, blocks):")
    for site in loaded["grown"][:6]:
        print(f"    {site['site']}: {site['kb']:+.0f} kB, {site['blocks']:+d}")
    return figures


# --------------------------------------------------------------------------------------- main


def config(args: argparse.Namespace) -> Config:
    smoke = args.smoke
    lo, hi = (float(x) for x in (args.task_seconds or ("0.2,0.6" if smoke else "3,8")).split(","))
    return Config(
        smoke=smoke,
        idle_jobs=args.idle_jobs or (2 if smoke else 8),
        burst_small=args.burst_small or (10 if smoke else 100),
        burst=args.burst or (30 if smoke else 500),
        burst_window=1.0,
        burst_concurrency=args.burst_concurrency or (10 if smoke else 100),
        inflight=args.inflight or (40 if smoke else 1000),
        pyalloc=args.pyalloc or (10 if smoke else 200),
        inflight_rate=200.0,
        steady=1.0 if smoke else 10.0,
        hold_estimate=3.0 if smoke else HOLD,
        release_over=1.0 if smoke else 10.0,
        warm_up=0 if smoke else 4,
        repeats={"burst_small": 1, "burst": 1} if smoke else {"burst_small": 3, "burst": 2},
        shape=TaskShape(lo, hi),
        seed=args.seed,
    )


async def run(cfg: Config, only: Sequence[str]) -> tuple[Figures, list[str]]:
    """Run the chosen scenarios; returns their figures and the scenarios that crashed (the others
    still run, and their figures are still written)."""
    inputs = make_inputs()
    rng = random.Random(cfg.seed)
    sizes = ", ".join(f"{len(data) / 1e6:.2f} MB" for data, _ in inputs)
    print(f"inputs: {len(inputs)} JPEGs {INPUT_SIZE[0]}x{INPUT_SIZE[1]} ({sizes}); {os.cpu_count()} CPUs")
    figures: Figures = {}
    failed: list[str] = []
    scenarios = {
        "idle": lambda: scenario_idle(cfg, inputs, rng),
        "burst_small": lambda: scenario_burst(cfg, "burst_small", cfg.burst_small, inputs, rng),
        "burst": lambda: scenario_burst(cfg, "burst", cfg.burst, inputs, rng),
        "inflight": lambda: scenario_inflight(cfg, inputs),
        "pyalloc": lambda: scenario_pyalloc(cfg, inputs),
    }
    for key in SCENARIOS:
        if key not in only:
            continue
        started = time.monotonic()
        try:
            values = await scenarios[key]()
        except Exception:  # noqa: BLE001 - one scenario's crash must not lose the others' figures
            traceback.print_exc()
            print(f"  !! scenario {key} crashed")
            failed.append(key)
            continue
        figures.update({f"{key}.{name}": value for name, value in values.items()})
        print(f"  ({key}: {time.monotonic() - started:.1f} s with start-up and shut-down)")
    return figures, failed


def clean(value: Any) -> Any:
    """JSON has no NaN or infinity: those are written as null."""
    if isinstance(value, float):
        return round(value, 3) if math.isfinite(value) else None
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line (``job_floor.py`` builds its :class:`Config` with it too)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI (well under a minute)")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"scenarios (default {','.join(SCENARIOS)})"
    )
    parser.add_argument("--idle-jobs", type=int, help="jobs in the idle scenario (default 8, smoke 2)")
    parser.add_argument("--burst-small", type=int, help="the small burst (default 100, smoke 10)")
    parser.add_argument("--burst", type=int, help="the large burst (default 500, smoke 30)")
    parser.add_argument("--burst-concurrency", type=int, help="MAX_CONCURRENT_JOBS in bursts (100, smoke 10)")
    parser.add_argument("--inflight", type=int, help="jobs in flight at once (default 1000, smoke 40)")
    parser.add_argument(
        "--pyalloc", type=int, help="jobs in flight under tracemalloc (default 200, smoke 10)"
    )
    parser.add_argument("--task-seconds", help="the fake's task durations LO,HI (default 3,8; smoke 0.2,0.6)")
    parser.add_argument("--seed", type=int, default=1)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    figures, failed = asyncio.run(run(config(args), only))
    if args.json:
        args.json.write_text(json.dumps({k: clean(v) for k, v in figures.items()}, indent=1, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
