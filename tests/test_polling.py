"""PollSchedule: table tests, invariants, and a simulated run (no sleeping)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kontext.domain.generation import TaskState, TaskStatus
from kontext.domain.poll_schedule import PollSchedule, simulate

#: Round numbers for the table: 1 s near the estimate, 8 s at most before it, 2 s without one, 4 s
#: at most when backing off. (The shipped defaults are tuned on the benchmark; see the tests below.)
S = PollSchedule(min_delay=1.0, max_delay=8.0, no_estimate_delay=2.0, backoff_max=4.0)
DEFAULT = PollSchedule()


def status(state: str = "running", progress: int | None = None, estimate: float | None = None) -> TaskStatus:
    return TaskStatus(
        task_id="t",
        state=TaskState(state),
        raw_status=state,
        progress=progress,
        estimated_time=estimate,
        result_urls=(),
        error=None,
        expires_at=None,
    )


@pytest.mark.parametrize(
    ("elapsed", "state", "progress", "estimate", "expected"),
    [
        # estimate known, well ahead: a third of the remaining time, capped at max_delay
        (0, "queued", 0, 30, 8.0),
        (15, "running", 50, 30, 5.0),
        (24, "running", 80, 30, 2.0),
        # near the estimate: min_delay
        (28, "running", 90, 30, 1.0),
        (30, "running", 95, 30, 1.0),
        # just past it: still min_delay within the grace (max(10, estimate/2) = 15 s)
        (44, "running", None, 30, 1.0),
        # far past, nothing else known: gentle back-off, 0.1 s per second past the grace, capped
        (55, "running", None, 30, 2.0),
        (300, "running", None, 30, 4.0),
        # past a wrong estimate, progress tells the truth: estimate = elapsed * 100 / progress
        (40, "running", 50, 30, 8.0),  # new estimate 80 → a third of the 40 s left, capped at 8
        (55, "running", 99, 30, 1.0),  # new estimate ~55.6 → due now
        # short estimate: grace is at least overdue_grace (10 s)
        (6, "running", None, 5, 1.0),
        (15, "running", None, 5, 1.0),
        (25, "running", None, 5, 2.0),
        # no estimate and no progress: no_estimate_delay, then back off after patience
        (0, "queued", None, None, 2.0),
        (30, "running", None, None, 2.0),
        (40, "running", None, None, 3.0),
        (600, "running", None, None, 4.0),
        # no estimate, progress while running: estimate = elapsed * 100 / progress
        (10, "running", 50, None, 10 / 3),  # estimate 20 → remaining 10
        (10, "running", 2, None, 2.0),  # progress too small to trust
        (10, "queued", 50, None, 2.0),  # progress only counts while running
        # junk estimates are ignored
        (0, "running", None, 0, 2.0),
        (0, "running", None, -5, 2.0),
        (0, "running", None, math.nan, 2.0),
        (0, "running", None, math.inf, 2.0),
        # junk elapsed is treated as 0
        (-3, "running", None, 30, 8.0),
        (math.nan, "running", None, 30, 8.0),
    ],
)
def test_schedule_table(
    elapsed: float, state: str, progress: int | None, estimate: float | None, expected: float
) -> None:
    assert S.next_delay(elapsed, status(state, progress, estimate)) == pytest.approx(expected)


def test_scaled_multiplies_every_duration() -> None:
    fast = S.scaled(0.01)
    assert fast.min_delay == pytest.approx(0.01)
    assert fast.max_delay == pytest.approx(0.08)
    assert fast.backoff_max == pytest.approx(0.04)
    assert fast.fraction == S.fraction and fast.backoff_rate == S.backoff_rate
    # the same shape at 1/100 of the time
    for elapsed, est in [(0, 30), (15, 30), (55, 30), (40, None)]:
        slow = S.next_delay(elapsed, status(estimate=est))
        quick = fast.next_delay(elapsed * 0.01, status(estimate=None if est is None else est * 0.01))
        assert quick == pytest.approx(slow * 0.01)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_delay": 0},
        {"min_delay": -1},
        {"max_delay": 0.5},
        {"backoff_max": 0.1},
        {"fraction": 0},
        {"fraction": 1.5},
        {"patience": -1},
    ],
)
def test_invalid_parameters(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        PollSchedule(**kwargs)


@given(
    elapsed=st.floats(allow_nan=True, allow_infinity=True),
    estimate=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    progress=st.one_of(st.none(), st.integers(0, 100)),
    state=st.sampled_from(["queued", "running", "completed", "failed"]),
)
def test_delay_always_within_bounds(
    elapsed: float, estimate: float | None, progress: int | None, state: str
) -> None:
    delay = S.next_delay(elapsed, status(state, progress, estimate))
    assert S.min_delay <= delay <= S.longest_delay


@given(estimate=st.floats(1, 600), elapsed=st.floats(0, 600))
def test_never_sleeps_past_a_pending_estimate(estimate: float, elapsed: float) -> None:
    """Before the estimate, the next poll lands no later than max(estimate, now + min_delay)."""
    delay = S.next_delay(elapsed, status(estimate=estimate))
    if elapsed < estimate:
        assert elapsed + delay <= max(estimate, elapsed + S.min_delay) + 1e-9


@pytest.mark.parametrize("duration", [3, 5, 8, 12, 20, 30, 45, 60, 120])
def test_simulated_detection_latency_with_a_correct_estimate(duration: float) -> None:
    result = simulate(DEFAULT, duration=duration, estimated_time=duration, queue_time=duration * 0.1)
    print(f"duration {duration:>4}s: {result.polls:>2} polls, detected {result.latency:.2f}s late")
    assert result.latency <= 1.2
    # sparse early: a bounded count, and well under a fixed 1 s interval for longer jobs
    assert result.polls <= 7 + duration / 6
    if duration >= 12:
        assert result.polls <= duration * 0.7


def test_simulated_job_far_past_its_estimate_backs_off_gently() -> None:
    result = simulate(S, duration=120, estimated_time=20, report_progress=False)
    gaps = [b - a for a, b in zip(result.poll_times, result.poll_times[1:], strict=False)]
    assert max(gaps) <= S.max_delay
    assert gaps[-1] == pytest.approx(S.backoff_max)  # backed off to ~4 s by the end
    assert result.latency <= S.backoff_max
    assert result.polls < 120 / S.min_delay / 2  # not a 1 s hammer for the whole overrun


def test_progress_corrects_a_wrong_estimate() -> None:
    """Told 20 s, took 180 s: progress gives the real end, so polls stay sparse and land on time."""
    guided = simulate(DEFAULT, duration=180, estimated_time=20, report_progress=True)
    blind = simulate(DEFAULT, duration=180, estimated_time=20, report_progress=False)
    assert guided.polls < blind.polls / 2
    assert guided.latency <= DEFAULT.backoff_max


def test_the_defaults_meet_the_targets_on_the_benchmark_mix() -> None:
    """Pure simulation (no clock): over right, wrong and missing estimates, a finished task is
    noticed 0.6 s later on average and 1.5 s at worst, with at most a third of a 1 s poller's polls."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import poll_bench

    runs = [poll_bench.run(DEFAULT, job, offset) for job in poll_bench.JOBS for offset in poll_bench.OFFSETS]
    fixed = [poll_bench.run(poll_bench.fixed(1.0), j, o) for j in poll_bench.JOBS for o in poll_bench.OFFSETS]
    assert sum(r.latency for r in runs) / len(runs) <= 0.6
    assert max(r.latency for r in runs) <= 1.5
    assert sum(r.polls for r in runs) <= sum(r.polls for r in fixed) / 3


def test_simulated_job_without_estimate_uses_progress() -> None:
    with_progress = simulate(S, duration=40, estimated_time=None, report_progress=True)
    blind = simulate(S, duration=40, estimated_time=None, report_progress=False)
    assert with_progress.latency <= 2.0
    assert blind.latency <= S.backoff_max
    assert with_progress.polls < blind.polls
