"""THE settings table: one row per environment variable. Everything else is generated from it.

The body of :class:`Settings` is the table. Each row is ``attribute: type = setting(...)`` giving the
variable's name, its kind (type, bounds or choices), its default (or ``required=``), the secret flag,
the help text and the group. From it come :func:`load_settings` (validation, the one-line
``VARIABLE: problem`` errors), the README's settings table and ``.env.example``.

How to add a setting
--------------------
1. Add one row to :class:`Settings`, in the group where it belongs (rows are read and checked in
   table order)::

       shard_ids: tuple[int, ...] = setting(
           "SHARD_IDS", IntList(0, 1023, unique=True), default=(), group=LIMITS,
           help="Shards this process runs (empty = all)."
       )

   Kinds (``kontext.config.schema``): ``Bool()``, ``Int(lo, hi)``, ``Float(lo, hi)``, ``Str()``,
   ``Pattern(regex, what, problem, strip_prefix)``, ``Choice(choices, case=)``,
   ``Url(schemes, path="strip"|"keep")``, ``Dir()``, ``IntList(lo, hi, unique=)``.
   ``default=None`` (attribute typed ``X | None``) makes it optional; ``required="hint"`` makes it
   mandatory (put those first: ``.env.example`` lists them uncommented at the top);
   ``secret=True`` keeps the value out of ``repr`` and the docs (a ``DATABASE_URL`` with a password
   is a ``Url`` with ``secret=True``); ``example=`` shows a sample value in ``.env.example`` for an
   optional setting. A new kind is a small frozen dataclass subclassing ``Kind[T]``.
2. A rule between settings goes into :data:`CHECKS`.
3. Regenerate the docs: ``python -m kontext.config --write`` (tests/test_config_docs.py fails, and
   prints this command, while README.md or .env.example disagree with the table).

Problem sentences never contain the value (it may be a secret); mypy checks that the kind's type
matches the attribute's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from babel.numbers import is_currency

from kontext.config.schema import (
    Bool,
    Choice,
    ConfigError,
    DatabaseUrl,
    Dir,
    Float,
    Group,
    Int,
    IntList,
    Pattern,
    Str,
    Url,
    load,
    setting,
)
from kontext.domain.costs import PriceTable, to_micros
from kontext.domain.generation import MODELS

IMAGE_HOSTS = ("apimart", "local", "discord", "s3")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

REQUIRED = Group("Required", "fill these in, everything else has a working default")
ENDPOINTS = Group("Endpoints", "the defaults are the real services")
HOSTING = Group("Image hosting", "where the normalised input is made public for APIMart")
WEB = Group("Built-in web server", "/healthz, /metrics, hosted files")
STATE = Group("State and logs")
GENERATION = Group("Generation defaults")
LIMITS = Group("Limits")
COSTS = Group(
    "Costs and budgets",
    "what each image costs you at APIMart, for the costs and budgets server owners see; "
    "check your APIMart price page",
)
SCALE = Group(
    "Scaling out",
    "several bot processes sharing one PostgreSQL database; leave unset for one process on SQLite",
)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every bot-wide setting (the table). Secrets are excluded from ``repr``."""

    # --- required ---
    discord_token: str = setting(
        "DISCORD_TOKEN",
        Pattern(
            r"[A-Za-z0-9_-]{18,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}",
            what="Discord bot token",
            problem="malformed (expected three dot-separated parts)",
            strip_prefix="Bot ",
        ),
        required="the bot token from the Discord developer portal",
        secret=True,
        group=REQUIRED,
        help="Bot token: https://discord.com/developers/applications -> your app -> Bot -> Reset Token. "
        'A leading "Bot " is ignored.',
    )
    apimart_api_key: str = setting(
        "APIMART_API_KEY",
        Pattern(
            r"[\x21-\x7e]{8,512}",
            what="API key (8-512 printable characters)",
            problem="malformed (8-512 printable characters, no spaces)",
            strip_prefix="Bearer ",
        ),
        required="create a key in the APIMart console",
        secret=True,
        group=REQUIRED,
        help="APIMart API key (https://apimart.ai console). Sent only to `APIMART_BASE_URL`, never logged. "
        'A leading "Bearer " is ignored.',
    )

    # --- endpoints ---
    apimart_base_url: str = setting(
        "APIMART_BASE_URL",
        Url(("https", "http")),
        default="https://api.apimart.ai",
        group=ENDPOINTS,
        help="APIMart API root.",
    )
    discord_api_base: str = setting(
        "DISCORD_API_BASE",
        Url(("https", "http")),
        default="https://discord.com/api/v10",
        group=ENDPOINTS,
        help="Discord REST root (a REST proxy or a compatible server); must include the API version.",
    )
    discord_gateway_url: str = setting(
        "DISCORD_GATEWAY_URL",
        Url(("wss", "ws"), path="keep"),
        default="wss://gateway.discord.gg/",
        group=ENDPOINTS,
        help="Discord gateway websocket URL. A path (a proxy's `/gateway`) is kept as given; "
        "a bare host gets `/`.",
    )

    # --- image hosting ---
    image_host: str = setting(
        "IMAGE_HOST",
        Choice(IMAGE_HOSTS, case="lower"),
        default="apimart",
        group=HOSTING,
        help="`apimart`: APIMart's own upload endpoint, public for 72 h (zero configuration). "
        "`local`: this bot's web server serves signed, expiring links under `PUBLIC_BASE_URL`. "
        "`discord`: the input rides on the bot's status message; its CDN link is the public URL. "
        "`s3`: any S3-compatible bucket (AWS S3, Cloudflare R2, MinIO, SeaweedFS) with presigned links.",
    )
    public_base_url: str | None = setting(
        "PUBLIC_BASE_URL",
        Url(("https", "http")),
        default=None,
        example="https://kontext.example.org",
        group=HOSTING,
        help="Public URL that reaches `WEB_HOST`:`WEB_PORT` (reverse proxy or tunnel). "
        "Required with `IMAGE_HOST=local`.",
    )
    hosted_file_ttl_s: int = setting(
        "HOSTED_FILE_TTL_SECONDS",
        Int(60, 7 * 86400),
        default=3600,
        group=HOSTING,
        help="How long a locally hosted file stays available (seconds).",
    )

    s3_bucket: str | None = setting(
        "S3_BUCKET",
        Pattern(
            r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", what="bucket name", problem="must be a valid bucket name"
        ),
        default=None,
        example="kontext-inputs",
        group=HOSTING,
        help="Bucket for `IMAGE_HOST=s3` (required with it).",
    )
    s3_endpoint_url: str | None = setting(
        "S3_ENDPOINT_URL",
        Url(("https", "http")),
        default=None,
        example="https://<account>.r2.cloudflarestorage.com",
        group=HOSTING,
        help="S3 API endpoint; unset = AWS S3 of `S3_REGION`.",
    )
    s3_region: str = setting(
        "S3_REGION",
        Pattern(r"[a-z0-9-]{1,40}", what="region name", problem="must be a region name like us-east-1"),
        default="us-east-1",
        group=HOSTING,
        help="S3 region (R2: `auto`).",
    )
    s3_prefix: str = setting(
        "S3_PREFIX",
        Pattern(r"[A-Za-z0-9!_.*'()/-]{0,200}", what="key prefix", problem="must be a plain key prefix"),
        default="kontext/",
        group=HOSTING,
        help="Key prefix of the hosted inputs inside the bucket.",
    )
    s3_access_key_id: str | None = setting(
        "S3_ACCESS_KEY_ID",
        Pattern(r"[\x21-\x7e]{3,256}", what="access key id", problem="malformed (printable, no spaces)"),
        default=None,
        secret=True,
        group=HOSTING,
        help="S3 access key; unset = the usual AWS credential chain (environment, instance role).",
    )
    s3_secret_access_key: str | None = setting(
        "S3_SECRET_ACCESS_KEY",
        Pattern(r"[\x21-\x7e]{3,256}", what="secret key", problem="malformed (printable, no spaces)"),
        default=None,
        secret=True,
        group=HOSTING,
        help="S3 secret key (with `S3_ACCESS_KEY_ID`).",
    )
    s3_public_base_url: str | None = setting(
        "S3_PUBLIC_BASE_URL",
        Url(("https", "http")),
        default=None,
        example="https://inputs.example.org",
        group=HOSTING,
        help="If the bucket is published (e.g. an R2 custom domain), its public URL: links are "
        "`<this>/<key>` instead of presigned ones.",
    )
    s3_url_ttl_s: int = setting(
        "S3_URL_TTL_SECONDS",
        Int(60, 7 * 86400),
        default=3600,
        group=HOSTING,
        help="Lifetime of a presigned input link (seconds; S3 allows at most 7 days).",
    )

    # --- built-in web server ---
    web_enabled: bool = setting(
        "WEB_ENABLED",
        Bool(),
        default=True,
        group=WEB,
        help="Run the built-in web server; it must stay on with `IMAGE_HOST=local`.",
    )
    web_host: str = setting(
        "WEB_HOST", Str(), default="0.0.0.0", group=WEB, help="Address the web server listens on."
    )
    web_port: int = setting(
        "WEB_PORT",
        Int(0, 65535),
        default=8080,
        group=WEB,
        help="Port the web server listens on (0 = any free port).",
    )
    metrics_token: str | None = setting(
        "METRICS_TOKEN",
        Pattern(
            r"[\x21-\x7e]{16,512}",
            what="token (16-512 printable characters)",
            problem="malformed (16-512 printable characters, no spaces)",
            strip_prefix="Bearer ",
        ),
        default=None,
        secret=True,
        group=WEB,
        help="When set, `/metrics` answers only requests with `Authorization: Bearer <this token>` "
        "(others get 401); `/healthz` stays open. Unset = `/metrics` is open (keep the port private).",
    )

    # --- state and logs ---
    data_dir: Path = setting(  # noqa: RUF009 - setting() is this table's dataclasses.field()
        "DATA_DIR",
        Dir(),
        default=Path("data"),
        group=STATE,
        help="Directory for the SQLite database, the signing secret and hosted files.",
    )
    dev_guild_id: int | None = setting(
        "DEV_GUILD_ID",
        Int(1, 2**63 - 1),
        default=None,
        group=STATE,
        help="Sync commands to this one server instantly (for development); unset = global commands.",
    )
    log_level: str = setting(
        "LOG_LEVEL",
        Choice(LOG_LEVELS, case="upper"),
        default="INFO",
        group=STATE,
        help="Log level. Every line of a job carries `[job=<id>]`.",
    )
    log_json: bool = setting(
        "LOG_JSON",
        Bool(),
        default=False,
        group=STATE,
        help="One JSON object per log line (for log shippers).",
    )

    # --- generation defaults ---
    default_model: str = setting(
        "DEFAULT_MODEL",
        Choice(MODELS),
        default="flux-kontext-pro",
        group=GENERATION,
        help="Model used when the user does not choose one.",
    )
    default_safety: int = setting(
        "DEFAULT_SAFETY_TOLERANCE",
        Int(0, 6),
        default=2,
        group=GENERATION,
        help="Safety tolerance 0 (strictest) .. 6 (most permissive); users may only ask for stricter.",
    )
    allow_dms: bool = setting(
        "ALLOW_DMS",
        Bool(),
        default=False,
        group=GENERATION,
        help="Accept `/edit` in direct messages (with the bot-wide defaults).",
    )

    # --- limits ---
    max_input_mb: float = setting(
        "MAX_INPUT_MB",
        Float(0.1, 500),
        default=20.0,
        group=LIMITS,
        help="Largest input file (MB); checked from Discord's metadata before downloading.",
    )
    max_input_megapixels: float = setting(
        "MAX_INPUT_MEGAPIXELS",
        Float(1, 89),
        default=50.0,
        group=LIMITS,
        help="Decompression-bomb limit: largest declared input size (megapixels).",
    )
    normalise_megapixels: float = setting(
        "NORMALISE_MEGAPIXELS",
        Float(0.25, 16),
        default=2.0,
        group=LIMITS,
        help="Inputs are downscaled to at most this many megapixels before hosting (Flux works at ~1 MP).",
    )
    max_result_mb: float = setting(
        "MAX_RESULT_MB",
        Float(1, 500),
        default=40.0,
        group=LIMITS,
        help="Largest result download accepted (MB); results over the channel's upload limit are re-encoded.",
    )
    image_workers: int = setting(
        "IMAGE_WORKERS",
        Int(1, 64),
        default=2,
        group=LIMITS,
        help="Image sandbox: worker processes decoding at once (one job each, then a fresh one); "
        "one user gets at most all but one of them. Default sized for 2 CPUs.",
    )
    image_timeout_s: float = setting(
        "IMAGE_TIMEOUT_SECONDS",
        Float(1, 600),
        default=10.0,
        group=LIMITS,
        help="Image sandbox: wall-clock seconds one image may take to read and process; past it the "
        "worker is killed and the user asked to re-save the file. Also its CPU-time limit (rounded up).",
    )
    image_memory_mb: int = setting(
        "IMAGE_MEMORY_MB",
        Int(64, 65536),
        default=512,
        group=LIMITS,
        help="Image sandbox: address space one worker may add for one image (MiB, RLIMIT_AS). "
        "A 50 MP image needs ~250; keep workers x this under the container's memory.",
    )
    job_timeout_s: float = setting(
        "JOB_TIMEOUT_SECONDS",
        Float(1, 86400),
        default=600.0,
        group=LIMITS,
        help="Overall deadline of one job (seconds), from the request to the posted result.",
    )
    http_timeout_s: float = setting(
        "HTTP_TIMEOUT_SECONDS",
        Float(1, 600),
        default=30.0,
        group=LIMITS,
        help="Connect/read timeout of one HTTP request (seconds).",
    )
    status_update_interval_s: float = setting(
        "STATUS_UPDATE_INTERVAL_SECONDS",
        Float(0, 60),
        default=1.5,
        group=LIMITS,
        help="Minimum seconds between two edits of a status message (Discord rate limits).",
    )
    max_concurrent_jobs: int = setting(
        "MAX_CONCURRENT_JOBS",
        Int(1, 1000),
        default=8,
        group=LIMITS,
        help="Jobs running at once, bot-wide.",
    )
    max_concurrent_deliveries: int = setting(
        "MAX_CONCURRENT_DELIVERIES",
        Int(1, 1000),
        default=16,
        group=LIMITS,
        help="Results downloaded and posted at once; each is in memory meanwhile (bounds memory when "
        "many jobs finish together).",
    )
    max_jobs_per_user: int = setting(
        "MAX_JOBS_PER_USER",
        Int(1, 100),
        default=2,
        group=LIMITS,
        help="Jobs running at once per user; more wait in a fair line.",
    )
    max_queued_jobs: int = setting(
        "MAX_QUEUED_JOBS",
        Int(1, 100000),
        default=200,
        group=LIMITS,
        help="Longest waiting line; beyond it new requests are refused politely.",
    )
    retention_days: int = setting(
        "RETENTION_DAYS",
        Int(2, 3650),
        default=30,
        group=LIMITS,
        help="Days to keep finished job records and usage counters; unfinished jobs are always kept.",
    )
    keep_inputs: bool = setting(
        "KEEP_INPUTS",
        Bool(),
        default=True,
        group=LIMITS,
        help="Keep each job's normalised input (small, metadata-free) for `RETENTION_DAYS`, so Re-roll works "
        "after Discord's attachment link expires (~1 day); in `DATA_DIR/inputs`, or the bucket with "
        "`IMAGE_HOST=s3`. About 0.3-0.8 MB per edit.",
    )
    allow_private_urls: bool = setting(
        "ALLOW_PRIVATE_URLS",
        Bool(),
        default=False,
        group=LIMITS,
        help="Allow result downloads from private/loopback addresses (only for tests or closed networks).",
    )

    # --- costs and budgets ---
    price_flux_kontext_pro: float = setting(
        "PRICE_FLUX_KONTEXT_PRO",
        Float(0, 1000),
        default=0.04,
        group=COSTS,
        help="Price of one `flux-kontext-pro` image, in `PRICE_CURRENCY` (default: the model's public "
        "list price; set what your APIMart account is charged).",
    )
    price_flux_kontext_max: float = setting(
        "PRICE_FLUX_KONTEXT_MAX",
        Float(0, 1000),
        default=0.08,
        group=COSTS,
        help="Price of one `flux-kontext-max` image, in `PRICE_CURRENCY`.",
    )
    price_currency: str = setting(
        "PRICE_CURRENCY",
        Pattern(r"[A-Z]{3}", what="ISO 4217 currency code", problem="must be an ISO 4217 code such as USD"),
        default="USD",
        group=COSTS,
        help="Currency of the prices and of every budget (`USD`, `EUR`, `CNY` …).",
    )
    operator_monthly_budget: float = setting(
        "OPERATOR_MONTHLY_BUDGET",
        Float(0, 1_000_000),
        default=0.0,
        group=COSTS,
        help="Cap on the whole bot's spending per calendar month (UTC), over every server and DMs; "
        "requests that would pass it are refused. 0 = no cap.",
    )
    charge_failed_tasks: bool = setting(
        "CHARGE_FAILED_TASKS",
        Bool(),
        default=True,
        group=COSTS,
        help="Count a task that APIMart ends as failed (e.g. refused by its safety filter) as spent. "
        "APIMart does not document refunds for them; set false if your bill shows they are free.",
    )

    # --- scaling out ---
    database_url: str | None = setting(
        "DATABASE_URL",
        DatabaseUrl(),
        default=None,
        example="postgresql://kontext:password@db:5432/kontext",
        secret=True,
        group=SCALE,
        help="PostgreSQL instead of the SQLite file: required when several processes run the bot.",
    )
    database_pool_size: int = setting(
        "DATABASE_POOL_SIZE",
        Int(2, 100),
        default=10,
        group=SCALE,
        help="Connections per process to PostgreSQL.",
    )
    shard_count: int | None = setting(
        "SHARD_COUNT",
        Int(1, 100_000),
        default=None,
        example="2",
        group=SCALE,
        help="Total number of gateway shards over all processes; unset = Discord's recommendation, "
        "all run here.",
    )
    shard_ids: tuple[int, ...] | None = setting(
        "SHARD_IDS",
        IntList(0, 99_999, unique=True),
        default=None,
        group=SCALE,
        help="The shards this process runs, e.g. `0,1` (with `SHARD_COUNT`); unset = all of them.",
    )
    lease_s: float = setting(
        "JOB_LEASE_SECONDS",
        Float(5, 600),
        default=30.0,
        group=SCALE,
        help="A job whose process stopped renewing its lease this long is taken over by another process.",
    )
    lease_heartbeat_s: float = setting(
        "JOB_LEASE_HEARTBEAT_SECONDS",
        Float(1, 300),
        default=10.0,
        group=SCALE,
        help="How often a process renews its job leases and looks for abandoned jobs.",
    )
    settings_cache_s: float = setting(
        "SETTINGS_CACHE_SECONDS",
        Float(0, 3600),
        default=5.0,
        group=SCALE,
        help="With PostgreSQL, server settings changed in one process reach the others within this time.",
    )

    @property
    def multi_process(self) -> bool:
        """Whether this process shares its state with others (PostgreSQL)."""
        return self.database_url is not None

    @property
    def prices(self) -> PriceTable:
        """The price of one image per model (micros of ``PRICE_CURRENCY``)."""
        return PriceTable(
            self.price_currency,
            {
                "flux-kontext-pro": to_micros(self.price_flux_kontext_pro),
                "flux-kontext-max": to_micros(self.price_flux_kontext_max),
            },
        )

    @property
    def max_input_bytes(self) -> int:
        return int(self.max_input_mb * 1024 * 1024)

    @property
    def max_result_bytes(self) -> int:
        return int(self.max_result_mb * 1024 * 1024)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "kontext.sqlite3"


def _local_host_needs_public_web_server(s: Settings) -> None:
    if s.image_host == "local":
        if s.public_base_url is None:
            raise ConfigError("PUBLIC_BASE_URL", "required when IMAGE_HOST=local (the URL APIMart can reach)")
        if not s.web_enabled:
            raise ConfigError("WEB_ENABLED", "must be true when IMAGE_HOST=local (it serves the files)")


def _s3_host_needs_a_bucket(s: Settings) -> None:
    if s.image_host == "s3" and s.s3_bucket is None:
        raise ConfigError("S3_BUCKET", "required when IMAGE_HOST=s3")
    if (s.s3_access_key_id is None) != (s.s3_secret_access_key is None):
        raise ConfigError(
            "S3_SECRET_ACCESS_KEY", "set both S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY, or neither"
        )


def _shards_are_consistent(s: Settings) -> None:
    if not s.shard_ids:
        return
    if s.shard_count is None:
        raise ConfigError("SHARD_IDS", "needs SHARD_COUNT (the total over all processes)")
    if max(s.shard_ids) >= s.shard_count:
        raise ConfigError("SHARD_IDS", f"every shard id must be below SHARD_COUNT ({s.shard_count})")
    if len(s.shard_ids) < s.shard_count and s.database_url is None:
        raise ConfigError(
            "DATABASE_URL", "required when SHARD_IDS runs only some shards (the processes share one database)"
        )


def _heartbeat_within_lease(s: Settings) -> None:
    if s.lease_heartbeat_s * 2 > s.lease_s:
        raise ConfigError("JOB_LEASE_HEARTBEAT_SECONDS", "must be at most half of JOB_LEASE_SECONDS")


def _currency_is_known(s: Settings) -> None:
    if not is_currency(s.price_currency):
        raise ConfigError("PRICE_CURRENCY", "is not an ISO 4217 currency code")


# Rules between settings, run in order once every variable is valid; each raises ConfigError.
CHECKS: tuple[Callable[[Settings], None], ...] = (
    _currency_is_known,
    _local_host_needs_public_web_server,
    _s3_host_needs_a_bucket,
    _shards_are_consistent,
    _heartbeat_within_lease,
)


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from ``env``; raise :class:`ConfigError` on the first bad variable."""
    settings = load(Settings, env)
    for check in CHECKS:
        check(settings)
    return settings
