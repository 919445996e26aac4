"""The gateway: websocket connections, IDENTIFY/RESUME sessions, heartbeats, DISPATCH with sequence
numbers (buffered for RESUME replay while the bot is disconnected), sharding, scripted disconnects.

Sharding follows Discord's docs (docs/topics/gateway.mdx, "Sharding"): an IDENTIFY may carry
``shard: [shard_id, num_shards]``; a guild's events go to the sessions with
``(guild_id >> 22) % num_shards == shard_id`` and DMs only to shard 0; READY lists only that shard's
guilds. ``max_concurrency`` allows one IDENTIFY per 5 s per rate-limit key
(``shard_id % max_concurrency``); Discord answers a too-early IDENTIFY with op 9 Invalid Session —
the fake records every such IDENTIFY in :attr:`GatewayMixin.identify_violations` and sends the op 9
only with ``enforce_identify_concurrency=True``.

One deviation: Discord allows several sessions with the same ``[shard_id, num_shards]``; the fake keeps
one per shard tuple (a new IDENTIFY replaces the old session and closes its connection), so a bot
that re-identifies never receives events twice.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import WSMsgType, web

from .base import FakeDiscordBase
from .models import API_VERSION, FakeGuild, FakeMessage, Intents
from .records import GatewayFrame, RecordedRequest

#: Seconds in which each IDENTIFY rate-limit key allows one IDENTIFY (Discord: 5).
IDENTIFY_WINDOW = 5.0
#: The session start limit's period (Discord: 24 h).
SESSION_START_PERIOD = 86400.0
#: Events whose guild is ``d.id`` rather than ``d.guild_id``.
_GUILD_EVENTS = frozenset({"GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"})


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
    shard: list[int] | None  #: as sent in IDENTIFY
    shard_id: int = 0
    shard_count: int = 1
    seq: int = 0
    buffer: list[dict[str, Any]] = field(default_factory=list)
    conn: _Connection | None = None
    resumable: bool = True
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def routes(self, guild_id: int | None) -> bool:
        """Whether this session receives the events of ``guild_id`` (None: a DM)."""
        if guild_id is None:
            return self.shard_id == 0
        return (guild_id >> 22) % self.shard_count == self.shard_id


def _event_guild(event: str, data: Mapping[str, Any]) -> int | None:
    gid = data.get("id") if event in _GUILD_EVENTS else data.get("guild_id")
    return int(gid) if gid else None


#: The real gateway's ACK comes a network round trip after the heartbeat. An ACK in zero time on
#: loopback can be handled before discord.py's keep-alive thread records that it sent the heartbeat,
#: which discord.py then measures against the previous one and reports as "Can't keep up … 41.3s
#: behind" (a race in discord.py that a real round trip hides).
HEARTBEAT_ACK_DELAY_S = 0.01


class GatewayMixin(FakeDiscordBase):
    """Gateway sessions and events (part of :class:`~.fake.FakeDiscord`)."""

    def _init_gateway(
        self,
        *,
        heartbeat_interval_ms: int,
        privileged_intents: int,
        shards: int,
        max_concurrency: int,
        session_start_limit: int,
        enforce_identify_concurrency: bool,
    ) -> None:
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.privileged_intents = privileged_intents
        #: ``shards`` returned by GET /gateway/bot (the recommended shard count).
        self.recommended_shards = shards
        #: ``session_start_limit.max_concurrency``: IDENTIFYs allowed per 5 s (one per key).
        self.max_concurrency = max_concurrency
        #: ``session_start_limit.total``: session starts allowed per 24 h.
        self.session_start_limit = session_start_limit
        #: Answer a too-early IDENTIFY with op 9 Invalid Session (Discord does); otherwise only record it.
        self.enforce_identify_concurrency = enforce_identify_concurrency
        self._conn_ids = itertools.count(1)
        self._gateway_gate = asyncio.Event()
        self._gateway_gate.set()
        self._connections: set[_Connection] = set()
        self._sessions: dict[tuple[int, int], _Session] = {}
        self._identify_times: dict[int, float] = {}  # rate-limit key -> time of the last IDENTIFY
        self._session_starts: list[float] = []
        self._gateway_refusal: int | None = None
        #: Every gateway frame sent and received, in order.
        self.gateway_log: list[GatewayFrame] = []
        #: IDENTIFY payloads received (``d``), in order.
        self.identifies: list[dict[str, Any]] = []
        #: RESUME payloads received (``d``) with the path they arrived on.
        self.resumes: list[dict[str, Any]] = []
        #: IDENTIFYs sent before their max_concurrency bucket allowed: dicts with ``shard``
        #: ([id, count]), ``key`` (shard_id % max_concurrency), ``since_previous`` (seconds), ``refused``.
        self.identify_violations: list[dict[str, Any]] = []
        #: Websocket upgrades refused by :meth:`refuse_gateway` (kind "gateway").
        self.gateway_refusals: list[RecordedRequest] = []
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

    # ------------------------------------------------------------------------------- state for tests

    @property
    def connected(self) -> bool:
        """Whether there is a gateway session and every session has an open connection."""
        return bool(self._sessions) and all(s.conn is not None for s in self._sessions.values())

    @property
    def session_id(self) -> str | None:
        """The id of the session that receives DMs (shard 0), if any."""
        session = self._session_for_shard(None)
        return session.id if session else None

    @property
    def sessions(self) -> dict[tuple[int, int], str]:
        """Current session ids by ``(shard_id, shard_count)`` (``(0, 1)`` without sharding)."""
        return {key: s.id for key, s in sorted(self._sessions.items())}

    @property
    def identify_count(self) -> int:
        return len(self.identifies)

    @property
    def resume_count(self) -> int:
        return sum(1 for r in self.resumes if r.get("accepted"))

    def shard_of(self, guild_id: int, shard_count: int) -> int:
        """The shard that receives ``guild_id``'s events: ``(guild_id >> 22) % shard_count``."""
        return (guild_id >> 22) % shard_count

    def session_start_limit_payload(self) -> dict[str, int]:
        """``session_start_limit`` as GET /gateway/bot reports it now."""
        now = self.now()
        starts = [t for t in self._session_starts if now - t < SESSION_START_PERIOD]
        reset_after = int((starts[0] + SESSION_START_PERIOD - now) * 1000) if starts else 0
        return {
            "total": self.session_start_limit,
            "remaining": max(self.session_start_limit - len(starts), 0),
            "reset_after": reset_after,
            "max_concurrency": self.max_concurrency,
        }

    # ------------------------------------------------------------------------------- scripted faults

    def refuse_gateway(self, status: int | None = 404) -> None:
        """Answer websocket upgrades with plain HTTP ``status`` (404 like a misconfigured
        DISCORD_GATEWAY_URL would get) instead of switching protocols; ``None`` accepts them again.
        Open connections are not affected. Refusals are recorded in :attr:`gateway_refusals`."""
        self._gateway_refusal = status

    async def disconnect_gateway(
        self,
        resume_ok: bool = True,
        *,
        code: int = 4000,
        hold: bool = False,
        abrupt: bool = False,
        shard_id: int | None = None,
    ) -> None:
        """Close the bot's gateway connection mid-session (close code ``code``; 4000 = unknown error;
        ``abrupt=True`` drops the TCP connection without a close frame instead).

        The client reconnects and RESUMEs; missed dispatches are replayed then RESUMED is sent. With
        ``resume_ok=False`` the RESUME gets INVALID_SESSION (d=false) and the client IDENTIFYs afresh.
        With ``hold=True`` new connections wait (before HELLO) until :meth:`release_gateway`, so tests
        can dispatch while the bot is disconnected. ``shard_id`` picks a shard's session (default:
        the one that receives DMs).
        """
        session = self._session_for_shard(shard_id)
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

    # ------------------------------------------------------------------------------- dispatching

    def _session_for_shard(self, shard_id: int | None) -> _Session | None:
        wanted = 0 if shard_id is None else shard_id
        for (sid, _count), session in sorted(self._sessions.items()):
            if sid == wanted:
                return session
        return None

    def _routed_sessions(self, guild_id: int | None) -> list[_Session]:
        return [s for _key, s in sorted(self._sessions.items()) if s.routes(guild_id)]

    async def dispatch(self, event: str, data: dict[str, Any]) -> int:
        """Send a DISPATCH (op 0) frame to every session the event is routed to (by its guild's
        shard; DMs to shard 0), with each session's next sequence number; buffered for RESUME replay
        while a session is disconnected. Returns the number of sessions. Raises if there is none."""
        sessions = self._routed_sessions(_event_guild(event, data))
        if not sessions:
            raise RuntimeError("no gateway session: the bot has not connected (IDENTIFY) yet")
        for session in sessions:
            await self._dispatch_to(session, event, data)
        return len(sessions)

    async def _dispatch_to(self, session: _Session, event: str, data: dict[str, Any]) -> int:
        async with session.lock:
            session.seq += 1
            frame = {"op": 0, "t": event, "s": session.seq, "d": data}
            session.buffer.append(frame)
            if session.conn is not None:
                await self._send_frame(session.conn, frame)
        return session.seq

    async def _dispatch_soft(self, event: str, data: dict[str, Any], *, intent: int) -> None:
        """Dispatch to the routed sessions subscribed to ``intent``; drop silently if none."""
        for session in self._routed_sessions(_event_guild(event, data)):
            if session.intents & intent:
                await self._dispatch_to(session, event, data)

    async def _dispatch_guild_create(self, guild: FakeGuild) -> None:
        for session in self._routed_sessions(guild.id):
            await self._dispatch_to(session, "GUILD_CREATE", self._guild_payload(guild, session.intents))

    async def _dispatch_message(self, event: str, msg: FakeMessage, data: dict[str, Any]) -> None:
        """MESSAGE_* to the routed sessions with the message intent; without MESSAGE_CONTENT, other
        users' guild messages that do not mention the bot arrive without content (like Discord)."""
        intent = Intents.GUILD_MESSAGES if msg.guild_id else Intents.DIRECT_MESSAGES
        for session in self._routed_sessions(msg.guild_id):
            if not session.intents & intent:
                continue
            payload = data
            if (
                not session.intents & Intents.MESSAGE_CONTENT
                and msg.author_id != self.bot_id
                and msg.guild_id is not None
                and self.bot_id not in msg.mention_ids
            ):
                payload = {**data, "content": "", "embeds": [], "attachments": [], "components": []}
            await self._dispatch_to(session, event, payload)

    # ------------------------------------------------------------------------------- connections

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

    def _refuse_upgrade(self, request: web.Request, status: int) -> web.Response:
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            json=None,
            files=[],
            time=asyncio.get_running_loop().time(),
            kind="gateway",
            route="gateway",
            status=status,
        )
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        record.response = {"message": f"{status}: {reason}", "code": 0}
        self.gateway_refusals.append(record)
        self._bump()
        return self._json(record.response, status=status)

    async def _gateway_handler(self, request: web.Request) -> web.StreamResponse:
        if self._gateway_refusal is not None:
            return self._refuse_upgrade(request, self._gateway_refusal)
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
            for session in self._sessions.values():
                if session.conn is conn:
                    session.conn = None
            self._bump()
        return ws

    async def _on_gateway_frame(self, conn: _Connection, frame: Mapping[str, Any]) -> None:
        op = frame.get("op")
        d = frame.get("d")
        if op == 1:
            self.heartbeats += 1
            await asyncio.sleep(HEARTBEAT_ACK_DELAY_S)
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

    # ------------------------------------------------------------------------------- IDENTIFY / RESUME

    @staticmethod
    def _parse_shard(shard: Any) -> tuple[int, int] | None:
        """``(shard_id, shard_count)`` from IDENTIFY's ``shard`` ((0, 1) if absent); None if invalid."""
        if shard is None:
            return 0, 1
        if (
            not isinstance(shard, list)
            or len(shard) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in shard)
            or not 0 <= shard[0] < shard[1]
        ):
            return None
        return shard[0], shard[1]

    def _identify_too_early(self, shard_id: int, shard: Any) -> bool:
        """Record an IDENTIFY against its max_concurrency bucket; True if it came too early."""
        now = self.now()
        key = shard_id % max(self.max_concurrency, 1)
        last = self._identify_times.get(key)
        if last is not None and now - last < IDENTIFY_WINDOW:
            self.identify_violations.append(
                {
                    "shard": shard,
                    "key": key,
                    "since_previous": now - last,
                    "refused": self.enforce_identify_concurrency,
                }
            )
            if self.enforce_identify_concurrency:
                return True
        self._identify_times[key] = now
        return False

    async def _identify(self, conn: _Connection, d: Mapping[str, Any]) -> None:
        self.identifies.append(dict(d))
        if d.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        intents = int(d.get("intents", 0))
        if intents & Intents.PRIVILEGED & ~self.privileged_intents:
            await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        parsed = self._parse_shard(d.get("shard"))
        if parsed is None:
            await conn.ws.close(code=4010, message=b"Invalid shard.")
            return
        shard_id, shard_count = parsed
        if self._identify_too_early(shard_id, d.get("shard")):
            await self._send_frame(conn, {"op": 9, "d": False, "s": None, "t": None})
            return
        self._session_starts.append(self.now())
        session = _Session(
            id=secrets.token_hex(16),
            intents=intents,
            shard=d.get("shard"),
            shard_id=shard_id,
            shard_count=shard_count,
        )
        old = self._sessions.get(parsed)
        self._sessions[parsed] = session
        if old is not None and old.conn is not None and old.conn is not conn:
            await old.conn.ws.close(code=1000)
        async with session.lock:
            session.conn = conn
        guilds = [g for g in self.guilds.values() if session.routes(g.id)]
        ready: dict[str, Any] = {
            "v": API_VERSION,
            "user": self._bot_me_payload(),
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
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
        await self._dispatch_to(session, "READY", ready)
        for guild in guilds:
            await self._dispatch_to(session, "GUILD_CREATE", self._guild_payload(guild, intents))

    async def _resume(self, conn: _Connection, d: Mapping[str, Any]) -> None:
        record = {**d, "path": conn.path, "accepted": False}
        self.resumes.append(record)
        session = next((s for s in self._sessions.values() if s.id == d.get("session_id")), None)
        if session is None or not session.resumable or d.get("token") != self.token:
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
