"""The :class:`FakeDiscord` façade: one object composed of the role mixins, bound to 127.0.0.1."""

from __future__ import annotations

import re
import socket

from aiohttp import web

from .cdn import CdnMixin
from .driver import DriverMixin
from .faults import FaultsMixin
from .gateway import GatewayMixin
from .interactions import InteractionsMixin
from .messages import MessagesMixin
from .models import API_VERSION, Intents
from .records import GatewayFrame, RecordedRequest
from .rest import RestMixin
from .world import WorldMixin


class FakeDiscord(
    DriverMixin,
    InteractionsMixin,
    MessagesMixin,
    RestMixin,
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
    ) -> None:
        self.token = token
        self.interaction_token_ttl = interaction_token_ttl
        self.ack_deadline = ack_deadline
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        #: Every HTTP request received (API and CDN), in order.
        self.requests: list[RecordedRequest] = []
        self._init_cdn(attachment_url_ttl)
        self._init_faults()
        self._init_gateway(heartbeat_interval_ms=heartbeat_interval_ms, privileged_intents=privileged_intents)
        self._init_interactions()
        self._init_rest()
        self._init_world(bot_name)

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
            try:
                await conn.ws.close(code=1001, message=b"fake shutting down")
            except Exception:
                pass
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
