"""The job runner: input → host → submit → poll → result → deliver, write-ahead and resumable.

The job record in the store is the source of truth. Each state is persisted before the side effect
that follows it, so after a restart :meth:`JobRunner.resume_all` can tell exactly what is safe:
a job with a task id is polled and delivered once; a job caught mid-submit is reported failed and
never submitted again (a second submit costs the server owner money).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from kontext.domain import jobs as m
from kontext.adapters.apimart.client import ApimartClient, GenerationRequest, TaskStatus
from kontext.config import Settings
from kontext.adapters.http.download import DownloadError, DownloadTooLarge, download_capped
from kontext.domain.errors import (
    BusyError,
    ImageDownloadFailed,
    ImageTooLarge,
    JobInterrupted,
    KontextError,
    ResultError,
    ShuttingDown,
    TaskTimedOut,
)
from kontext.adapters.hosting.base import ImageHost
from kontext.i18n import t
from kontext.adapters.images.worker import ImageWorker
from kontext.adapters.images.processing import FittedResult, ImageLimits
from kontext.support.logs import job_context
from kontext.support.metrics import Metrics
from kontext.domain.poll_schedule import PollSchedule
from kontext.domain.fair_queue import FairScheduler
from kontext.adapters.storage.sqlite import Store

log = logging.getLogger("kontext.services.runner")

#: Seconds a resumed job with a task id may still poll even if its deadline passed while down.
RESUME_GRACE_S = 120.0
#: Extra seconds the overall timeout allows beyond the deadline, so polling can report its own reason.
DEADLINE_SLACK_S = 5.0


@dataclass(frozen=True)
class Delivered:
    """Where a result ended up."""

    kind: str  # "original" (the status message) or "channel" (a new message after the token expired)
    message_id: int | None
    attachment_url: str | None


class Reporter(Protocol):
    """The Discord side of one job: the status message, delivery and failure notices."""

    async def status(self, text: str) -> None: ...
    async def attach_input(self, data: bytes, filename: str, content_type: str) -> str: ...
    async def deliver(self, result: FittedResult, notes: list[str]) -> Delivered: ...
    async def fail(self, error: KontextError) -> None: ...


ReporterFactory = Callable[[m.JobRecord], Reporter]
#: Called once when a job ends (done or failed) with its normalised input and result, if known.
FinishedHook = Callable[[m.JobRecord, bytes | None, bytes | None], None]


class StatusLine:
    """Throttles status edits: skips repeats and edits closer together than ``interval``."""

    def __init__(self, reporter: Reporter, interval: float) -> None:
        self.reporter = reporter
        self.interval = interval
        self.last_text: str | None = None
        self.last_at = 0.0

    async def show(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if text == self.last_text or (not force and now - self.last_at < self.interval):
            return
        self.last_text, self.last_at = text, now
        try:
            await self.reporter.status(text)
        except Exception as exc:  # a status edit must never break the job
            log.info("status update failed: %r", exc)


class JobRunner:
    """Runs and resumes jobs with bounded concurrency; see the module docstring."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        apimart: ApimartClient,
        host: ImageHost,
        images: ImageWorker,
        session: aiohttp.ClientSession,
        reporters: ReporterFactory,
        metrics: Metrics,
        schedule: PollSchedule | None = None,
        on_finished: FinishedHook | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.apimart = apimart
        self.host = host
        self.images = images
        self.session = session
        self.reporters = reporters
        self.metrics = metrics
        self.schedule = schedule
        self.on_finished = on_finished
        self._inputs: dict[str, bytes] = {}
        self.scheduler = FairScheduler(
            settings.max_concurrent_jobs, settings.max_jobs_per_user, settings.max_queued_jobs
        )
        self.accepting = True
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._submitting: set[str] = set()
        self._submits_drained = asyncio.Event()
        self.limits = ImageLimits(
            max_bytes=settings.max_input_bytes,
            max_pixels=int(settings.max_input_megapixels * 1_000_000),
            target_pixels=int(settings.normalise_megapixels * 1_000_000),
        )
        metrics.gauge("jobs_running", lambda: self.scheduler.running_total)
        metrics.gauge("jobs_waiting", lambda: self.scheduler.waiting_count)

    # --- public API -----------------------------------------------------------------------------

    async def start_job(self, job: m.JobRecord) -> None:
        """Persist a newly accepted job (state ``received``) and run it in the background."""
        if not self.accepting:
            raise ShuttingDown("runner is stopping")
        if self.scheduler.waiting_count >= self.settings.max_queued_jobs:
            raise BusyError("waiting line full", limit=self.settings.max_queued_jobs)
        await self.store.insert_job(job)
        self.metrics.inc("jobs_accepted_total")
        self._spawn(job, resumed=False)

    async def resume_all(self) -> int:
        """Pick up every unfinished job from the store (call once at start). Returns how many."""
        jobs = await self.store.active_jobs()
        for job in jobs:
            if job.id in self._tasks:
                continue
            if job.state == m.SUBMITTING:
                with job_context(job.id):
                    log.warning(
                        "job was mid-submit when the bot stopped; reporting it failed, not resubmitting"
                    )
                    self._spawn_failure(job, JobInterrupted("interrupted during submit"))
                continue
            log.info("resuming job %s in state %s", job.id, job.state)
            self.metrics.inc("jobs_resumed_total")
            self._spawn(job, resumed=True)
        return len(jobs)

    async def stop(self, grace: float = 3.0) -> None:
        """Stop accepting; let submits on the wire get their task id; leave the rest resumable."""
        self.accepting = False
        deadline = time.monotonic() + grace
        if self._submitting:
            self._submits_drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._submits_drained.wait(), grace)
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.5, deadline - time.monotonic()))
        log.info("runner stopped; %d job(s) left resumable", len(tasks))

    async def wait_idle(self) -> None:
        """Wait until no job task is left (tests and benchmarks)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks.values()))

    # --- internals ----------------------------------------------------------------------------

    def _spawn(self, job: m.JobRecord, *, resumed: bool) -> None:
        self._track(job, asyncio.create_task(self._run(job, resumed=resumed), name=f"job-{job.id}"))

    def _spawn_failure(self, job: m.JobRecord, error: KontextError) -> None:
        async def fail() -> None:
            with job_context(job.id):
                await self._fail(job, error, self.reporters(job))

        self._track(job, asyncio.create_task(fail(), name=f"job-{job.id}-fail"))

    def _track(self, job: m.JobRecord, task: asyncio.Task[None]) -> None:
        self._tasks[job.id] = task

        def forget(_task: asyncio.Task[None], job_id: str = job.id) -> None:
            self._tasks.pop(job_id, None)

        task.add_done_callback(forget)

    def _deadline(self, job: m.JobRecord, resumed: bool) -> float:
        """Wall-clock deadline. A resumed job with a task id always gets a short grace to collect
        a result that may have finished while the bot was down."""
        deadline = job.created_at + self.settings.job_timeout_s
        if resumed and job.state in (m.SUBMITTED, m.DELIVERING):
            deadline = max(deadline, time.time() + RESUME_GRACE_S)
        return deadline

    def _elapsed(self, job: m.JobRecord) -> int:
        return int(job.elapsed())

    async def _run(self, job: m.JobRecord, *, resumed: bool) -> None:
        with job_context(job.id):
            reporter = self.reporters(job)
            line = StatusLine(reporter, self.settings.status_update_interval_s)
            try:

                async def on_position(position: int) -> None:
                    await line.show(t("status_waiting", job.locale, position=position), force=True)

                deadline = self._deadline(job, resumed)
                async with self.scheduler.slot(job.id, job.user_id, on_position=on_position, front=resumed):
                    # the poll phase enforces the deadline itself (and says why it gave up);
                    # the outer timeout is the safety net for every other step
                    budget = max(0.0, deadline - time.time()) + DEADLINE_SLACK_S
                    await asyncio.wait_for(self._pipeline(job, reporter, line, deadline), budget)
            except asyncio.CancelledError:
                log.info("job task cancelled in state %s (resumable)", job.state)
                raise
            except TimeoutError:
                await self._fail(
                    job,
                    TaskTimedOut("overall deadline passed", seconds=int(self.settings.job_timeout_s)),
                    reporter,
                )
            except KontextError as exc:
                await self._fail(job, exc, reporter)
            except Exception as exc:
                log.exception("job crashed in state %s", job.state)
                await self._fail(job, KontextError(f"unexpected {type(exc).__name__}"), reporter)

    async def _pipeline(
        self, job: m.JobRecord, reporter: Reporter, line: StatusLine, deadline: float
    ) -> None:
        notes: list[str] = []
        if job.state == m.RECEIVED:
            await self._host_input(job, reporter, line, notes)
        if job.state == m.HOSTED:
            await self._submit(job, line)
        if job.state == m.SUBMITTED:
            await self._poll(job, line, deadline)
        if job.state == m.DELIVERING:
            await self._deliver(job, reporter, line, notes)

    async def _host_input(
        self, job: m.JobRecord, reporter: Reporter, line: StatusLine, notes: list[str]
    ) -> None:
        if job.kind == m.KIND_IMAGINE or not job.input_url:
            await self.store.transition(job, [m.RECEIVED], m.HOSTED, host_name=None, hosted_url=None)
            return
        await line.show(t("status_uploading", job.locale), force=True)
        try:
            downloaded = await download_capped(
                self.session,
                job.input_url,
                max_bytes=self.settings.max_input_bytes,
                allow_private=self.settings.allow_private_urls,
                timeout=self.settings.http_timeout_s,
            )
        except DownloadTooLarge as exc:
            size = getattr(exc, "size", None)
            raise ImageTooLarge(
                f"input download over cap: {exc}",
                # a streamed body cut at the cap has no known size: say "> limit", not "?"
                size_mb=f"{size / 1048576:.1f}" if size else f"> {self.settings.max_input_mb:g}",
                limit_mb=f"{self.settings.max_input_mb:g}",
            ) from exc
        except DownloadError as exc:
            raise ImageDownloadFailed(f"input download failed: {exc}") from exc
        image = await self.images.normalise(downloaded.data, self.limits)
        if image.letterboxed:
            notes.append("letterboxed")
        log.info(
            "input normalised: %s %dx%d -> %s %d bytes",
            image.source_format,
            image.width,
            image.height,
            image.content_type,
            len(image.data),
        )
        self._inputs[job.id] = image.data
        hosted = await self.host.put(
            job.id, image.data, image.content_type, image.extension, reporter.attach_input
        )
        await self.store.transition(
            job,
            [m.RECEIVED],
            m.HOSTED,
            host_name=self.host.name,
            hosted_url=hosted.url,
            host_handle=hosted.handle,
        )
        log.info("input hosted on %s", self.host.name)

    async def _submit(self, job: m.JobRecord, line: StatusLine) -> None:
        request = GenerationRequest(
            model=job.model,
            prompt=job.prompt,
            image_url=job.hosted_url,
            size=job.size,
            response_format=job.response_format,
            safety_tolerance=job.safety_tolerance,
            prompt_upsampling=job.prompt_upsampling,
        )
        if not await self.store.transition(job, [m.HOSTED], m.SUBMITTING):
            raise JobInterrupted(f"job left state hosted unexpectedly ({job.state})")
        self._submitting.add(job.id)
        try:
            task_id = await self.apimart.submit(request, idempotency_key=job.id)
            await self.store.transition(
                job, [m.SUBMITTING], m.SUBMITTED, task_id=task_id, submitted_at=time.time()
            )
        finally:
            self._submitting.discard(job.id)
            if not self._submitting:
                self._submits_drained.set()
        self.metrics.inc("jobs_submitted_total")
        log.info(
            "submitted %s as task %s (size=%s safety=%d)", job.model, task_id, job.size, job.safety_tolerance
        )
        await line.show(t("status_queued", job.locale, elapsed=self._elapsed(job)), force=True)

    async def _poll(self, job: m.JobRecord, line: StatusLine, deadline: float) -> None:
        assert job.task_id is not None

        async def on_update(status: TaskStatus) -> None:
            elapsed = self._elapsed(job)
            if status.state == "queued":
                await line.show(t("status_queued", job.locale, elapsed=elapsed))
            elif status.progress is not None:
                await line.show(t("status_editing", job.locale, progress=status.progress, elapsed=elapsed))
            else:
                await line.show(t("status_editing_noprogress", job.locale, elapsed=elapsed))

        status = await self.apimart.wait_for_task(
            job.task_id,
            deadline=asyncio.get_running_loop().time() + (deadline - time.time()),
            on_update=on_update,
            schedule=self.schedule,
        )
        if not status.result_urls:
            raise ResultError("completed task has no result URL", reason="no image in the result")
        await self.store.transition(job, [m.SUBMITTED], m.DELIVERING, result_url=status.result_urls[0])
        log.info("task completed after %.1f s", time.time() - (job.submitted_at or job.created_at))

    async def _deliver(
        self, job: m.JobRecord, reporter: Reporter, line: StatusLine, notes: list[str]
    ) -> None:
        assert job.result_url is not None
        await line.show(t("status_downloading", job.locale, elapsed=self._elapsed(job)), force=True)
        try:
            downloaded = await download_capped(
                self.session,
                job.result_url,
                max_bytes=self.settings.max_result_bytes,
                allow_private=self.settings.allow_private_urls,
                timeout=self.settings.http_timeout_s,
                accept_types=("image/",),
            )
        except DownloadTooLarge as exc:
            raise ResultError(f"result over cap: {exc}", reason="too large") from exc
        except DownloadError as exc:
            raise ResultError(f"result download failed: {exc}", reason="download failed") from exc
        fitted = await self.images.fit_result(
            downloaded.data, job.attachment_size_limit, max_pixels=self.limits.max_pixels
        )
        texts = [t("letterboxed_note", job.locale)] if "letterboxed" in notes else []
        if fitted.reencoded:
            texts.append(t("reencoded_note", job.locale))
            log.info("result re-encoded to %d bytes to fit %d", len(fitted.data), job.attachment_size_limit)
        delivered = await reporter.deliver(fitted, texts)
        await self.store.transition(
            job,
            [m.DELIVERING],
            m.DONE,
            delivery=delivered.kind,
            result_message_id=delivered.message_id,
            result_attachment_url=delivered.attachment_url,
            finished_at=time.time(),
            # a final job never needs its interaction token again (the result buttons arrive as new
            # interactions with their own tokens): do not keep a credential we no longer need
            interaction_token=None,
        )
        self.metrics.inc("jobs_done_total")
        log.info("delivered via %s after %.1f s", delivered.kind, job.elapsed())
        await self._cleanup(job, fitted.data)

    async def _fail(self, job: m.JobRecord, error: KontextError, reporter: Reporter) -> None:
        log.warning("job failed (%s): %s", error.code, error.detail)
        changed = await self.store.transition(
            job,
            m.ACTIVE_STATES,
            m.FAILED,
            error_code=error.code,
            error_detail=error.detail[:500],
            finished_at=time.time(),
        )
        if not changed:
            return
        self.metrics.inc("jobs_failed_total")
        self.metrics.inc(f"jobs_failed_{error.code}_total")
        try:
            await reporter.fail(error)
        except Exception as exc:
            log.warning("could not tell the requester about the failure: %r", exc)
        try:  # the requester has been told (or cannot be): the token is no longer needed
            await self.store.update_job(job, interaction_token=None)
        except Exception as exc:
            log.warning("could not clear the interaction token: %r", exc)
        await self._cleanup(job, None)

    async def _cleanup(self, job: m.JobRecord, result: bytes | None) -> None:
        """After a final state: remove the hosted copy and report the job to the hook."""
        if job.host_handle:
            await self.host.delete(job.host_handle)
        input_image = self._inputs.pop(job.id, None)
        if self.on_finished is not None:
            try:
                self.on_finished(job, input_image, result)
            except Exception:
                log.exception("finished-hook failed")
