"""What the runner tells the metrics about each job: counts, and the timings of the jobs it accepted.

Counts (accepted, submitted, resumed, done, failed by reason) cover every job. The timings cover only
jobs this process accepted, from acceptance to their end (a resumed job's times would include the
downtime):

* queue wait: accepted → the job got its slot;
* API time: submit → the task seen finished;
* end-to-end: the request (the interaction's creation) → the result delivered;
* overhead: end-to-end minus API time minus queue wait (what the bot itself adds).

Times after acceptance are monotonic; the stretch from the request to acceptance is wall-clock
(the interaction's creation is a Discord timestamp).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from kontext.domain.costs import Money
from kontext.domain.jobs import JobRecord
from kontext.support.metrics import Metrics


@dataclass
class _Marks:
    """Monotonic times of one job's steps; ``before`` = seconds from the request to acceptance."""

    accepted: float
    before: float
    waited: float | None = None
    submitted: float | None = None
    api: float | None = None


class JobMetrics:
    """Feeds :class:`~kontext.support.metrics.Metrics` from the runner's steps (see the module)."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self._clock = clock
        self._wall = wall
        self._marks: dict[str, _Marks] = {}

    def accepted(self, job: JobRecord) -> None:
        self.metrics.job_accepted(job.model)
        issued = job.token_issued_at
        before = max(0.0, self._wall() - issued) if issued else 0.0
        self._marks[job.id] = _Marks(self._clock(), before)

    def resumed(self, job: JobRecord) -> None:
        self.metrics.job_resumed(job.model)

    def started(self, job: JobRecord) -> None:
        """The job got its slot."""
        marks = self._marks.get(job.id)
        if marks is not None and marks.waited is None:
            marks.waited = self._clock() - marks.accepted
            self.metrics.waited(marks.waited)

    def submitting(self, job: JobRecord) -> None:
        marks = self._marks.get(job.id)
        if marks is not None:
            marks.submitted = self._clock()

    def submitted(self, job: JobRecord) -> None:
        self.metrics.job_submitted(job.model)

    def task_finished(self, job: JobRecord) -> None:
        marks = self._marks.get(job.id)
        if marks is not None and marks.submitted is not None:
            marks.api = self._clock() - marks.submitted
            self.metrics.api_finished(job.model, marks.api)

    def done(self, job: JobRecord) -> None:
        self.metrics.job_done(job.model)
        marks = self._marks.pop(job.id, None)
        if marks is None or marks.waited is None or marks.api is None:
            return
        total = marks.before + self._clock() - marks.accepted
        self.metrics.job_delivered(job.model, total=total, overhead=total - marks.api - marks.waited)

    def failed(self, job: JobRecord, reason: str) -> None:
        self.metrics.job_failed(job.model, reason)
        self._marks.pop(job.id, None)

    def billed(self, job: JobRecord, currency: str) -> None:
        """The job ended and its price was spent (it stays counted in the budgets)."""
        if job.cost > 0:
            self.metrics.job_cost(job.model, currency, float(Money(job.cost, currency).amount))

    def forget(self, job_id: str) -> None:
        """The job's task ended (whatever the way): drop its marks."""
        self._marks.pop(job_id, None)

    def __len__(self) -> int:
        """Jobs with marks (tests: none may be left behind)."""
        return len(self._marks)
