"""Bad scale-out settings end in ONE clear line naming the setting: exit 2 from --check, 1 at start."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from tests.harness import API_KEY, ROOT, TOKEN, World, free_port
from tests.servers import Postgres, S3Server

BASE = {"DISCORD_TOKEN": TOKEN, "APIMART_API_KEY": API_KEY, "LOG_LEVEL": "INFO"}


async def run_bot(*args: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "APIMART_", "S3_", "DATABASE"))
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "bot.py",
        "--env-file",
        os.devnull,
        *args,
        cwd=ROOT,
        env={**clean, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


def one_line_naming(output: str, variable: str, *secrets: str) -> str:
    lines = [line for line in output.splitlines() if variable in line]
    assert len(lines) == 1, output
    assert "Traceback" not in output, output
    for secret in secrets:
        assert secret not in output
    return lines[0]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://root@localhost/kontext", "must be a URL like postgresql://"),
        ("postgresql://kontext:hunter2-secret@127.0.0.1:{port}/kontext", "cannot connect to PostgreSQL"),
    ],
)
async def test_check_reports_a_bad_database_url(url: str, expected: str) -> None:
    code, output = await run_bot("--check", env={**BASE, "DATABASE_URL": url.format(port=free_port())})
    assert code == 2
    assert expected in one_line_naming(output, "DATABASE_URL", "hunter2-secret")


async def test_check_reports_a_missing_database(postgres: Postgres) -> None:
    code, output = await run_bot("--check", env={**BASE, "DATABASE_URL": postgres.url("no_such_db")})
    assert code == 2 and "does not exist" in one_line_naming(output, "DATABASE_URL")


async def test_check_reports_wrong_credentials(postgres: Postgres) -> None:
    await postgres.user_with_password("kontext_pw", "right-password")
    code, output = await run_bot(
        "--check", env={**BASE, "DATABASE_URL": postgres.url_as("kontext_pw", "wrong-password-xyz")}
    )
    assert code == 2
    assert "refused the user or password" in one_line_naming(output, "DATABASE_URL", "wrong-password-xyz")
    code, output = await run_bot(
        "--check", env={**BASE, "DATABASE_URL": postgres.url_as("kontext_pw", "right-password")}
    )
    assert code == 0, output


async def test_check_reports_a_missing_bucket(s3: S3Server) -> None:
    code, output = await run_bot("--check", env={**BASE, **s3.client_settings("no-such-bucket")})
    assert code == 2 and "does not exist" in one_line_naming(output, "S3_BUCKET", s3.secret_key)


async def test_start_with_an_unreachable_database_is_one_line_and_exit_1(world: World) -> None:
    env = {
        **world.env,
        "LOG_LEVEL": "INFO",
        "DATABASE_URL": f"postgresql://kontext:pw-not-shown@127.0.0.1:{free_port()}/kontext",
    }
    code, output = await run_bot(env=env)
    assert code == 1
    assert "could not start" in one_line_naming(output, "DATABASE_URL", "pw-not-shown")
