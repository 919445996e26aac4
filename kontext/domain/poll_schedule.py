"""Adaptive poll schedule for APIMart tasks.

A fixed sleep either wastes requests (short) or makes users wait for a finished job (long). The
schedule uses what the task tells us:

* **Known estimate, time remaining** – poll sparsely: about ``fraction`` (a third) of the remaining
  estimate, never more than ``max_delay`` and never less than ``min_delay``. Because the delay is a
  fraction of what remains, polls get denser as the estimate approaches and never jump far past it.
* **Near and after the estimate** – poll every ``min_delay`` (0.8 s), so a job that finishes about
  when it said it would is noticed within ~``min_delay``.
* **The estimate was wrong** – once it has passed, a task that reports progress gets a new estimate
  from it (``elapsed * 100 / progress``) and is polled as above; without progress, after
  ``overdue_grace`` (or half the estimate) the delay grows by ``backoff_rate`` per overdue second up to
  ``backoff_max``.
* **No estimate** – derived from progress when there is some; otherwise poll every
  ``no_estimate_delay`` for ``patience`` seconds, then back off the same way up to ``backoff_max``.

The defaults were tuned on ``bench/poll_bench.py``'s mix of right, wrong and missing estimates: a
finished task is noticed 0.47 s later on average and 1.4 s at worst, with a third of the polls of a
fixed 1 s poller. ``backoff_max`` is what bounds the worst case: a task with no information at all
can only be noticed as often as it is asked about.

``estimated_time`` is taken as the task's total expected duration, measured from submission;
``elapsed`` is the time since the task was submitted (or since waiting started, after a resume).

The schedule is pure and deterministic (no clock, no randomness): the same inputs give the same
delay, which makes it table-testable and simulable (:func:`simulate`). Jitter is unnecessary here
because every job's schedule is already anchored to its own submission time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from kontext.domain.generation import TaskState, TaskStatus
from kontext.domain.values import finite_number

__all__ = ["PollSchedule", "SimResult", "simulate"]


_TIME_FIELDS = ("min_delay", "max_delay", "no_estimate_delay", "patience", "overdue_grace", "backoff_max")


@dataclass(frozen=True)
class PollSchedule:
    """Decides how long to wait before the next poll (see the module docstring).

    All times are seconds. :meth:`scaled` multiplies every duration, e.g. ``PollSchedule().scaled(0.01)``
    for fast tests.
    """

    #: Shortest delay; the cadence near and just after the estimate.
    min_delay: float = 0.8
    #: Longest delay while the estimate is still ahead (sparse early polling).
    max_delay: float = 20.0
    #: Share of the remaining estimate to wait while it is still ahead.
    fraction: float = 1 / 3
    #: Delay when neither an estimate nor usable progress is known.
    no_estimate_delay: float = 1.5
    #: How long to keep ``no_estimate_delay`` before backing off (no estimate at all).
    patience: float = 30.0
    #: How long past the estimate to keep ``min_delay`` (at least half the estimate is also allowed).
    overdue_grace: float = 10.0
    #: Delay growth per second beyond the grace (dimensionless: seconds of delay per second).
    backoff_rate: float = 0.1
    #: Upper bound while backing off (overdue, or no estimate for a long time): the worst-case delay
    #: in noticing a finished task that tells us nothing.
    backoff_max: float = 1.5
    #: Minimum progress (percent) before progress is trusted to derive an estimate.
    min_progress_for_estimate: int = 5

    def __post_init__(self) -> None:
        if not (self.min_delay > 0 and math.isfinite(self.min_delay)):
            raise ValueError("min_delay must be a positive number")
        for name in ("max_delay", "no_estimate_delay", "backoff_max"):
            if getattr(self, name) < self.min_delay:
                raise ValueError(f"{name} must be >= min_delay")
        if not 0 < self.fraction <= 1:
            raise ValueError("fraction must be in (0, 1]")
        if self.patience < 0 or self.overdue_grace < 0 or self.backoff_rate < 0:
            raise ValueError("patience, overdue_grace and backoff_rate must be >= 0")

    def scaled(self, factor: float) -> PollSchedule:
        """The same schedule with every duration multiplied by ``factor`` (rates unchanged)."""
        if not factor > 0:
            raise ValueError("factor must be > 0")
        return replace(self, **{name: getattr(self, name) * factor for name in _TIME_FIELDS})

    @property
    def longest_delay(self) -> float:
        return max(self.max_delay, self.backoff_max, self.no_estimate_delay)

    def estimate(self, elapsed: float, status: TaskStatus) -> float | None:
        """The total expected duration: the reported ``estimated_time`` while it is still ahead, else
        derived from progress (which also corrects an estimate that turned out wrong)."""
        reported = finite_number(status.estimated_time)
        if reported is not None and reported <= 0:
            reported = None
        derived = self._from_progress(elapsed, status)
        if reported is not None and (elapsed < reported or derived is None):
            return reported
        return derived

    def _from_progress(self, elapsed: float, status: TaskStatus) -> float | None:
        progress = status.progress
        if (
            progress is not None
            and self.min_progress_for_estimate <= progress < 100
            and elapsed >= self.min_delay
            and status.state is TaskState.RUNNING
        ):
            return elapsed * 100.0 / progress
        return None

    def next_delay(self, elapsed: float, status: TaskStatus) -> float:
        """Seconds to wait before polling again, given the time since submission and the last status."""
        if not math.isfinite(elapsed) or elapsed < 0:
            elapsed = 0.0
        estimate = self.estimate(elapsed, status)
        if estimate is None:
            over = elapsed - self.patience
            delay = self.no_estimate_delay if over <= 0 else self.no_estimate_delay + over * self.backoff_rate
            return self._clamp(min(delay, max(self.backoff_max, self.no_estimate_delay)))
        remaining = estimate - elapsed
        if remaining > 0:
            return self._clamp(min(self.max_delay, remaining * self.fraction))
        overdue = -remaining
        grace = max(self.overdue_grace, estimate * 0.5)
        if overdue <= grace:
            return self.min_delay
        return self._clamp(min(self.backoff_max, self.min_delay + (overdue - grace) * self.backoff_rate))

    def trouble_delays(self) -> tuple[float, float]:
        """(base, cap) of the jittered back-off between polls while the provider is in trouble."""
        return self.min_delay / 2, self.backoff_max * 2

    def _clamp(self, delay: float) -> float:
        return min(max(delay, self.min_delay), self.longest_delay)


@dataclass(frozen=True)
class SimResult:
    """Outcome of :func:`simulate`: number of polls and how late the finished job was noticed."""

    polls: int
    latency: float
    poll_times: tuple[float, ...]


def simulate(
    schedule: PollSchedule,
    *,
    duration: float,
    estimated_time: float | None,
    report_progress: bool = True,
    queue_time: float = 0.0,
    max_polls: int = 10_000,
) -> SimResult:
    """Pure simulation of one job polled with ``schedule`` (no sleeping).

    The job is queued for ``queue_time`` seconds, then runs until ``duration`` (both measured from
    submission); progress (if reported) grows linearly while running. The first poll happens at
    submission (t = 0), like :func:`kontext.services.polling.wait_for_task`.
    """
    t = 0.0
    times: list[float] = []
    while len(times) < max_polls:
        times.append(t)
        if t >= duration:
            return SimResult(polls=len(times), latency=t - duration, poll_times=tuple(times))
        if t < queue_time:
            state, progress = TaskState.QUEUED, 0 if report_progress else None
        else:
            state = TaskState.RUNNING
            share = (t - queue_time) / max(duration - queue_time, 1e-9)
            progress = int(share * 100) if report_progress else None
        status = TaskStatus(
            task_id="sim",
            state=state,
            raw_status="processing" if state is TaskState.RUNNING else "pending",
            progress=progress,
            estimated_time=estimated_time,
            result_urls=(),
            error=None,
            expires_at=None,
        )
        t += schedule.next_delay(t, status)
    raise RuntimeError("simulation did not finish")
