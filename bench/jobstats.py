"""Per-job figures read from the fakes' own records (what Discord and APIMart saw of the bot).

Every time is the fakes' ``loop.time()`` (``time.monotonic()``, the same clock in every process),
taken when a request reached the fake. For one `/edit`:

``dispatch`` (INTERACTION_CREATE sent) → ``defer`` (first interaction callback) → CDN download of
the input (the job has its slot) → APIMart upload → ``submit`` received → the fake's own submit work
(it fetches the input and makes the result: APIMart's time) → task created → ``duration`` (APIMart's
time) → task finished → ``detect``: the first poll at or after that → ``deliver``: until the result
edit reached Discord.

* **overhead** = (dispatch → submit) + (the poll that saw the result → result posted): the bot's own
  time, beyond what APIMart takes and beyond the polling delay (reported as ``detect``).
* **e2e minus task** = (dispatch → result posted) − the task's duration: everything, polling and the
  fake's submit work included.

Requests are attributed to a job by what identifies it: Discord REST requests by the interaction
token in their path; APIMart requests by the job id (upload file name, submit ``Idempotency-Key``),
the prompt (submit body) and the task id (polls, result download). APIMart's own downloads of the
hosted input are not the bot's and are not counted. Requests no job can claim (a channel message, a
command sync) are counted apart and spread evenly over the jobs in the per-job means.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fakes.discord import FakeInteraction  # noqa: E402

if TYPE_CHECKING:
    from fakes_server import BenchFakes

BOT_AGENT = "KontextBot"


def requests_per_job(rest: float | None, apimart: float | None) -> float | None:
    """A job's HTTP requests: Discord REST, APIMart (the result download included), the CDN read."""
    if rest is None or apimart is None:
        return None
    return rest + apimart + 1


@dataclass
class Dispatched:
    """One `/edit` the driver sent."""

    inter: FakeInteraction
    prompt: str
    attachment_id: int


@dataclass
class JobFigures:
    outcome: str  #: done | failed | refused | lost
    acked: bool
    defer: float = math.nan
    first_status: float = math.nan
    slot_wait: float = math.nan  #: dispatch → the bot fetched the input (waited for a slot)
    total: float = math.nan
    intake: float = math.nan
    fake_submit: float = math.nan
    duration: float = math.nan
    detect: float = math.nan
    deliver: float = math.nan
    polls: int = 0
    rest: Counter[str] = field(default_factory=Counter)
    apimart: Counter[str] = field(default_factory=Counter)

    @property
    def overhead(self) -> float:
        return self.intake + self.deliver

    @property
    def e2e_minus_task(self) -> float:
        return self.total - self.duration


@dataclass
class Collected:
    jobs: list[JobFigures]
    rest_unattributed: Counter[str]
    apimart_unattributed: Counter[str]
    cdn_gets: int
    rate_limited: int  #: Discord 429 answers

    def rest_per_job(self) -> list[float]:
        share = sum(self.rest_unattributed.values()) / max(1, len(self.jobs))
        return [sum(j.rest.values()) + share for j in self.jobs]

    def apimart_per_job(self) -> list[float]:
        share = sum(self.apimart_unattributed.values()) / max(1, len(self.jobs))
        return [sum(j.apimart.values()) + share for j in self.jobs if j.outcome == "done"]


# --------------------------------------------------------------------------------------- outcome


def result_at(inter: FakeInteraction) -> float | None:
    """When the status message became the result (attachment + embed), if it did."""
    return next((e.time for e in inter.original_edits if e.message.attachments and e.message.embeds), None)


def outcome(inter: FakeInteraction, now: float, ack_deadline: float | None) -> str | None:
    """done / failed / refused / lost, or None while the job may still end."""
    if not inter.callbacks:
        deadline = ack_deadline if ack_deadline is not None else 3.0
        return "lost" if now > inter.dispatched_at + deadline + 2.0 else None
    if result_at(inter) is not None:
        return "done"
    original = inter.original
    if original is not None and not inter.original_deleted and original.content.startswith("❌"):
        return "failed"
    if any(f.ephemeral for f in inter.followups) or (original is not None and original.ephemeral):
        return "failed" if inter.original_edits else "refused"  # refused: before any status line
    return None


class Pending:
    """The dispatched jobs that have not ended; :meth:`all_ended` is cheap enough to call on every
    change the fakes record (it re-checks at most every ``every`` seconds of the fakes' clock)."""

    def __init__(self, dispatched: Iterable[Dispatched], ack_deadline: float | None, every: float = 0.05):
        self.left = [d.inter for d in dispatched]
        self.ack_deadline = ack_deadline
        self.every = every
        self._checked = -math.inf

    def all_ended(self, now: float) -> bool:
        if now - self._checked < self.every:
            return False
        self._checked = now
        self.left = [i for i in self.left if outcome(i, now, self.ack_deadline) is None]
        return not self.left


# --------------------------------------------------------------------------------------- Discord


def classify_rest(method: str, path: str) -> tuple[str, str | None]:
    """A Discord REST request's kind and the interaction token it belongs to (if any)."""
    if m := re.search(r"/interactions/\d+/([^/]+)/callback", path):
        return "callback", m.group(1)
    if m := re.search(r"/webhooks/\d+/([^/]+)/messages/@original", path):
        return f"{method} @original", m.group(1)
    if m := re.search(r"/webhooks/\d+/([^/]+)(/messages/\d+)?$", path):
        if method == "POST":
            return "POST follow-up", m.group(1)
        return f"{method} webhook message", m.group(1)
    if re.search(r"/channels/\d+/messages", path):
        return f"{method} channel message", None
    return f"{method} other", None


# --------------------------------------------------------------------------------------- collect


@dataclass
class _DiscordSide:
    rest: dict[str, Counter[str]]  #: by interaction token
    other: Counter[str]
    fetched_at: dict[str, float]  #: prompt -> when the bot downloaded the job's input from the CDN
    cdn_gets: int = 0
    rate_limited: int = 0


@dataclass
class _ApimartSide:
    requests: dict[str, Counter[str]]  #: by prompt
    other: Counter[str]
    task_of_prompt: dict[str, str]
    submit_at: dict[str, float]
    poll_times: dict[str, list[float]]


def collect(
    fakes: BenchFakes, dispatched: Sequence[Dispatched], discord_from: int, apimart_from: int, now: float
) -> Collected:
    """Figures of ``dispatched`` from the requests the fakes recorded since the given indexes."""
    discord = _discord_side(fakes, dispatched, discord_from)
    apimart = _apimart_side(fakes, dispatched, apimart_from)
    jobs = []
    for d in dispatched:
        figures = _job(fakes, d, now, apimart, discord.fetched_at)
        figures.rest = discord.rest[d.inter.token]
        figures.apimart = apimart.requests[d.prompt]
        jobs.append(figures)
    return Collected(jobs, discord.other, apimart.other, discord.cdn_gets, discord.rate_limited)


def _discord_side(fakes: BenchFakes, dispatched: Sequence[Dispatched], start: int) -> _DiscordSide:
    by_attachment = {d.attachment_id: d for d in dispatched}
    side = _DiscordSide({d.inter.token: Counter() for d in dispatched}, Counter(), {})
    for req in fakes.discord.requests[start:]:
        if req.kind == "cdn":
            side.cdn_gets += 1
            m = re.search(r"/attachments/\d+/(\d+)/", req.path)
            owner = by_attachment.get(int(m.group(1))) if m else None
            if owner is not None:
                side.fetched_at.setdefault(owner.prompt, req.time)
            continue
        if req.status == 429:
            side.rate_limited += 1
        kind, token = classify_rest(req.method, req.path)
        if token is not None and token in side.rest:
            side.rest[token][kind] += 1
        else:
            side.other[kind] += 1
    return side


def _apimart_side(fakes: BenchFakes, dispatched: Sequence[Dispatched], start: int) -> _ApimartSide:
    apimart = fakes.apimart
    prompt_of_job, task_of_prompt = _submissions(fakes)
    prompt_of_task = {task: prompt for prompt, task in task_of_prompt.items()}
    side = _ApimartSide({d.prompt: Counter() for d in dispatched}, Counter(), task_of_prompt, {}, {})
    bot_uploads = 0
    for req in apimart.requests[start:]:
        if req.endpoint in ("file", "result") and not req.headers.get("User-Agent", "").startswith(BOT_AGENT):
            continue  # APIMart fetching the hosted input: not the bot's request
        if req.endpoint == "upload":
            bot_uploads += 1  # attributed below, by the uploaded file's name
            continue
        owner = _apimart_owner(req.endpoint, req.path, req.body, prompt_of_task)
        if owner is None or owner not in side.requests:
            side.other[req.endpoint] += 1
            continue
        side.requests[owner][req.endpoint] += 1
        if req.endpoint == "submit":
            side.submit_at.setdefault(owner, req.at)
        elif req.endpoint == "task":
            side.poll_times.setdefault(owner, []).append(req.at)
    attributed = 0
    for record in apimart.uploads:  # uploads are named after the job: "<job id>.<ext>"
        owner = prompt_of_job.get((record.filename or "").rsplit(".", 1)[0])
        if owner is not None and owner in side.requests:
            side.requests[owner]["upload"] += 1
            attributed += 1
    if bot_uploads > attributed:
        side.other["upload"] += bot_uploads - attributed
    return side


def _submissions(fakes: BenchFakes) -> tuple[dict[str, str], dict[str, str]]:
    """From the submissions: prompt by job id (the Idempotency-Key) and task id by prompt."""
    prompt_of_job: dict[str, str] = {}
    task_of_prompt: dict[str, str] = {}
    for sub in fakes.apimart.submissions:
        prompt = sub.json.get("prompt") if isinstance(sub.json, dict) else None
        if not isinstance(prompt, str):
            continue
        if sub.idempotency_key:
            prompt_of_job[sub.idempotency_key] = prompt
        if sub.task_id:
            task_of_prompt[prompt] = sub.task_id
    return prompt_of_job, task_of_prompt


def _apimart_owner(
    endpoint: str, path: str, body: bytes | None, prompt_of_task: dict[str, str]
) -> str | None:
    if endpoint == "task":
        return prompt_of_task.get(path.rsplit("/", 1)[-1])
    if endpoint == "result":
        return prompt_of_task.get(path.rsplit("/", 1)[-1].rsplit(".", 1)[0])
    if endpoint == "submit" and body:
        try:
            prompt = json.loads(body).get("prompt")
        except (ValueError, AttributeError):
            return None
        return prompt if isinstance(prompt, str) else None
    return None


def _job(
    fakes: BenchFakes, d: Dispatched, now: float, apimart: _ApimartSide, fetched_at: dict[str, float]
) -> JobFigures:
    inter = d.inter
    ended = outcome(inter, now, fakes.discord.ack_deadline) or "lost"
    figures = JobFigures(outcome=ended, acked=bool(inter.callbacks))
    if inter.callbacks:
        figures.defer = inter.callbacks[0].delay
    if inter.original_edits:
        figures.first_status = inter.original_edits[0].time - inter.dispatched_at
    if d.prompt in fetched_at:
        figures.slot_wait = fetched_at[d.prompt] - inter.dispatched_at
    task_id = apimart.task_of_prompt.get(d.prompt)
    done_at = result_at(inter)
    if task_id is None or done_at is None:
        return figures
    task = fakes.apimart.tasks[task_id]
    end = task.created + task.script.duration
    figures.duration = task.script.duration
    figures.total = done_at - inter.dispatched_at
    figures.polls = fakes.apimart.polls[task_id]
    if d.prompt in apimart.submit_at:
        figures.intake = apimart.submit_at[d.prompt] - inter.dispatched_at
        figures.fake_submit = task.created - apimart.submit_at[d.prompt]
    seen = next((t for t in sorted(apimart.poll_times.get(d.prompt, [])) if t >= end), None)
    if seen is not None:
        figures.detect = seen - end
        figures.deliver = done_at - seen
    return figures


# --------------------------------------------------------------------------------------- numbers


def pct(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of the finite values; NaN when there are none."""
    ordered = sorted(v for v in values if not math.isnan(v))
    if not ordered:
        return math.nan
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


def mean(values: Iterable[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.fmean(finite) if finite else math.nan


def top(values: Iterable[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return max(finite) if finite else math.nan
