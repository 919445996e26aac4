"""The REST API: routing, request recording, JSON answers, and the simple resource routes
(users, application, gateway info, application commands, guilds, channels).

Message routes live in :mod:`.messages`, interaction routes in :mod:`.interactions`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

from .base import FakeDiscordBase
from .errors import ApiError, form_error
from .models import FakeChannel, FakeGuild, Perm
from .records import RecordedFile, RecordedRequest
from .validation import validate_commands


@dataclass
class Ctx:
    """What a route handler gets: the request, its record, the path's named groups."""

    request: web.Request
    record: RecordedRequest
    groups: dict[str, str]
    body_error: bool

    @property
    def json(self) -> Any:
        if self.body_error:
            raise ApiError(400, 50109, "The request body contains invalid JSON.")
        return self.record.json

    @property
    def files(self) -> list[RecordedFile]:
        return self.record.files

    def gid(self, name: str) -> int:
        return int(self.groups[name])


_Handler = Callable[[Ctx], Awaitable[web.StreamResponse]]


class RestMixin(FakeDiscordBase):
    """The REST dispatcher and simple routes (part of :class:`~.fake.FakeDiscord`)."""

    def _init_rest(self) -> None:
        self._global_commands: list[dict[str, Any]] = []
        self._guild_commands: dict[int, list[dict[str, Any]]] = {}
        self._command_ids: dict[tuple[int | None, str, int], int] = {}
        self._routes = self._build_routes()

    # ------------------------------------------------------------------------------- HTTP helpers

    def _json(
        self, data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        """A JSON answer like Discord's: exactly ``application/json``, and a ``Via`` header (discord.py
        only retries a 429 that has one). Rate-limit headers are added by the dispatcher."""
        h: dict[str, str] = {"Content-Type": "application/json", "Via": "1.1 google"}
        h.update(headers or {})
        body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        return web.Response(status=status, body=body, headers=h)

    def _no_content(self) -> web.Response:
        return web.Response(status=204, headers={"Via": "1.1 google"})

    async def _parse_body(self, request: web.Request) -> tuple[Any, list[RecordedFile], bool]:
        ctype = request.headers.get("Content-Type", "")
        if ctype.startswith("multipart/form-data"):
            payload: Any = None
            files: list[RecordedFile] = []
            bad = False
            reader = await request.multipart()
            async for part in reader:
                if part is None:
                    break
                assert isinstance(part, BodyPartReader), "a message body is not nested multipart"
                name = part.name or ""
                raw = await part.read()
                if name == "payload_json":
                    try:
                        payload = json.loads(raw)
                    except ValueError:
                        bad = True
                elif part.filename is not None:
                    files.append(
                        RecordedFile(
                            field=name,
                            filename=part.filename,
                            content_type=part.headers.get("Content-Type"),
                            data=bytes(raw),
                        )
                    )
            return payload, files, bad
        raw = await request.read()
        if not raw:
            return None, [], False
        try:
            return json.loads(raw), [], False
        except ValueError:
            return None, [], True

    # ------------------------------------------------------------------------------- REST dispatch

    def _build_routes(self) -> list[tuple[str, str, re.Pattern[str], _Handler, bool]]:
        table: list[tuple[str, str, str, _Handler, bool]] = [
            ("GET", "users_me", r"/users/@me", self._r_get_me, True),
            ("GET", "user", r"/users/(?P<user_id>\d+)", self._r_get_user, True),
            ("POST", "dm_create", r"/users/@me/channels", self._r_create_dm, True),
            ("GET", "app_info", r"/oauth2/applications/@me", self._r_app_info, True),
            ("GET", "app_info2", r"/applications/@me", self._r_app_info, True),
            ("GET", "gateway", r"/gateway", self._r_gateway, False),
            ("GET", "gateway_bot", r"/gateway/bot", self._r_gateway_bot, True),
            ("GET", "global_cmds", r"/applications/(?P<app>\d+)/commands", self._r_get_commands, True),
            ("PUT", "global_cmds", r"/applications/(?P<app>\d+)/commands", self._r_put_commands, True),
            (
                "GET",
                "guild_cmds",
                r"/applications/(?P<app>\d+)/guilds/(?P<guild_id>\d+)/commands",
                self._r_get_commands,
                True,
            ),
            (
                "PUT",
                "guild_cmds",
                r"/applications/(?P<app>\d+)/guilds/(?P<guild_id>\d+)/commands",
                self._r_put_commands,
                True,
            ),
            ("GET", "guild", r"/guilds/(?P<guild_id>\d+)", self._r_get_guild, True),
            ("GET", "guild_channels", r"/guilds/(?P<guild_id>\d+)/channels", self._r_guild_channels, True),
            ("GET", "guild_roles", r"/guilds/(?P<guild_id>\d+)/roles", self._r_guild_roles, True),
            (
                "GET",
                "guild_member",
                r"/guilds/(?P<guild_id>\d+)/members/(?P<user_id>\d+)",
                self._r_guild_member,
                True,
            ),
            ("GET", "channel", r"/channels/(?P<channel_id>\d+)", self._r_get_channel, True),
            ("GET", "messages", r"/channels/(?P<channel_id>\d+)/messages", self._r_list_messages, True),
            ("POST", "messages", r"/channels/(?P<channel_id>\d+)/messages", self._r_create_message, True),
            (
                "GET",
                "message",
                r"/channels/(?P<channel_id>\d+)/messages/(?P<message_id>\d+)",
                self._r_get_message,
                True,
            ),
            (
                "PATCH",
                "message",
                r"/channels/(?P<channel_id>\d+)/messages/(?P<message_id>\d+)",
                self._r_edit_message,
                True,
            ),
            (
                "DELETE",
                "message",
                r"/channels/(?P<channel_id>\d+)/messages/(?P<message_id>\d+)",
                self._r_delete_message,
                True,
            ),
            ("POST", "typing", r"/channels/(?P<channel_id>\d+)/typing", self._r_typing, True),
            (
                "POST",
                "callback",
                r"/interactions/(?P<interaction_id>\d+)/(?P<token>[^/]+)/callback",
                self._r_callback,
                False,
            ),
            ("POST", "followup", r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)", self._r_followup, False),
            (
                "GET",
                "webhook_message",
                r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)/messages/(?P<message_id>@original|\d+)",
                self._r_webhook_get,
                False,
            ),
            (
                "PATCH",
                "webhook_message",
                r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)/messages/(?P<message_id>@original|\d+)",
                self._r_webhook_edit,
                False,
            ),
            (
                "DELETE",
                "webhook_message",
                r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)/messages/(?P<message_id>@original|\d+)",
                self._r_webhook_delete,
                False,
            ),
        ]
        return [(m, name, re.compile(f"^{rx}$"), h, auth) for m, name, rx, h, auth in table]

    def _match_route(self, method: str, path: str) -> tuple[str, _Handler | None, dict[str, str], bool, bool]:
        """(route name, handler or None, path groups, needs auth, some route has this path)."""
        path_matched = False
        for route_method, name, rx, handler, auth in self._routes:
            m = rx.match(path)
            if m is None:
                continue
            path_matched = True
            if route_method == method:
                return name, handler, m.groupdict(), auth, True
        return "unknown", None, {}, True, path_matched

    async def _api_handler(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        json_body, files, body_error = await self._parse_body(request)
        record = RecordedRequest(
            method=request.method,
            path=path,
            query=dict(request.query),
            headers=dict(request.headers),
            json=json_body,
            files=files,
            time=asyncio.get_running_loop().time(),
        )
        self.requests.append(record)
        route_name, handler, groups, needs_auth, path_matched = self._match_route(request.method, path)
        record.route = route_name
        resp: web.StreamResponse | None = await self._apply_faults(record)
        if resp is not None:
            if resp.status != 429:
                resp.headers.update(
                    {**self._rate_limit_peek(request.method, route_name, groups), **resp.headers}
                )
        else:
            rl_headers: dict[str, str] | None = None
            try:
                auth = request.headers.get("Authorization")
                if (auth and auth != f"Bot {self.token}") or (
                    needs_auth and handler is not None and not auth
                ):
                    raise ApiError(401, 0, "401: Unauthorized")
                if handler is None:
                    if path_matched:
                        raise ApiError(405, 0, "405: Method Not Allowed")
                    raise ApiError(404, 0, "404: Not Found")
                rl_headers = self._rate_limit(record, route_name, groups)
                resp = await handler(Ctx(request, record, groups, body_error))
            except ApiError as exc:
                record.response = exc.body
                resp = self._json(exc.body, status=exc.status, headers=exc.headers)
                if exc.status == 429:
                    rl_headers = {}
            if rl_headers is None:
                rl_headers = self._rate_limit_peek(request.method, route_name, groups)
            resp.headers.update(rl_headers)
        record.status = resp.status
        self._bump()
        return resp

    # ------------------------------------------------------------------------------- REST: users/app

    def _bot_me_payload(self) -> dict[str, Any]:
        data = self.bot_user.to_payload()
        data.update(
            verified=True, mfa_enabled=False, email=None, locale="en-US", flags=0, premium_type=0, bio=""
        )
        return data

    async def _r_get_me(self, ctx: Ctx) -> web.Response:
        return self._json(self._bot_me_payload())

    async def _r_get_user(self, ctx: Ctx) -> web.Response:
        user = self.users.get(ctx.gid("user_id"))
        if user is None:
            raise ApiError(404, 10013, "Unknown User")
        return self._json(user.to_payload())

    async def _r_create_dm(self, ctx: Ctx) -> web.Response:
        body = ctx.json or {}
        try:
            user = self.users[int(body["recipient_id"])]
        except (KeyError, ValueError, TypeError):
            raise form_error([("recipient_id", "BASE_TYPE_REQUIRED", "This field is required")]) from None
        return self._json(self.dm_channel(user.id).to_payload(self))

    async def _r_app_info(self, ctx: Ctx) -> web.Response:
        return self._json(
            {
                "id": str(self.application_id),
                "name": self.bot_user.name,
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "hook": True,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": secrets.token_hex(32),
                "flags": 0,
                "owner": self.app_owner.to_payload(),
                "team": None,
                "bot": self.bot_user.to_payload(),
                "tags": [],
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "role_connections_verification_url": None,
                "approximate_guild_count": len(self.guilds),
                "integration_types_config": {"0": {}},
            }
        )

    async def _r_gateway(self, ctx: Ctx) -> web.Response:
        return self._json({"url": self.gateway_url.rstrip("/")})

    async def _r_gateway_bot(self, ctx: Ctx) -> web.Response:
        return self._json(
            {
                "url": self.gateway_url.rstrip("/"),
                "shards": self.recommended_shards,
                "session_start_limit": self.session_start_limit_payload(),
            }
        )

    # ------------------------------------------------------------------------------- REST: commands

    def _check_app(self, ctx: Ctx) -> None:
        if ctx.gid("app") != self.application_id:
            raise ApiError(403, 50001, "Missing Access")

    @property
    def commands(self) -> list[dict[str, Any]]:
        """The global application commands the bot synced (as the fake stored them, with ids)."""
        return copy.deepcopy(self._global_commands)

    def guild_commands(self, guild_id: int) -> list[dict[str, Any]]:
        """Guild application commands the bot synced for ``guild_id``."""
        return copy.deepcopy(self._guild_commands.get(guild_id, []))

    def command(self, name: str, *, type: int = 1, guild_id: int | None = None) -> dict[str, Any]:
        """A synced command by name and type, guild commands first. Raises LookupError."""
        pools = []
        if guild_id is not None:
            pools.append(self._guild_commands.get(guild_id, []))
        pools.append(self._global_commands)
        for pool in pools:
            for cmd in pool:
                if cmd["name"] == name and cmd.get("type", 1) == type:
                    return cmd
        known = [c["name"] for p in pools for c in p]
        raise LookupError(f"command {name!r} (type {type}) was not synced; synced: {known}")

    async def _r_get_commands(self, ctx: Ctx) -> web.Response:
        self._check_app(ctx)
        gid = ctx.groups.get("guild_id")
        cmds = self._guild_commands.get(int(gid), []) if gid else self._global_commands
        return self._json(cmds)

    async def _r_put_commands(self, ctx: Ctx) -> web.Response:
        self._check_app(ctx)
        gid = int(ctx.groups["guild_id"]) if ctx.groups.get("guild_id") else None
        if gid is not None and gid not in self.guilds:
            raise ApiError(403, 50001, "Missing Access")
        body = ctx.json
        if not isinstance(body, list):
            raise form_error([("", "BASE_TYPE_ARRAY", "Must be an array.")])
        errors = validate_commands(body)
        if errors:
            raise form_error(errors)
        stored = []
        for cmd in body:
            ctype = cmd.get("type", 1)
            key = (gid, cmd["name"], ctype)
            cid = self._command_ids.get(key) or self._next_id()
            self._command_ids[key] = cid
            item = {
                "id": str(cid),
                "application_id": str(self.application_id),
                "version": str(self._next_id()),
                "type": ctype,
                "name": cmd["name"],
                "name_localizations": cmd.get("name_localizations"),
                "description": cmd.get("description", ""),
                "description_localizations": cmd.get("description_localizations"),
                "default_member_permissions": cmd.get("default_member_permissions"),
                "dm_permission": cmd.get("dm_permission", True),
                "contexts": cmd.get("contexts"),
                "integration_types": cmd.get("integration_types", [0]),
                "nsfw": cmd.get("nsfw", False),
            }
            if cmd.get("options"):
                item["options"] = copy.deepcopy(cmd["options"])
            if gid is not None:
                item["guild_id"] = str(gid)
            stored.append(item)
        if gid is None:
            self._global_commands = stored
        else:
            self._guild_commands[gid] = stored
        return self._json(stored)

    # ------------------------------------------------------------------------------- REST: guilds/channels

    def _guild_or_404(self, guild_id: int) -> FakeGuild:
        guild = self.guilds.get(guild_id)
        if guild is None:
            raise ApiError(404, 10004, "Unknown Guild")
        return guild

    def _channel_or_404(self, channel_id: int) -> FakeChannel:
        channel = self.channels.get(channel_id)
        if channel is None or channel.deleted:
            raise ApiError(404, 10003, "Unknown Channel")
        return channel

    def _bot_channel_perms(self, channel: FakeChannel, *needed: int) -> int:
        perms = self.channel_permissions(channel.id, self.bot_id)
        if not perms & Perm.VIEW_CHANNEL:
            raise ApiError(403, 50001, "Missing Access")
        for bit in needed:
            if not perms & bit:
                raise ApiError(403, 50013, "Missing Permissions")
        return perms

    async def _r_get_guild(self, ctx: Ctx) -> web.Response:
        return self._json(self._guild_object_payload(self._guild_or_404(ctx.gid("guild_id"))))

    async def _r_guild_channels(self, ctx: Ctx) -> web.Response:
        guild = self._guild_or_404(ctx.gid("guild_id"))
        return self._json(
            [
                c.to_payload(self)
                for c in guild.channels.values()
                if not c.deleted and c.type not in (10, 11, 12)
            ]
        )

    async def _r_guild_roles(self, ctx: Ctx) -> web.Response:
        guild = self._guild_or_404(ctx.gid("guild_id"))
        return self._json([r.to_payload() for r in guild.roles.values()])

    async def _r_guild_member(self, ctx: Ctx) -> web.Response:
        guild = self._guild_or_404(ctx.gid("guild_id"))
        member = guild.members.get(ctx.gid("user_id"))
        if member is None:
            raise ApiError(404, 10007, "Unknown Member")
        return self._json(self._member_payload(member))

    async def _r_get_channel(self, ctx: Ctx) -> web.Response:
        channel = self._channel_or_404(ctx.gid("channel_id"))
        if channel.guild_id is not None:
            self._bot_channel_perms(channel)
        return self._json(channel.to_payload(self))

    async def _r_typing(self, ctx: Ctx) -> web.Response:
        channel = self._channel_or_404(ctx.gid("channel_id"))
        self._bot_channel_perms(channel, Perm.SEND_MESSAGES)
        return self._no_content()
