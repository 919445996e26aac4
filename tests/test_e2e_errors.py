"""End to end: every bad input and every API fault ends in the right, clear message — and nothing leaks."""

from __future__ import annotations

import io
import logging
import zlib

import pytest
from PIL import Image

from tests.fakes.apimart_fake import ResultFaultKind
from tests.harness import API_KEY, TOKEN, World, decode, job_states, make_image

EPHEMERAL = 64


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header declares an enormous image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


# --- refused from the attachment's metadata, before the defer ----------------------------------


async def test_oversize_attachment_refused_before_download(world: World) -> None:
    await world.start_bot(MAX_INPUT_MB="1")
    inter = await world.edit(make_image(), size=30 * 1024 * 1024)
    data = (await inter.wait_for_callback()).data
    assert inter.callback_type == 4 and data is not None and data["flags"] & EPHEMERAL
    assert "too large (30.0 MB)" in data["content"]
    assert "under 1 MB" in data["content"]
    assert not [r for r in world.discord.requests if "/attachments/" in r.path], "nothing may be downloaded"
    assert world.apimart.submissions == []


async def test_non_image_content_type_refused(world: World) -> None:
    await world.start_bot()
    inter = await world.edit(b"%PDF-1.7 ...", filename="doc.pdf", content_type="application/pdf")
    data = (await inter.wait_for_callback()).data
    assert data is not None and data["flags"] & EPHEMERAL
    assert "doesn't look like an image" in data["content"]
    assert world.apimart.submissions == []


# --- refused after download and inspection (ephemeral follow-up; the public status is removed) ---


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"hello, I am text pretending to be a PNG", "isn't an image I can read"),
        (b"", "isn't an image I can read"),
        (make_image(400, 300)[:900], "damaged or incomplete"),
        (png_bomb(), "far too large in pixels"),
        (make_image(4000, 10, "PNG"), "can't be edited"),
    ],
    ids=["text-renamed-png", "zero-bytes", "truncated-png", "decompression-bomb", "extreme-aspect"],
)
async def test_bad_images_get_their_own_private_message(world: World, data: bytes, expected: str) -> None:
    await world.start_bot()
    inter = await world.edit(data, filename="photo.png", content_type="image/png")
    text = await world.failure_of(inter)
    assert expected in text
    assert inter.callback_type == 5, "deferred first"
    assert inter.original_deleted, "the public 'thinking' message is removed"
    assert any(f.ephemeral for f in inter.followups)
    assert world.apimart.submissions == [] and world.apimart.uploads == []
    assert set(job_states(world.data_dir).values()) <= {"done", "failed"}, "no job is left unfinished"


# --- APIMart faults -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            401,
            {"error": {"message": f"invalid key {API_KEY}", "type": "auth"}},
            "rejected this bot's API key",
        ),
        (402, {"code": 402, "message": "insufficient balance"}, "out of credit"),
        (403, {"error": {"message": "no access to flux-kontext-max"}}, "out of credit or lacks access"),
        (
            400,
            {"error": {"message": "prompt violates policy"}},
            "rejected the request: prompt violates policy",
        ),
        (500, None, "having problems"),
    ],
    ids=["401", "402", "403", "400", "500"],
)
async def test_submit_errors_end_in_a_clear_public_message(
    world: World, caplog: pytest.LogCaptureFixture, status: int, body: object, expected: str
) -> None:
    caplog.set_level(logging.DEBUG)
    await world.start_bot()
    world.apimart.fail_next("submit", status, body=body)
    inter = await world.edit()
    text = await world.failure_of(inter)
    assert text.startswith("❌") and expected in text
    assert len(world.apimart.submissions) == 1, "a submission is never repeated"
    job = await world.bot.backend.store.get_job(world.apimart.submissions[0].idempotency_key)
    assert job is not None and job.state == "failed"
    everything = caplog.text + text + repr(inter.original_edits)
    assert API_KEY not in everything and TOKEN not in everything


async def test_rate_limited_submit_waits_retry_after_then_succeeds(world: World) -> None:
    await world.start_bot()
    world.apimart.fail_next(
        "submit", 429, headers={"Retry-After": "1"}, body={"error": {"message": "slow down"}}
    )
    inter = await world.edit()
    await world.result_of(inter)
    times = [s for s in world.apimart.submissions]
    assert len(times) == 2, "429 means no job was created, so one retry is safe"
    assert len({s.task_id for s in world.apimart.submissions if s.task_id}) == 1


async def test_rate_limit_storm_gives_up_with_busy_message(world: World) -> None:
    await world.start_bot()
    world.apimart.fail_next("submit", 429, headers={"Retry-After": "0"}, times=20)
    inter = await world.edit()
    text = await world.failure_of(inter)
    assert "busy right now" in text
    assert all(s.task_id is None for s in world.apimart.submissions)


async def test_malformed_submit_reply_is_not_retried(world: World) -> None:
    await world.start_bot()
    world.apimart.fail_next(
        "submit", 200, raw=b'{"code": 200, "data": [', headers={"Content-Type": "application/json"}
    )
    inter = await world.edit()
    text = await world.failure_of(inter)
    assert "couldn't understand" in text
    assert len(world.apimart.submissions) == 1


async def test_polling_survives_a_5xx_burst_and_malformed_json(world: World) -> None:
    await world.start_bot()
    world.apimart.script(duration=0.6)
    world.apimart.fail_next("task", 502, times=2)
    world.apimart.fail_next("task", 200, raw=b"<html>oops</html>", headers={"Content-Type": "text/html"})
    inter = await world.edit()
    await world.result_of(inter)
    assert len(world.apimart.submissions) == 1


async def test_failed_task_shows_the_api_reason(world: World) -> None:
    await world.start_bot()
    world.apimart.script(duration=0.2, fail_reason="Content moderated: the image was flagged")
    inter = await world.edit()
    text = await world.failure_of(inter)
    assert "could not make this edit: Content moderated: the image was flagged" in text


async def test_task_that_never_finishes_hits_the_deadline(world: World) -> None:
    await world.start_bot(JOB_TIMEOUT_SECONDS="2")
    world.apimart.script(never_finish=True)
    inter = await world.edit()
    text = await world.failure_of(inter, timeout=15)
    assert "took too long" in text
    [submission] = world.apimart.submissions
    job = await world.bot.backend.store.get_job(submission.idempotency_key)
    assert job is not None and job.state == "failed" and job.error_code == "task_timeout"


async def test_apimart_down_is_reported(world: World) -> None:
    await world.start_bot()
    await world.apimart.set_down(True)
    inter = await world.edit()
    text = await world.failure_of(inter, timeout=30)
    assert "can't reach the image service" in text or "couldn't upload your image" in text


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("404", "could not be downloaded"),
        ("html", "could not be downloaded"),
        ("oversize", "could not be downloaded"),
    ],
)
async def test_broken_result_download(world: World, kind: ResultFaultKind, expected: str) -> None:
    await world.start_bot(MAX_RESULT_MB="1")
    world.apimart.result_fault(kind, size=3 * 1024 * 1024)
    inter = await world.edit()
    text = await world.failure_of(inter)
    assert expected in text


async def test_result_over_the_channel_limit_is_reencoded(world: World) -> None:
    await world.start_bot()
    # a noisy picture compresses badly: its PNG result is far above a 150 kB upload limit
    noise = Image.effect_noise((900, 700), 120).convert("RGB")
    buf = io.BytesIO()
    noise.save(buf, "PNG")
    inter = await world.edit(buf.getvalue(), attachment_size_limit=150_000)
    result = await world.result_of(inter)
    [attachment] = result.attachments
    assert len(attachment.data) <= 150_000
    decode(attachment.data)
    assert "re-encoded to fit" in result.content


async def test_chinese_locale_gets_chinese_replies(world: World) -> None:
    await world.start_bot()
    world.apimart.script(duration=0.2, fail_reason="内容审核未通过")
    inter = await world.edit(prompt="把背景换成海滩", locale="zh-CN")
    text = await world.failure_of(inter)
    assert "图像服务无法完成此编辑：内容审核未通过" in text


async def test_job_that_cannot_start_after_the_defer_is_refused_privately(world: World) -> None:
    """The runner can stop accepting between the checks and the start (e.g. SIGTERM arrives)."""
    bot = await world.start_bot()
    original_start = bot.backend.runner.start_job

    async def stop_then_start(job: object) -> None:
        bot.backend.runner.accepting = False
        await original_start(job)

    bot.backend.runner.start_job = stop_then_start
    inter = await world.edit()
    text = await world.failure_of(inter)
    assert "restarting" in text
    assert inter.original_deleted and all(f.ephemeral for f in inter.followups)
    assert world.apimart.submissions == []
