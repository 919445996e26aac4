"""The job runner against in-memory ports: every state resumes safely, in milliseconds."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from kontext.adapters.storage import PostgresStore
from kontext.config import Settings, load_settings
from kontext.domain.errors import (
    ApiBalanceError,
    ApiSubmitUncertain,
    BusyError,
    ImageTooSlow,
    KontextError,
    ShuttingDown,
)
from kontext.domain.events import Downloading, Editing, Queued, Uploading
from kontext.domain.images import ImageLimits
from kontext.domain.jobs import JobKind, JobRecord, JobState
from kontext.domain.poll_schedule import PollSchedule
from kontext.services import runner as runner_module
from kontext.services.runner import JobRunner, RunnerPorts
from kontext.support.metrics import Metrics
from tests.fakes.memory import (
    MemoryArchive,
    MemoryDownloader,
    MemoryHost,
    MemoryStore,
    PassThroughImages,
    RecordingAccounting,
    RecordingReporter,
    ScriptedProvider,
)
from tests.harness import API_KEY, TOKEN
from tests.waiting import eventually, settle, until

INSTANT = PollSchedule().scaled(0.001)


def settings(**env: str) -> Settings:
    base = {"DISCORD_TOKEN": TOKEN, "APIMART_API_KEY": API_KEY, "STATUS_UPDATE_INTERVAL_SECONDS": "0"}
    return load_settings({**base, **env})


def job(state: JobState = JobState.RECEIVED, **changes: Any) -> JobRecord:
    record = JobRecord(
        id=f"job{time.monotonic_ns():x}",
        kind=JobKind.EDIT,
        prompt="make it blue",
        model="flux-kontext-pro",
        size="match_input_image",
        response_format="png",
        safety_tolerance=2,
        prompt_upsampling=False,
        user_id=1,
        channel_id=2,
        guild_id=3,
        input_url="https://cdn.example/in.png",
        state=state,
    )
    for name, value in changes.items():
        setattr(record, name, value)
    return record


@dataclass
class Rig:
    """A runner and its in-memory ports."""

    store: MemoryStore = field(default_factory=MemoryStore)
    provider: ScriptedProvider = field(default_factory=ScriptedProvider)
    host: MemoryHost = field(default_factory=MemoryHost)
    downloader: MemoryDownloader = field(default_factory=MemoryDownloader)
    inputs: MemoryArchive = field(default_factory=MemoryArchive)
    accounting: RecordingAccounting = field(default_factory=RecordingAccounting)
    reporters: dict[str, RecordingReporter] = field(default_factory=dict)
    images: PassThroughImages = field(default_factory=PassThroughImages)
    runner: JobRunner | None = None

    def build(self, **env: str) -> JobRunner:
        def reporter(record: JobRecord) -> RecordingReporter:
            return self.reporters.setdefault(record.id, RecordingReporter())

        ports = RunnerPorts(
            self.store,
            self.provider,
            self.host,
            self.images,
            self.downloader,
            reporter,
            self.inputs,
            self.accounting,
        )
        self.runner = JobRunner(settings(**env), ports, Metrics(), schedule=INSTANT)
        return self.runner

    def state(self, record: JobRecord) -> JobState:
        return self.store.jobs[record.id].state


@pytest.fixture
def rig() -> Rig:
    return Rig()


class SlowHost(MemoryHost):
    async def put(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.2)
        return await super().put(*args, **kwargs)


class SlowDownloader(MemoryDownloader):
    async def fetch(self, url: str, *, max_bytes: int, accept_types: tuple[str, ...] | None = None) -> bytes:
        await asyncio.sleep(0.2)
        return await super().fetch(url, max_bytes=max_bytes, accept_types=accept_types)


async def test_slow_steps_say_what_they_are_doing_before_the_next_phase(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner_module, "STEP_STATUS_AFTER_S", 0.05)
    rig = Rig(host=SlowHost(), downloader=SlowDownloader())
    runner = rig.build()
    record = job()
    runner.reserve()
    await runner.start_job(record)
    await runner.wait_idle()
    reporter = rig.reporters[record.id]
    kinds = [type(event) for event in reporter.statuses]
    assert kinds[0] is Uploading and kinds[1] is Queued, kinds
    assert kinds[-1] is Downloading, "shown, and landed before the result was delivered"
    assert len(reporter.delivered) == 1


async def test_a_job_runs_through_every_state_once(rig: Rig) -> None:
    runner = rig.build()
    record = job()
    runner.reserve()
    await runner.start_job(record)
    await runner.wait_idle()
    assert [state for _, state in rig.store.transitions] == [
        JobState.HOSTED,
        JobState.SUBMITTING,
        JobState.SUBMITTED,
        JobState.DELIVERING,
        JobState.DONE,
    ]
    reporter = rig.reporters[record.id]
    kinds = [type(event) for event in reporter.statuses]
    assert kinds[0] is Queued and Editing in kinds, kinds
    assert Uploading not in kinds and Downloading not in kinds, "quick steps need no edit of their own"
    assert len(reporter.delivered) == 1 and reporter.failed == []
    assert len(rig.provider.submits) == 1 and rig.provider.submits[0][1] == record.id
    assert rig.host.deleted == [f"h-{record.id}"], "the hosted copy is deleted after the job"
    stored = rig.store.jobs[record.id]
    assert stored.interaction_token is None and stored.delivery == "original"


async def test_only_thumbnails_outlive_their_step_and_image_work_is_done_for_the_requester(rig: Rig) -> None:
    finished: list[tuple[JobState, bytes | None, bytes | None]] = []
    runner = rig.build()
    runner.on_finished = lambda record, inp, out: finished.append((record.state, inp, out))
    record = job()
    await runner.start_job(record)
    await runner.wait_idle()
    assert finished == [(JobState.DONE, b"in-thumb:image-by", b"out-thumb:image-by")]
    assert runner._thumbnails == {}, "nothing is kept once the job ended"
    assert rig.images.owners == [record.user_id, record.user_id], "normalise and fit, for the requester"


@pytest.mark.parametrize(
    ("hook", "wanted", "asked"),
    [
        (False, None, False),  # nobody would look at them
        (True, None, True),  # a hook that does not say: made, as before
        (True, False, False),  # e.g. the server keeps no moderation log
        (True, True, True),
        (True, "error", True),  # when in doubt, made
    ],
)
async def test_thumbnails_are_asked_for_only_when_someone_will_use_them(
    rig: Rig, hook: bool, wanted: bool | str | None, asked: bool
) -> None:
    finished: list[tuple[bytes | None, bytes | None]] = []
    runner = rig.build()
    if hook:
        runner.on_finished = lambda record, inp, out: finished.append((inp, out))

    async def wants(record: JobRecord) -> bool:
        if wanted == "error":
            raise RuntimeError("settings unavailable")
        return bool(wanted)

    if wanted is not None:
        runner.wants_thumbnails = wants
    await runner.start_job(job())
    await runner.wait_idle()
    assert rig.images.thumbnails_asked == [asked, asked], "for the input and for the result"
    if hook:
        assert finished == ([(b"in-thumb:image-by", b"out-thumb:image-by")] if asked else [(None, None)])


async def test_only_max_concurrent_deliveries_results_are_held_at_once(rig: Rig) -> None:
    """Ten jobs finish together; with MAX_CONCURRENT_DELIVERIES=3 at most three results are being
    downloaded or posted at any moment, and all ten are delivered."""
    release = asyncio.Event()
    holding: list[str] = []
    most = 0

    class SlowResults(MemoryDownloader):
        async def fetch(
            self, url: str, *, max_bytes: int, accept_types: tuple[str, ...] | None = None
        ) -> bytes:
            nonlocal most
            if not url.startswith("https://results.example/"):
                return await super().fetch(url, max_bytes=max_bytes, accept_types=accept_types)
            holding.append(url)
            most = max(most, len(holding))
            await release.wait()
            holding.remove(url)
            return self.body

    rig.downloader = SlowResults()
    runner = rig.build(MAX_CONCURRENT_JOBS="10", MAX_JOBS_PER_USER="10", MAX_CONCURRENT_DELIVERIES="3")
    records = [job() for _ in range(10)]
    for record in records:
        await runner.start_job(record)
    await until(lambda: len(holding) == 3 and len(rig.provider.submits) == 10)
    await settle()
    assert len(holding) == 3, "the other seven wait for a delivery slot"
    release.set()
    await runner.wait_idle()
    assert most == 3
    assert all(len(rig.reporters[r.id].delivered) == 1 for r in records)


async def test_an_input_refused_by_the_image_sandbox_fails_privately_before_any_cost(rig: Rig) -> None:
    class Refusing(PassThroughImages):
        async def normalise(
            self, data: bytes, limits: ImageLimits, *, owner: int | None = None, thumbnail: bool = True
        ) -> Any:
            raise ImageTooSlow("normalise: no answer within 10 s; worker 42 killed")

    rig.images = Refusing()
    finished: list[tuple[bytes | None, bytes | None]] = []
    runner = rig.build()
    runner.on_finished = lambda record, inp, out: finished.append((inp, out))
    record = job()
    await runner.start_job(record)
    await runner.wait_idle()
    [failed] = rig.reporters[record.id].failed
    assert failed.error.code == "image_too_slow" and failed.error.private
    assert rig.provider.submits == [] and rig.host.puts == []
    assert finished == [(None, None)]


async def test_text_to_image_skips_hosting(rig: Rig) -> None:
    runner = rig.build()
    record = job(kind=JobKind.IMAGINE, input_url=None, size="16:9")
    await runner.start_job(record)
    await runner.wait_idle()
    assert rig.state(record) is JobState.DONE
    assert rig.host.puts == [] and rig.downloader.fetched == ["https://results.example/task-1.png"]
    assert rig.provider.submits[0][0].image_url is None


@pytest.mark.parametrize(
    ("state", "changes", "submits", "hosts"),
    [
        (JobState.RECEIVED, {}, 1, 1),
        (JobState.HOSTED, {"hosted_url": "https://host.example/x.jpg"}, 1, 0),
        (JobState.SUBMITTED, {"hosted_url": "https://host.example/x.jpg", "task_id": "task-9"}, 0, 0),
        (JobState.DELIVERING, {"task_id": "task-9", "result_url": "https://results.example/r.png"}, 0, 0),
    ],
)
async def test_resume_from_each_state_finishes_exactly_once(
    rig: Rig, state: JobState, changes: dict[str, Any], submits: int, hosts: int
) -> None:
    record = job(state, **changes)
    await rig.store.insert_job(record)
    runner = rig.build()
    assert await runner.resume_all() == 1
    await runner.wait_idle()
    assert rig.state(record) is JobState.DONE
    assert len(rig.provider.submits) == submits
    assert len(rig.host.puts) == hosts
    assert len(rig.reporters[record.id].delivered) == 1
    if state is JobState.DELIVERING:
        assert rig.provider.polls == [], "a result already known is not polled again"


async def test_a_job_caught_mid_submit_is_failed_never_resubmitted(rig: Rig) -> None:
    record = job(JobState.SUBMITTING, hosted_url="https://host.example/x.jpg")
    await rig.store.insert_job(record)
    runner = rig.build()
    await runner.resume_all()
    await runner.wait_idle()
    assert rig.state(record) is JobState.FAILED
    assert rig.store.jobs[record.id].error_code == "job_interrupted"
    assert rig.provider.submits == []
    assert [f.error.code for f in rig.reporters[record.id].failed] == ["job_interrupted"]


async def test_final_jobs_are_not_resumed(rig: Rig) -> None:
    for state in (JobState.DONE, JobState.FAILED):
        await rig.store.insert_job(job(state))
    runner = rig.build()
    assert await runner.resume_all() == 0


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ApiBalanceError("402", status=402), "api_balance"),
        (ApiSubmitUncertain("timeout after sending"), "api_submit_uncertain"),
    ],
)
async def test_submit_errors_fail_the_job_without_a_retry(rig: Rig, error: KontextError, code: str) -> None:
    rig.provider.submit_error = error
    runner = rig.build()
    record = job()
    await runner.start_job(record)
    await runner.wait_idle()
    assert rig.state(record) is JobState.FAILED and rig.store.jobs[record.id].error_code == code
    assert len(rig.provider.submits) == 1
    assert rig.host.deleted == [f"h-{record.id}"], "the hosted copy is cleaned up on failure too"


async def test_a_failed_task_reports_its_reason(rig: Rig) -> None:
    rig.provider.fail_reason = "content policy"
    runner = rig.build()
    record = job()
    await runner.start_job(record)
    await runner.wait_idle()
    [failed] = rig.reporters[record.id].failed
    assert failed.error.code == "task_failed" and failed.error.params["reason"] == "content policy"


async def test_an_unreachable_input_is_a_private_failure(rig: Rig) -> None:
    rig.downloader.broken.add("https://cdn.example/in.png")
    runner = rig.build()
    record = job()
    await runner.start_job(record)
    await runner.wait_idle()
    [failed] = rig.reporters[record.id].failed
    assert failed.error.code == "image_download_failed" and failed.error.private
    assert rig.provider.submits == []


async def test_the_waiting_line_is_bounded_in_one_place(rig: Rig) -> None:
    runner = rig.build(MAX_QUEUED_JOBS="2")
    runner.reserve()
    runner.reserve()
    with pytest.raises(BusyError):
        runner.reserve()
    runner.release()
    runner.reserve()  # a released place can be taken again


async def test_a_stopped_runner_accepts_nothing(rig: Rig) -> None:
    runner = rig.build()
    await runner.stop()
    with pytest.raises(ShuttingDown):
        runner.reserve()
    with pytest.raises(ShuttingDown):
        await runner.start_job(job())


async def test_a_dead_process_s_job_is_finished_once_by_another(postgres_url: str) -> None:
    """Two runners share PostgreSQL. The first dies mid-poll (no clean shutdown); once its lease runs
    out, the second claims the job and delivers it: one submit, one delivery."""
    env = {"JOB_LEASE_SECONDS": "5", "JOB_LEASE_HEARTBEAT_SECONDS": "1"}
    provider = ScriptedProvider(polls_until_done=10**9)  # never done while the first process lives
    first, second = Rig(provider=provider), Rig(provider=provider)
    first.store = PostgresStore(postgres_url, owner="first", lease_s=5)  # type: ignore[assignment]
    second.store = PostgresStore(postgres_url, owner="second", lease_s=5)  # type: ignore[assignment]
    for rig in (first, second):
        await rig.store.open()
    dying = first.build(**env)
    survivor = second.build(**env)
    await survivor.resume_all()  # the survivor's heartbeat looks for abandoned jobs
    record = job()
    dying.reserve()
    await dying.start_job(record)
    await eventually(lambda: provider.polls)
    await dying._tasks.close(timeout=1)  # the process is gone: no release, the lease just runs out
    await dying._leases.close()
    provider.polls_until_done = 0
    await eventually(lambda: record.id in second.reporters and second.reporters[record.id].delivered, 30)
    assert len(provider.submits) == 1, "never submitted twice"
    assert record.id not in first.reporters or first.reporters[record.id].delivered == []
    stored = await second.store.get_job(record.id)
    assert stored is not None and stored.state is JobState.DONE
    await survivor.stop()
    for rig in (first, second):
        await rig.store.close()


async def test_a_re_roll_uses_the_kept_input_not_the_expired_link(rig: Rig) -> None:
    """The first job keeps its normalised input; a re-roll reads it back and never downloads."""
    runner = rig.build()
    first = job()
    await runner.start_job(first)
    await runner.wait_idle()
    ref = rig.store.jobs[first.id].input_ref
    assert ref is not None and ref in rig.inputs.kept
    rig.downloader.broken.add("https://cdn.example/in.png")  # Discord's link has expired
    fetched = len(rig.downloader.fetched)
    again = job(input_ref=ref, parent_job_id=first.id)
    await runner.start_job(again)
    await runner.wait_idle()
    assert rig.state(again) is JobState.DONE
    assert rig.store.jobs[again.id].input_ref == ref, "the same copy, not a second one"
    assert rig.downloader.fetched[fetched:] == ["https://results.example/task-2.png"], "only the result"


async def test_a_re_roll_whose_input_is_gone_says_so(rig: Rig) -> None:
    runner = rig.build()
    gone = job(input_url=None, input_ref="1234abcd.jpg")
    await runner.start_job(gone)
    await runner.wait_idle()
    [failed] = rig.reporters[gone.id].failed
    assert failed.error.code == "job_gone" and failed.error.private
