"""Settings validation and the `python bot.py --check` command."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from kontext.config import ConfigError, Settings, load_settings
from kontext.config.schema import (
    Bool,
    Choice,
    Dir,
    Float,
    Group,
    Int,
    IntList,
    Kind,
    Pattern,
    Str,
    Url,
    load,
    setting,
    specs,
)

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


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("wss://proxy.example/gateway", "wss://proxy.example/gateway"),
        ("wss://proxy.example/gateway/", "wss://proxy.example/gateway/"),
        ("ws://127.0.0.1:9000/gw/v10", "ws://127.0.0.1:9000/gw/v10"),
        ("wss://gateway.discord.gg", "wss://gateway.discord.gg/"),
        ("wss://gateway.discord.gg/", "wss://gateway.discord.gg/"),
        ("ws://127.0.0.1:9000", "ws://127.0.0.1:9000/"),
    ],
)
def test_gateway_url_keeps_its_path_and_a_bare_host_gets_a_slash(given: str, expected: str) -> None:
    assert load_settings({**BASE, "DISCORD_GATEWAY_URL": given}).discord_gateway_url == expected


def test_api_roots_lose_trailing_slashes() -> None:
    s = load_settings(
        {**BASE, "APIMART_BASE_URL": "https://x.example/v1/", "DISCORD_API_BASE": "http://d/api/v10/"}
    )
    assert s.apimart_base_url == "https://x.example/v1" and s.discord_api_base == "http://d/api/v10"


def test_empty_or_blank_means_unset_and_values_are_stripped() -> None:
    defaults = load_settings(BASE)
    assert load_settings({**BASE, **dict.fromkeys(ALL_OPTIONAL, "")}) == defaults
    assert load_settings({**BASE, **dict.fromkeys(ALL_OPTIONAL, "  \t ")}) == defaults
    s = load_settings({"DISCORD_TOKEN": f"  {TOKEN}\n", "APIMART_API_KEY": f" {KEY} ", "WEB_PORT": " 81 "})
    assert (s.discord_token, s.apimart_api_key, s.web_port) == (TOKEN, KEY, 81)
    for blank_secret in ("", "   "):
        with pytest.raises(ConfigError, match=r"^DISCORD_TOKEN: missing \("):
            load_settings({**BASE, "DISCORD_TOKEN": blank_secret})


@pytest.mark.parametrize(
    ("raw", "value"),
    [(w, True) for w in ("1", "true", "YES", "On")] + [(w, False) for w in ("0", "False", "no", "OFF")],
)
def test_booleans(raw: str, value: bool) -> None:
    assert load_settings({**BASE, "WEB_ENABLED": raw, "ALLOW_DMS": raw}).allow_dms is value


@pytest.mark.parametrize("raw", ["y", "t", "2", "enabled", "truee"])
def test_other_words_are_not_booleans(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"^LOG_JSON: must be true or false$"):
        load_settings({**BASE, "LOG_JSON": raw})


def test_number_formats_and_ranges() -> None:
    s = load_settings({**BASE, "MAX_INPUT_MB": "+.5", "JOB_TIMEOUT_SECONDS": "1e3", "WEB_PORT": "+0080"})
    assert (s.max_input_mb, s.job_timeout_s, s.web_port) == (0.5, 1000.0, 80)
    for variable, raw, problem in [
        ("WEB_PORT", "80.0", "must be an integer between 0 and 65535"),
        ("WEB_PORT", "0x50", "must be an integer between 0 and 65535"),
        ("WEB_PORT", "9" * 5000, "must be an integer between 0 and 65535"),
        ("WEB_PORT", "-1", "must be between 0 and 65535"),
        ("MAX_INPUT_MB", "1e999", "must be between 0.1 and 500"),
        ("MAX_INPUT_MB", "-inf", "must be a number between 0.1 and 500"),
        ("MAX_INPUT_MB", "1,5", "must be a number between 0.1 and 500"),
        ("NORMALISE_MEGAPIXELS", "0.2", "must be between 0.25 and 16"),
        ("DEV_GUILD_ID", "0", "must be between 1 and 9223372036854775807"),
        ("DEV_GUILD_ID", "1.5", "must be an integer >= 1"),
    ]:
        with pytest.raises(ConfigError) as caught:
            load_settings({**BASE, variable: raw})
        assert (caught.value.variable, caught.value.problem) == (variable, problem), raw


def test_choices_fold_case_where_the_table_says_so() -> None:
    s = load_settings({**BASE, "IMAGE_HOST": "Discord", "LOG_LEVEL": "debug"})
    assert (s.image_host, s.log_level) == ("discord", "DEBUG")
    with pytest.raises(
        ConfigError, match=r"^DEFAULT_MODEL: must be one of: flux-kontext-pro, flux-kontext-max$"
    ):
        load_settings({**BASE, "DEFAULT_MODEL": "FLUX-KONTEXT-PRO"})


def test_cross_field_rules_for_the_local_host() -> None:
    local = {**BASE, "IMAGE_HOST": "local", "PUBLIC_BASE_URL": "https://k.example/"}
    assert load_settings(local).public_base_url == "https://k.example"
    with pytest.raises(ConfigError) as caught:
        load_settings({**local, "WEB_ENABLED": "off"})
    assert str(caught.value) == "WEB_ENABLED: must be true when IMAGE_HOST=local (it serves the files)"


def test_the_first_bad_variable_in_table_order_is_reported() -> None:
    env = {**BASE, "RETENTION_DAYS": "1", "WEB_PORT": "x", "APIMART_BASE_URL": "ftp://x"}
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert caught.value.variable == "APIMART_BASE_URL"
    with pytest.raises(ConfigError) as caught:
        load_settings({**env, "DISCORD_TOKEN": "x"})
    assert caught.value.variable == "DISCORD_TOKEN"


def test_settings_are_frozen_and_typed() -> None:
    s = load_settings({**BASE, "DATA_DIR": "/var/lib/kontext", "DEV_GUILD_ID": "123"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.web_port = 1  # type: ignore[misc]
    assert s.data_dir == Path("/var/lib/kontext") and s.database_path == Path(
        "/var/lib/kontext/kontext.sqlite3"
    )
    assert s.dev_guild_id == 123 and s.max_input_bytes == 20 * 1024 * 1024


# --- every kind, through a small table of the kind other settings will be added with ---------------

G = Group("Test")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Demo:
    token: str = setting(
        "DEMO_TOKEN",
        Pattern(r"[a-z]{8,}", "a token", "malformed", "Tok "),
        required="get one",
        secret=True,
        help="A secret.",
        group=G,
    )
    database_url: str | None = setting(
        "DATABASE_URL",
        Url(("postgresql", "postgres"), path="keep"),
        default=None,
        secret=True,
        help="A secret URL.",
        group=G,
    )
    shard_ids: tuple[int, ...] = setting(
        "SHARD_IDS", IntList(0, 1023, unique=True), default=(), help="Shards.", group=G
    )
    shard_count: int | None = setting("SHARD_COUNT", Int(1, 1024), default=None, help="Shards.", group=G)
    price: float = setting("PRICE", Float(0, 10), default=0.5, help="Price.", group=G)
    sandbox: bool = setting("SANDBOX", Bool(), default=True, help="Sandbox.", group=G)
    bucket: str = setting("S3_BUCKET", Str(), default="kontext", help="Bucket.", group=G)
    region: str = setting(
        "S3_REGION", Choice(("eu", "us"), case="lower"), default="eu", help="Region.", group=G
    )
    tmp: Path = setting(  # noqa: RUF009 - setting() is this table's dataclasses.field()
        "TMP_DIR", Dir(), default=Path("tmp"), help="Dir.", group=G
    )


def test_every_kind_is_one_row() -> None:
    demo = load(
        Demo,
        {
            "DEMO_TOKEN": "Tok abcdefgh",
            "DATABASE_URL": "postgresql://kontext:hunter2@db.internal:5432/kontext",
            "SHARD_IDS": "0, 1,7",
            "PRICE": "2.25",
            "SANDBOX": "no",
            "S3_REGION": "US",
            "TMP_DIR": "/tmp/k",
        },
    )
    assert demo == Demo(
        token="abcdefgh",
        database_url="postgresql://kontext:hunter2@db.internal:5432/kontext",
        shard_ids=(0, 1, 7),
        shard_count=None,
        price=2.25,
        sandbox=False,
        bucket="kontext",
        region="us",
        tmp=Path("/tmp/k"),
    )
    assert "hunter2" not in repr(demo) and "abcdefgh" not in repr(demo)
    assert load(Demo, {"DEMO_TOKEN": "abcdefgh"}).database_url is None


@pytest.mark.parametrize(
    ("variable", "raw", "problem"),
    [
        ("DEMO_TOKEN", "", "missing (get one)"),
        ("DEMO_TOKEN", "Tok SHOUTED-SECRET", "malformed"),
        (
            "DATABASE_URL",
            "postgresql://kontext:hunter2@db:99999/k",
            "must be a URL starting with postgresql:// or postgres:// with a valid host and port",
        ),
        (
            "DATABASE_URL",
            "mysql://kontext:hunter2@db/k",
            "must be a URL starting with postgresql:// or postgres://",
        ),
        (
            "DATABASE_URL",
            "postgresql://kontext:hünter2@db/k",
            "must be a URL starting with postgresql:// or postgres:// (ASCII, no spaces)",
        ),
        ("SHARD_IDS", "0,,1", "must be a comma-separated list of integers 0..1023"),
        ("SHARD_IDS", "0,1024", "must be between 0 and 1023"),
        ("SHARD_IDS", "3,3", "must not list a number twice"),
        ("PRICE", "nan", "must be a number between 0 and 10"),
        ("S3_REGION", "asia", "must be one of: eu, us"),
        ("TMP_DIR", "a\x00b", "must be a directory path"),
    ],
)
def test_every_kind_reports_the_variable_and_never_the_value(variable: str, raw: str, problem: str) -> None:
    env = {"DEMO_TOKEN": "abcdefgh", variable: raw}
    with pytest.raises(ConfigError) as caught:
        load(Demo, env)
    assert (caught.value.variable, caught.value.problem) == (variable, problem)
    for secret in ("hunter2", "hünter2", "SHOUTED-SECRET"):
        assert secret not in str(caught.value)


def test_a_buggy_kind_still_names_the_variable_and_not_the_value() -> None:
    class Buggy(Kind[int]):
        def parse(self, raw: str) -> int:
            return int(raw, 7)  # ValueError: invalid literal for int() with base 7: '<the value>'

        def describe(self) -> str:
            return "a base-7 number"

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Table:
        n: int = setting("N", Buggy(), default=0, help="N.", group=G, secret=True)

    with pytest.raises(ConfigError) as caught:
        load(Table, {"N": "hunter2"})
    assert str(caught.value) == "N: invalid value (expected a base-7 number)"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_row_needs_exactly_one_of_default_and_required() -> None:
    with pytest.raises(TypeError):
        setting("X", Bool(), help="", group=G)  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        setting("X", Bool(), default=True, required="y", help="", group=G)  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        setting("lower_case", Bool(), default=True, help="", group=G)


ALL_OPTIONAL = [spec.env for spec in specs(Settings) if spec.required is None]


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
