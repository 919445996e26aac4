"""The composition root: build every part from the settings, wire the ports, own their lifetimes.

This is the only module that knows every concrete adapter. :func:`create_bot` is what ``bot.py``
and the end-to-end tests call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from kontext.adapters.apimart.client import ApimartClient
from kontext.adapters.charts import ChartError, ChartRenderer, UsageChart
from kontext.adapters.discord.client import KontextBot, point_discord_at
from kontext.adapters.discord.interactions import InteractionIntake
from kontext.adapters.discord.modlog import ModLog
from kontext.adapters.discord.reporter import DiscordReporter
from kontext.adapters.hosting import LocalHost, S3Archive, S3Host, S3Problem, build_host
from kontext.adapters.http.download import HttpDownloader
from kontext.adapters.images.sandbox import ImageSandbox, SandboxLimits
from kontext.adapters.storage import (
    DatabaseProblem,
    DataDirInUse,
    SchemaTooNew,
    Storage,
    check_database,
    open_storage,
)
from kontext.adapters.storage.inputs import DirectoryArchive, NoArchive
from kontext.adapters.web.app import build_app, start_web
from kontext.config import ConfigError, Settings
from kontext.domain.costs import Money, to_micros
from kontext.domain.errors import error_codes
from kontext.domain.generation import MODELS
from kontext.domain.jobs import JobRecord
from kontext.domain.policy import BotDefaults
from kontext.domain.poll_schedule import PollSchedule
from kontext.domain.usage import UsageReport
from kontext.i18n import t
from kontext.i18n.languages import number_locale
from kontext.services.health import DatabaseProbe, Health
from kontext.services.intake import Intake
from kontext.services.moderation import Moderation
from kontext.services.ports import ImageHost, InputArchive, SessionStartGate, Store
from kontext.services.runner import JobRunner, RunnerPorts
from kontext.services.usage_report import UsageReports
from kontext.support.background import BackgroundTasks, every
from kontext.support.metrics import Metrics

log = logging.getLogger("kontext.app")

USER_AGENT = "KontextBot/0.1 (+https://github.com/)"
DAY_S = 86_400
#: Spending rows outlive job records: budgets need the month, ``/kontext usage`` up to 90 days.
SPEND_KEPT_DAYS = 100


async def _opened_storage(settings: Settings, owner: str) -> Storage:
    try:
        return await open_storage(settings, owner=owner)
    except DatabaseProblem as exc:
        raise ConfigError("DATABASE_URL", str(exc)) from None
    except DataDirInUse as exc:
        raise ConfigError("DATA_DIR", str(exc)) from None
    except SchemaTooNew as exc:
        raise ConfigError("DATABASE_URL" if settings.database_url else "DATA_DIR", str(exc)) from None


async def _opened_s3(host: S3Host) -> S3Host:
    await host.open()
    try:
        await host.check()
    except S3Problem as exc:
        await host.close()
        raise ConfigError(exc.variable, exc.problem) from None
    return host


async def preflight(settings: Settings) -> None:
    """What ``bot.py --check`` verifies beyond the settings: the database and the bucket answer.

    Raises :class:`ConfigError` naming the setting to fix (as the settings loader does)."""
    if settings.database_url is not None:
        try:
            await check_database(settings.database_url)
        except DatabaseProblem as exc:
            raise ConfigError("DATABASE_URL", str(exc)) from None
    if settings.image_host == "s3":
        await (await _opened_s3(S3Host(settings))).close()


class App:
    """Every part of one bot process, built in :meth:`start` and closed in :meth:`close`."""

    # built in start()
    session: aiohttp.ClientSession
    storage: Storage
    store: Store
    session_gate: SessionStartGate
    provider: ApimartClient
    images: ImageSandbox
    runner: JobRunner
    moderation: Moderation
    modlog: ModLog
    usage: UsageReports
    charts: ChartRenderer
    intake: Intake
    interactions: InteractionIntake
    checks: Health

    def __init__(self, settings: Settings, *, poll_schedule: PollSchedule | None = None) -> None:
        self.settings = settings
        self.poll_schedule = poll_schedule
        self.metrics = Metrics(models=MODELS, reasons=error_codes())
        self.web_port: int | None = None
        self._bot: KontextBot | None = None
        self._web_runner: web.AppRunner | None = None
        self._housekeeping = BackgroundTasks("housekeeping", log)
        self._started: set[str] = {"housekeeping"}
        self._s3: S3Host | None = None
        #: This process's name in job leases (unique even for a restarted process on the same host).
        self.process_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"

    async def start(self, bot: KontextBot) -> None:
        """Build every part, in dependency order (each one marked started for :meth:`close`)."""
        self._bot = bot
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        await self._start_io()
        host = build_host(self.settings, self.provider)
        if isinstance(host, S3Host):
            self._s3 = await _opened_s3(host)
            self._started.add("s3")
        self._start_images()
        self._start_moderation()
        self._start_runner(host)
        self.modlog = ModLog(bot, self.moderation, self.settings.prices)
        self._started.add("modlog")
        self.runner.on_finished = self.modlog.finished
        self.runner.wants_thumbnails = self.modlog.wants_thumbnails
        self.intake = Intake(self.settings, self.runner, self.moderation, on_denied=self.modlog.denied)
        self.interactions = InteractionIntake(self.intake, self.runner.foreground, self.metrics)
        self.checks = self._health_checks(bot)
        self._started.add("health")
        await self._start_web(host if isinstance(host, LocalHost) else None)
        self._housekeeping.spawn(
            every(DAY_S, self._prune, logger=log, what="retention pruning"), name="retention"
        )

    async def _start_io(self) -> None:
        """The HTTP session, the store and the APIMart client."""
        s = self.settings
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=s.http_timeout_s, sock_read=s.http_timeout_s
            ),
            headers={"User-Agent": USER_AGENT},
        )
        self._started.add("session")
        self.storage = await _opened_storage(s, self.process_id)
        self.store = self.storage.store
        self.session_gate = self.storage.session_gate
        self._started.add("store")
        self.provider = ApimartClient(
            self.session, s.apimart_base_url, s.apimart_api_key, timeout=s.http_timeout_s
        )

    def _start_images(self) -> None:
        """The image sandbox (its workers start in the background) and the chart renderer (its
        worker process starts at the first chart)."""
        s = self.settings
        limits = SandboxLimits(
            workers=s.image_workers,
            timeout_s=s.image_timeout_s,
            memory_bytes=s.image_memory_mb * 1024 * 1024,
            max_request=max(s.max_input_bytes, s.max_result_bytes),
        )
        self.images = ImageSandbox(limits, metrics=self.metrics)
        self.images.start()
        self._started.add("images")
        self.charts = ChartRenderer()
        self._started.add("charts")

    def _start_moderation(self) -> None:
        """Per-server rules, quotas and budgets, and the usage reports."""
        s = self.settings
        defaults = BotDefaults(
            default_model=s.default_model,
            default_safety=s.default_safety,
            allow_dms=s.allow_dms,
            prices=s.prices,
            monthly_budget=to_micros(s.operator_monthly_budget),
        )
        self.moderation = Moderation(
            self.store,
            self.storage.ledger,
            defaults,
            settings_ttl=s.settings_cache_s if s.multi_process else None,
        )
        self._started.add("moderation")
        self.usage = UsageReports(self.store, self.storage.ledger.flush, s.prices)

    def _start_runner(self, host: ImageHost) -> None:
        s = self.settings
        downloader = HttpDownloader(
            self.session, allow_private=s.allow_private_urls, timeout=s.http_timeout_s
        )
        ports = RunnerPorts(
            self.store,
            self.provider,
            host,
            self.images,
            downloader,
            self._reporter,
            self._archive(),
            self.moderation,
        )
        self.runner = JobRunner(s, ports, self.metrics, schedule=self.poll_schedule)
        self._started.add("runner")

    async def usage_chart(self, report: UsageReport, locale: str) -> bytes | None:
        """``/kontext usage``'s chart in the reader's language, drawn in the chart worker process;
        None (logged) when it cannot be drawn: the figures still go out as text and CSV."""
        chart = UsageChart(
            days=report.days,
            jobs=report.jobs,
            cost=tuple(float(Money(micros, report.currency).amount) for micros in report.cost),
            currency=report.currency,
            locale=str(number_locale(locale)),
            title=t("usage_title", locale, days=len(report.days)),
            jobs_label=t("usage_chart_jobs", locale),
            cost_label=t("usage_chart_cost", locale),
            # drawn instead if no installed font has the reader's script
            title_en=t("usage_title", "en", days=len(report.days)),
            jobs_label_en=t("usage_chart_jobs", "en"),
            cost_label_en=t("usage_chart_cost", "en"),
        )
        try:
            return await self.charts.render(chart)
        except ChartError as exc:
            log.warning("usage chart could not be drawn: %s", exc)
            return None

    def _archive(self) -> InputArchive:
        """Where each normalised input is kept for Re-roll: the bucket when inputs go to S3 (every
        process sees it), else this machine's data directory; nowhere with KEEP_INPUTS=false."""
        if not self.settings.keep_inputs:
            self.inputs: InputArchive = NoArchive()
        elif self._s3 is not None:
            self.inputs = S3Archive(self._s3)
        else:
            self.inputs = DirectoryArchive(self.settings.data_dir / "inputs")
        return self.inputs

    def _health_checks(self, bot: KontextBot) -> Health:
        return Health(
            self.runner,
            discord_connected=bot.connected,
            latency=lambda: bot.latency,
            image_workers_available=lambda: self.images.available,
            database=DatabaseProbe(self.store),
        )

    def _reporter(self, job: JobRecord) -> DiscordReporter:
        assert self._bot is not None
        return DiscordReporter(self._bot, job, self._bot.result_view_factory)

    async def _start_web(self, local: LocalHost | None) -> None:
        if not self.settings.web_enabled:
            return
        app = build_app(
            self.metrics,
            self.health,
            local.resolve if local is not None else None,
            metrics_token=self.settings.metrics_token,
        )
        self._web_runner, self.web_port = await start_web(app, self.settings.web_host, self.settings.web_port)
        self._started.add("web")
        if local is not None:
            self._housekeeping.spawn(
                every(
                    min(300, max(10, local.ttl_s / 4)), lambda: self._sweep(local), logger=log, what="sweep"
                ),
                name="hosted-sweeper",
            )

    async def _sweep(self, host: LocalHost) -> None:
        removed = await asyncio.to_thread(host.sweep)
        if removed:
            log.info("removed %d expired hosted file(s)", removed)

    async def _prune(self) -> None:
        """Forget finished jobs and usage older than RETENTION_DAYS (at start, then daily)."""
        now = time.time()
        before = now - self.settings.retention_days * DAY_S
        spend_before = now - max(self.settings.retention_days, SPEND_KEPT_DAYS) * DAY_S
        jobs, usage = await self.store.prune(before, spend_before)
        inputs = await self.inputs.sweep(before)
        if jobs or usage or inputs:
            log.info(
                "retention: removed %d old job(s), %d usage row(s), %d kept input(s)", jobs, usage, inputs
            )

    async def resume(self) -> int:
        return await self.runner.resume_all()

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` answers: ``ok``, the ``problems`` (see :mod:`kontext.services.health`)."""
        return self.checks.report()

    def _stops(self) -> list[tuple[str, Callable[[], Awaitable[object]]]]:
        """How to stop each part, in dependency order (the parts that depend on others first)."""
        return [
            ("runner", lambda: self.runner.stop()),
            ("moderation", lambda: self.moderation.flush()),
            ("modlog", lambda: self.modlog.close(timeout=5)),
            ("housekeeping", lambda: self._housekeeping.close()),
            ("web", lambda: self._web_runner.cleanup() if self._web_runner else asyncio.sleep(0)),
            ("health", lambda: self.checks.database.close()),
            ("images", lambda: self.images.close()),
            ("charts", lambda: self.charts.close()),
            ("s3", lambda: self._s3.close() if self._s3 else asyncio.sleep(0)),
            ("session", lambda: self.session.close()),
            ("store", lambda: self.store.close()),
        ]

    async def close(self) -> None:
        """Stop in dependency order; parts that never started are skipped."""
        started = time.monotonic()
        for part, stop in self._stops():
            if part in self._started:
                await stop()
        log.info("shut down in %.1f s", time.monotonic() - started)


def create_bot(
    settings: Settings, *, poll_schedule: PollSchedule | None = None, **options: Any
) -> KontextBot:
    """The bot with its application (used by ``bot.py`` and by the end-to-end tests)."""
    point_discord_at(settings)
    return KontextBot(settings, App(settings, poll_schedule=poll_schedule), **options)
