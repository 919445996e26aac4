"""Security checks: DISCORD_TOKEN, APIMART_API_KEY and METRICS_TOKEN never appear in logs, messages,
exceptions, the database or the web server's answers; interaction tokens are not kept once a job has ended.

Logs are captured RAW (every logger, DEBUG, before any filter), so the bot's own code is checked, not
only the scrubbing filter; the filter itself (kontext.support.logs.JobFilter, installed by setup_logging) is
checked separately, and once through a real ``python bot.py`` process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import bot as bot_module
from kontext.config import load_settings, secret_values
from kontext.services.runner import STEP_STATUS_AFTER_S
from kontext.support.logs import JobFilter, JsonFormatter, job_context
from tests.fakes.discord import FakeInteraction
from tests.harness import API_KEY, ROOT, TOKEN, World, free_port, make_image
from tests.scrape import get
from tests.waiting import eventually

WEBHOOK_EDIT = r"^/webhooks/\d+/[^/]+/messages/\d+$"
CHANNEL_POST = r"^/channels/\d+/messages$"
METRICS_TOKEN = "metrics-token-that-must-never-leak-42"
SECRETS = {"DISCORD_TOKEN": TOKEN, "APIMART_API_KEY": API_KEY, "METRICS_TOKEN": METRICS_TOKEN}


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def record_text(record: logging.LogRecord) -> str:
    text = f"{record.name} {record.getMessage()}"
    if record.exc_info:
        text += "\n" + logging.Formatter().formatException(record.exc_info)
    return text + (record.exc_text or "") + (record.stack_info or "")


@pytest.fixture
def all_logs() -> Iterator[list[logging.LogRecord]]:
    """Every record of every logger (root, kontext, discord, aiohttp, asyncio) at DEBUG, unfiltered."""
    capture = Capture()
    names = ("", "kontext", "discord", "discord.http", "discord.gateway", "aiohttp", "asyncio")
    saved = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    logging.getLogger().addHandler(capture)
    try:
        yield capture.records
    finally:
        logging.getLogger().removeHandler(capture)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def db_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.glob("kontext.sqlite3*"))


def db_rows(data_dir: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(data_dir / "kontext.sqlite3")
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute("SELECT * FROM jobs")]
    finally:
        conn.close()


async def web_bodies(port: int) -> str:
    """/metrics (refused without the token, then with it) and /healthz."""
    async with aiohttp.ClientSession() as session:
        texts = []
        for path, token in (("/metrics", None), ("/metrics", METRICS_TOKEN), ("/healthz", None)):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as resp:
                assert resp.status in ((200, 503) if path == "/healthz" else (200 if token else 401,))
                texts.append(await resp.text() + json.dumps(dict(resp.headers)))
    return "\n".join(texts)


def discord_bodies(world: World) -> str:
    """Everything the bot sent to Discord except the Authorization header (which must hold the token)."""
    parts = []
    for r in world.discord.requests:
        headers = {k: v for k, v in r.headers.items() if k.lower() != "authorization"}
        parts.append(json.dumps([r.path, r.query, headers, r.json, r.file_names], default=str))
        parts += [f.data.decode("latin-1") for f in r.files]
    return "\n".join(parts)


def assert_no_secret(where: str, text: str) -> None:
    for name, secret in SECRETS.items():
        assert secret not in text, f"{name} leaked into {where}"


async def assert_nothing_leaked(
    world: World, records: list[logging.LogRecord], inters: list[FakeInteraction]
) -> None:
    assert records, "logs were captured"
    for record in records:
        assert_no_secret(f"log record {record.name}:{record.lineno}", record_text(record))
    assert_no_secret("what the bot sent to Discord", discord_bodies(world))
    for to_discord in world.discord.requests:
        assert API_KEY not in json.dumps(to_discord.headers), "the APIMart key is only ever sent to APIMart"
    for to_apimart in world.apimart.requests:
        assert TOKEN not in json.dumps(to_apimart.headers) + (to_apimart.body or b"").decode("latin-1")
        auth = to_apimart.headers.get("Authorization")
        assert auth is None or auth == f"Bearer {API_KEY}"
    for upload in world.apimart.uploads:
        assert_no_secret("an upload", (upload.data or b"").decode("latin-1"))
    assert_no_secret("the database", db_bytes(world.data_dir).decode("latin-1"))
    assert_no_secret("/metrics or /healthz", await web_bodies(world.bot.backend.web_port))

    # interaction tokens: never in the bot's own log lines, nor in anything at INFO or above (the level
    # discord.py is clamped to by setup_logging), and not kept in the database once a job has ended
    tokens = [i.token for i in inters]
    for record in records:
        if record.name.startswith("kontext") or record.levelno >= logging.INFO:
            text = record_text(record)
            assert not any(token in text for token in tokens), f"interaction token in {record.name}"
    rows = db_rows(world.data_dir)
    assert rows and all(row["state"] in ("done", "failed") for row in rows), [r["state"] for r in rows]
    # (the column is cleared; SQLite may keep the old bytes in its WAL/free pages until they are reused,
    # which is acceptable for a credential that dies 15 minutes after it was issued)
    assert all(row["interaction_token"] is None for row in rows), "final jobs keep no interaction token"


async def wait_for_status(inter: FakeInteraction, prefix: str) -> None:
    await inter.wait_for(lambda i: any(e.message.content.startswith(prefix) for e in i.original_edits))


async def test_no_secret_leaks_on_success_and_failure_paths(
    world: World, all_logs: list[logging.LogRecord]
) -> None:
    bot = await world.start_bot(METRICS_TOKEN=METRICS_TOKEN)
    inters: list[FakeInteraction] = []

    # 1. a normal job, with an APIMart 500 whose body echoes the key while polling
    world.apimart.fail_next("task", 500, body={"message": f"upstream choked on {API_KEY}"})
    inters.append(await world.edit())
    await world.result_of(inters[-1])

    # 2. the API rejects the key and echoes it back (as some APIs do)
    world.apimart.fail_next(
        "submit", 401, body={"error": {"message": f"Incorrect API key provided: {API_KEY}", "type": "auth"}}
    )
    inters.append(await world.edit())
    assert "rejected this bot's API key" in await world.failure_of(inters[-1])

    # 3. Discord answers 401 to the final edit (token considered gone) and to the channel post
    world.apimart.slow_next("result", STEP_STATUS_AFTER_S + 0.5)  # "Fetching the result" shows after 1 s
    inters.append(await world.edit())
    await wait_for_status(inters[-1], "⬇️")
    world.discord.fail_next("PATCH", WEBHOOK_EDIT, 401, body={"message": "401: Unauthorized", "code": 0})
    world.discord.fail_next("POST", CHANNEL_POST, 401, body={"message": "401: Unauthorized", "code": 0})
    await world.discord.wait_until(lambda: world.discord.find_requests("POST", CHANNEL_POST), timeout=10)

    # 4. a crash inside the job (an unexpected exception in the result step)
    real_fit = bot.backend.images.fit_result

    async def crash(*args: Any, **kwargs: Any) -> Any:
        bot.backend.images.fit_result = real_fit
        raise RuntimeError("boom while fitting the result")

    bot.backend.images.fit_result = crash
    inters.append(await world.edit())
    assert "Something went wrong on my side" in await world.failure_of(inters[-1])

    await bot.backend.runner.wait_idle()
    assert any(r.exc_info and "boom while fitting" in record_text(r) for r in all_logs), "crash was logged"
    codes = sorted(row["error_code"] or "-" for row in db_rows(world.data_dir))
    assert codes == ["-", "api_auth", "delivery_failed", "internal"], codes
    await assert_nothing_leaked(world, all_logs, inters)


async def test_local_host_secret_file_is_private(world: World, all_logs: list[logging.LogRecord]) -> None:
    port = free_port()
    await world.start_bot(
        IMAGE_HOST="local",
        WEB_PORT=str(port),
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        METRICS_TOKEN=METRICS_TOKEN,
    )
    inter = await world.edit(make_image(96, 64))
    await world.result_of(inter)
    secret_file = world.data_dir / "web_secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    secret = secret_file.read_bytes()
    assert not any(secret.hex() in record_text(r) for r in all_logs)
    await assert_nothing_leaked(world, all_logs, [inter])


async def test_discord_rejecting_the_token_is_one_clear_line_without_the_token(
    world: World, all_logs: list[logging.LogRecord]
) -> None:
    wrong = "MTk5OTk5OTk5OTk5OTk5OTk5.XyZaBc.wrongwrongwrongwrongwrongwrongwrong12"
    settings = load_settings({**world.env, "DISCORD_TOKEN": wrong})
    loop = asyncio.get_running_loop()
    try:
        code = await asyncio.wait_for(bot_module.run_bot(settings), 15)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    assert code == 2
    lines = [r for r in all_logs if r.name == "kontext.bot" and r.levelno >= logging.ERROR]
    assert len(lines) == 1 and "rejected DISCORD_TOKEN" in lines[0].getMessage()
    for record in all_logs:
        text = record_text(record)
        assert wrong not in text and TOKEN not in text and API_KEY not in text, record.name


def test_every_secret_setting_is_scrubbed_from_the_logs() -> None:
    """bot.py gives the log filter secret_values(settings): every value the table marks secret."""
    env = {
        "DISCORD_TOKEN": TOKEN,
        "APIMART_API_KEY": f"Bearer {API_KEY}",
        "METRICS_TOKEN": f"Bearer {METRICS_TOKEN}",
        "S3_ACCESS_KEY_ID": "AKIAEXAMPLEKEY",
        "S3_SECRET_ACCESS_KEY": "s3-secret-access-key-example",
        "DATABASE_URL": "postgresql://kontext:db-password-example@db:5432/kontext",
    }
    values = secret_values(load_settings(env))
    assert sorted(values) == sorted([TOKEN, API_KEY, METRICS_TOKEN, *list(env.values())[3:]])
    assert secret_values(load_settings({"DISCORD_TOKEN": TOKEN, "APIMART_API_KEY": API_KEY})) == [
        TOKEN,
        API_KEY,
    ]


def test_log_filter_scrubs_secrets_from_messages_args_and_tracebacks() -> None:
    """Defence in depth: whatever a library puts in an exception or a message, setup_logging's filter
    replaces the configured secrets before a line is written (plain and JSON formats)."""

    class ListHandler(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.lines: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(self.format(record))

    for formatter in (logging.Formatter("%(levelname)s [job=%(job)s] %(message)s"), JsonFormatter()):
        handler = ListHandler()
        handler.addFilter(JobFilter([TOKEN, API_KEY, METRICS_TOKEN]))
        handler.setFormatter(formatter)
        log = logging.getLogger("tests.secrets.scrub")
        log.addHandler(handler)
        log.propagate = False
        try:
            with job_context("job123"):
                log.warning("key=%s token=%s metrics=%s", API_KEY, TOKEN, METRICS_TOKEN)
                log.warning(f"inline {TOKEN}")
                try:
                    try:
                        raise ValueError(f"inner {API_KEY}")
                    except ValueError as inner:
                        raise RuntimeError(f"request to https://x/?key={API_KEY} failed") from inner
                except RuntimeError:
                    log.exception("crashed")
        finally:
            log.removeHandler(handler)
        output = "\n".join(handler.lines)
        assert output.count("[redacted]") >= 6, output
        assert TOKEN not in output and API_KEY not in output and METRICS_TOKEN not in output
        assert "job123" in output and "RuntimeError" in output and "ValueError" in output


async def test_real_process_logs_at_debug_hold_no_secret(world: World, tmp_path: Path) -> None:
    """The production pipeline (setup_logging, LOG_LEVEL=DEBUG) end to end in a real bot process."""
    port = free_port()
    env = {
        **os.environ,
        **world.env,
        "PYTHONPATH": str(ROOT),
        "LOG_LEVEL": "DEBUG",
        "METRICS_TOKEN": METRICS_TOKEN,
        "WEB_PORT": str(port),
    }
    log_path = tmp_path / "bot.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "bot.py"), env=env, cwd=str(tmp_path), stdout=log_file, stderr=log_file
        )
        try:
            await world.discord.wait_until(lambda: world.discord.connected and world.discord.commands, 30)
            ok = await world.edit()
            await world.result_of(ok)
            world.apimart.fail_next(
                "submit", 401, body={"error": {"message": f"Incorrect API key provided: {API_KEY}"}}
            )
            bad = await world.edit()
            await world.failure_of(bad)
            await eventually(lambda: "job failed (api_auth)" in log_path.read_text(errors="replace"))
            assert (await get(port, "/metrics", METRICS_TOKEN[::-1]))[0] == 401
            status, metrics, _ = await get(port, "/metrics", METRICS_TOKEN)
            assert status == 200 and "kontext_jobs_total" in metrics
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    text = log_path.read_text(errors="replace")
    assert "[job=" in text and "job failed (api_auth)" in text
    assert_no_secret("the bot's log output", text)
    assert ok.token not in text and bad.token not in text, "interaction tokens stay out of the log"
    rows = db_rows(world.data_dir)
    assert len(rows) == 2 and all(row["interaction_token"] is None for row in rows)
