"""Run every benchmark, print its figures, then every target next to its figure; optionally write JSON.

    python bench/run_all.py [--smoke] [--json FILE] [names...]

Each benchmark runs as a subprocess with this interpreter, from the repository root, with
``--json <temporary file>`` (and ``--smoke``, the quick run CI does: about two minutes in all).
Their figures are merged under the benchmark's name (``poll.``, ``image.``, ``job.``, ``floor.``,
``admit.``, ``scale.``, ``chart.``; nested figures as dotted keys) into one JSON document with stable keys
(bench/README.md lists them)::

    {"schema": 1, "meta": {...}, "figures": {"job.burst.defer_ms_p99": 41.2, ...},
     "targets": {"job.burst.defer_ms_p99": {"label": ..., "op": "<", "value": 100, "met": true}, ...}}

Figures that could not be measured are ``null``. Prints, never asserts on figures (machines are noisy):
the exit status is non-zero only if a benchmark crashed or hung.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import operator
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botproc import machine_cpu_s

ROOT = Path(__file__).resolve().parent.parent
BENCHES = {
    "poll": "bench/poll_bench.py",
    "image": "bench/image_bench.py",
    "job": "bench/job_bench.py",
    "floor": "bench/defer_floor.py",
    "jobfloor": "bench/job_floor.py",
    "admit": "bench/admit_bench.py",
    "scale": "bench/scale_bench.py",
    "chart": "bench/chart_bench.py",
}
SCHEMA = 1


@dataclass(frozen=True)
class Target:
    key: str
    label: str
    op: str
    value: float
    unit: str = ""
    size_key: str | None = None  #: the figure that says how many jobs the scenario had
    size: int | None = None  #: how many the target is about

    def met(self, figure: float | None) -> bool | None:
        if figure is None or (isinstance(figure, float) and math.isnan(figure)):
            return None
        ops: dict[str, Callable[[float, float], bool]] = {
            "<": operator.lt,
            "<=": operator.le,
            "==": operator.eq,
        }
        return ops[self.op](figure, self.value)


TARGETS = (
    Target(
        "job.burst.defer_ms_p99", "defer p99, 500 /edits within 1 s", "<", 100, "ms", "job.burst.jobs", 500
    ),
    Target(
        "job.burst.defer_ms_max", "defer max, 500 /edits within 1 s", "<", 3000, "ms", "job.burst.jobs", 500
    ),
    Target("job.burst.lost", "jobs lost, 500 /edits within 1 s", "==", 0, "", "job.burst.jobs", 500),
    Target("job.idle.cpu_ms_per_job", "bot CPU per job (1 MP JPEG in, result fits)", "<=", 30, "ms"),
    Target("image.jpeg.sandbox_ms_median", "12 MP JPEG normalisation (in the sandbox)", "<=", 60, "ms"),
    Target("job.idle.overhead_ms_mean", "overhead per job on an idle bot", "<=", 50, "ms"),
    Target(
        "job.inflight.rss_growth_mb",
        "1,000 jobs in flight: RSS growth",
        "<=",
        150,
        "MB",
        "job.inflight.jobs",
        1000,
    ),
    Target(
        "job.inflight.loop_lag_holding_ms_p99",
        "1,000 jobs in flight (all held): event-loop lag p99",
        "<",
        20,
        "ms",
        "job.inflight.jobs",
        1000,
    ),
    Target(
        "job.inflight.loop_lag_ms_p99",
        "event-loop lag p99, whole in-flight run (filling at 200 /edits/s included)",
        "<",
        20,
        "ms",
        "job.inflight.jobs",
        1000,
    ),
    Target("job.idle.rest_per_job_max", "Discord REST requests per job, idle", "<=", 12),
    Target("job.burst_small.rest_per_job_max", "Discord REST requests per job, burst of 100", "<=", 12),
    Target("job.burst.rest_per_job_max", "Discord REST requests per job, burst of 500", "<=", 12),
    Target("job.inflight.rest_per_job_max", "Discord REST requests per job, 1,000 in flight", "<=", 12),
    Target("chart.render.loop_lag_ms_max", "event-loop lag while a 90-day chart is drawn", "<", 20, "ms"),
    Target("poll.adaptive.mix.detect_s_mean", "detection after the task ends, mix: mean", "<=", 0.6, "s"),
    Target("poll.adaptive.mix.detect_s_max", "detection after the task ends, mix: max", "<=", 1.5, "s"),
    Target("poll.adaptive.mix.polls_vs_fixed_1s", "polls, share of a fixed 1 s poller's, mix", "<=", 1 / 3),
)


def git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def run_bench(name: str, smoke: bool, timeout: float, env: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """Run one benchmark; returns its status ("ok", "exit status N", "timed out …") and figures."""
    with tempfile.TemporaryDirectory(prefix=f"kontext-{name}-") as tmp:
        out = Path(tmp) / "figures.json"
        command = [sys.executable, BENCHES[name], *(["--smoke"] if smoke else []), "--json", str(out)]
        print(f"\n=== {name}: python {' '.join(command[1:-2])}", flush=True)
        try:
            code: int | None = subprocess.run(
                command, cwd=ROOT, env=env, timeout=timeout, check=False
            ).returncode
        except subprocess.TimeoutExpired:
            code = None
        figures: dict[str, Any] = {}
        if out.exists():
            try:
                figures = json.loads(out.read_text())
            except ValueError:
                figures = {}
    if code == 0:
        return "ok", figures
    return (f"exit status {code}" if code is not None else f"timed out after {timeout:g} s"), figures


def flatten(found: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested figures as dotted keys (``{"a": {"b": 1}}`` → ``{"a.b": 1}``)."""
    flat: dict[str, Any] = {}
    for key, value in found.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def tidy(value: Any) -> Any:
    """Floats to 3 decimals; NaN and infinity (which JSON lacks) to None."""
    if isinstance(value, float):
        return round(value, 3) if math.isfinite(value) else None
    return value


def fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.0f}"
    return str(value)


def job_floor(figures: dict[str, Any]) -> float | None:
    """The floor bot's CPU per request (``bench/job_floor.py``) times the Kontext bot's requests
    per idle job: what discord.py and aiohttp alone cost for the bot's requests."""
    per_request = figures.get("jobfloor.cpu_ms_per_request")
    requests = figures.get("job.idle.requests_per_job")
    if per_request is None or requests is None:
        return None
    return round(float(per_request) * float(requests), 1)


def print_targets(figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    print("\n=== targets (printed, never asserted; the machine's load is in each scenario's 'machine:' line)")
    print(f"  {'figure':<50}{'value':>10}  {'target':<10}")
    results: dict[str, dict[str, Any]] = {}
    for target in TARGETS:
        value = figures.get(target.key)
        met = target.met(value)
        note = ""
        if target.size_key is not None and target.size is not None:
            size = figures.get(target.size_key)
            if size is not None and size != target.size:
                note = f"  (measured with {size} jobs, not {target.size})"
        floor = figures.get(target.key.replace("job.burst.", "floor.", 1))
        if target.key.startswith("job.burst.defer_ms") and floor is not None:
            note += f"  (floor, a bot that only defers: {fmt(floor)} ms)"
        stolen = figures.get("job.burst.arrival_steal_ms_worst_run")
        if target.key == "job.burst.defer_ms_p99" and stolen:
            note += f"  (up to {fmt(stolen)} ms of CPU stolen by the hypervisor in a run's arrival second)"
        floor_job = figures.get("jobfloor.cpu_ms_for_bot_requests")
        if target.key == "job.idle.cpu_ms_per_job" and floor_job is not None:
            note += f"  (floor, a bot that only makes the same requests: {fmt(floor_job)} ms)"
        if target.key == "image.jpeg.sandbox_ms_median":
            mp = figures.get("image.jpeg.megapixels")
            if mp is not None and round(mp) != 12:
                note = f"  (measured on a {mp:g} MP JPEG)"
            if (inline := figures.get("image.jpeg.inline_ms_median")) is not None:
                note += f"  (the same work inline, no process: {fmt(inline)} ms)"
        verdict = {True: "meets", False: "MISSES", None: "not measured"}[met]
        shown = f"{target.value:.3g}" if target.value < 1 else f"{target.value:g}"
        want = f"{target.op} {shown}{(' ' + target.unit) if target.unit else ''}"
        unit = f" {target.unit}" if target.unit and value is not None else ""
        print(f"  {target.label:<50}{fmt(value) + unit:>10}  {want:<10}  {verdict}{note}")
        results[target.key] = {
            "label": target.label,
            "op": target.op,
            "value": target.value,
            "unit": target.unit,
            "met": met,
        }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="quick run (CI)")
    parser.add_argument("--json", type=Path, help="write every figure to this file (stable keys)")
    parser.add_argument("names", nargs="*", help=f"benchmarks to run: {', '.join(BENCHES)} (default: all)")
    parser.add_argument("--timeout", type=float, help="seconds per benchmark (default 120 smoke, 1800 full)")
    args = parser.parse_args()
    unknown = [name for name in args.names if name not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    timeout = args.timeout or (120.0 if args.smoke else 1800.0)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    names = args.names or list(BENCHES)
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    busy0, _ = machine_cpu_s()
    load0 = loadavg()
    started = time.perf_counter()
    figures: dict[str, Any] = {}
    statuses: dict[str, str] = {}
    for name in names:
        bench_started = time.perf_counter()
        status, found = run_bench(name, args.smoke, timeout, env)
        statuses[name] = status
        figures.update({f"{name}.{key}": tidy(value) for key, value in flatten(found).items()})
        print(f"=== {name}: {status} in {time.perf_counter() - bench_started:.1f} s", flush=True)
    elapsed = time.perf_counter() - started
    if (scaled := job_floor(figures)) is not None:
        figures["jobfloor.cpu_ms_for_bot_requests"] = scaled  # the floor under job.idle.cpu_ms_per_job
    busy1, _ = machine_cpu_s()
    targets = print_targets(figures)
    cpus = os.cpu_count() or 1
    busy = (busy1 - busy0) / elapsed if not math.isnan(busy0) else math.nan
    failed = [name for name, status in statuses.items() if status != "ok"]
    outcome = f"FAILED: {', '.join(failed)}" if failed else "all ok"
    print(
        f"\n=== {len(names)} benchmarks in {elapsed:.1f} s on {cpus} CPUs ({fmt(busy)} busy on average,"
        f" load average {load0} before, {loadavg()} after): {outcome}"
    )
    if args.json:
        meta = {
            "started": started_at,
            "duration_s": round(elapsed, 1),
            "smoke": args.smoke,
            "benches": statuses,
            "git_commit": git("rev-parse", "HEAD"),
            "git_branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "git_dirty": bool(git("status", "--porcelain")),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": cpus,
            "machine_cpus_busy": None if math.isnan(busy) else round(busy, 2),
            "loadavg_before": load0,
            "loadavg_after": loadavg(),
        }
        document = {
            "schema": SCHEMA,
            "meta": meta,
            "figures": dict(sorted(figures.items())),
            "targets": targets,
        }
        args.json.write_text(json.dumps(document, indent=1) + "\n")
        print(f"figures written to {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
