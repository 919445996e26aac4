"""In-memory implementations of the runner's ports, for fast unit tests of the services."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from kontext.domain.errors import KontextError
from kontext.domain.events import Delivered, Done, Failed, StatusEvent
from kontext.domain.generation import GenerationRequest, TaskState, TaskStatus
from kontext.domain.images import FittedResult, ImageLimits, NormalisedImage
from kontext.domain.jobs import ACTIVE_STATES, FINAL_STATES, DeliveryKind, JobRecord, JobState
from kontext.domain.usage import LedgerRow
from kontext.services.ports import FetchError, HostedImage, StatusAttacher

_COLUMNS = {f.name for f in fields(JobRecord)}


class MemoryStore:
    """Job records, settings and usage in dicts; copies in and out, like a database (one process)."""

    shared = False

    def __init__(self) -> None:
        self.jobs: dict[str, JobRecord] = {}
        self.settings: dict[int, dict[str, Any]] = {}
        self.usage: dict[tuple[str, int, int], tuple[int, float]] = {}
        #: (day, guild, user, model) -> [jobs, money in micros]
        self.spend: dict[tuple[str, int, int, str], list[int]] = {}
        self.transitions: list[tuple[str, JobState]] = []

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def insert_job(self, job: JobRecord) -> None:
        if job.id in self.jobs:
            raise KeyError(f"duplicate job {job.id}")
        self.jobs[job.id] = copy.deepcopy(job)

    async def get_job(self, job_id: str) -> JobRecord | None:
        job = self.jobs.get(job_id)
        return copy.deepcopy(job) if job else None

    async def update_job(self, job: JobRecord, **changes: Any) -> bool:
        assert set(changes) <= _COLUMNS
        changes.setdefault("updated_at", time.time())
        for name, value in changes.items():
            setattr(self.jobs[job.id], name, value)
            setattr(job, name, value)
        return True

    async def transition(
        self, job: JobRecord, from_states: Iterable[JobState], to_state: JobState, **changes: Any
    ) -> bool:
        stored = self.jobs[job.id]
        if stored.state not in set(from_states):
            return False
        self.transitions.append((job.id, to_state))
        await self.update_job(job, state=to_state, **changes)
        return True

    async def claim_jobs(self, *, everything: bool = False, limit: int = 1000) -> list[JobRecord]:
        active = [copy.deepcopy(j) for j in self.jobs.values() if j.state in ACTIVE_STATES]
        return sorted(active, key=lambda j: j.created_at)[:limit]

    async def renew_leases(self) -> int:
        return sum(1 for j in self.jobs.values() if j.state in ACTIVE_STATES)

    async def release_leases(self) -> int:
        return 0

    async def forget_tokens(self) -> int:
        finished = [j for j in self.jobs.values() if j.state in FINAL_STATES and j.interaction_token]
        for job in finished:
            job.interaction_token = None
        return len(finished)

    async def prune(self, before: float, spend_before: float | None = None) -> tuple[int, int]:
        old = [k for k, j in self.jobs.items() if j.state in FINAL_STATES and j.updated_at < before]
        for key in old:
            del self.jobs[key]
        return len(old), 0

    async def get_guild_settings(self, guild_id: int) -> dict[str, Any] | None:
        return copy.deepcopy(self.settings.get(guild_id))

    async def put_guild_settings(self, guild_id: int, data: dict[str, Any]) -> None:
        self.settings[guild_id] = copy.deepcopy(data)

    async def delete_guild_settings(self, guild_id: int) -> None:
        self.settings.pop(guild_id, None)

    async def add_usage(self, day: str, guild_id: int, user_id: int, at: float, count: int = 1) -> None:
        old, _ = self.usage.get((day, guild_id, user_id), (0, 0.0))
        self.usage[(day, guild_id, user_id)] = (max(0, old + count), at)

    async def usage_snapshot(self, day: str, guild_id: int) -> tuple[dict[int, int], dict[int, float]]:
        counts = {u: c for (d, g, u), (c, _) in self.usage.items() if d == day and g == guild_id}
        last: dict[int, float] = {}
        for (_, g, u), (_, at) in self.usage.items():
            if g == guild_id:
                last[u] = max(last.get(u, 0.0), at)
        return counts, last

    async def add_spend(
        self, day: str, guild_id: int, user_id: int, model: str, *, jobs: int, cost: int
    ) -> None:
        row = self.spend.setdefault((day, guild_id, user_id, model), [0, 0])
        row[0], row[1] = max(0, row[0] + jobs), max(0, row[1] + cost)

    async def spend_snapshot(self, day: str, guild_id: int) -> tuple[int, dict[int, int]]:
        month = sum(c for (d, g, _, _), (_, c) in self.spend.items() if g == guild_id and d[:7] == day[:7])
        users: dict[int, int] = {}
        for (d, g, u, _), (_, cost) in self.spend.items():
            if d == day and g == guild_id:
                users[u] = users.get(u, 0) + cost
        return month, users

    async def spend_month_total(self, day: str) -> int:
        return sum(c for (d, _, _, _), (_, c) in self.spend.items() if d[:7] == day[:7])

    async def spend_rows(self, guild_id: int, first_day: str, last_day: str) -> list[LedgerRow]:
        return [
            LedgerRow(d, u, m, jobs, cost)
            for (d, g, u, m), (jobs, cost) in sorted(self.spend.items())
            if g == guild_id and first_day <= d <= last_day
        ]

    async def failure_counts(self, guild_id: int, since: float) -> dict[str, int]:
        counts: dict[str, int] = {}
        for job in self.jobs.values():
            if job.guild_id == guild_id and job.state is JobState.FAILED and job.created_at >= since:
                code = job.error_code or "unknown"
                counts[code] = counts.get(code, 0) + 1
        return counts


@dataclass
class RecordingAccounting:
    """The accounting port: records which jobs gave their price back."""

    released: list[tuple[str, int]] = field(default_factory=list)

    async def release(self, job: JobRecord, cost: int) -> None:
        self.released.append((job.id, cost))


@dataclass
class ScriptedProvider:
    """A provider whose tasks complete after ``polls_until_done`` polls (or fail with ``fail_reason``)."""

    polls_until_done: int = 2
    fail_reason: str | None = None
    submit_error: KontextError | None = None
    name: str = "memory"
    request_timeout: float = 1.0
    submits: list[tuple[GenerationRequest, str]] = field(default_factory=list)
    polls: list[str] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)

    async def submit(self, request: GenerationRequest, *, idempotency_key: str) -> str:
        self.submits.append((request, idempotency_key))
        if self.submit_error is not None:
            raise self.submit_error
        return f"task-{len(self.submits)}"

    async def poll(self, task_id: str) -> TaskStatus:
        self.polls.append(task_id)
        seen = self.polls.count(task_id)
        if seen < self.polls_until_done:
            state, progress = TaskState.RUNNING, 50
        elif self.fail_reason is not None:
            state, progress = TaskState.FAILED, None
        else:
            state, progress = TaskState.COMPLETED, 100
        urls = (f"https://results.example/{task_id}.png",) if state is TaskState.COMPLETED else ()
        return TaskStatus(task_id, state, state.value, progress, None, urls, self.fail_reason, None)

    async def upload(self, data: bytes, filename: str, content_type: str) -> str:
        self.uploads.append(filename)
        return f"https://uploads.example/{filename}"


@dataclass
class MemoryHost:
    name: str = "memory"
    puts: list[str] = field(default_factory=list)
    deleted: list[str | None] = field(default_factory=list)

    async def put(
        self, job_id: str, data: bytes, content_type: str, extension: str, attach: StatusAttacher | None
    ) -> HostedImage:
        self.puts.append(job_id)
        return HostedImage(url=f"https://host.example/{job_id}.{extension}", handle=f"h-{job_id}")

    async def delete(self, handle: str | None) -> None:
        self.deleted.append(handle)


@dataclass
class MemoryDownloader:
    """Serves fixed bytes for any URL (or fails for URLs in ``broken``)."""

    body: bytes = b"image-bytes"
    broken: set[str] = field(default_factory=set)
    fetched: list[str] = field(default_factory=list)

    async def fetch(self, url: str, *, max_bytes: int, accept_types: tuple[str, ...] | None = None) -> bytes:
        self.fetched.append(url)
        if url in self.broken:
            raise FetchError(f"HTTP 404 from {url}")
        return self.body


class PassThroughImages:
    """Pretends every input is a 640×480 JPEG and every result fits; records the owners it was given."""

    def __init__(self) -> None:
        self.owners: list[int | None] = []
        #: The ``thumbnail`` argument of each call, in order.
        self.thumbnails_asked: list[bool] = []

    async def normalise(
        self, data: bytes, limits: ImageLimits, *, owner: int | None = None, thumbnail: bool = True
    ) -> NormalisedImage:
        self.owners.append(owner)
        self.thumbnails_asked.append(thumbnail)
        thumb = b"in-thumb:" + data[:8] if thumbnail else b""
        return NormalisedImage(
            data, "image/jpeg", "jpg", 640, 480, "JPEG", letterboxed=False, thumbnail=thumb
        )

    async def fit_result(
        self,
        data: bytes,
        max_bytes: int,
        *,
        max_pixels: int,
        owner: int | None = None,
        thumbnail: bool = True,
    ) -> FittedResult:
        self.owners.append(owner)
        self.thumbnails_asked.append(thumbnail)
        thumb = b"out-thumb:" + data[:8] if thumbnail else b""
        return FittedResult(data, "image/png", "png", 640, 480, reencoded=False, thumbnail=thumb)


@dataclass
class RecordingReporter:
    """Records what the runner tells the requester's side."""

    statuses: list[StatusEvent] = field(default_factory=list)
    delivered: list[Done] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)

    async def status(self, event: StatusEvent) -> None:
        self.statuses.append(event)

    async def attach_input(self, data: bytes, filename: str, content_type: str) -> str:
        return f"https://cdn.example/{filename}"

    async def delivery_limit(self) -> int:
        return 10 * 1024 * 1024

    async def deliver(self, done: Done) -> Delivered:
        self.delivered.append(done)
        return Delivered(DeliveryKind.ORIGINAL, 4242, "https://cdn.example/result.png")

    async def fail(self, failed: Failed) -> None:
        self.failed.append(failed)


class MemoryArchive:
    """Kept inputs in a dict."""

    def __init__(self) -> None:
        self.kept: dict[str, bytes] = {}

    async def keep(self, job_id: str, data: bytes, extension: str) -> str | None:
        ref = f"{job_id}.{extension}"
        self.kept[ref] = data
        return ref

    async def load(self, ref: str) -> bytes | None:
        return self.kept.get(ref)

    async def sweep(self, before: float) -> int:
        return 0
