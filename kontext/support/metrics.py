"""The bot's Prometheus metrics, every one declared here once (name, help, labels, buckets).

Each bot has its own :class:`~prometheus_client.CollectorRegistry` (tests run several bots in one
process), holding the metrics below plus the standard process, platform and GC collectors. Services
and adapters call the typed methods of :class:`Metrics`, never a metric name; ``/metrics`` serves
:meth:`Metrics.render`. Label values are bounded: models and failure reasons outside the sets given
at construction are counted as ``other``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Final, Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

__all__ = ["CONTENT_TYPE", "OTHER", "Metrics"]

#: The classic text format every Prometheus version reads.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
#: The label value of a model or failure reason outside the known set.
OTHER: Final = "other"

# Buckets in seconds, each spanning what its step plausibly takes (+Inf is implicit).
ACK_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
QUEUE_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
API_BUCKETS: Final = (0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0, 600.0)
DURATION_BUCKETS: Final = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0, 600.0, 900.0)
OVERHEAD_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Reading = Callable[[], float]
ImageKind = Literal["input", "result"]
WorkerLoss = Literal["timeout", "died", "dead_on_arrival"]
FileOutcome = Literal["served", "denied"]

WORKER_LOSSES: Final[tuple[WorkerLoss, ...]] = ("timeout", "died", "dead_on_arrival")


def _safe(read: Reading) -> Reading:
    """A gauge reading that is NaN instead of an exception (one broken gauge must not break a scrape)."""

    def reading() -> float:
        try:
            return float(read())
        except Exception:  # noqa: BLE001 - any failure of a reading means "unknown", never a failed scrape
            return math.nan

    return reading


class Metrics:
    """Every metric of one bot, in its own registry (see the module docstring)."""

    def __init__(self, *, models: Iterable[str] = (), reasons: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._models = frozenset(models)
        self._reasons = frozenset(reasons)
        self._declare_jobs()
        self._declare_latencies()
        self._declare_images()
        self._initialise_labels()

    # --- declarations -------------------------------------------------------------------------------

    def _counter(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, help_text, labels, registry=self.registry)

    def _gauge(self, name: str, help_text: str) -> Gauge:
        return Gauge(name, help_text, registry=self.registry)

    def _histogram(
        self, name: str, help_text: str, buckets: tuple[float, ...], labels: tuple[str, ...] = ()
    ) -> Histogram:
        return Histogram(name, help_text, labels, buckets=buckets, registry=self.registry)

    def _declare_jobs(self) -> None:
        self.jobs_accepted = self._counter(
            "kontext_jobs_accepted", "Jobs accepted (persisted and started), by model.", ("model",)
        )
        self.jobs_submitted = self._counter(
            "kontext_jobs_submitted", "Jobs submitted to the image API (a task was created).", ("model",)
        )
        self.jobs_resumed = self._counter(
            "kontext_jobs_resumed",
            "Unfinished jobs taken over after a restart or from a stopped process.",
            ("model",),
        )
        self.jobs_finished = self._counter(
            "kontext_jobs", "Jobs finished, by model and outcome (done, failed).", ("model", "outcome")
        )
        self.job_failures = self._counter(
            "kontext_job_failures", "Failed jobs by reason (the error code).", ("reason",)
        )
        self.spent = self._counter(
            "kontext_spent",
            "Money spent at the image API by finished jobs (their model's price, in the currency "
            "label), counting only jobs the API billed.",
            ("model", "currency"),
        )
        self.jobs_running = self._gauge("kontext_jobs_running", "Jobs holding a slot now.")
        self.jobs_waiting = self._gauge("kontext_jobs_waiting", "Jobs waiting in line for a slot.")

    def _declare_latencies(self) -> None:
        self.ack_latency = self._histogram(
            "kontext_ack_latency_seconds",
            "From the interaction's creation to Discord acknowledging the defer (accepted requests).",
            ACK_BUCKETS,
        )
        self.queue_wait = self._histogram(
            "kontext_queue_wait_seconds", "From a job's acceptance to it starting to run.", QUEUE_BUCKETS
        )
        self.api_time = self._histogram(
            "kontext_api_seconds",
            "From submitting to the API to seeing the task finished.",
            API_BUCKETS,
            ("model",),
        )
        self.job_duration = self._histogram(
            "kontext_job_duration_seconds",
            "From the request to the result delivered (jobs done).",
            DURATION_BUCKETS,
            ("model",),
        )
        self.overhead = self._histogram(
            "kontext_overhead_seconds",
            "What the bot adds to a job done: end-to-end minus API time minus queue wait.",
            OVERHEAD_BUCKETS,
        )

    def _declare_images(self) -> None:
        self.image_workers_busy = self._gauge("kontext_image_workers_busy", "Image workers running a job.")
        self.image_workers_ready = self._gauge(
            "kontext_image_workers_ready", "Image workers started and waiting for a job."
        )
        self.image_jobs_waiting = self._gauge(
            "kontext_image_jobs_waiting", "Image jobs waiting in line for a worker."
        )
        self.image_passed_through = self._counter(
            "kontext_image_passed_through",
            "Clean images used as they came, without a worker, by kind (input, result).",
            ("kind",),
        )
        self.image_workers_lost = self._counter(
            "kontext_image_workers_lost",
            "Image workers that ended without an answer, by cause "
            "(timeout: killed at the deadline; died: crashed or hit a limit; dead_on_arrival).",
            ("cause",),
        )
        self.image_worker_cpu = self._counter(
            "kontext_image_worker_cpu_seconds", "CPU time image workers reported for their jobs."
        )
        self.hosted_files = self._counter(
            "kontext_hosted_files",
            "Requests for locally hosted files, by outcome (served, denied).",
            ("outcome",),
        )

    def _initialise_labels(self) -> None:
        """Known label values start at zero, so rates and dashboards have series from the start."""
        for model in self._models:
            for family in (self.jobs_accepted, self.jobs_submitted, self.jobs_resumed):
                family.labels(model=model)
            for outcome in ("done", "failed"):
                self.jobs_finished.labels(model=model, outcome=outcome)
            self.api_time.labels(model=model)
            self.job_duration.labels(model=model)
        for reason in self._reasons:
            self.job_failures.labels(reason=reason)
        for kind in ("input", "result"):
            self.image_passed_through.labels(kind=kind)
        for cause in WORKER_LOSSES:
            self.image_workers_lost.labels(cause=cause)
        for outcome in ("served", "denied"):
            self.hosted_files.labels(outcome=outcome)

    # --- jobs ---------------------------------------------------------------------------------------

    def _model(self, model: str) -> str:
        return model if not self._models or model in self._models else OTHER

    def job_accepted(self, model: str) -> None:
        self.jobs_accepted.labels(model=self._model(model)).inc()

    def job_submitted(self, model: str) -> None:
        self.jobs_submitted.labels(model=self._model(model)).inc()

    def job_resumed(self, model: str) -> None:
        self.jobs_resumed.labels(model=self._model(model)).inc()

    def job_done(self, model: str) -> None:
        self.jobs_finished.labels(model=self._model(model), outcome="done").inc()

    def job_failed(self, model: str, reason: str) -> None:
        self.jobs_finished.labels(model=self._model(model), outcome="failed").inc()
        known = not self._reasons or reason in self._reasons
        self.job_failures.labels(reason=reason if known else OTHER).inc()

    def job_cost(self, model: str, currency: str, amount: float) -> None:
        """A finished job was billed ``amount`` of ``currency``."""
        self.spent.labels(model=self._model(model), currency=currency).inc(amount)

    def watch_jobs(self, *, running: Reading, waiting: Reading) -> None:
        """Read the job gauges from these callables at every scrape."""
        self.jobs_running.set_function(_safe(running))
        self.jobs_waiting.set_function(_safe(waiting))

    # --- latencies (seconds) ------------------------------------------------------------------------

    def acknowledged(self, seconds: float) -> None:
        self.ack_latency.observe(max(0.0, seconds))

    def waited(self, seconds: float) -> None:
        self.queue_wait.observe(max(0.0, seconds))

    def api_finished(self, model: str, seconds: float) -> None:
        self.api_time.labels(model=self._model(model)).observe(max(0.0, seconds))

    def job_delivered(self, model: str, *, total: float, overhead: float) -> None:
        """One job done: its end-to-end time and what the bot added to it."""
        self.job_duration.labels(model=self._model(model)).observe(max(0.0, total))
        self.overhead.observe(max(0.0, overhead))

    # --- images and hosted files --------------------------------------------------------------------

    def watch_image_workers(self, *, busy: Reading, ready: Reading, waiting: Reading) -> None:
        """Read the image-sandbox gauges from these callables at every scrape."""
        self.image_workers_busy.set_function(_safe(busy))
        self.image_workers_ready.set_function(_safe(ready))
        self.image_jobs_waiting.set_function(_safe(waiting))

    def image_passed(self, kind: ImageKind) -> None:
        self.image_passed_through.labels(kind=kind).inc()

    def image_worker_lost(self, cause: WorkerLoss) -> None:
        self.image_workers_lost.labels(cause=cause).inc()

    def image_worker_used(self, cpu_seconds: float) -> None:
        self.image_worker_cpu.inc(max(0.0, cpu_seconds))

    def hosted_file(self, outcome: FileOutcome) -> None:
        self.hosted_files.labels(outcome=outcome).inc()

    # --- reading ------------------------------------------------------------------------------------

    def value(self, name: str, **labels: str) -> float:
        """One sample's current value by its exposed name (0 when absent): for tests and benchmarks."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    def render(self) -> bytes:
        """Every metric in Prometheus' text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
