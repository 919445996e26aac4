"""End to end: Discord- and APIMart-side faults in the middle of a job, against the REAL bot.

Each fault must end the job delivered or with a clear message (and one log line), and afterwards the
bot must still serve a fresh /edit. Faults already covered in tests/test_e2e_errors.py (submit errors,
429 storm on submit, 5xx + malformed JSON while polling, API down, result 404/HTML/oversize outcome) and
tests/test_e2e_durable.py (late delivery across a restart, deleted channel) are not repeated here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import types
from typing import Any

import discord.webhook.async_ as webhook_async
import pytest

from kontext.adapters.http.download import CHUNK_SIZE
from kontext.services.runner import STEP_STATUS_AFTER_S
from tests.fakes.discord import FakeInteraction, FakeMessage
from tests.harness import World, make_image
from tests.test_e2e_hostile import CountingSession
from tests.waiting import eventually_async

WEBHOOK_EDIT = r"^/webhooks/\d+/[^/]+/messages/\d+$"
WEBHOOK_SEND = r"^/webhooks/\d+/[^/]+$"
CHANNEL_POST = r"^/channels/\d+/messages$"


async def assert_still_serves(world: World) -> None:
    """A fresh /edit, after the fault, is delivered normally."""
    inter = await world.edit(make_image(96, 64), "after the fault")
    result = await world.result_of(inter)
    assert result.attachments and result.content.startswith("✅")


async def wait_for_status(inter: FakeInteraction, prefix: str) -> FakeMessage:
    """Wait until the status message has shown a line starting with ``prefix``."""

    def seen(i: FakeInteraction) -> FakeMessage | None:
        return next((e.message for e in i.original_edits if e.message.content.startswith(prefix)), None)

    return await inter.wait_for(seen, timeout=10)


async def job_of(world: World, inter: FakeInteraction) -> Any:
    """The job record behind an interaction (matched by its status message)."""
    assert inter.original is not None
    found: list[Any] = []

    async def stored() -> bool:
        for submission in world.apimart.submissions:
            job = await world.bot.backend.store.get_job(submission.idempotency_key)
            if job is not None and inter.original is not None and job.status_message_id == inter.original.id:
                found.append(job)
                return True
        return False

    await eventually_async(stored)
    return found[0]


async def wait_final(world: World, inter: FakeInteraction) -> Any:
    """The job once it is done or failed and the bot has finished its bookkeeping."""
    job = await job_of(world, inter)

    async def final() -> bool:
        nonlocal job
        job = await world.bot.backend.store.get_job(job.id)
        return bool(job.state in ("done", "failed"))

    await eventually_async(final)
    await world.bot.backend.runner.wait_idle()
    return job


def channel_result(world: World) -> FakeMessage | None:
    for msg in world.discord.channel_messages(world.channel.id):
        if msg.attachments and msg.embeds:
            return msg
    return None


@pytest.fixture
def fast_webhook_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """discord.py waits 1, 3, 5, 7 s between webhook retries after a 5xx: make those waits tiny."""
    real_sleep = asyncio.sleep

    async def short_sleep(delay: float, *args: Any) -> Any:
        return await real_sleep(min(delay, 0.02), *args)

    shim = types.SimpleNamespace(**{k: getattr(asyncio, k) for k in dir(asyncio) if not k.startswith("__")})
    shim.sleep = short_sleep
    monkeypatch.setattr(webhook_async, "asyncio", shim)


# --- Discord REST faults --------------------------------------------------------------------------


async def test_rest_429_on_status_edits_and_followup_is_retried(world: World) -> None:
    await world.start_bot()
    world.discord.fail_next("PATCH", WEBHOOK_EDIT, 429, times=3, retry_after=0.1)
    inter = await world.edit()
    await world.result_of(inter)
    limited = [r for r in world.discord.find_requests("PATCH", WEBHOOK_EDIT) if r.status == 429]
    assert len(limited) == 3, "the first edits were rate limited …"
    assert inter.original is not None and inter.original.content.startswith("✅"), "… and retried"

    # a private refusal travels as a follow-up: rate limit that one too
    world.discord.fail_next("POST", WEBHOOK_SEND, 429, times=2, retry_after=0.1)
    refused = await world.edit(b"just some text", filename="notes.png", content_type="image/png")
    text = await world.failure_of(refused)
    assert "isn't an image I can read" in text
    assert len([r for r in world.discord.find_requests("POST", WEBHOOK_SEND) if r.status == 429]) == 2
    await assert_still_serves(world)


async def test_rest_500_on_the_final_edit_falls_back_to_the_channel(
    world: World, caplog: pytest.LogCaptureFixture, fast_webhook_retries: None
) -> None:
    caplog.set_level(logging.INFO, logger="kontext")
    await world.start_bot()
    # "Fetching the result" shows once the fetch has taken STEP_STATUS_AFTER_S; 0.5 s after it, the final edit
    world.apimart.slow_next("result", STEP_STATUS_AFTER_S + 0.5)
    inter = await world.edit()
    await wait_for_status(inter, "⬇️")
    world.discord.fail_next("PATCH", WEBHOOK_EDIT, 500, times=5)  # discord.py tries 5 times

    msg = await world.discord.wait_until(lambda: channel_result(world), timeout=15)
    assert msg.content.startswith(f"<@{world.user.id}>") and msg.mention_ids == [world.user.id]
    assert "would not let me update" in msg.content
    job = await wait_final(world, inter)
    assert job.state == "done" and job.delivery == "channel"
    fallback_lines = [r for r in caplog.records if "delivering to the channel" in r.getMessage()]
    assert len(fallback_lines) == 1 and fallback_lines[0].levelno == logging.WARNING
    assert len([r for r in world.discord.requests if r.status == 500]) == 5
    assert sum(1 for e in inter.original_edits if e.message.attachments and e.message.embeds) == 0
    await assert_still_serves(world)


async def test_token_expiring_mid_job_delivers_to_the_channel_with_a_mention(world: World) -> None:
    await world.start_bot()
    world.apimart.script(duration=1.0)
    inter = await world.edit()
    await wait_for_status(inter, "🕒 Queued")
    world.discord.expire_interaction(inter)
    expired_at = len(world.discord.requests)

    msg = await world.discord.wait_until(lambda: channel_result(world), timeout=15)
    assert msg.content.startswith(f"<@{world.user.id}>") and msg.mention_ids == [world.user.id]
    assert not msg.mention_everyone and not msg.mention_role_ids
    webhook_calls = [r for r in world.discord.requests[expired_at:] if r.path.startswith("/webhooks/")]
    assert len(webhook_calls) <= 1, "after the first 401 the dead token is not used again"
    job = await wait_final(world, inter)
    assert job.state == "done" and job.delivery == "channel" and job.interaction_token is None
    await assert_still_serves(world)


async def test_missing_send_permission_for_late_delivery_is_one_recorded_failure(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kontext")
    await world.start_bot()
    world.apimart.script(duration=0.8)
    inter = await world.edit()
    await wait_for_status(inter, "🕒 Queued")
    world.discord.expire_interaction(inter)
    world.discord.deny(world.channel.id, "send")

    job = await wait_final(world, inter)
    assert job.state == "failed" and job.error_code == "delivery_failed"
    await world.discord.flush()  # the job has ended: nothing can post after this point
    posts = world.discord.find_requests("POST", CHANNEL_POST)
    assert len(posts) == 1 and posts[0].status == 403, [(p.path, p.status) for p in posts]
    failed_lines = [
        r for r in caplog.records if r.name.startswith("kontext") and r.levelno >= logging.WARNING
    ]
    assert [r.getMessage().split(":")[0] for r in failed_lines] == ["job failed (delivery_failed)"]
    assert "403" in failed_lines[0].getMessage()
    assert not world.bot.is_closed()
    # interaction replies need no Send Messages permission: the next /edit in that channel still works
    await assert_still_serves(world)


async def test_gateway_disconnect_and_resume_mid_job(world: World) -> None:
    await world.start_bot()
    world.apimart.script(duration=1.0)
    first = await world.edit()
    await wait_for_status(first, "🕒 Queued")
    identifies = world.discord.identify_count
    await world.discord.disconnect_gateway(hold=True)
    # a user runs /edit while the bot is disconnected: Discord queues it and replays it on RESUME
    during = await world.edit(make_image(96, 64), "sent during the outage")  # queued for the RESUME
    world.discord.release_gateway()

    await world.result_of(first)
    await world.result_of(during)
    assert world.discord.resume_count >= 1 and world.discord.identify_count == identifies, "resumed"
    assert during.first_callback_delay is not None and during.first_callback_delay < 3
    assert len(world.apimart.submissions) == 2
    await assert_still_serves(world)


async def test_abrupt_gateway_drop_mid_job(world: World) -> None:
    await world.start_bot()
    world.apimart.script(duration=0.8)
    inter = await world.edit()
    await wait_for_status(inter, "🕒 Queued")
    await world.discord.disconnect_gateway(abrupt=True)
    await world.result_of(inter)
    await world.discord.wait_until(lambda: world.discord.connected and world.discord.resume_count, 10)
    await assert_still_serves(world)


# --- APIMart faults -------------------------------------------------------------------------------


def fast_api_retries(world: World) -> None:
    """The bot's APIMart client backs off 0.25 s, 0.5 s, 1 s … between poll retries; shrink that."""
    transport = world.bot.backend.provider._http
    transport.policy = dataclasses.replace(transport.policy, backoff_base=0.02, backoff_cap=0.05)


async def test_poll_429_storm_is_waited_out(world: World) -> None:
    await world.start_bot()
    fast_api_retries(world)
    world.apimart.script(duration=0.3)
    world.apimart.fail_next("task", 429, headers={"Retry-After": "0"}, times=4)
    inter = await world.edit()
    await world.result_of(inter)
    [submission] = world.apimart.submissions
    assert submission.task_id is not None
    assert world.apimart.polls[submission.task_id] >= 5


async def test_endless_poll_429_storm_ends_with_a_clear_message(world: World) -> None:
    """A paid task is polled until the job's deadline, then the user hears why it failed."""
    await world.start_bot(JOB_TIMEOUT_SECONDS="3")
    fast_api_retries(world)
    world.apimart.script(duration=0.3)
    world.apimart.fail_next("task", 429, headers={"Retry-After": "0"}, times=1000)
    inter = await world.edit()
    text = await world.failure_of(inter)
    assert text.startswith("❌") and "busy right now" in text
    assert len(world.apimart.submissions) == 1, "polling trouble never causes a second submission"
    world.apimart.clear_faults()
    await assert_still_serves(world)


async def test_result_redirect_to_another_host_is_followed_and_rechecked(world: World) -> None:
    """download_capped follows redirects by hand (≤ 3), re-checking scheme and address at every hop;
    the tests allow loopback (ALLOW_PRIVATE_URLS), so a hop to another public-enough host is fine."""
    await world.start_bot()
    world.apimart.result_fault("redirect")  # 127.0.0.1 → localhost
    inter = await world.edit()
    await world.result_of(inter)
    hosts = [r.headers.get("Host", "") for r in world.apimart.requests if r.endpoint == "result"]
    assert len(hosts) == 2 and hosts[0].startswith("127.0.0.1") and hosts[1].startswith("localhost")


@pytest.mark.parametrize(
    ("location", "times"),
    [("file:///etc/passwd", 1), (None, 10)],
    ids=["to-file-scheme", "redirect-loop"],
)
async def test_result_redirect_refused(world: World, location: str | None, times: int) -> None:
    await world.start_bot()
    world.apimart.result_fault("redirect", location=location, times=times)
    inter = await world.edit()
    text = await world.failure_of(inter)
    assert text == "❌ The edited image could not be downloaded (download failed)."
    job = await wait_final(world, inter)
    assert job.error_code == "result_failed"
    result_gets = [r for r in world.apimart.requests if r.endpoint == "result"]
    assert len(result_gets) == (4 if location is None else 1), "at most 3 redirects are followed"
    world.apimart.clear_faults()
    await assert_still_serves(world)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
async def test_oversize_result_costs_at_most_the_cap(world: World, declared: bool) -> None:
    bot = await world.start_bot(MAX_RESULT_MB="1")
    counter = CountingSession(bot.backend.runner.ports.downloader.session)
    bot.backend.runner.ports.downloader.session = (
        counter  # counts every body byte the runner's downloads consume
    )
    world.apimart.result_fault("oversize", size=12 * 1024 * 1024, declare_length=declared)
    source = make_image()
    inter = await world.edit(source)
    text = await world.failure_of(inter)
    assert text == "❌ The edited image could not be downloaded (too large)."
    result_bytes = counter.bytes_read - len(source)  # the attachment download is counted too
    if declared:
        assert result_bytes == 0, "a declared Content-Length over the cap is refused before reading"
    else:
        assert 0 < result_bytes <= 1024 * 1024 + CHUNK_SIZE, result_bytes
    await assert_still_serves(world)
