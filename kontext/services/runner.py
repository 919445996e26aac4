"""The job runner: input → host → submit → poll → result → deliver, write-ahead and resumable.

The job record in the store is the source of truth. Each state is persisted before the side effect
that follows it, so after a restart :meth:`JobRunner.resume_all` can tell exactly what is safe:
a job with a task id is polled and delivered once; a job caught mid-submit is reported failed and
never submitted again (a second submit costs the server owner money).

Each unfinished job is owned by one process through a lease in the store: when a process dies, a
live one (or its replacement) claims the job once the lease ran out, and a process that lost a job
can no longer change it (every step is a compare-and-set on state AND owner).

The runner only talks to ports (provider, host, store, downloader, image processor, reporter) and
tells the requester's side what happens through events (:mod:`kontext.domain.events`); it never
words anything itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from kontext.config import Settings
from kontext.domain.costs import billed
from kontext.domain.errors import (
    BusyError,
    ImageDownloadFailed,
    ImageTooLarge,
    ImageTooLargeUnknownSize,
    InputGone,
    JobInterrupted,
    KontextError,
    ResultError,
    ShuttingDown,
    TaskTimedOut,
)
from kontext.domain.events import (
    Delivered,
    Done,
    Downloading,
    Editing,
    Failed,
    Note,
    Queued,
    Uploading,
    Waiting,
)
from kontext.domain.fair_queue import FairScheduler
from kontext.domain.generation import GenerationRequest, TaskState, TaskStatus
from kontext.domain.images import FittedResult, ImageLimits
from kontext.domain.jobs import ACTIVE_STATES, JobKind, JobRecord, JobState
from kontext.domain.poll_schedule import PollSchedule
from kontext.services.foreground import Foreground
from kontext.services.job_metrics import JobMetrics
from kontext.services.polling import wait_for_task
from kontext.services.ports import (
    Accounting,
    Downloader,
    FetchError,
    FetchTooLarge,
    HostedImage,
    ImageHost,
    ImageProcessor,
    ImageProvider,
    InputArchive,
    JobStore,
    Reporter,
    ReporterFactory,
    RouteTooSmall,
)
from kontext.services.status import StatusLine
from kontext.support.background import BackgroundTasks, every
from kontext.support.logs import job_context
from kontext.support.metrics import Metrics

log = logging.getLogger("kontext.jobs")

#: Seconds a resumed job with a task id may still poll even if its deadline passed while down.
RESUME_GRACE_S = 120.0
#: Extra seconds the overall timeout allows beyond the deadline, so polling can report its own reason.
DEADLINE_SLACK_S = 5.0


#: A step's own status ("Uploading…", "Downloading the result…") is shown only if the step is
#: still running this long after it began. Most end well within it (a 1 MP input is fetched, checked
#: and hosted in ~15 ms, a result posted in ~20 ms), and an edit replaced a moment later costs a
#: Discord request and ~1.5 ms of the bot's CPU for nothing; slow steps still say what they do.
STEP_STATUS_AFTER_S: Final = 1.0


class JobLost(Exception):
    """Another process took the job over (this one's lease ran out): stop touching it, quietly."""


#: Called once when a job ends (done or failed) with the thumbnails of its input and result, if known.
FinishedHook = Callable[[JobRecord, bytes | None, bytes | None], None]
#: Whether the finished-hook will use a job's thumbnails (e.g. its server keeps a moderation log).
ThumbnailsWanted = Callable[[JobRecord], Awaitable[bool]]


@dataclass(frozen=True)
class RunnerPorts:
    """Everything outside the runner that a job touches."""

    store: JobStore
    provider: ImageProvider
    host: ImageHost
    images: ImageProcessor
    downloader: Downloader
    reporters: ReporterFactory
    inputs: InputArchive
    accounting: Accounting


@dataclass
class _Run:
    """One running job: its record, its reporter and status line, notes for the result."""

    job: JobRecord
    reporter: Reporter
    line: StatusLine
    deadline: float
    notes: list[Note]


class JobRunner:
    """Runs and resumes jobs with bounded concurrency; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        ports: RunnerPorts,
        metrics: Metrics,
        *,
        schedule: PollSchedule | None = None,
        on_finished: FinishedHook | None = None,
        wants_thumbnails: ThumbnailsWanted | None = None,
        foreground: Foreground | None = None,
    ) -> None:
        self.settings = settings
        self.ports = ports
        self.metrics = metrics
        self.schedule = schedule
        self.on_finished = on_finished
        #: None: thumbnails are made whenever there is a finished-hook.
        self.wants_thumbnails = wants_thumbnails
        #: Job steps give way to interactions being acknowledged (the intake marks them).
        self.foreground = foreground or Foreground()
        self.scheduler = FairScheduler(settings.max_concurrent_jobs, settings.max_jobs_per_user)
        self._deliveries = asyncio.Semaphore(settings.max_concurrent_deliveries)
        self.accepting = True
        self.limits = ImageLimits(
            max_bytes=settings.max_input_bytes,
            max_pixels=int(settings.max_input_megapixels * 1_000_000),
            target_pixels=int(settings.normalise_megapixels * 1_000_000),
        )
        self._tasks = BackgroundTasks("jobs", log)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._reserved = 0
        #: Input thumbnails (a few KB) kept for the finished-hook; never the images themselves.
        self._thumbnails: dict[str, bytes] = {}
        self._submitting: set[str] = set()
        self._submits_drained = asyncio.Event()
        self._leases = BackgroundTasks("leases", log)
        self.job_metrics = JobMetrics(metrics)
        metrics.watch_jobs(
            running=lambda: self.scheduler.running_total, waiting=lambda: self.scheduler.waiting_count
        )

    # --- admission (the one place the waiting line is bounded) -------------------------------

    def reserve(self) -> None:
        """Hold a place for a job about to start; raises :class:`ShuttingDown` or :class:`BusyError`.

        Every reservation ends in :meth:`start_job` or :meth:`release`.
        """
        if not self.accepting:
            raise ShuttingDown("runner is stopping")
        limit = self.settings.max_queued_jobs
        if self.scheduler.waiting_count + self._reserved >= limit:
            raise BusyError(f"waiting line full ({self.scheduler.waiting_count} waiting)", limit=limit)
        self._reserved += 1

    def release(self) -> None:
        """Give back a reservation that will not become a job."""
        self._reserved = max(0, self._reserved - 1)

    async def start_job(self, job: JobRecord) -> None:
        """Persist a reserved job (state ``received``) and run it in the background."""
        try:
            if not self.accepting:
                raise ShuttingDown("runner is stopping")
            await self.ports.store.insert_job(job)
        finally:
            self.release()
        self.job_metrics.accepted(job)
        self._spawn(job, resumed=False)

    async def find_job(self, job_id: str) -> JobRecord | None:
        """A job's stored record (for result buttons), or None once it is forgotten."""
        return await self.ports.store.get_job(job_id)

    # --- lifecycle ----------------------------------------------------------------------------

    async def resume_all(self) -> int:
        """Take over unfinished jobs (call once at start) and, when processes share the store, keep
        leases alive and pick up the jobs of processes that died. Returns how many were taken now."""
        store = self.ports.store
        await store.forget_tokens()
        taken = await self._take_over(await store.claim_jobs(everything=not store.shared))
        if store.shared:
            self._leases.spawn(
                every(self.settings.lease_heartbeat_s, self._heartbeat, logger=log, what="lease heartbeat"),
                name="lease-heartbeat",
            )
        return taken

    async def _heartbeat(self) -> None:
        await self.ports.store.renew_leases()
        if self.accepting:
            await self._take_over(await self.ports.store.claim_jobs())

    async def _take_over(self, jobs: list[JobRecord]) -> int:
        taken = 0
        for job in jobs:
            if job.id in self._running:
                continue
            taken += 1
            if job.state is JobState.SUBMITTING:
                with job_context(job.id):
                    log.warning(
                        "job was mid-submit when its process stopped; reporting it failed, not resubmitting"
                    )
                self._spawn_failure(job, JobInterrupted("interrupted during submit"))
                continue
            log.info("resuming job %s in state %s", job.id, job.state)
            self.job_metrics.resumed(job)
            self._spawn(job, resumed=True)
        return taken

    async def stop(self, grace: float = 3.0) -> None:
        """Stop accepting; let submits on the wire get their task id; leave the rest resumable."""
        self.accepting = False
        deadline = time.monotonic() + grace
        if self._submitting:
            self._submits_drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._submits_drained.wait(), grace)
        left = len(self._tasks)
        await self._leases.close()
        await self._tasks.close(timeout=max(0.5, deadline - time.monotonic()))
        try:  # another process may take the unfinished jobs at once instead of after the lease
            await self.ports.store.release_leases()
            await self.ports.store.forget_tokens()  # a job that failed while stopping keeps none
        except Exception as exc:  # noqa: BLE001 - shutting down: the leases will simply run out
            log.warning("could not release job leases: %r", exc)
        log.info("runner stopped; %d job(s) left resumable", left)

    async def wait_idle(self) -> None:
        """Wait until no job task is left (tests and benchmarks)."""
        await self._tasks.drain()

    # --- internals ----------------------------------------------------------------------------

    def _spawn(self, job: JobRecord, *, resumed: bool) -> None:
        self._track(job, self._tasks.spawn(self._run(job, resumed=resumed), name=f"job-{job.id}"))

    def _spawn_failure(self, job: JobRecord, error: KontextError) -> None:
        async def fail() -> None:
            with job_context(job.id):
                await self._fail(job, error, self.ports.reporters(job))

        self._track(job, self._tasks.spawn(fail(), name=f"job-{job.id}-fail"))

    def _track(self, job: JobRecord, task: asyncio.Task[None]) -> None:
        self._running[job.id] = task

        def forget(_task: asyncio.Task[None], job_id: str = job.id) -> None:
            self._running.pop(job_id, None)
            self.job_metrics.forget(job_id)

        task.add_done_callback(forget)

    def _deadline(self, job: JobRecord, resumed: bool) -> float:
        """Wall-clock deadline. A resumed job with a task id always gets a short grace to collect
        a result that may have finished while the bot was down."""
        deadline = job.created_at + self.settings.job_timeout_s
        if resumed and job.state in (JobState.SUBMITTED, JobState.DELIVERING):
            deadline = max(deadline, time.time() + RESUME_GRACE_S)
        return deadline

    async def _run(self, job: JobRecord, *, resumed: bool) -> None:
        with job_context(job.id):
            reporter = self.ports.reporters(job)
            run = _Run(
                job,
                reporter,
                StatusLine(reporter, self.settings.status_update_interval_s),
                self._deadline(job, resumed),
                [],
            )
            try:
                await self._run_in_slot(run, resumed)
            except asyncio.CancelledError:
                log.info("job task cancelled in state %s (resumable)", job.state)
                raise
            except JobLost:
                log.warning("job was taken over by another process in state %s; leaving it", job.state)
            except TimeoutError:
                timeout = TaskTimedOut("overall deadline passed", seconds=int(self.settings.job_timeout_s))
                await self._fail(job, timeout, reporter)
            except KontextError as exc:
                await self._fail(job, exc, reporter)
            except Exception as exc:
                log.exception("job crashed in state %s", job.state)
                await self._fail(job, KontextError(f"unexpected {type(exc).__name__}"), reporter)

    async def _run_in_slot(self, run: _Run, resumed: bool) -> None:
        job = run.job

        async def on_position(position: int) -> None:
            await self.foreground.yield_to_acknowledgements()
            await run.line.show(Waiting(position))

        report_every = max(1.0, self.settings.status_update_interval_s)
        slot = self.scheduler.slot(
            job.id,
            job.user_id,
            on_position=on_position,
            front=resumed,
            report_every=report_every,
            # "thinking…" is on screen already: a place in line is worth an edit only to a job that
            # is still waiting after a moment (in a burst, most jobs start sooner)
            first_report_after=report_every,
        )
        async with slot:
            self.job_metrics.started(job)
            # the poll phase enforces the deadline itself (and says why it gave up);
            # the outer timeout is the safety net for every other step
            budget = max(0.0, run.deadline - time.time()) + DEADLINE_SLACK_S
            await asyncio.wait_for(self._pipeline(run), budget)

    async def _move(
        self, job: JobRecord, from_state: JobState, to_state: JobState, **changes: object
    ) -> None:
        """One write-ahead step; :class:`JobLost` when another process owns the job now."""
        if not await self.ports.store.transition(job, [from_state], to_state, **changes):
            raise JobLost(f"{job.id}: {from_state} -> {to_state} refused")

    async def _pipeline(self, run: _Run) -> None:
        job = run.job
        steps = (
            (JobState.RECEIVED, self._host_input),
            (JobState.HOSTED, self._submit),
            (JobState.SUBMITTED, self._poll),
            (JobState.DELIVERING, self._deliver),
        )
        for state, step in steps:
            if job.state is state:
                await self.foreground.yield_to_acknowledgements()
                await step(run)

    async def _host_input(self, run: _Run) -> None:
        job, host = run.job, self.ports.host
        if job.kind is JobKind.IMAGINE or not (job.input_url or job.input_ref):
            await self._move(job, JobState.RECEIVED, JobState.HOSTED, host_name=None, hosted_url=None)
            return
        async with run.line.during(Uploading(), after=STEP_STATUS_AFTER_S):
            kept, hosted = await self._normalise_and_host(run)
        await self._move(
            job,
            JobState.RECEIVED,
            JobState.HOSTED,
            host_name=host.name,
            hosted_url=hosted.url,
            host_handle=hosted.handle,
            input_ref=kept,
        )
        log.info("input hosted on %s", host.name)

    async def _normalise_and_host(self, run: _Run) -> tuple[str | None, HostedImage]:
        """Fetch, normalise, keep and host the input; the kept copy's reference and the hosted copy."""
        job, host = run.job, self.ports.host
        data = await self._input_bytes(job)
        image = await self.ports.images.normalise(
            data, self.limits, owner=job.user_id, thumbnail=await self._thumbnails_wanted(job)
        )
        del data  # the user's original is not needed past this step
        if image.letterboxed:
            run.notes.append(Note.LETTERBOXED)
        log.info(
            "input normalised: %s (decoded at %d/8) -> %s %dx%d, %d bytes",
            image.source_format,
            image.dct_eighths,
            image.content_type,
            image.width,
            image.height,
            len(image.data),
        )
        if image.thumbnail:
            self._thumbnails[job.id] = image.thumbnail
        kept = job.input_ref or await self.ports.inputs.keep(job.id, image.data, image.extension)
        hosted = await host.put(
            job.id, image.data, image.content_type, image.extension, run.reporter.attach_input
        )
        return kept, hosted

    async def _thumbnails_wanted(self, job: JobRecord) -> bool:
        """Thumbnails cost a decode: make them only for a finished-hook that will use them."""
        if self.on_finished is None:
            return False
        if self.wants_thumbnails is None:
            return True
        try:
            return await self.wants_thumbnails(job)
        except Exception as exc:  # noqa: BLE001 - when in doubt, make them (the old behaviour)
            log.warning("could not tell whether thumbnails are wanted: %r", exc)
            return True

    async def _input_bytes(self, job: JobRecord) -> bytes:
        """The input: the kept copy of an earlier job's (Re-roll), else a download of the attachment."""
        if job.input_ref:
            kept = await self.ports.inputs.load(job.input_ref)
            if kept is not None:
                return kept
            log.info("kept input %s is gone; trying the original link", job.input_ref)
        if not job.input_url:
            raise InputGone(f"kept input {job.input_ref} is gone and there is no link")
        return await self._fetch_input(job.input_url)

    async def _fetch_input(self, url: str) -> bytes:
        try:
            return await self.ports.downloader.fetch(url, max_bytes=self.settings.max_input_bytes)
        except FetchTooLarge as exc:
            limit_mb = self.settings.max_input_mb
            if not exc.size:  # a streamed body cut at the cap has no known size: say "> limit", not "?"
                raise ImageTooLargeUnknownSize(f"input download over cap: {exc}", limit_mb=limit_mb) from exc
            size_mb = round(exc.size / 1048576, 1)
            raise ImageTooLarge(
                f"input download over cap: {exc}", size_mb=size_mb, limit_mb=limit_mb
            ) from exc
        except FetchError as exc:
            raise ImageDownloadFailed(f"input download failed: {exc}") from exc

    async def _submit(self, run: _Run) -> None:
        job = run.job
        request = GenerationRequest(
            model=job.model,
            prompt=job.prompt,
            image_url=job.hosted_url,
            size=job.size,
            response_format=job.response_format,
            safety_tolerance=job.safety_tolerance,
            prompt_upsampling=job.prompt_upsampling,
        )
        await self._move(job, JobState.HOSTED, JobState.SUBMITTING)
        self._submitting.add(job.id)
        self.job_metrics.submitting(job)
        try:
            task_id = await self.ports.provider.submit(request, idempotency_key=job.id)
            log.info("task %s created", task_id)  # before the write: an operator can still find it
            await self._move(
                job, JobState.SUBMITTING, JobState.SUBMITTED, task_id=task_id, submitted_at=time.time()
            )
        finally:
            self._submitting.discard(job.id)
            if not self._submitting:
                self._submits_drained.set()
        self.job_metrics.submitted(job)
        log.info(
            "submitted %s as task %s (size=%s safety=%d)", job.model, task_id, job.size, job.safety_tolerance
        )
        await run.line.show(Queued(int(job.elapsed())), force=True)

    async def _poll(self, run: _Run) -> None:
        job = run.job
        assert job.task_id is not None

        async def on_update(status: TaskStatus) -> None:
            elapsed = int(job.elapsed())
            if status.state is TaskState.QUEUED:
                await run.line.show(Queued(elapsed))
            else:
                await run.line.show(Editing(status.progress, elapsed))

        status = await wait_for_task(
            self.ports.provider,
            job.task_id,
            deadline=asyncio.get_running_loop().time() + (run.deadline - time.time()),
            on_update=on_update,
            schedule=self.schedule,
        )
        self.job_metrics.task_finished(job)
        if not status.result_urls:
            raise ResultError("completed task has no result URL", reason="no image in the result")
        await self._move(job, JobState.SUBMITTED, JobState.DELIVERING, result_url=status.result_urls[0])
        log.info("task completed after %.1f s", time.time() - (job.submitted_at or job.created_at))

    async def _deliver(self, run: _Run) -> None:
        job = run.job
        # a result is in memory from its download until it is posted: when many jobs finish together,
        # only MAX_CONCURRENT_DELIVERIES of them hold one at a time (the others wait their turn)
        async with self._deliveries:
            fitted, delivered = await self._download_and_post(run)
        await self._move(
            job,
            JobState.DELIVERING,
            JobState.DONE,
            delivery=delivered.kind,
            result_message_id=delivered.message_id,
            result_attachment_url=delivered.attachment_url,
            finished_at=time.time(),
            # a final job never needs its interaction token again (the result buttons arrive as new
            # interactions with their own tokens): do not keep a credential we no longer need
            interaction_token=None,
        )
        self.job_metrics.done(job)
        self.job_metrics.billed(job, self.settings.price_currency)
        log.info("delivered via %s after %.1f s", delivered.kind, job.elapsed())
        await self._cleanup(job, fitted.thumbnail or None)

    async def _download_and_post(self, run: _Run) -> tuple[FittedResult, Delivered]:
        limit = await run.reporter.delivery_limit()
        async with run.line.during(Downloading(int(run.job.elapsed())), after=STEP_STATUS_AFTER_S):
            data = await self._download_result(run)
            fitted = await self._fit(run, data, limit)
        try:
            return fitted, await self._post(run, fitted, limit)
        except RouteTooSmall as smaller:  # it must go as a channel post, whose limit is lower
            fitted = await self._fit(run, data, smaller.limit)
            return fitted, await self._post(run, fitted, smaller.limit)

    async def _download_result(self, run: _Run) -> bytes:
        assert run.job.result_url is not None
        try:
            return await self.ports.downloader.fetch(
                run.job.result_url, max_bytes=self.settings.max_result_bytes, accept_types=("image/",)
            )
        except FetchTooLarge as exc:
            raise ResultError(f"result over cap: {exc}", reason="too large") from exc
        except FetchError as exc:
            raise ResultError(f"result download failed: {exc}", reason="download failed") from exc

    async def _fit(self, run: _Run, data: bytes, limit: int) -> FittedResult:
        """Check the result and fit it to ``limit`` (the upload limit of the way it goes)."""
        fitted = await self.ports.images.fit_result(
            data,
            limit,
            max_pixels=self.limits.max_pixels,
            owner=run.job.user_id,
            thumbnail=await self._thumbnails_wanted(run.job),
        )
        if fitted.cleaned:
            log.info("result cleaned: metadata dropped, EXIF orientation applied")
        if fitted.reencoded:
            log.info("result re-encoded to %d bytes to fit %d", len(fitted.data), limit)
        return fitted

    async def _post(self, run: _Run, fitted: FittedResult, limit: int) -> Delivered:
        """Post the fitted result (:class:`RouteTooSmall` when it must go another way with a lower
        ``limit``)."""
        notes = [*run.notes, *([Note.REENCODED] if fitted.reencoded else [])]
        return await run.reporter.deliver(Done(fitted, round(run.job.elapsed()), tuple(notes)))

    async def _fail(self, job: JobRecord, error: KontextError, reporter: Reporter) -> None:
        log.warning("job failed (%s): %s", error.code, error.detail)
        held = job.cost
        was_billed = billed(job.state, error, charge_failed_tasks=self.settings.charge_failed_tasks)
        changed = await self.ports.store.transition(
            job,
            ACTIVE_STATES,
            JobState.FAILED,
            error_code=error.code,
            error_detail=error.detail[:500],
            finished_at=time.time(),
            **({} if was_billed else {"cost": 0}),
        )
        if not changed:
            return
        if held and not was_billed:
            await self._release(job, held)
        self.job_metrics.failed(job, error.code)
        if was_billed:
            self.job_metrics.billed(job, self.settings.price_currency)
        try:
            await reporter.fail(Failed(error))
        except Exception as exc:  # noqa: BLE001 - the failure is recorded; telling the user is best effort
            log.warning("could not tell the requester about the failure: %r", exc)
        try:  # the requester has been told (or cannot be): the token is no longer needed
            await self.ports.store.update_job(job, interaction_token=None)
        except Exception as exc:  # noqa: BLE001 - clean-up after a failure must not raise
            log.warning("could not clear the interaction token: %r", exc)
        await self._cleanup(job, None)

    async def _release(self, job: JobRecord, cost: int) -> None:
        """The budgets get back the price of a job that was never billed (best effort: the job
        is already recorded at no cost, so a failure here only leaves a budget counting it)."""
        try:
            await self.ports.accounting.release(job, cost)
        except Exception as exc:  # noqa: BLE001 - the failure itself is recorded; never lose it here
            log.warning("could not give the job's price back to the budgets: %r", exc)

    async def _cleanup(self, job: JobRecord, result_thumbnail: bytes | None) -> None:
        """After a final state: remove the hosted copy and report the job (with thumbnails) to the hook."""
        if job.host_handle:
            await self.ports.host.delete(job.host_handle)
        input_thumbnail = self._thumbnails.pop(job.id, None)
        if self.on_finished is not None:
            try:
                self.on_finished(job, input_thumbnail, result_thumbnail)
            except Exception:
                log.exception("finished-hook failed")
