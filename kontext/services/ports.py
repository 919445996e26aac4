"""The ports: what the services need from the outside world, as Protocols.

Adapters implement them (APIMart, Discord, SQLite, image hosts, HTTP, the image worker); tests
implement them in memory. Nothing here performs I/O.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from kontext.domain.events import Delivered, Done, Failed, StatusEvent
from kontext.domain.generation import GenerationRequest, TaskStatus
from kontext.domain.images import FittedResult, ImageLimits, NormalisedImage
from kontext.domain.jobs import JobRecord, JobState
from kontext.domain.policy import Allowed, Denied
from kontext.domain.usage import LedgerRow

# --- the image provider ----------------------------------------------------------------------------


class ImageProvider(Protocol):
    """An image-generation API with asynchronous tasks (APIMart's Flux Kontext today)."""

    name: str

    @property
    def request_timeout(self) -> float:
        """Seconds one request may take."""
        ...

    async def submit(self, request: GenerationRequest, *, idempotency_key: str) -> str:
        """Start a task and return its id. Never retried once it may have reached the provider."""
        ...

    async def poll(self, task_id: str) -> TaskStatus:
        """The task's current status (transient failures retried inside; raises typed API errors)."""
        ...

    async def upload(self, data: bytes, filename: str, content_type: str) -> str:
        """Publish an input image on the provider's own storage; returns its public URL."""
        ...


# --- the image host --------------------------------------------------------------------------------

#: Uploads bytes as an attachment of the job's status message and returns its CDN URL.
StatusAttacher = Callable[[bytes, str, str], Awaitable[str]]


@dataclass(frozen=True)
class HostedImage:
    """A public URL and the handle needed to delete it (None when the host cleans up by itself)."""

    url: str
    handle: str | None = None


class ImageHost(Protocol):
    """Where the normalised, metadata-free input copy is made public for the provider."""

    name: str

    async def put(
        self, job_id: str, data: bytes, content_type: str, extension: str, attach: StatusAttacher | None
    ) -> HostedImage:
        """Publish ``data``; raise :class:`kontext.domain.errors.HostingError` on failure."""
        ...

    async def delete(self, handle: str | None) -> None:
        """Remove a hosted file (best effort, never raises)."""
        ...


class InputArchive(Protocol):
    """Keeps each job's normalised input for as long as the job is kept, so Re-roll works after
    Discord's signed attachment link has expired (about a day)."""

    async def keep(self, job_id: str, data: bytes, extension: str) -> str | None:
        """Store the input; its reference, or None when it could not be kept (logged, not fatal)."""
        ...

    async def load(self, ref: str) -> bytes | None:
        """The kept input, or None when it is gone (swept, or kept by another process)."""
        ...

    async def sweep(self, before: float) -> int:
        """Forget inputs kept before ``before`` (Unix s); returns how many."""
        ...


# --- downloads and image work ----------------------------------------------------------------------


class FetchError(Exception):
    """A download failed (refused URL, HTTP error, wrong type, network, timeout)."""


class FetchTooLarge(FetchError):
    """The body is larger than allowed; ``size`` when the server declared it."""

    def __init__(self, detail: str, *, size: int | None) -> None:
        super().__init__(detail)
        self.size = size


class Downloader(Protocol):
    """Fetches a URL into memory, capped."""

    async def fetch(self, url: str, *, max_bytes: int, accept_types: tuple[str, ...] | None = None) -> bytes:
        """The body; raises :class:`FetchTooLarge` or :class:`FetchError`."""
        ...


class ImageProcessor(Protocol):
    """Untrusted image work, off the event loop, in a sandbox that a hostile file cannot stall.

    ``owner`` (the requester's user id) shares the image workers fairly: one owner never holds all
    of them. Failures are :class:`kontext.domain.errors.ImageError` (inputs) or
    :class:`kontext.domain.errors.ResultError` (results).
    """

    async def normalise(
        self, data: bytes, limits: ImageLimits, *, owner: int | None = None, thumbnail: bool = True
    ) -> NormalisedImage:
        """A metadata-free copy within ``limits``, with its moderation-log thumbnail if ``thumbnail``
        (without one, a clean input that needs no change may come back as it is, undecoded)."""
        ...

    async def fit_result(
        self,
        data: bytes,
        max_bytes: int,
        *,
        max_pixels: int,
        owner: int | None = None,
        thumbnail: bool = True,
    ) -> FittedResult:
        """The result upright and metadata-free within ``max_bytes``, with its thumbnail if
        ``thumbnail`` (without one, a clean result that fits may come back as it is, undecoded)."""
        ...


# --- the requester's side --------------------------------------------------------------------------


class RouteTooSmall(Exception):
    """The result must go another way than planned (e.g. a channel post instead of the interaction
    reply), whose upload limit is smaller: fit it to ``limit`` and deliver again."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the delivery route takes at most {limit} bytes")
        self.limit = limit


class Reporter(Protocol):
    """The requester's side of one job: the status line, the result post, the failure notice."""

    async def status(self, event: StatusEvent) -> None:
        """Show progress (best effort: never raises for a failed edit)."""
        ...

    async def attach_input(self, data: bytes, filename: str, content_type: str) -> str:
        """Attach the input to the status message; its public URL (for the ``discord`` host)."""
        ...

    async def delivery_limit(self) -> int:
        """The largest file the result may be, for the way it will be delivered now."""
        ...

    async def deliver(self, done: Done) -> Delivered:
        """Post the result; raises :class:`kontext.domain.errors.DeliveryError`, or
        :class:`RouteTooSmall` when it must be fitted again for another way."""
        ...

    async def fail(self, failed: Failed) -> None:
        """Tell the requester the job failed."""
        ...


ReporterFactory = Callable[[JobRecord], Reporter]


# --- persistence -----------------------------------------------------------------------------------


class JobStore(Protocol):
    """Job records, each owned by one live process through a lease.

    Only the owner changes a job (``update_job`` and ``transition`` return False otherwise), so when
    a process dies, another one claims its jobs once their lease ran out and finishes each once.
    """

    #: True when several processes share this store (they coordinate by leases).
    shared: bool

    async def insert_job(self, job: JobRecord) -> None:
        """Persist a new job, owned by this process."""
        ...

    async def get_job(self, job_id: str) -> JobRecord | None: ...

    async def update_job(self, job: JobRecord, **changes: Any) -> bool:
        """Persist ``changes`` if this process still owns the job."""
        ...

    async def transition(
        self, job: JobRecord, from_states: Iterable[JobState], to_state: JobState, **changes: Any
    ) -> bool:
        """Compare-and-set: only from one of ``from_states``, only by the owner."""
        ...

    async def claim_jobs(self, *, everything: bool = False, limit: int = 1000) -> list[JobRecord]:
        """Take over unfinished jobs whose lease ran out (``everything``: all, for a sole process)."""
        ...

    async def renew_leases(self) -> int:
        """Extend the leases of this process's unfinished jobs; returns how many."""
        ...

    async def release_leases(self) -> int:
        """Let another process take this one's unfinished jobs at once (clean shutdown)."""
        ...

    async def forget_tokens(self) -> int:
        """Clear the interaction tokens of finished jobs (one left behind by a stop mid-failure)."""
        ...

    async def prune(self, before: float, spend_before: float | None = None) -> tuple[int, int]:
        """Forget finished jobs and usage before ``before``, spending rows before ``spend_before``
        (default ``before``); returns (jobs, other rows) removed."""
        ...


class SettingsStore(Protocol):
    """Per-server settings documents."""

    async def get_guild_settings(self, guild_id: int) -> dict[str, Any] | None: ...
    async def put_guild_settings(self, guild_id: int, data: dict[str, Any]) -> None: ...
    async def delete_guild_settings(self, guild_id: int) -> None: ...


class UsageStore(Protocol):
    """Daily usage rows per server and user."""

    async def add_usage(self, day: str, guild_id: int, user_id: int, at: float, count: int = 1) -> None: ...
    async def usage_snapshot(self, day: str, guild_id: int) -> tuple[dict[int, int], dict[int, float]]: ...


class SpendStore(Protocol):
    """The spending ledger: jobs and money per day, server, user and model (kept for budgets and
    ``/kontext usage`` longer than job records)."""

    async def add_spend(
        self, day: str, guild_id: int, user_id: int, model: str, *, jobs: int, cost: int
    ) -> None:
        """Add ``jobs`` and ``cost`` (either may be negative: a refund or a release)."""
        ...

    async def spend_snapshot(self, day: str, guild_id: int) -> tuple[int, dict[int, int]]:
        """A server's money committed in the month of ``day``, and per user on ``day``."""
        ...

    async def spend_month_total(self, day: str) -> int:
        """The whole bot's money committed in the month of ``day`` (every server and DMs)."""
        ...

    async def spend_rows(self, guild_id: int, first_day: str, last_day: str) -> list[LedgerRow]:
        """A server's ledger rows from ``first_day`` to ``last_day`` (inclusive)."""
        ...

    async def failure_counts(self, guild_id: int, since: float) -> dict[str, int]:
        """A server's failed jobs created since ``since`` (Unix s) by error code (kept jobs only)."""
        ...


class Store(JobStore, SettingsStore, UsageStore, SpendStore, Protocol):
    """Everything persisted, opened and closed as one."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...


# --- admission accounting ----------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageSnapshot:
    """What the policy needs to know of today's usage for one request."""

    user_jobs_today: int
    guild_jobs_today: int
    user_last_job_at: float | None
    #: Money committed (micros): the server's this month, the user's today there, the bot's this month.
    guild_month_spent: int = 0
    user_day_spent: int = 0
    bot_month_spent: int = 0


@dataclass(frozen=True)
class UsageCharge:
    """What one admission counted (a job, its price held against the budgets), so it can be refunded."""

    guild: int
    day: str
    user_id: int
    previous_last: float | None
    model: str = ""
    cost: int = 0
    #: When the admission was decided (Unix s): the job's creation time.
    at: float = 0.0


Decide = Callable[[UsageSnapshot], Allowed | Denied]


class UsageLedger(Protocol):
    """Admit-and-count as one atomic step (in memory for one process, in the database for several)."""

    async def admit(
        self,
        guild: int,
        user_id: int,
        day: str,
        now: float,
        decide: Decide,
        *,
        limited: bool = True,
        bot_wide: bool = False,
    ) -> tuple[Allowed | Denied, UsageCharge | None]:
        """Run ``decide`` on the current usage and count the request (and hold its price, the
        ``cost`` of the decision) if allowed, atomically.

        ``limited=False`` says the decision does not depend on the server's usage (no quota, cooldown
        or budget), which lets a shared ledger skip the serialisation; ``bot_wide`` says it depends on
        the whole bot's spending this month (the operator's budget), which serialises every admission."""
        ...

    async def refund(self, charge: UsageCharge) -> None:
        """Take back one admission (quota, cooldown and the money held)."""
        ...

    async def release(self, guild: int, day: str, user_id: int, model: str, cost: int) -> None:
        """Give back money held for a job that was admitted on ``day`` but never billed."""
        ...

    async def counts(self, guild: int, day: str) -> dict[int, int]:
        """Per-user counts of a server's day."""
        ...

    async def peek(self, guild: int, user_id: int, day: str) -> UsageSnapshot:
        """What :meth:`admit` would see for this user now (nothing counted)."""
        ...

    async def flush(self) -> None:
        """Wait for counts still being written."""
        ...


class Accounting(Protocol):
    """Where a job's money is accounted: the price held at admission goes back if it was not billed."""

    async def release(self, job: JobRecord, cost: int) -> None:
        """Give back ``cost`` held for ``job``, which ended without being billed."""
        ...


class SessionStartGate(Protocol):
    """Discord allows one IDENTIFY per ``max_concurrency`` bucket per 5 s, across every process."""

    async def wait_turn(self, bucket: int, spacing: float) -> None:
        """Return when this process may IDENTIFY in ``bucket`` (``spacing`` s after the last one)."""
        ...
