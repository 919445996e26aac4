"""Polls per job and detection latency of the adaptive poll schedule (pure simulation).

Run: ``python bench/poll_bench.py [--json FILE]`` (``--smoke`` is accepted and changes nothing: it is
already instant). No sleeping and no network: each job is simulated with
:func:`kontext.domain.poll_schedule.simulate` (first poll at submission, 10 % of the job queued,
progress linear) under :class:`~kontext.domain.poll_schedule.PollSchedule`. The adaptive schedule
is compared with fixed 1 s / 2 s / 5 s intervals on the same jobs. Each job is run at several
sub-second offsets of its duration (whole-second durations would flatter the fixed intervals);
figures are means over the offsets, "max" is the worst offset.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kontext.domain.poll_schedule import PollSchedule, SimResult, simulate


@dataclass(frozen=True)
class Job:
    label: str
    duration: float
    estimate: float | None
    progress: bool = True


JOBS = [
    *(Job(f"exact {d:g}s", d, d) for d in (5, 10, 20, 30, 45, 60, 120)),
    *(Job(f"est 20s, took {d:g}s", d, 20) for d in (10, 16, 24, 30, 60, 180)),
    *(Job(f"no est, progress, {d:g}s", d, None) for d in (10, 30, 90)),
    *(Job(f"no est, no progress, {d:g}s", d, None, progress=False) for d in (10, 30, 90)),
]


OFFSETS = (0.0, 0.13, 0.29, 0.47, 0.61, 0.83)


def run(schedule: PollSchedule, job: Job, offset: float) -> SimResult:
    """One simulated job; with a correct estimate the estimate moves with the offset too."""
    duration = job.duration + offset
    estimate = duration if job.label.startswith("exact") else job.estimate
    return simulate(
        schedule,
        duration=duration,
        estimated_time=estimate,
        report_progress=job.progress,
        queue_time=duration * 0.1,
    )


def fixed(interval: float) -> PollSchedule:
    return PollSchedule(
        min_delay=interval, max_delay=interval, no_estimate_delay=interval, backoff_max=interval
    )


SCHEDULES = {
    "adaptive": PollSchedule(),
    "fixed 1s": fixed(1.0),
    "fixed 2s": fixed(2.0),
    "fixed 5s": fixed(5.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="accepted for run_all.py; no effect")
    parser.add_argument("--json", help="write the figures to this file (keys in bench/README.md)")
    args = parser.parse_args()
    names = list(SCHEDULES)
    header = f"{'job':<28}" + "".join(f"{name:>18}" for name in names)
    print("polls / detection latency (s) per job")
    print(header)
    print("-" * len(header))
    totals: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for job in JOBS:
        row = f"{job.label:<28}"
        for name, schedule in SCHEDULES.items():
            runs = [run(schedule, job, offset) for offset in OFFSETS]
            for result in runs:
                totals[name].append((result.polls, result.latency))
            polls = statistics.mean(r.polls for r in runs)
            latency = statistics.mean(r.latency for r in runs)
            row += f"{polls:>10.1f} / {latency:>4.2f}"
        print(row)
    print("-" * len(header))
    for label, pick in (
        ("mean polls", lambda xs: statistics.mean(p for p, _ in xs)),
        ("mean latency (s)", lambda xs: statistics.mean(lat for _, lat in xs)),
        ("max latency (s)", lambda xs: max(lat for _, lat in xs)),
    ):
        print(f"{label:<28}" + "".join(f"{pick(totals[name]):>18.2f}" for name in names))
    exact = [j for j in JOBS if j.label.startswith("exact")]
    adaptive = [run(PollSchedule(), j, offset) for j in exact for offset in OFFSETS]
    print(
        f"\nadaptive, correct estimate: {statistics.mean(r.polls for r in adaptive):.1f} polls/job, "
        f"latency mean {statistics.mean(r.latency for r in adaptive):.2f} s, "
        f"max {max(r.latency for r in adaptive):.2f} s"
    )
    figures = figures_of(totals, adaptive)
    share = figures["adaptive.mix.polls_vs_fixed_1s"]
    print(f"adaptive over the mix: {share:.2f} of a fixed 1 s poller's polls")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(figures, out, indent=1, sort_keys=True)


def figures_of(totals: dict[str, list[tuple[float, float]]], exact: list[SimResult]) -> dict[str, float]:
    """The JSON figures: per schedule over the whole mix, the adaptive one with correct estimates, and
    the adaptive schedule's polls as a share of a fixed 1 s poller's."""
    figures: dict[str, float] = {}
    for name, runs in totals.items():
        key = name.replace(" ", "_")  # "fixed 1s" -> "fixed_1s"
        figures[f"{key}.mix.polls_per_job_mean"] = statistics.mean(p for p, _ in runs)
        figures[f"{key}.mix.detect_s_mean"] = statistics.mean(lat for _, lat in runs)
        figures[f"{key}.mix.detect_s_max"] = max(lat for _, lat in runs)
    figures["adaptive.exact.polls_per_job_mean"] = statistics.mean(r.polls for r in exact)
    figures["adaptive.exact.detect_s_mean"] = statistics.mean(r.latency for r in exact)
    figures["adaptive.exact.detect_s_max"] = max(r.latency for r in exact)
    figures["adaptive.mix.polls_vs_fixed_1s"] = (
        figures["adaptive.mix.polls_per_job_mean"] / figures["fixed_1s.mix.polls_per_job_mean"]
    )
    return {key: round(value, 4) for key, value in figures.items()}


if __name__ == "__main__":
    main()
