"""Typed settings read from the environment (and ``.env``), validated once at start.

:func:`load_settings` raises :class:`ConfigError` naming the variable and the problem; the message
never contains the value of a secret.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

MODELS = ("flux-kontext-pro", "flux-kontext-max")
SIZES = ("match_input_image", "auto", "1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "21:9", "9:21")
FORMATS = ("png", "jpg")
IMAGE_HOSTS = ("apimart", "local", "discord")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{18,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}$")
_KEY_RE = re.compile(r"^[\x21-\x7e]{8,512}$")

T = TypeVar("T")


class ConfigError(Exception):
    """A setting is missing or malformed; ``str()`` is one line naming the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


@dataclass(frozen=True)
class Settings:
    """Every bot-wide setting. Secrets are excluded from ``repr``."""

    discord_token: str = field(repr=False)
    apimart_api_key: str = field(repr=False)
    apimart_base_url: str = "https://api.apimart.ai"
    discord_api_base: str = "https://discord.com/api/v10"
    discord_gateway_url: str = "wss://gateway.discord.gg/"
    image_host: str = "apimart"
    public_base_url: str | None = None
    web_enabled: bool = True
    web_host: str = "0.0.0.0"
    web_port: int = 8080
    data_dir: Path = Path("data")
    dev_guild_id: int | None = None
    log_level: str = "INFO"
    log_json: bool = False
    default_model: str = "flux-kontext-pro"
    default_safety: int = 2
    max_input_mb: float = 20.0
    max_input_megapixels: float = 50.0
    normalise_megapixels: float = 2.0
    max_result_mb: float = 40.0
    job_timeout_s: float = 600.0
    http_timeout_s: float = 30.0
    hosted_file_ttl_s: int = 3600
    retention_days: int = 30
    max_concurrent_jobs: int = 8
    max_jobs_per_user: int = 2
    max_queued_jobs: int = 200
    allow_dms: bool = False
    allow_private_urls: bool = False
    status_update_interval_s: float = 1.5

    @property
    def max_input_bytes(self) -> int:
        return int(self.max_input_mb * 1024 * 1024)

    @property
    def max_result_bytes(self) -> int:
        return int(self.max_result_mb * 1024 * 1024)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "kontext.sqlite3"


def _url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    problem = f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}"
    if not value.isascii() or any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise ConfigError(name, problem + " (ASCII, no spaces)")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError:
        raise ConfigError(name, problem + " with a valid host and port") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(name, problem)
    return value.rstrip("/")


_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$", re.ASCII)


def _number(name: str, raw: str, kind: Callable[[str], T], lo: float, hi: float) -> T:
    try:
        if not _NUMBER_RE.match(raw) or (kind is int and not raw.lstrip("+-").isdigit()):
            raise ValueError(raw)
        value = kind(raw)
    except ValueError:
        raise ConfigError(name, f"must be a {kind.__name__} between {lo:g} and {hi:g}") from None
    if not lo <= value <= hi:  # type: ignore[operator]
        raise ConfigError(name, f"must be between {lo:g} and {hi:g}")
    return value


def _bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(name, "must be true or false")


def _choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    if raw not in choices:
        raise ConfigError(name, f"must be one of: {', '.join(choices)}")
    return raw


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from ``env``; raise :class:`ConfigError` on the first bad variable."""

    def get(name: str) -> str | None:
        value = env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    token = get("DISCORD_TOKEN")
    if token is None:
        raise ConfigError("DISCORD_TOKEN", "missing (the bot token from the Discord developer portal)")
    if token.lower().startswith("bot "):
        token = token[4:].strip()
    if not _TOKEN_RE.match(token):
        raise ConfigError("DISCORD_TOKEN", "malformed (expected three dot-separated parts)")
    key = get("APIMART_API_KEY")
    if key is None:
        raise ConfigError("APIMART_API_KEY", "missing (create a key in the APIMart console)")
    if key.lower().startswith("bearer "):
        key = key[7:].strip()
    if not _KEY_RE.match(key):
        raise ConfigError("APIMART_API_KEY", "malformed (8-512 printable characters, no spaces)")

    kwargs: dict[str, object] = {"discord_token": token, "apimart_api_key": key}
    urls = {
        "APIMART_BASE_URL": ("apimart_base_url", ("https", "http")),
        "DISCORD_API_BASE": ("discord_api_base", ("https", "http")),
        "DISCORD_GATEWAY_URL": ("discord_gateway_url", ("wss", "ws")),
        "PUBLIC_BASE_URL": ("public_base_url", ("https", "http")),
    }
    for var, (attr, schemes) in urls.items():
        raw = get(var)
        if raw is not None:
            kwargs[attr] = _url(var, raw, schemes)
    if (raw := get("DISCORD_GATEWAY_URL")) is not None:
        kwargs["discord_gateway_url"] = raw if raw.endswith("/") else raw + "/"

    floats = {
        "MAX_INPUT_MB": ("max_input_mb", 0.1, 500),
        "MAX_INPUT_MEGAPIXELS": ("max_input_megapixels", 1, 89),
        "NORMALISE_MEGAPIXELS": ("normalise_megapixels", 0.25, 16),
        "MAX_RESULT_MB": ("max_result_mb", 1, 500),
        "JOB_TIMEOUT_SECONDS": ("job_timeout_s", 1, 86400),
        "HTTP_TIMEOUT_SECONDS": ("http_timeout_s", 1, 600),
        "STATUS_UPDATE_INTERVAL_SECONDS": ("status_update_interval_s", 0, 60),
    }
    for var, (attr, lo, hi) in floats.items():
        if (raw := get(var)) is not None:
            kwargs[attr] = _number(var, raw, float, lo, hi)
    ints = {
        "WEB_PORT": ("web_port", 0, 65535),
        "DEFAULT_SAFETY_TOLERANCE": ("default_safety", 0, 6),
        "HOSTED_FILE_TTL_SECONDS": ("hosted_file_ttl_s", 60, 7 * 86400),
        "RETENTION_DAYS": ("retention_days", 2, 3650),
        "MAX_CONCURRENT_JOBS": ("max_concurrent_jobs", 1, 1000),
        "MAX_JOBS_PER_USER": ("max_jobs_per_user", 1, 100),
        "MAX_QUEUED_JOBS": ("max_queued_jobs", 1, 100000),
    }
    for var, (attr, lo, hi) in ints.items():
        if (raw := get(var)) is not None:
            kwargs[attr] = _number(var, raw, int, lo, hi)
    if (raw := get("DEV_GUILD_ID")) is not None:
        kwargs["dev_guild_id"] = _number("DEV_GUILD_ID", raw, int, 1, 2**63 - 1)
    bools = {
        "WEB_ENABLED": "web_enabled",
        "LOG_JSON": "log_json",
        "ALLOW_DMS": "allow_dms",
        "ALLOW_PRIVATE_URLS": "allow_private_urls",
    }
    for var, attr in bools.items():
        if (raw := get(var)) is not None:
            kwargs[attr] = _bool(var, raw)
    if (raw := get("IMAGE_HOST")) is not None:
        kwargs["image_host"] = _choice("IMAGE_HOST", raw.lower(), IMAGE_HOSTS)
    if (raw := get("DEFAULT_MODEL")) is not None:
        kwargs["default_model"] = _choice("DEFAULT_MODEL", raw, MODELS)
    if (raw := get("LOG_LEVEL")) is not None:
        kwargs["log_level"] = _choice("LOG_LEVEL", raw.upper(), LOG_LEVELS)
    if (raw := get("WEB_HOST")) is not None:
        kwargs["web_host"] = raw
    if (raw := get("DATA_DIR")) is not None:
        if "\x00" in raw:
            raise ConfigError("DATA_DIR", "must be a directory path")
        kwargs["data_dir"] = Path(raw)

    settings = Settings(**kwargs)  # type: ignore[arg-type]
    if settings.image_host == "local":
        if settings.public_base_url is None:
            raise ConfigError("PUBLIC_BASE_URL", "required when IMAGE_HOST=local (the URL APIMart can reach)")
        if not settings.web_enabled:
            raise ConfigError("WEB_ENABLED", "must be true when IMAGE_HOST=local (it serves the files)")
    return settings
