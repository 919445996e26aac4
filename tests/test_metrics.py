"""The metrics: the typed wrapper (one registry per bot, bounded labels) and what the runner feeds it."""

from __future__ import annotations

import math

import pytest

from kontext.domain.errors import ApiBalanceError, error_codes
from kontext.domain.generation import MODELS
from kontext.domain.jobs import JobState
from kontext.services.job_metrics import JobMetrics
from kontext.support.metrics import Metrics
from tests.scrape import Scrape
from tests.test_runner import Rig, job


@pytest.fixture
def rig() -> Rig:
    return Rig()


def scraped(metrics: Metrics) -> Scrape:
    return Scrape.parse(metrics.render().decode())


def test_each_bot_has_its_own_registry_with_the_process_collectors() -> None:
    first, second = Metrics(), Metrics()  # a second set of the same names must not collide
    first.job_accepted("flux-kontext-pro")
    assert first.value("kontext_jobs_accepted_total", model="flux-kontext-pro") == 1
    assert second.value("kontext_jobs_accepted_total", model="flux-kontext-pro") == 0
    names = scraped(second).sample_names()
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes"} <= names
    assert "python_info" in names and "python_gc_collections_total" in names


def test_known_labels_start_at_zero_and_unknown_ones_are_other() -> None:
    metrics = Metrics(models=MODELS, reasons=error_codes())
    before = scraped(metrics)
    for model in MODELS:
        for outcome in ("done", "failed"):
            assert before.value("kontext_jobs_total", model=model, outcome=outcome) == 0
        assert before.value("kontext_api_seconds_count", model=model) == 0
    assert before.value("kontext_job_failures_total", reason="api_auth") == 0
    metrics.job_failed("some-new-model", "not_a_code")
    after = scraped(metrics)
    assert after.value("kontext_jobs_total", model="other", outcome="failed") == 1
    assert after.value("kontext_job_failures_total", reason="other") == 1
    assert after.total("kontext_job_failures_total") == 1


def test_a_broken_gauge_reads_nan_and_the_scrape_still_works() -> None:
    metrics = Metrics()

    def broken() -> float:
        raise RuntimeError("gone")

    metrics.watch_jobs(running=lambda: 3, waiting=broken)
    result = scraped(metrics)
    assert result.value("kontext_jobs_running") == 3
    assert math.isnan(result.value("kontext_jobs_waiting"))


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_job_timings_add_up_to_the_end_to_end_time() -> None:
    metrics = Metrics(models=MODELS)
    clock, wall = Clock(100.0), Clock(5_000.0)
    timings = JobMetrics(metrics, clock=clock, wall=wall)
    record = job(token_issued_at=4_998.0)  # the interaction was created 2 s before its acceptance
    timings.accepted(record)
    clock.now = 103.0
    timings.started(record)  # 3 s in line
    clock.now = 104.0
    timings.submitting(record)
    timings.submitted(record)
    clock.now = 110.0
    timings.task_finished(record)  # 6 s at the API
    clock.now = 112.0
    timings.done(record)  # 2 + 12 s end to end, of which the bot added 14 - 6 - 3
    result = scraped(metrics)
    model = {"model": record.model}
    assert result.value("kontext_queue_wait_seconds_sum") == 3
    assert result.value("kontext_api_seconds_sum", **model) == 6
    assert result.value("kontext_job_duration_seconds_sum", **model) == 14
    assert result.value("kontext_overhead_seconds_sum") == 5
    assert result.value("kontext_jobs_total", outcome="done", **model) == 1
    assert len(timings) == 0, "nothing kept once the job is done"


def test_a_job_accepted_by_another_process_counts_but_has_no_timings() -> None:
    metrics = Metrics(models=MODELS)
    timings = JobMetrics(metrics)
    record = job(JobState.SUBMITTED)
    timings.resumed(record)
    timings.started(record)
    timings.task_finished(record)
    timings.done(record)
    result = scraped(metrics)
    assert result.value("kontext_jobs_resumed_total", model=record.model) == 1
    assert result.value("kontext_jobs_total", model=record.model, outcome="done") == 1
    for histogram in ("kontext_queue_wait_seconds", "kontext_overhead_seconds"):
        assert result.value(f"{histogram}_count") == 0
    assert result.value("kontext_job_duration_seconds_count", model=record.model) == 0


@pytest.mark.parametrize("fails", [False, True])
async def test_the_runner_counts_every_step_of_a_job(rig: Rig, fails: bool) -> None:
    if fails:
        rig.provider.submit_error = ApiBalanceError("402", status=402)
    runner = rig.build()
    record = job()
    await runner.start_job(record)
    await runner.wait_idle()
    result = scraped(runner.metrics)
    model = {"model": record.model}
    outcome = "failed" if fails else "done"
    assert rig.state(record) is (JobState.FAILED if fails else JobState.DONE)
    assert result.value("kontext_jobs_accepted_total", **model) == 1
    assert result.total("kontext_jobs_submitted_total", **model) == (0 if fails else 1)
    assert result.value("kontext_jobs_total", outcome=outcome, **model) == 1
    assert result.total("kontext_jobs_total") == 1
    assert result.total("kontext_job_failures_total", reason="api_balance") == (1 if fails else 0)
    assert result.value("kontext_queue_wait_seconds_count") == 1
    assert result.total("kontext_api_seconds_count", **model) == (0 if fails else 1)
    assert result.total("kontext_job_duration_seconds_count", **model) == (0 if fails else 1)
    assert result.value("kontext_overhead_seconds_count") == (0 if fails else 1)
    assert result.value("kontext_jobs_running") == 0 and result.value("kontext_jobs_waiting") == 0
    assert len(runner.job_metrics) == 0


async def test_resumed_jobs_are_counted_by_model(rig: Rig) -> None:
    record = job(JobState.SUBMITTED, hosted_url="https://host.example/x.jpg", task_id="task-9")
    await rig.store.insert_job(record)
    runner = rig.build()
    await runner.resume_all()
    await runner.wait_idle()
    result = scraped(runner.metrics)
    assert result.value("kontext_jobs_resumed_total", model=record.model) == 1
    assert result.value("kontext_jobs_total", model=record.model, outcome="done") == 1
    assert result.total("kontext_jobs_accepted_total") == 0
    assert len(runner.job_metrics) == 0
