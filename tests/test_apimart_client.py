"""The real APIMart client against the loopback fake (real HTTP, real images), plus parser unit tests."""

from __future__ import annotations

import asyncio
import email.utils
import io
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from kontext.adapters.apimart.client import ApimartClient
from kontext.adapters.apimart.errors import classify_error, parse_retry_after
from kontext.adapters.apimart.parsing import parse_submit_response, parse_task, request_body
from kontext.domain.errors import (
    ApiAuthError,
    ApiBadRequest,
    ApiBalanceError,
    ApiError,
    ApiMalformed,
    ApiRateLimited,
    ApiServerError,
    ApiSubmitUncertain,
    ApiUnavailable,
    KontextError,
    TaskFailed,
    TaskTimedOut,
    UnknownTaskStatus,
)
from kontext.domain.generation import GenerationRequest, TaskStatus
from kontext.domain.poll_schedule import PollSchedule
from kontext.services.polling import wait_for_task
from tests.fakes.apimart_fake import FailShape, FakeApimart, SubmitShape, UrlShape
from tests.pixels import pixel

FAST = PollSchedule().scaled(0.01)
SECRET = "sk-test-SECRET-do-not-leak-4f9a2c"


# --- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeApimart]:
    server = FakeApimart(api_key=SECRET)
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


class RecordingSleep:
    """Injected instead of asyncio.sleep: records each delay, sleeps for real only ``scale`` of it."""

    def __init__(self, hook: Callable[[], Awaitable[None]] | None = None, scale: float = 0.0) -> None:
        self.calls: list[float] = []
        self.hook = hook
        self.scale = scale

    async def __call__(self, delay: float) -> None:
        self.calls.append(delay)
        if self.hook is not None:
            await self.hook()
        await asyncio.sleep(delay * self.scale)


def client_for(
    session: aiohttp.ClientSession, fake: FakeApimart, *, key: str = SECRET, **kwargs: Any
) -> ApimartClient:
    kwargs.setdefault("timeout", 2.0)
    kwargs.setdefault("rng", random.Random(1))
    return ApimartClient(session, fake.base_url, key, **kwargs)


def png(colour: tuple[int, int, int] = (10, 200, 30), size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def edit(url: str | None, **overrides: Any) -> GenerationRequest:
    fields: dict[str, Any] = {
        "model": "flux-kontext-pro",
        "prompt": "make the sky purple",
        "image_url": url,
        "size": "match_input_image" if url else "16:9",
        "response_format": "png",
        "safety_tolerance": 2,
        "prompt_upsampling": False,
    }
    fields.update(overrides)
    return GenerationRequest(**fields)


async def fetch(session: aiohttp.ClientSession, url: str) -> tuple[int, str, bytes]:
    async with session.get(url, allow_redirects=False) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


def deadline(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


# --- the happy paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(("submit_shape", "url_shape"), [("list", "list"), ("object", "string")])
async def test_edit_round_trip(
    fake: FakeApimart, session: aiohttp.ClientSession, submit_shape: SubmitShape, url_shape: UrlShape
) -> None:
    client = client_for(session, fake)
    fake.script(duration=0.15, submit_shape=submit_shape, url_shape=url_shape)
    url = await client.upload(png(), "job-1.png", "image/png")
    assert url.startswith(fake.base_url + "/f/image/") and fake.uploads[0].status == 200

    task_id = await client.submit(edit(url), idempotency_key="job-1")
    updates: list[TaskStatus] = []

    async def on_update(status: TaskStatus) -> None:
        updates.append(status)

    done = await wait_for_task(client, task_id, deadline=deadline(5), on_update=on_update, schedule=FAST)
    assert done.state == "completed" and done.progress == 100 and done.expires_at is not None
    assert done.task_id == task_id and len(done.result_urls) == 1

    # what went over the wire
    sub = fake.submissions[0]
    assert sub.idempotency_key == "job-1"
    assert sub.headers["Authorization"] == f"Bearer {SECRET}"
    assert sub.json == {
        "model": "flux-kontext-pro",
        "prompt": "make the sky purple",
        "image_urls": [url],
        "size": "match_input_image",
        "response_format": "png",
        "safety_tolerance": 2,
        "prompt_upsampling": False,
    }
    # status updates: only on change, in order, ending completed
    states = [u.state for u in updates]
    assert states[0] in ("queued", "running") and states[-1] == "completed"
    keys = [(u.state, u.progress) for u in updates]
    assert len(keys) == len(set(keys))
    assert fake.polls[task_id] >= len(updates)

    # the result is really the edited input: colours inverted, same dimensions
    status, ctype, body = await fetch(session, done.result_urls[0])
    assert status == 200 and ctype == "image/png"
    with Image.open(io.BytesIO(body)) as result:
        assert result.size == (64, 48)
        assert result.convert("RGB").getpixel((5, 5)) == (245, 55, 225)


async def test_text_to_image_jpg(fake: FakeApimart, session: aiohttp.ClientSession) -> None:
    client = client_for(session, fake)
    fake.script(duration=0.05, progress_steps=None, estimated_time=None)
    task_id = await client.submit(edit(None, response_format="jpg", size="9:16"), idempotency_key="j2")
    assert "image_urls" not in fake.submissions[0].json
    done = await wait_for_task(client, task_id, deadline=deadline(5), schedule=FAST)
    status, ctype, body = await fetch(session, done.result_urls[0])
    assert status == 200 and ctype == "image/jpeg"
    with Image.open(io.BytesIO(body)) as result:
        assert result.format == "JPEG" and result.size == (144, 256)
        expected = FakeApimart.colour_for("make the sky purple")
        got = pixel(result.convert("RGB"), (10, 10))
        assert all(abs(a - b) <= 3 for a, b in zip(got, expected, strict=True))


async def test_alternative_status_names_and_list_data(
    fake: FakeApimart, session: aiohttp.ClientSession
) -> None:
    client = client_for(session, fake, language="zh")
    fake.script(
        duration=0.2,
        status_names={"queued": "submitted", "running": "in_progress"},
        list_while_queued=True,
        queue_fraction=0.5,
    )
    task_id = await client.submit(edit(fake.host(png())), idempotency_key="j3")
    seen: list[str] = []

    async def on_update(status: TaskStatus) -> None:
        seen.append(status.raw_status)

    await wait_for_task(client, task_id, deadline=deadline(5), on_update=on_update, schedule=FAST)
    assert seen[0] == "submitted" and "in_progress" in seen and seen[-1] == "completed"
    task_requests = [r for r in fake.requests if r.endpoint == "task"]
    assert all(r.query == {"language": "zh"} for r in task_requests)


async def test_on_update_errors_do_not_stop_the_wait(
    fake: FakeApimart, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_for(session, fake)
    fake.script(duration=0.05)
    task_id = await client.submit(edit(None), idempotency_key="j4")

    async def broken(status: TaskStatus) -> None:
        raise RuntimeError("discord edit failed")

    done = await wait_for_task(client, task_id, deadline=deadline(5), on_update=broken, schedule=FAST)
    assert done.state == "completed"
    assert any("on_update callback failed" in r.getMessage() for r in caplog.records)


# --- task failures and deadlines ---------------------------------------------------------------


@pytest.mark.parametrize("shape", ["object", "string", "fail_reason"])
async def test_failed_task_reason_surfaces(
    fake: FakeApimart, session: aiohttp.ClientSession, shape: FailShape
) -> None:
    client = client_for(session, fake)
    fake.script(duration=0.05, fail_reason="Request moderated: input image flagged", fail_shape=shape)
    task_id = await client.submit(edit(fake.host(png())), idempotency_key="jf")
    with pytest.raises(TaskFailed) as info:
        await wait_for_task(client, task_id, deadline=deadline(5), schedule=FAST)
    assert info.value.params["reason"] == "Request moderated: input image flagged"
    assert info.value.code == "task_failed"


async def test_cancelled_task_is_a_failure(fake: FakeApimart, session: aiohttp.ClientSession) -> None:
    client = client_for(session, fake)
    fake.script(duration=0.05, fail_reason="cancelled by operator", status_names={"failed": "cancelled"})
    task_id = await client.submit(edit(None), idempotency_key="jc")
    with pytest.raises(TaskFailed, match="cancelled by operator"):
        await wait_for_task(client, task_id, deadline=deadline(5), schedule=FAST)


async def test_never_finishing_task_hits_the_deadline(
    fake: FakeApimart, session: aiohttp.ClientSession
) -> None:
    client = client_for(session, fake)
    fake.script(never_finish=True, duration=0.05)
    task_id = await client.submit(edit(None), idempotency_key="jn")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TaskTimedOut) as info:
        await wait_for_task(client, task_id, deadline=started + 0.3, schedule=FAST)
    assert 0.29 <= loop.time() - started < 0.8
    assert info.value.params["seconds"] == 0 and info.value.code == "task_timeout"
    assert fake.polls[task_id] >= 3


async def test_slow_poll_cannot_overrun_the_deadline_much(
    fake: FakeApimart, session: aiohttp.ClientSession
) -> None:
    client = client_for(session, fake, timeout=1.0)
    fake.script(never_finish=True)
    task_id = await client.submit(edit(None), idempotency_key="js")
    fake.slow_next("task", 5.0, times=5)  # every poll would hang for 5 s
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TaskTimedOut):
        await wait_for_task(client, task_id, deadline=started + 0.1, schedule=FAST)
    # deadline + a grace of min(timeout, 2 s) for the in-flight poll, not 5 attempts x 1 s
    assert loop.time() - started < 1.5


async def test_unknown_status_is_a_clear_error(fake: FakeApimart, session: aiohttp.ClientSession) -> None:
    client = client_for(session, fake)
    fake.script(duration=0.05, status_names={"queued": "thinking_hard"}, queue_fraction=1.0)
    task_id = await client.submit(edit(None), idempotency_key="ju")
    with pytest.raises(UnknownTaskStatus) as info:
        await wait_for_task(client, task_id, deadline=deadline(5), schedule=FAST)
    assert info.value.params["status_name"] == "thinking_hard"
    assert info.value.params["status"] == "thinking_hard" and info.value.status is None


async def test_completed_without_result_url_is_malformed(
    fake: FakeApimart, session: aiohttp.ClientSession
) -> None:
    client = client_for(session, fake)
    task_id = await client.submit(edit(None), idempotency_key="jm")
    fake.fail_next("task", 200, body={"code": 200, "data": {"id": task_id, "status": "completed"}}, times=3)
    with pytest.raises(ApiMalformed, match="without a result URL"):
        await wait_for_task(client, task_id, deadline=deadline(5), schedule=FAST)


# --- submit errors -----------------------------------------------------------------------------

ERROR_CASES: list[tuple[int, Any, type[ApiError], str | None]] = [
    (
        401,
        {"error": {"message": "Invalid API key", "type": "authentication_error"}},
        ApiAuthError,
        "Invalid API key",
    ),
    (402, {"code": 402, "message": "Insufficient balance"}, ApiBalanceError, "Insufficient balance"),
    (403, {"error": {"message": "No permission for flux-kontext-max"}}, ApiBalanceError, "No permission"),
    (
        400,
        {"error": {"message": "image url unreachable", "param": "image_urls"}},
        ApiBadRequest,
        "unreachable",
    ),
    (404, {"error": "model not found"}, ApiBadRequest, "model not found"),
    (422, {"message": "size is invalid"}, ApiBadRequest, "size is invalid"),
    (500, {"error": {"message": "upstream exploded"}}, ApiServerError, "upstream exploded"),
    (503, None, ApiServerError, None),
    (408, None, ApiServerError, None),
]


@pytest.mark.parametrize(("status", "body", "error", "message"), ERROR_CASES)
async def test_submit_error_classes(
    fake: FakeApimart,
    session: aiohttp.ClientSession,
    status: int,
    body: Any,
    error: type[ApiError],
    message: str | None,
) -> None:
    sleep = RecordingSleep()
    client = client_for(session, fake, sleep=sleep)
    fake.fail_next("submit", status, body=body)
    with pytest.raises(error) as info:
        await client.submit(edit(None), idempotency_key="e1")
    assert info.value.status == status
    if message:
        assert message in info.value.params["message"] and message in str(info.value)
    assert len(fake.submissions) == 1 and sleep.calls == []  # never retried
    assert not fake.tasks


async def test_http_200_with_error_code_in_body(fake: FakeApimart, session: aiohttp.ClientSession) -> None:
    client = client_for(session, fake)
    fake.fail_next("submit", 200, body={"code": 402, "message": "余额不足 insufficient balance"})
    with pytest.raises(ApiBalanceError, match="insufficient balance"):
        await client.submit(edit(None), idempotency_key="e2")
    fake.fail_next("submit", 200, body={"code": "invalid_request", "error": {"message": "bad size"}})
    with pytest.raises(ApiBadRequest, match="bad size"):
        await client.submit(edit(None), idempotency_key="e3")


@pytest.mark.parametrize(
    "raw",
    [b'{"code": 200, "data": [{"task_', b"<html><body>Bad Gateway</body></html>", b"", b"[1, 2, 3]"],
)
async def test_submit_malformed_replies(
    fake: FakeApimart, session: aiohttp.ClientSession, raw: bytes
) -> None:
    client = client_for(session, fake)
    fake.fail_next("submit", 200, raw=raw)
    with pytest.raises(ApiMalformed):
        await client.submit(edit(None), idempotency_key="e4")
    assert len(fake.submissions) == 1


async def test_submit_html_error_page_keeps_its_status(
    fake: FakeApimart, session: aiohttp.ClientSession
) -> None:
    client = client_for(session, fake)
    fake.fail_next("submit", 500, raw=b"<html><h1>500 Internal Server Error</h1></html>")
    with pytest.raises(ApiServerError) as info:
        await client.submit(edit(None), idempotency_key="e5")
    assert info.value.status == 500


@pytest.mark.parametrize("status", [502, 504])
async def test_submit_gateway_timeout_is_uncertain(
    fake: FakeApimart, session: aiohttp.ClientSession, status: int
) -> None:
    client = client_for(session, fake)
    fake.fail_next("submit", status, raw=b"<html>gateway</html>")
    with pytest.raises(ApiSubmitUncertain) as info:
        await client.submit(edit(None), idempotency_key="e6")
    assert info.value.status == status and len(fake.submissions) == 1


async def test_real_validation_error_from_the_fake(fake: FakeApimart, session: aiohttp.ClientSession) -> None:
    client = client_for(session, fake)
    with pytest.raises(ApiBadRequest, match="safety_tolerance must be an integer between 0 and 6"):
        await client.submit(edit(None, safety_tolerance=9), idempotency_key="v1")
    with pytest.raises(ApiBadRequest, match="size must be one of"):
        await client.submit(edit(None, size="5:4"), idempotency_key="v2")
    with pytest.raises(ApiBadRequest, match="image url unreachable"):
        await client.submit(edit(fake.base_url + "/f/image/missing.png"), idempotency_key="v3")
    with pytest.raises(ApiBadRequest, match="image url unreachable"):  # reachable but not an image
        await client.submit(edit(fake.host(b"hello", "image/png")), idempotency_key="v4")
    fake.max_safety_with_image = 2
    with pytest.raises(ApiBadRequest, match="at most 2 when an input image"):
        await client.submit(edit(fake.host(png()), safety_tolerance=5), idempotency_key="v5")
    assert not fake.tasks


async def test_wrong_key_is_401_and_redacted(fake: FakeApimart, session: aiohttp.ClientSession) -> None:
    wrong = "sk-WRONG-operator-secret-77"
    client = client_for(session, fake, key=wrong)
    with pytest.raises(ApiAuthError) as info:
        await client.submit(edit(None), idempotency_key="k1")
    assert "Incorrect API key provided" in str(info.value)  # the fake echoes the key back …
    assert wrong not in str(info.value) and wrong not in repr(info.value.params)  # … we do not
    assert fake.submissions[0].headers["Authorization"] == f"Bearer {wrong}"


# --- submit retries: only when nothing can have been created -----------------------------------


async def test_submit_retried_on_429_honouring_retry_after_seconds(
    fake: FakeApimart, session: aiohttp.ClientSession
) -> None:
    sleep = RecordingSleep()
    client = client_for(session, fake, sleep=sleep)
    fake.fail_next("submit", 429, body={"error": {"message": "slow down"}}, headers={"Retry-After": "3"})
    task_id = await client.submit(edit(None), idempotency_key="r1")
    assert sleep.calls == [3.0]
    assert len(fake.submissions) == 2 and fake.submissions[1].task_id == task_id
    assert {s.idempotency_key for s in fake.submissions} == {"r1"}


async def test_submit_429_retry_after_http_date(fake: FakeApimart, session: aiohttp.ClientSession) -> None:
    sleep = RecordingSleep()
    client = client_for(session, fake, sleep=sleep)
    when = email.utils.formatdate(time.time() + 7, usegmt=True)
    fake.fail_next("submit", 429, headers={"Retry-After": when})
    await client.submit(edit(None), idempotency_key="r2")
    assert len(sleep.calls) == 1 and 5.0 <= sleep.calls[0] <= 7.0


async def test_submit_429_beyond_the_bound_is_raised(
    fake: FakeApimart, session: aiohttp.ClientSession
) -> None:
    sleep = RecordingSleep()
    client = client_for(session, fake, sleep=sleep, max_rate_limit_wait=10)
    fake.fail_next("submit", 429, headers={"Retry-After": "120"})
    with pytest.raises(ApiRateLimited) as info:
        await client.submit(edit(None), idempotency_key="r3")
    assert info.value.retry_after == 120 and sleep.calls == [] and len(fake.submissions) == 1


async def test_submit_429_gives_up_after_a_few_attempts(
    fake: FakeApimart, session: aiohttp.ClientSession
) -> None:
    sleep = RecordingSleep()
    client = client_for(session, fake, sleep=sleep)
    fake.fail_next("submit", 429, headers={"Retry-After": "1"}, times=10)
    with pytest.raises(ApiRateLimited):
        await client.submit(edit(None), idempotency_key="r4")
    assert len(fake.submissions) == 3 and sleep.calls == [1.0, 1.0]


async def test_submit_not_retried_on_timeout(fake: FakeApimart, session: aiohttp.ClientSession) -> None:
    sleep = RecordingSleep()
    client = client_for(session, fake, sleep=sleep, timeout=0.2)
    fake.slow_next("submit", 1.0)  # the fake creates the job but answers too late
    with pytest.raises(ApiSubmitUncertain) as info:
        await client.submit(edit(None), idempotency_key="t1")
    assert info.value.code == "api_submit_uncertain" and not info.value.retryable
    assert len(fake.submissions) == 1 and sleep.calls == []
    assert len(fake.tasks) == 1  # … which is exactly why it must not be resubmitted


async def test_submit_not_retried_on_disconnect(fake: FakeApimart, session: aiohttp.ClientSession) -> None:
    sleep = RecordingSleep()
    client = client_for(session, fake, sleep=sleep)
    fake.fail_next("submit", disconnect=True)
    with pytest.raises(ApiSubmitUncertain):
        await client.submit(edit(None), idempotency_key="t2")
    assert len(fake.submissions) == 1 and sleep.calls == []


async def test_submit_retried_when_connection_refused(
    fake: FakeApimart, session: aiohttp.ClientSession
) -> None:
    async def come_back() -> None:
        await fake.set_down(False)

    sleep = RecordingSleep(hook=come_back)
    client = client_for(session, fake, sleep=sleep)
    await fake.set_down(True)
    task_id = await client.submit(edit(None), idempotency_key="c1")
    assert len(sleep.calls) == 1 and 0 < sleep.calls[0] <= 0.5
    assert len(fake.submissions) == 1 and fake.submissions[0].task_id == task_id


async def test_submit_gives_up_when_the_api_stays_down(
    fake: FakeApimart, session: aiohttp.ClientSession
) -> None:
    sleep = RecordingSleep()
    client = client_for(session, fake, sleep=sleep)
    await fake.set_down(True)
    with pytest.raises(ApiUnavailable):
        await client.submit(edit(None), idempotency_key="c2")
    assert len(sleep.calls) == 2 and sleep.calls[0] < sleep.calls[1]  # exponential
    assert fake.submissions == []


# --- GET retries -------------------------------------------------------------------------------


async def test_get_retried_on_5xx_and_malformed(fake: FakeApimart, session: aiohttp.ClientSession) -> None:
    sleep = RecordingSleep()
    client = client_for(session, fake, sleep=sleep)
    task_id = await client.submit(edit(None), idempotency_key="g1")
    fake.fail_next("task", 503)
    fake.fail_next("task", 502, raw=b"<html>bad gateway</html>")
    fake.fail_next("task", 200, raw=b'{"code": 200, "data": {"sta')
    fake.fail_next("task", 200, raw=b"<!doctype html><title>maintenance</title>")
    status = await client.poll(task_id)
    assert status.task_id == task_id and status.state in ("queued", "running", "completed")
    assert fake.polls[task_id] == 5 and len(sleep.calls) == 4
    assert sleep.calls[0] < sleep.calls[2]  # exponential back-off with jitter
    assert all(0 < d <= 8 for d in sleep.calls)


async def test_get_retried_on_429_and_timeout(fake: FakeApimart, session: aiohttp.ClientSession) -> None:
    sleep = RecordingSleep()
    client = client_for(session, fake, sleep=sleep, timeout=0.2)
    task_id = await client.submit(edit(None), idempotency_key="g2")
    fake.fail_next("task", 429, headers={"Retry-After": "4"})
    fake.fail_next("task", 200, delay=0.5)  # slower than the client timeout
    await client.poll(task_id)
    assert sleep.calls[0] == pytest.approx(4.0)
    assert len(sleep.calls) == 2 and fake.polls[task_id] == 3


async def test_get_gives_up_after_max_attempts(fake: FakeApimart, session: aiohttp.ClientSession) -> None:
    sleep = RecordingSleep()
    client = client_for(session, fake, sleep=sleep, max_get_attempts=3)
    task_id = await client.submit(edit(None), idempotency_key="g3")
    fake.fail_next("task", 500, times=10)
    with pytest.raises(ApiServerError):
        await client.poll(task_id)
    assert fake.polls[task_id] == 3 and len(sleep.calls) == 2


async def test_get_retried_when_connection_refused(fake: FakeApimart, session: aiohttp.ClientSession) -> None:
    calls = 0

    async def flap() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            await fake.set_down(False)

    sleep = RecordingSleep(hook=flap)
    client = client_for(session, fake, sleep=sleep)
    task_id = await client.submit(edit(None), idempotency_key="g4")
    await fake.set_down(True)
    status = await client.poll(task_id)
    assert status.task_id == task_id and len(sleep.calls) == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, ApiAuthError), (403, ApiBalanceError), (404, ApiBadRequest), (400, ApiBadRequest)],
)
async def test_get_client_errors_are_not_retried(
    fake: FakeApimart, session: aiohttp.ClientSession, status: int, error: type[ApiError]
) -> None:
    sleep = RecordingSleep()
    client = client_for(session, fake, sleep=sleep)
    fake.fail_next("task", status)
    with pytest.raises(error):
        await client.poll("task_whatever")
    assert sleep.calls == []


async def test_unknown_task_is_a_bad_request(fake: FakeApimart, session: aiohttp.ClientSession) -> None:
    client = client_for(session, fake)
    with pytest.raises(ApiBadRequest, match="task not found") as info:
        await client.poll("task_does_not_exist")
    assert info.value.status == 404


# --- upload ------------------------------------------------------------------------------------


async def test_upload_errors(fake: FakeApimart, session: aiohttp.ClientSession) -> None:
    sleep = RecordingSleep()
    client = client_for(session, fake, sleep=sleep)
    with pytest.raises(ApiBadRequest, match="unsupported format"):
        await client.upload(b"%PDF-1.4 not an image", "x.png", "image/png")
    big = b"\x89PNG\r\n\x1a\n" + bytes(20 * 1024 * 1024)
    with pytest.raises(ApiBadRequest, match="too large") as info:
        await client.upload(big, "big.png", "image/png")
    assert info.value.status == 413
    fake.fail_next("upload", 500)
    with pytest.raises(ApiServerError):
        await client.upload(png(), "x.png", "image/png")
    assert sleep.calls == []  # none of those were retried
    fake.fail_next("upload", 429, headers={"Retry-After": "2"})
    url = await client.upload(png(), "y.png", "image/png")
    assert sleep.calls == [2.0]
    status, ctype, body = await fetch(session, url)
    assert status == 200 and ctype == "image/png" and body == png()


async def test_upload_timeout_is_unavailable_not_retried(
    fake: FakeApimart, session: aiohttp.ClientSession
) -> None:
    sleep = RecordingSleep()
    client = client_for(session, fake, sleep=sleep, timeout=0.2)
    fake.fail_next("upload", 200, delay=1.0)
    with pytest.raises(ApiUnavailable):
        await client.upload(png(), "x.png", "image/png")
    assert sleep.calls == [] and len([r for r in fake.requests if r.endpoint == "upload"]) == 1


async def test_upload_reply_without_url_is_malformed(
    fake: FakeApimart, session: aiohttp.ClientSession
) -> None:
    client = client_for(session, fake)
    fake.fail_next("upload", 200, body={"filename": "x.png"})
    with pytest.raises(ApiMalformed):
        await client.upload(png(), "x.png", "image/png")


# --- the key never leaks -----------------------------------------------------------------------


async def test_key_never_in_logs_or_exceptions(
    fake: FakeApimart, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    sleep = RecordingSleep()

    async def attempt(coro: Awaitable[Any]) -> None:
        try:
            await coro
        except KontextError as exc:
            errors.append(exc)

    client = client_for(session, fake, sleep=sleep, timeout=0.3)
    wrong = client_for(session, fake, key=SECRET + "-wrong", sleep=sleep)
    fake.script(duration=0.02, persist=True)
    await attempt(client.upload(png(), "a.png", "image/png"))
    task_id = await client.submit(edit(None), idempotency_key="s1")
    await attempt(wait_for_task(client, task_id, deadline=deadline(3), schedule=FAST))
    fake.fail_next("task", 500, body={"message": f"echo {SECRET}"}, times=2)
    await attempt(client.poll(task_id))
    fake.fail_next("submit", 400, body={"error": {"message": f"bad key {SECRET} here"}})
    await attempt(client.submit(edit(None), idempotency_key="s2"))
    fake.fail_next("submit", 200, raw=f"<html>{SECRET}</html>".encode())
    await attempt(client.submit(edit(None), idempotency_key="s3"))
    await attempt(wrong.submit(edit(None), idempotency_key="s4"))
    await attempt(wrong.poll(task_id))
    fake.slow_next("submit", 1.0)
    await attempt(client.submit(edit(None), idempotency_key="s5"))
    await fake.set_down(True)
    await attempt(client.submit(edit(None), idempotency_key="s6"))
    await attempt(client.poll(task_id))
    await fake.set_down(False)

    assert len(errors) >= 6
    assert caplog.records
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        assert SECRET not in text, record
    for error in errors:
        assert SECRET not in str(error) and SECRET not in repr(error)
        assert SECRET not in repr(getattr(error, "params", {}))
        assert error.__cause__ is None or SECRET not in str(error.__cause__)
    assert SECRET not in repr(client)


# --- the fake itself (other tests rely on these behaviours) ------------------------------------


async def test_fake_result_faults(fake: FakeApimart, session: aiohttp.ClientSession) -> None:
    client = client_for(session, fake)
    fake.script(duration=0.01)
    task_id = await client.submit(edit(None), idempotency_key="f1")
    done = await wait_for_task(client, task_id, deadline=deadline(3), schedule=FAST)
    url = done.result_urls[0]

    fake.result_fault("404")
    assert (await fetch(session, url))[0] == 404
    fake.result_fault("html")
    status, ctype, body = await fetch(session, url)
    assert status == 200 and ctype == "text/html" and body.startswith(b"<!DOCTYPE html>")
    fake.result_fault("redirect")
    async with session.get(url, allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"].startswith(f"http://localhost:{fake.port}/")
    fake.result_fault("oversize", size=3 * 1024 * 1024)
    async with session.get(url) as resp:
        assert resp.headers["Content-Type"] == "image/png" and "Content-Length" not in resp.headers
        assert len(await resp.read()) == 3 * 1024 * 1024
    assert (await fetch(session, url))[2] == fake.result_bytes(task_id)  # faults were one-shot


async def test_fake_validates_like_the_docs(fake: FakeApimart, session: aiohttp.ClientSession) -> None:
    headers = {"Authorization": f"Bearer {SECRET}"}
    base = request_body(edit(None))
    cases: list[dict[str, Any]] = [
        {**base, "model": "flux-pro"},
        {**base, "prompt": ""},
        {**base, "image_urls": [fake.host(png()), fake.host(png())]},
        {**base, "image_urls": ["data:image/png;base64,AAAA"]},
        {**base, "safety_tolerance": True},
        {**base, "safety_tolerance": 2.5},
        {**base, "response_format": "webp"},
        {**base, "prompt_upsampling": "yes"},
    ]
    for body in cases:
        async with session.post(fake.base_url + "/v1/images/generations", json=body, headers=headers) as resp:
            assert resp.status == 400, body
            payload = await resp.json()
            assert payload["error"]["message"]
    async with session.post(fake.base_url + "/v1/images/generations", data=b"{", headers=headers) as resp:
        assert resp.status == 400
    assert not fake.tasks


async def test_fake_honours_idempotency_when_asked(fake: FakeApimart, session: aiohttp.ClientSession) -> None:
    client = client_for(session, fake)
    fake.honour_idempotency = True
    first = await client.submit(edit(None), idempotency_key="same")
    second = await client.submit(edit(None), idempotency_key="same")
    assert first == second and len(fake.tasks) == 1 and len(fake.submissions) == 2


# --- parsers: unit and property tests ----------------------------------------------------------


def test_parse_submit_response_shapes() -> None:
    assert (
        parse_submit_response({"code": 200, "data": [{"status": "submitted", "task_id": "task_A"}]})
        == "task_A"
    )
    assert parse_submit_response({"code": 200, "data": {"id": "task_B", "status": "pending"}}) == "task_B"
    malformed: list[object] = [
        None,
        [],
        "x",
        {"code": 200},
        {"code": 200, "data": []},
        {"data": [{"status": "x"}]},
    ]
    for bad in malformed:
        with pytest.raises(ApiMalformed):
            parse_submit_response(bad)
    with pytest.raises(ApiBalanceError):
        parse_submit_response({"code": 402, "message": "no money"})


def test_parse_task_shapes() -> None:
    running = parse_task({"code": 200, "data": {"id": "t1", "status": "processing", "progress": 40}}, "t1")
    assert (running.state, running.progress, running.result_urls) == ("running", 40, ())
    queued = parse_task({"code": 200, "data": [{"status": "submitted"}]}, "t2")
    assert queued.state == "queued" and queued.task_id == "t2"
    done = parse_task(
        {
            "code": 200,
            "data": {
                "id": "t3",
                "status": "completed",
                "progress": 100,
                "estimated_time": "20",
                "result": {"images": [{"url": ["https://x/a.png", "https://x/b.png"], "expires_at": 17}]},
            },
        },
        "t3",
    )
    assert done.result_urls == ("https://x/a.png", "https://x/b.png") and done.expires_at == 17
    assert done.estimated_time == 20
    plain = parse_task(
        {"data": {"status": "completed", "result": {"images": [{"url": "https://x/c.jpg"}]}}}, "t"
    )
    assert plain.result_urls == ("https://x/c.jpg",)
    failed = parse_task({"code": 200, "data": {"status": "FAILED", "error": {"message": "nsfw"}}}, "t")
    assert (failed.state, failed.error) == ("failed", "nsfw")
    assert parse_task({"data": {"status": "failed"}}, "t").error == "no reason given"
    long = parse_task({"data": {"status": "failed", "fail_reason": "x" * 5000}}, "t")
    assert long.error is not None and len(long.error) <= 300
    odd = parse_task({"data": {"status": "running", "progress": 250.7, "estimated_time": -1}}, "t")
    assert odd.progress == 100 and odd.estimated_time is None
    with pytest.raises(UnknownTaskStatus):
        parse_task({"data": {"status": "paused"}}, "t")
    with pytest.raises(ApiMalformed):
        parse_task({"data": {"progress": 3}}, "t")
    with pytest.raises(ApiBadRequest):
        parse_task({"code": 404, "message": "task not found"}, "t")


def test_classify_error_table() -> None:
    cases: list[tuple[int, Any, type[ApiError]]] = [
        (401, None, ApiAuthError),
        (402, {}, ApiBalanceError),
        (403, "forbidden", ApiBalanceError),
        (400, {"message": "m"}, ApiBadRequest),
        (404, {}, ApiBadRequest),
        (413, {}, ApiBadRequest),
        (422, {}, ApiBadRequest),
        (429, {}, ApiRateLimited),
        (408, {}, ApiServerError),
        (500, {}, ApiServerError),
        (599, {}, ApiServerError),
        (200, {"code": 401, "message": "bad key"}, ApiAuthError),
        (200, {"code": "500", "message": "x"}, ApiServerError),
        (200, {"code": 1001, "message": "weird"}, ApiBadRequest),
        (302, {}, ApiMalformed),
    ]
    for status, body, expected in cases:
        assert type(classify_error(status, body, {})) is expected, (status, body)
    message = classify_error(400, {"error": {"message": "y" * 1000}}, {}).params["message"]
    assert len(message) <= 300
    redacted = classify_error(401, {"message": "key sk-abc is wrong"}, {}, redact=["sk-abc"])
    assert "sk-abc" not in str(redacted) and "***" in redacted.params["message"]


def test_parse_retry_after() -> None:
    assert parse_retry_after({"Retry-After": "12"}) == 12
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"Retry-After": "-4"}) == 0
    assert parse_retry_after({}) is None
    assert parse_retry_after({"Retry-After": "soon"}) is None
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after({"Retry-After": date}, now=1_000_000) == pytest.approx(30)
    assert parse_retry_after({"Retry-After": date}, now=2_000_000) == 0


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
STATUS_WORDS = st.sampled_from(
    ["pending", "processing", "completed", "failed", "cancelled", "submitted", "in_progress", "running", "??"]
)
TASKISH = st.fixed_dictionaries(
    {},
    optional={
        "code": st.one_of(st.just(200), st.integers(), st.text(max_size=5), st.none()),
        "data": st.one_of(
            JSON,
            st.fixed_dictionaries(
                {},
                optional={
                    "id": JSON,
                    "status": st.one_of(STATUS_WORDS, JSON),
                    "progress": JSON,
                    "estimated_time": JSON,
                    "expires_at": JSON,
                    "error": JSON,
                    "fail_reason": JSON,
                    "result": st.one_of(
                        JSON,
                        st.fixed_dictionaries(
                            {"images": st.lists(st.dictionaries(st.just("url"), JSON), max_size=3)}
                        ),
                    ),
                },
            ),
            st.lists(st.fixed_dictionaries({"status": STATUS_WORDS}), max_size=2),
        ),
    },
)


def _check_parse_task(body: Any) -> None:
    try:
        status = parse_task(body, "task_x")
    except KontextError:
        return
    assert isinstance(status, TaskStatus)
    assert status.state in ("queued", "running", "completed", "failed")
    assert status.progress is None or 0 <= status.progress <= 100
    assert all(isinstance(u, str) and u.startswith("http") for u in status.result_urls)
    assert (status.error is not None) == (status.state == "failed")
    json.dumps(status.__dict__)  # plain data only


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_parse_task_never_crashes_on_arbitrary_json(body: Any) -> None:
    _check_parse_task(body)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(TASKISH)
def test_parse_task_never_crashes_on_task_like_json(body: Any) -> None:
    _check_parse_task(body)


@given(JSON)
def test_parse_submit_never_crashes(body: Any) -> None:
    try:
        assert isinstance(parse_submit_response(body), str)
    except KontextError:
        pass
