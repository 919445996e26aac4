"""The :class:`FakeDiscord` façade: one object composed of the role mixins, bound to 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import re
import socket
from collections.abc import Callable, Mapping

from aiohttp import web

from .cdn import CdnMixin
from .driver import DriverMixin
from .faults import FaultsMixin
from .gateway import GatewayMixin
from .interactions import InteractionsMixin
from .messages import MessagesMixin
from .models import API_VERSION, NONCE_WINDOW_SECONDS, Intents
from .ratelimits import GLOBAL_RATE_LIMIT, RateLimitMixin, RouteLimit
from .records import GatewayFrame, RecordedRequest
from .rest import RestMixin
from .world import WorldMixin

#: Environment switch for the default of ``realistic_rate_limits`` ("1"/"true" on, "0"/"false" off).
REALISTIC_RATE_LIMITS_ENV = "FAKE_DISCORD_REALISTIC_RATE_LIMITS"


class FakeDiscord(
    DriverMixin,
    InteractionsMixin,
    MessagesMixin,
    RestMixin,
    RateLimitMixin,
    GatewayMixin,
    FaultsMixin,
    CdnMixin,
    WorldMixin,
):
    """A loopback Discord for end-to-end tests of a discord.py bot.

    Args:
        token: the bot token the fake accepts (``Authorization: Bot <token>`` and IDENTIFY).
        interaction_token_ttl: seconds an interaction token stays valid after dispatch (Discord: 900).
        heartbeat_interval_ms: the HELLO heartbeat interval.
        ack_deadline: seconds to acknowledge an interaction (Discord: 3); None disables the check.
        attachment_url_ttl: seconds a signed CDN URL stays valid (Discord: about 24 h).
        privileged_intents: privileged intents enabled for the application; others close with 4014.
        bot_name: the bot user's name.
        clock: epoch-seconds clock behind :meth:`now` (default ``time.time``); see also
            :meth:`advance_clock`.
        nonce_window: seconds during which ``enforce_nonce`` returns the earlier message with the same
            nonce (Discord: "a few minutes").
        realistic_rate_limits: enforce Discord's observed per-route limits and the global limit (see
            :mod:`.ratelimits`); None reads the ``FAKE_DISCORD_REALISTIC_RATE_LIMITS`` environment
            variable (off unless set). Rate-limit headers are sent on every REST answer either way.
        rate_limits: per-route limits overriding or extending ``DISCORD_RATE_LIMITS`` in realistic
            mode, keyed by ``"METHOD route_name"`` (route names: see :mod:`.rest`).
        global_rate_limit: requests per second outside interaction endpoints (realistic mode only);
            None disables it.
        shards: the recommended shard count GET /gateway/bot returns.
        max_concurrency: IDENTIFYs allowed per 5 s (``session_start_limit.max_concurrency``).
        session_start_limit: session starts allowed per 24 h (``session_start_limit.total``).
        enforce_identify_concurrency: answer a too-early IDENTIFY with op 9 Invalid Session like
            Discord; by default it is only recorded in ``identify_violations``.
    """

    def __init__(
        self,
        token: str,
        *,
        interaction_token_ttl: float = 900.0,
        heartbeat_interval_ms: int = 41250,
        ack_deadline: float | None = 3.0,
        attachment_url_ttl: float = 86400.0,
        privileged_intents: int = Intents.PRIVILEGED,
        bot_name: str = "Kontext",
        clock: Callable[[], float] | None = None,
        nonce_window: float = NONCE_WINDOW_SECONDS,
        realistic_rate_limits: bool | None = None,
        rate_limits: Mapping[str, RouteLimit] | None = None,
        global_rate_limit: int | None = GLOBAL_RATE_LIMIT,
        shards: int = 1,
        max_concurrency: int = 1,
        session_start_limit: int = 1000,
        enforce_identify_concurrency: bool = False,
    ) -> None:
        self.token = token
        self.interaction_token_ttl = interaction_token_ttl
        self.ack_deadline = ack_deadline
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        #: Every HTTP request received (API and CDN), in order.
        self.requests: list[RecordedRequest] = []
        if realistic_rate_limits is None:
            realistic_rate_limits = os.environ.get(REALISTIC_RATE_LIMITS_ENV, "").lower() in (
                "1",
                "true",
                "yes",
            )
        self._init_cdn(attachment_url_ttl)
        self._init_faults()
        self._init_rate_limits(
            realistic=realistic_rate_limits, rate_limits=rate_limits, global_rate_limit=global_rate_limit
        )
        self._init_gateway(
            heartbeat_interval_ms=heartbeat_interval_ms,
            privileged_intents=privileged_intents,
            shards=shards,
            max_concurrency=max_concurrency,
            session_start_limit=session_start_limit,
            enforce_identify_concurrency=enforce_identify_concurrency,
        )
        self._init_interactions()
        self._init_messages(nonce_window)
        self._init_rest()
        self._init_world(bot_name, clock)

    # ------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Bind 127.0.0.1 on a free port and start serving."""
        app = web.Application(client_max_size=512 * 1024 * 1024)
        self._add_gateway_routes(app)
        app.router.add_route("*", "/api/v{version:\\d+}/{tail:.*}", self._api_handler)
        self._add_cdn_routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def close(self) -> None:
        """Close open gateway connections and stop the server."""
        self._gateway_gate.set()
        for conn in list(self._connections):
            with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
                await conn.ws.close(code=1001, message=b"fake shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``"""
        if self._port is None:
            raise RuntimeError("FakeDiscord.start() has not been awaited")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_base(self) -> str:
        """Value for ``discord.http.Route.BASE``."""
        return f"{self.base_url}/api/v{API_VERSION}"

    # ------------------------------------------------------------------------------- queries

    def find_requests(
        self, method: str | None = None, path_regex: str | None = None, *, kind: str | None = None
    ) -> list[RecordedRequest]:
        """Recorded requests filtered by method, ``re.search`` on path, and kind ("api"/"cdn")."""
        rx = re.compile(path_regex) if path_regex else None
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper())
            and (rx is None or rx.search(r.path))
            and (kind is None or r.kind == kind)
        ]

    def dispatched(self, event: str) -> list[GatewayFrame]:
        """Frames sent with this dispatch event name (including replays)."""
        return [f for f in self.gateway_log if f.direction == "send" and f.t == event]
