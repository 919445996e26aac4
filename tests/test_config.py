"""Settings validation and the `python bot.py --check` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kontext.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "MTA1NjY3ODkwMTIzNDU2Nzg5.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"
KEY = "sk-test-1234567890abcdef"
BASE = {"DISCORD_TOKEN": TOKEN, "APIMART_API_KEY": KEY}


def test_defaults() -> None:
    s = load_settings(BASE)
    assert s.image_host == "apimart"
    assert s.apimart_base_url == "https://api.apimart.ai"
    assert s.discord_api_base == "https://discord.com/api/v10"
    assert s.default_safety == 2
    assert TOKEN not in repr(s) and KEY not in repr(s)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"APIMART_API_KEY": KEY}, "DISCORD_TOKEN"),
        ({"DISCORD_TOKEN": "not-a-token", "APIMART_API_KEY": KEY}, "DISCORD_TOKEN"),
        ({"DISCORD_TOKEN": TOKEN}, "APIMART_API_KEY"),
        ({**BASE, "APIMART_API_KEY": "has space inside"}, "APIMART_API_KEY"),
        ({**BASE, "WEB_PORT": "eighty"}, "WEB_PORT"),
        ({**BASE, "WEB_PORT": "70000"}, "WEB_PORT"),
        ({**BASE, "APIMART_BASE_URL": "ftp://x"}, "APIMART_BASE_URL"),
        ({**BASE, "DISCORD_GATEWAY_URL": "https://gateway"}, "DISCORD_GATEWAY_URL"),
        ({**BASE, "IMAGE_HOST": "imgur"}, "IMAGE_HOST"),
        ({**BASE, "IMAGE_HOST": "local"}, "PUBLIC_BASE_URL"),
        ({**BASE, "DEFAULT_SAFETY_TOLERANCE": "7"}, "DEFAULT_SAFETY_TOLERANCE"),
        ({**BASE, "DEV_GUILD_ID": "abc"}, "DEV_GUILD_ID"),
        ({**BASE, "ALLOW_DMS": "maybe"}, "ALLOW_DMS"),
        ({**BASE, "LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({**BASE, "MAX_INPUT_MB": "nan"}, "MAX_INPUT_MB"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert caught.value.variable == variable
    assert str(caught.value).startswith(variable + ":")
    for secret in (TOKEN, KEY, "not-a-token", "has space inside"):
        assert secret not in str(caught.value)


def test_bot_prefix_and_bearer_prefix_are_tolerated() -> None:
    s = load_settings({"DISCORD_TOKEN": "Bot " + TOKEN, "APIMART_API_KEY": "Bearer " + KEY})
    assert s.discord_token == TOKEN and s.apimart_api_key == KEY


def _check(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env}
    return subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), "--check", "--env-file", str(tmp_path / "none.env")],
        capture_output=True,
        text=True,
        env=clean,
        cwd=tmp_path,
        timeout=60,
    )


def test_check_command_ok(tmp_path: Path) -> None:
    result = _check(BASE, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout
    assert TOKEN not in result.stdout + result.stderr


def test_check_command_reports_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    result = _check({"DISCORD_TOKEN": "bad", "APIMART_API_KEY": KEY}, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "kontext: configuration error: DISCORD_TOKEN: malformed (expected three dot-separated parts)"
    ]
    assert "Traceback" not in result.stderr and "bad" not in result.stderr.replace("DISCORD_TOKEN", "")


def test_check_reads_dotenv(tmp_path: Path) -> None:
    (tmp_path / "conf.env").write_text(f"DISCORD_TOKEN={TOKEN}\nAPIMART_API_KEY={KEY}\nWEB_PORT=not-a-port\n")
    result = subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), "--check", "--env-file", str(tmp_path / "conf.env")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2
    assert "WEB_PORT" in result.stderr


def test_unreachable_discord_is_one_clear_error_line(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        **BASE,
        "DISCORD_API_BASE": "http://127.0.0.1:9/api/v10",  # nothing listens on the discard port
        "WEB_PORT": "0",
    }
    result = subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), "--env-file", str(tmp_path / "none.env")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "could not start: Cannot connect to host 127.0.0.1:9" in errors[0]
    assert TOKEN not in result.stderr and KEY not in result.stderr
