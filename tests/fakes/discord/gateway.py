"""The gateway: websocket connections, IDENTIFY/RESUME sessions, heartbeats, DISPATCH with sequence
numbers (buffered for RESUME replay while the bot is disconnected), and scripted disconnects.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .models import API_VERSION, FakeGuild, Intents
from .records import GatewayFrame


@dataclass(eq=False)
class _Connection:
    id: int
    ws: web.WebSocketResponse
    request: web.Request
    path: str
    query: dict[str, str]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(eq=False)
class _Session:
    id: str
    intents: int
    shard: list[int] | None
    seq: int = 0
    buffer: list[dict[str, Any]] = field(default_factory=list)
    conn: _Connection | None = None
    resumable: bool = True
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class GatewayMixin:
    """Gateway sessions and events (part of :class:`~.fake.FakeDiscord`)."""

    def _init_gateway(self, *, heartbeat_interval_ms: int, privileged_intents: int) -> None:
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.privileged_intents = privileged_intents
        self._conn_ids = itertools.count(1)
        self._gateway_gate = asyncio.Event()
        self._gateway_gate.set()
        self._connections: set[_Connection] = set()
        self._session: _Session | None = None
        #: Every gateway frame sent and received, in order.
        self.gateway_log: list[GatewayFrame] = []
        #: IDENTIFY payloads received (``d``), in order.
        self.identifies: list[dict[str, Any]] = []
        #: RESUME payloads received (``d``) with the path they arrived on.
        self.resumes: list[dict[str, Any]] = []
        self.heartbeats = 0

    @property
    def gateway_url(self) -> str:
        """Value for ``DiscordWebSocket.DEFAULT_GATEWAY``."""
        return f"ws://127.0.0.1:{self._port}/gateway/"

    @property
    def resume_gateway_url(self) -> str:
        """The ``resume_gateway_url`` sent in READY (a distinct path, so tests can see it is used)."""
        return f"ws://127.0.0.1:{self._port}/gateway-resume"

    def _add_gateway_routes(self, app: web.Application) -> None:
        for path in ("/gateway", "/gateway/", "/gateway-resume", "/gateway-resume/"):
            app.router.add_route("GET", path, self._gateway_handler)

    def _log_frame(self, direction: str, frame: Mapping[str, Any], conn: _Connection) -> None:
        self.gateway_log.append(
            GatewayFrame(
                direction=direction,
                op=frame.get("op"),
                t=frame.get("t"),
                s=frame.get("s"),
                d=frame.get("d"),
                time=asyncio.get_running_loop().time(),
                connection=conn.id,
            )
        )
        self._bump()

    async def _send_frame(self, conn: _Connection, frame: dict[str, Any]) -> bool:
        async with conn.lock:
            if conn.ws.closed:
                return False
            try:
                await conn.ws.send_str(json.dumps(frame, separators=(",", ":"), ensure_ascii=False))
            except (ConnectionError, RuntimeError):
                return False
        self._log_frame("send", frame, conn)
        return True

    async def dispatch(self, event: str, data: dict[str, Any]) -> int:
        """Send a DISPATCH (op 0) frame with the next sequence number; buffered for RESUME replay when
        the gateway is disconnected. Returns the sequence number."""
        session = self._session
        if session is None:
            raise RuntimeError("no gateway session: the bot has not connected (IDENTIFY) yet")
        async with session.lock:
            session.seq += 1
            frame = {"op": 0, "t": event, "s": session.seq, "d": data}
            session.buffer.append(frame)
            if session.conn is not None:
                await self._send_frame(session.conn, frame)
        return frame["s"]

    async def _dispatch_soft(self, event: str, data: dict[str, Any], *, intent: int) -> None:
        """Dispatch if a session exists and subscribed to ``intent``; otherwise drop silently."""
        session = self._session
        if session is None or not session.intents & intent:
            return
        await self.dispatch(event, data)

    async def _dispatch_guild_create(self, guild: FakeGuild) -> None:
        session = self._session
        if session is None:
            return
        await self.dispatch("GUILD_CREATE", self._guild_payload(guild, session.intents))

    @property
    def connected(self) -> bool:
        """Whether a gateway session is currently attached to an open connection."""
        return self._session is not None and self._session.conn is not None

    @property
    def session_id(self) -> str | None:
        return self._session.id if self._session else None

    @property
    def identify_count(self) -> int:
        return len(self.identifies)

    @property
    def resume_count(self) -> int:
        return sum(1 for r in self.resumes if r.get("accepted"))

    async def _gateway_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        conn = _Connection(next(self._conn_ids), ws, request, request.path, dict(request.query))
        self._connections.add(conn)
        try:
            await self._gateway_gate.wait()
            await self._send_frame(
                conn,
                {"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None, "t": None},
            )
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    try:
                        frame = json.loads(msg.data)
                    except ValueError:
                        await ws.close(code=4002, message=b"Error while decoding payload.")
                        break
                    self._log_frame("recv", frame, conn)
                    await self._on_gateway_frame(conn, frame)
                elif msg.type is WSMsgType.BINARY:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                else:
                    break
        finally:
            self._connections.discard(conn)
            session = self._session
            if session is not None and session.conn is conn:
                session.conn = None
            self._bump()
        return ws

    async def _on_gateway_frame(self, conn: _Connection, frame: Mapping[str, Any]) -> None:
        op = frame.get("op")
        d = frame.get("d")
        if op == 1:
            self.heartbeats += 1
            await self._send_frame(conn, {"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            await self._identify(conn, d or {})
        elif op == 6:
            await self._resume(conn, d or {})
        elif op == 8:
            await self._request_members(d or {})
        elif op in (3, 4):
            pass  # presence / voice state: recorded in gateway_log only
        else:
            await conn.ws.close(code=4001, message=b"Unknown opcode.")

    async def _identify(self, conn: _Connection, d: Mapping[str, Any]) -> None:
        self.identifies.append(dict(d))
        if d.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        intents = int(d.get("intents", 0))
        if intents & Intents.PRIVILEGED & ~self.privileged_intents:
            await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        old = self._session
        session = _Session(id=secrets.token_hex(16), intents=intents, shard=d.get("shard"))
        self._session = session
        if old is not None and old.conn is not None and old.conn is not conn:
            await old.conn.ws.close(code=1000)
        async with session.lock:
            session.conn = conn
        ready: dict[str, Any] = {
            "v": API_VERSION,
            "user": self._bot_me_payload(),
            "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_gateway_url,
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "_trace": ['["gateway-prd-fake",{"micros":0}]'],
        }
        if session.shard is not None:
            ready["shard"] = list(session.shard)
        await self.dispatch("READY", ready)
        for guild in list(self.guilds.values()):
            await self.dispatch("GUILD_CREATE", self._guild_payload(guild, intents))

    async def _resume(self, conn: _Connection, d: Mapping[str, Any]) -> None:
        record = {**d, "path": conn.path, "accepted": False}
        self.resumes.append(record)
        session = self._session
        if (
            session is None
            or not session.resumable
            or d.get("session_id") != session.id
            or d.get("token") != self.token
        ):
            await self._send_frame(conn, {"op": 9, "d": False, "s": None, "t": None})
            self._bump()
            return
        async with session.lock:
            old = session.conn
            session.conn = conn
            seq = int(d.get("seq") or 0)
            for frame in [f for f in session.buffer if f["s"] > seq]:
                await self._send_frame(conn, frame)
            session.seq += 1
            resumed = {"op": 0, "t": "RESUMED", "s": session.seq, "d": {"_trace": ['["gateway-prd-fake"]']}}
            session.buffer.append(resumed)
            await self._send_frame(conn, resumed)
        record["accepted"] = True
        if old is not None and old is not conn:
            await old.ws.close(code=1000)
        self._bump()

    async def _request_members(self, d: Mapping[str, Any]) -> None:
        guild = self.guilds.get(int(d.get("guild_id", 0)))
        if guild is None:
            return
        members = list(guild.members.values())
        if d.get("user_ids"):
            wanted = {int(u) for u in d["user_ids"]}
            members = [m for m in members if m.user_id in wanted]
        elif d.get("query"):
            q = str(d["query"]).lower()
            members = [m for m in members if self.users[m.user_id].name.lower().startswith(q)]
        limit = int(d.get("limit") or 0)
        if limit:
            members = members[:limit]
        chunk: dict[str, Any] = {
            "guild_id": str(guild.id),
            "members": [self._member_payload(m) for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
        }
        if d.get("nonce"):
            chunk["nonce"] = d["nonce"]
        await self.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    async def disconnect_gateway(
        self, resume_ok: bool = True, *, code: int = 4000, hold: bool = False, abrupt: bool = False
    ) -> None:
        """Close the bot's gateway connection mid-session (close code ``code``; 4000 = unknown error;
        ``abrupt=True`` drops the TCP connection without a close frame instead).

        The client reconnects and RESUMEs; missed dispatches are replayed then RESUMED is sent. With
        ``resume_ok=False`` the RESUME gets INVALID_SESSION (d=false) and the client IDENTIFYs afresh.
        With ``hold=True`` new connections wait (before HELLO) until :meth:`release_gateway`, so tests
        can dispatch while the bot is disconnected.
        """
        session = self._session
        if session is None or session.conn is None:
            raise RuntimeError("the gateway is not connected")
        if hold:
            self._gateway_gate.clear()
        if not resume_ok:
            session.resumable = False
        async with session.lock:
            conn = session.conn
            session.conn = None
        if abrupt and conn.request.transport is not None:
            conn.request.transport.abort()
        else:
            await conn.ws.close(code=code, message=b"fake disconnect")
        self._bump()

    def release_gateway(self) -> None:
        """Let held gateway connections proceed (see ``disconnect_gateway(hold=True)``)."""
        self._gateway_gate.set()
