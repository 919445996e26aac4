"""A loopback fake of Discord: gateway websocket, REST API and CDN on 127.0.0.1.

The real discord.py client connects to it when pointed at it::

    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)

It speaks Discord's documented wire formats (API v10, JSON gateway frames sent as TEXT): READY +
GUILD_CREATE, heartbeats, RESUME with replay, INTERACTION_CREATE, interaction callbacks, interaction
webhooks (``@original`` and follow-ups), channel messages (JSON or multipart ``payload_json`` +
``files[n]``), application command sync, and a signed, expiring CDN for attachments.

Every request is recorded in :attr:`FakeDiscord.requests`, every gateway frame in
:attr:`FakeDiscord.gateway_log`; tests wait for state changes with :meth:`FakeDiscord.wait_until`,
which wakes whenever the fake records something. Faults are scripted with :meth:`FakeDiscord.fail_next`,
:meth:`FakeDiscord.deny`, :meth:`FakeDiscord.expire_interaction`, :meth:`FakeDiscord.disconnect_gateway`.

Behaviour worth knowing (it mirrors Discord):

* JSON responses carry exactly ``Content-Type: application/json`` and a ``Via`` header (discord.py only
  retries a 429 when ``Via`` is present; without it, it assumes a Cloudflare ban).
* Interactions must be acknowledged within ``ack_deadline`` seconds (3 s like Discord; ``None``
  disables) or the callback answers 404 ``Unknown interaction`` (10062).
* After a deferred reply (callback type 5), the FIRST follow-up does not create a new message: it
  completes the loading original, which keeps the defer's ephemerality. Tests see this truthfully:
  that follow-up is the same :class:`FakeMessage` object as ``inter.original``.
* Uploads larger than the interaction's ``attachment_size_limit`` (or the guild's limit for channel
  messages) answer 413 ``Request entity too large`` (40005).
* Message bodies are validated (content <= 2000, embed limits, component limits, empty message) with
  Discord's 400 ``Invalid Form Body`` (50035) shape, so mistakes fail like they would in production.
* Without the GUILD_MEMBERS intent, GUILD_CREATE only lists the bot's own member; without
  MESSAGE_CONTENT, other users' MESSAGE_CREATE events have empty content/embeds/attachments.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import io
import itertools
import json
import math
import mimetypes
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from aiohttp import WSMsgType, web

__all__ = [
    "DEFAULT_ATTACHMENT_SIZE_LIMIT",
    "CallbackRecord",
    "EditRecord",
    "FakeAttachment",
    "FakeChannel",
    "FakeDiscord",
    "FakeGuild",
    "FakeInteraction",
    "FakeMember",
    "FakeMessage",
    "FakeRole",
    "FakeUser",
    "GatewayFrame",
    "Intents",
    "MessageFlags",
    "Perm",
    "RecordedFile",
    "RecordedRequest",
]

API_VERSION = 10
DISCORD_EPOCH_MS = 1_420_070_400_000
DEFAULT_ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024
NONCE_WINDOW_SECONDS = 300.0  #: how long ``enforce_nonce`` deduplicates channel messages
PREMIUM_TIER_UPLOAD_LIMITS = {
    0: 10 * 1024 * 1024,
    1: 10 * 1024 * 1024,
    2: 50 * 1024 * 1024,
    3: 100 * 1024 * 1024,
}

VALID_LOCALES = frozenset(
    "id da de en-GB en-US es-ES es-419 fr hr it lt hu nl no pl pt-BR ro fi sv-SE vi tr cs el bg ru uk hi th "
    "zh-CN ja zh-TW ko".split()
)


class Perm:
    """Discord permission bits used by the fake."""

    CREATE_INSTANT_INVITE = 1 << 0
    KICK_MEMBERS = 1 << 1
    BAN_MEMBERS = 1 << 2
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    CHANGE_NICKNAME = 1 << 26
    MANAGE_ROLES = 1 << 28
    USE_APPLICATION_COMMANDS = 1 << 31
    SEND_MESSAGES_IN_THREADS = 1 << 38
    USE_EXTERNAL_APPS = 1 << 50
    ALL = (1 << 51) - 1

    #: What @everyone gets in a new guild (roughly Discord's default).
    DEFAULT_EVERYONE = (
        CREATE_INSTANT_INVITE
        | ADD_REACTIONS
        | VIEW_CHANNEL
        | SEND_MESSAGES
        | EMBED_LINKS
        | ATTACH_FILES
        | READ_MESSAGE_HISTORY
        | MENTION_EVERYONE
        | USE_EXTERNAL_EMOJIS
        | CHANGE_NICKNAME
        | USE_APPLICATION_COMMANDS
        | SEND_MESSAGES_IN_THREADS
        | USE_EXTERNAL_APPS
    )
    #: What the bot's managed role gets by default.
    DEFAULT_BOT = (
        VIEW_CHANNEL
        | SEND_MESSAGES
        | EMBED_LINKS
        | ATTACH_FILES
        | READ_MESSAGE_HISTORY
        | ADD_REACTIONS
        | USE_EXTERNAL_EMOJIS
        | SEND_MESSAGES_IN_THREADS
    )
    #: Permissions of a bot in a DM.
    DM = VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY | ADD_REACTIONS

    NAMES: Mapping[str, int] = {
        "view": VIEW_CHANNEL,
        "send": SEND_MESSAGES,
        "attach": ATTACH_FILES,
        "embed": EMBED_LINKS,
        "history": READ_MESSAGE_HISTORY,
        "read_history": READ_MESSAGE_HISTORY,
        "manage_messages": MANAGE_MESSAGES,
        "mention_everyone": MENTION_EVERYONE,
    }


class Intents:
    """Gateway intent bits used by the fake."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    DIRECT_MESSAGES = 1 << 12
    MESSAGE_CONTENT = 1 << 15
    PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT


class MessageFlags:
    """Message flag bits."""

    SUPPRESS_EMBEDS = 1 << 2
    EPHEMERAL = 1 << 6
    LOADING = 1 << 7
    SUPPRESS_NOTIFICATIONS = 1 << 12
    IS_COMPONENTS_V2 = 1 << 15


# Interaction types and callback types.
APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5
CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_DEFERRED_UPDATE, CB_UPDATE, CB_AUTOCOMPLETE, CB_MODAL = 4, 5, 6, 7, 8, 9
_ALLOWED_CALLBACKS = {
    APPLICATION_COMMAND: {CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_MODAL, 12},
    MESSAGE_COMPONENT: {CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_DEFERRED_UPDATE, CB_UPDATE, CB_MODAL, 12},
    AUTOCOMPLETE: {CB_AUTOCOMPLETE},
    MODAL_SUBMIT: {CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_DEFERRED_UPDATE, CB_UPDATE, 12},
}
_SELECT_TYPES = {3, 5, 6, 7, 8}
_URL_SCHEMES = ("http://", "https://", "attachment://")


def _iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, UTC).isoformat()


def _sniff_content_type(data: bytes, filename: str) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return "image/avif"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1"):
        return "image/heic"
    return mimetypes.guess_type(filename)[0]


def _image_size(data: bytes) -> tuple[int, int] | None:
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return int(im.width), int(im.height)
    except Exception:
        return None


def _sanitize_filename(name: str) -> str:
    name = name.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return cleaned or "unknown"


def _walk_components(components: Sequence[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for comp in components or ():
        yield comp
        if isinstance(comp.get("components"), list):
            yield from _walk_components(comp["components"])
        for key in ("accessory", "component"):
            if isinstance(comp.get(key), dict):
                yield from _walk_components([comp[key]])


# ----------------------------------------------------------------------------------------------- records


@dataclass
class RecordedFile:
    """A file part of a multipart request."""

    field: str
    filename: str
    content_type: str | None
    data: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class RecordedRequest:
    """One HTTP request the fake received (API or CDN)."""

    method: str
    path: str  #: relative to ``api_base`` for API requests, the URL path for CDN requests
    query: dict[str, str]
    headers: dict[str, str]
    json: Any  #: the JSON body, or the parsed ``payload_json`` of a multipart body
    files: list[RecordedFile]
    time: float  #: ``loop.time()`` when received
    kind: str = "api"  #: "api" or "cdn"
    route: str | None = None
    status: int | None = None
    response: Any = None

    @property
    def file_names(self) -> list[str]:
        return [f.filename for f in self.files]

    @property
    def file_sizes(self) -> list[int]:
        return [f.size for f in self.files]


@dataclass
class GatewayFrame:
    """One gateway frame, as sent ("send") or received ("recv") by the fake."""

    direction: str
    op: int | None
    t: str | None
    s: int | None
    d: Any
    time: float
    connection: int


@dataclass
class CallbackRecord:
    """An interaction callback (``POST /interactions/{id}/{token}/callback``)."""

    type: int
    data: dict[str, Any] | None
    time: float  #: ``loop.time()``
    delay: float  #: seconds since the interaction was dispatched
    files: list[RecordedFile] = field(default_factory=list)


@dataclass
class EditRecord:
    """One edit of an interaction's original response."""

    time: float
    via: str  #: "patch", "callback" (UPDATE_MESSAGE) or "followup" (first follow-up after a defer)
    body: dict[str, Any]
    file_names: list[str]
    message: FakeMessage  #: snapshot of the message after the edit


# ----------------------------------------------------------------------------------------------- models


@dataclass(eq=False)
class FakeUser:
    """A Discord user."""

    id: int
    name: str
    bot: bool = False
    global_name: str | None = None
    dms_open: bool = True  #: False → DMs to this user answer 403 50007

    def to_payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "username": self.name,
            "global_name": self.global_name,
            "discriminator": "0",
            "avatar": None,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
            "collectibles": None,
            "primary_guild": None,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass(eq=False)
class FakeRole:
    """A guild role. The @everyone role has the guild's id."""

    id: int
    guild_id: int
    name: str
    permissions: int
    position: int = 0
    managed: bool = False
    bot_id: int | None = None
    color: int = 0

    def to_payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "description": None,
            "color": self.color,
            "colors": {"primary_color": self.color, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": False,
            "flags": 0,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data


@dataclass(eq=False)
class FakeChannel:
    """A guild channel or a DM channel (type 1)."""

    id: int
    guild_id: int | None
    name: str | None
    type: int = 0
    nsfw: bool = False
    position: int = 0
    parent_id: int | None = None
    topic: str | None = None
    permission_overwrites: list[dict[str, Any]] = field(default_factory=list)
    recipient_ids: list[int] = field(default_factory=list)
    last_message_id: int | None = None
    deleted: bool = False

    def to_payload(self, fake: FakeDiscord | None = None) -> dict[str, Any]:
        if self.type in (1, 3):
            recipients = [fake.users[u].to_payload() for u in self.recipient_ids] if fake else []
            return {
                "id": str(self.id),
                "type": self.type,
                "last_message_id": str(self.last_message_id) if self.last_message_id else None,
                "flags": 0,
                "recipients": recipients,
            }
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": copy.deepcopy(self.permission_overwrites),
            "nsfw": self.nsfw,
            "parent_id": str(self.parent_id) if self.parent_id else None,
            "flags": 0,
        }
        if self.type in (0, 5, 15, 16):
            data.update(
                topic=self.topic,
                rate_limit_per_user=0,
                last_message_id=str(self.last_message_id) if self.last_message_id else None,
                default_auto_archive_duration=1440,
            )
        if self.type in (2, 13):
            data.update(bitrate=64000, user_limit=0, rtc_region=None, rate_limit_per_user=0)
        if self.type in (10, 11, 12):
            data.update(
                owner_id=None,
                message_count=0,
                member_count=0,
                rate_limit_per_user=0,
                thread_metadata={
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": _iso(),
                    "locked": False,
                },
            )
        return data


@dataclass(eq=False)
class FakeMember:
    """A guild member. ``permissions`` overrides the computed permissions sent in interactions."""

    guild_id: int
    user_id: int
    roles: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: str = field(default_factory=_iso)
    permissions: int | None = None


@dataclass(eq=False)
class FakeGuild:
    """A guild with its channels, roles and members."""

    id: int
    name: str
    owner_id: int
    premium_tier: int = 0
    preferred_locale: str = "en-US"
    channels: dict[int, FakeChannel] = field(default_factory=dict)
    roles: dict[int, FakeRole] = field(default_factory=dict)
    members: dict[int, FakeMember] = field(default_factory=dict)
    joined_at: str = field(default_factory=_iso)

    @property
    def attachment_size_limit(self) -> int:
        """The per-file upload limit Discord applies in this guild (by boost tier)."""
        return PREMIUM_TIER_UPLOAD_LIMITS.get(self.premium_tier, DEFAULT_ATTACHMENT_SIZE_LIMIT)

    @property
    def text_channels(self) -> list[FakeChannel]:
        return [c for c in self.channels.values() if c.type in (0, 5) and not c.deleted]


@dataclass(eq=False)
class FakeAttachment:
    """A file stored on the fake CDN; its URLs are signed when read."""

    id: int
    channel_id: int
    filename: str
    data: bytes = field(repr=False)
    content_type: str | None
    size: int  #: the size reported in payloads (tests may lie); ``len(data)`` is what is served
    width: int | None = None
    height: int | None = None
    description: str | None = None
    ephemeral: bool = False
    fake: FakeDiscord | None = field(default=None, repr=False)

    @property
    def path(self) -> str:
        prefix = "ephemeral-attachments" if self.ephemeral else "attachments"
        return f"/{prefix}/{self.channel_id}/{self.id}/{self.filename}"

    @property
    def url(self) -> str:
        """A freshly signed CDN URL."""
        assert self.fake is not None
        return self.fake.sign_cdn_path(self.path)

    @property
    def proxy_url(self) -> str:
        assert self.fake is not None
        return self.fake.sign_cdn_path(self.path, media=True)

    def to_payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.proxy_url,
        }
        if self.content_type:
            data["content_type"] = self.content_type
        if self.width is not None and self.height is not None:
            data["width"] = self.width
            data["height"] = self.height
        if self.description is not None:
            data["description"] = self.description
        if self.ephemeral:
            data["ephemeral"] = True
        return data


@dataclass(eq=False)
class FakeMessage:
    """A message as the fake stores it. ``to_payload()`` renders Discord's message object."""

    id: int
    channel_id: int
    guild_id: int | None
    author_id: int
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[FakeAttachment] = field(default_factory=list)
    flags: int = 0
    type: int = 0
    allowed_mentions: dict[str, Any] | None = None
    message_reference: dict[str, Any] | None = None
    mention_ids: list[int] = field(default_factory=list)
    mention_role_ids: list[int] = field(default_factory=list)
    mention_everyone: bool = False
    tts: bool = False
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_metadata: dict[str, Any] | None = None
    interaction: dict[str, Any] | None = None
    nonce: str | int | None = None
    timestamp: str = field(default_factory=_iso)
    edited_timestamp: str | None = None
    deleted: bool = False
    fake: FakeDiscord | None = field(default=None, repr=False)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & MessageFlags.EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & MessageFlags.LOADING)

    def component(self, custom_id: str) -> dict[str, Any] | None:
        """The component with this custom_id, searched through rows, containers and sections."""
        for comp in _walk_components(self.components):
            if comp.get("custom_id") == custom_id:
                return dict(comp)
        return None

    @property
    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in _walk_components(self.components) if c.get("custom_id")]

    def snapshot(self) -> FakeMessage:
        """A copy whose lists will not change when the message is edited later."""
        snap = copy.copy(self)
        snap.embeds = copy.deepcopy(self.embeds)
        snap.components = copy.deepcopy(self.components)
        snap.attachments = list(self.attachments)
        snap.mention_ids = list(self.mention_ids)
        return snap

    def _resolve_embed(self, embed: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(embed)
        out.setdefault("type", "rich")
        by_name = {a.filename: a for a in self.attachments}
        for key in ("image", "thumbnail"):
            media = out.get(key)
            if isinstance(media, dict) and str(media.get("url", "")).startswith("attachment://"):
                att = by_name.get(_sanitize_filename(media["url"][len("attachment://") :]))
                if att is not None:
                    media.update(url=att.url, proxy_url=att.proxy_url)
                    if att.width is not None:
                        media.update(width=att.width, height=att.height)
                    media["flags"] = 0
        return out

    def to_payload(self) -> dict[str, Any]:
        fake = self.fake
        assert fake is not None
        author = fake.users[self.author_id]
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "channel_id": str(self.channel_id),
            "author": author.to_payload(),
            "content": self.content,
            "timestamp": self.timestamp,
            "edited_timestamp": self.edited_timestamp,
            "tts": self.tts,
            "mention_everyone": self.mention_everyone,
            "mentions": [fake.users[u].to_payload() for u in self.mention_ids if u in fake.users],
            "mention_roles": [str(r) for r in self.mention_role_ids],
            "attachments": [a.to_payload() for a in self.attachments],
            "embeds": [self._resolve_embed(e) for e in self.embeds],
            "pinned": False,
            "flags": self.flags,
            "components": copy.deepcopy(self.components),
        }
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
        if self.application_id is not None:
            data["application_id"] = str(self.application_id)
        if self.interaction_metadata is not None:
            data["interaction_metadata"] = copy.deepcopy(self.interaction_metadata)
        if self.interaction is not None:
            data["interaction"] = copy.deepcopy(self.interaction)
        if self.nonce is not None:
            data["nonce"] = self.nonce
        if self.message_reference is not None:
            data["message_reference"] = dict(self.message_reference)
            ref = fake.messages.get(int(self.message_reference.get("message_id", 0) or 0))
            data["referenced_message"] = (
                None if ref is None or ref.deleted else ref._payload_without_reference()
            )
        return data

    def _payload_without_reference(self) -> dict[str, Any]:
        data = self.to_payload()
        data.pop("referenced_message", None)
        return data


class FakeInteraction:
    """Everything that happened to one dispatched interaction.

    Attributes: ``id``, ``token``, ``type``, ``payload`` (the INTERACTION_CREATE data sent),
    ``dispatched_at`` (``loop.time()``), ``callbacks`` (list of :class:`CallbackRecord`), ``original``
    (current original response :class:`FakeMessage` or None), ``original_deleted``, ``original_edits``
    (list of :class:`EditRecord`), ``followups`` (list of :class:`FakeMessage`), ``modal`` (the modal
    data when answered with a modal), ``autocomplete_choices``, ``source_message`` (for components).
    """

    def __init__(
        self,
        fake: FakeDiscord,
        payload: dict[str, Any],
        *,
        dispatched_at: float,
        expires_at: float,
        source_message: FakeMessage | None = None,
        parent: FakeInteraction | None = None,
    ) -> None:
        self.fake = fake
        self.payload = payload
        self.id = int(payload["id"])
        self.token: str = payload["token"]
        self.type: int = payload["type"]
        self.dispatched_at = dispatched_at
        self.expires_at = expires_at
        self.source_message = source_message
        self.parent = parent
        self.callbacks: list[CallbackRecord] = []
        self.original: FakeMessage | None = None
        self.original_deleted = False
        self.original_edits: list[EditRecord] = []
        self.followups: list[FakeMessage] = []
        self.modal: dict[str, Any] | None = None
        self.autocomplete_choices: list[dict[str, Any]] | None = None
        self.revoked = False

    def __repr__(self) -> str:
        return f"<FakeInteraction id={self.id} type={self.type} callbacks={[c.type for c in self.callbacks]}>"

    @property
    def user_id(self) -> int:
        user = self.payload.get("member", {}).get("user") or self.payload.get("user")
        return int(user["id"])

    @property
    def guild_id(self) -> int | None:
        gid = self.payload.get("guild_id")
        return int(gid) if gid else None

    @property
    def channel_id(self) -> int:
        return int(self.payload["channel_id"])

    @property
    def expired(self) -> bool:
        """True once the token is no longer valid (ttl elapsed or :meth:`FakeDiscord.expire_interaction`)."""
        return self.revoked or asyncio.get_running_loop().time() >= self.expires_at

    @property
    def acknowledged(self) -> bool:
        return bool(self.callbacks)

    @property
    def callback_type(self) -> int | None:
        return self.callbacks[0].type if self.callbacks else None

    @property
    def callback_types(self) -> list[int]:
        return [c.type for c in self.callbacks]

    @property
    def first_callback_delay(self) -> float | None:
        """Seconds between dispatch and the first callback (Discord requires < 3 s)."""
        return self.callbacks[0].delay if self.callbacks else None

    async def wait_for(self, predicate: Callable[[FakeInteraction], Any], timeout: float = 10.0) -> Any:
        """Wait until ``predicate(self)`` is truthy; returns its value."""
        return await self.fake.wait_until(lambda: predicate(self), timeout=timeout)

    async def wait_for_callback(self, timeout: float = 10.0) -> CallbackRecord:
        """Wait for the first callback."""
        return await self.wait_for(lambda i: i.callbacks[0] if i.callbacks else None, timeout)

    async def wait_for_original(
        self,
        predicate: Callable[[FakeMessage], Any] | None = None,
        timeout: float = 10.0,
    ) -> FakeMessage:
        """Wait until the original response exists (and satisfies ``predicate``)."""

        def check(i: FakeInteraction) -> FakeMessage | None:
            msg = i.original
            if msg is None or i.original_deleted:
                return None
            return msg if predicate is None or predicate(msg) else None

        return await self.wait_for(check, timeout)

    async def wait_for_followups(self, count: int = 1, timeout: float = 10.0) -> list[FakeMessage]:
        """Wait until at least ``count`` follow-ups were sent."""
        return await self.wait_for(lambda i: i.followups if len(i.followups) >= count else None, timeout)


# ----------------------------------------------------------------------------------------------- internals


class _ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.body: dict[str, Any] = {"message": message, "code": code}
        if errors:
            self.body["errors"] = errors
        self.headers = headers or {}


def _form_error(items: Sequence[tuple[str, str, str]]) -> _ApiError:
    root: dict[str, Any] = {}
    for path, code, message in items:
        node = root
        for part in path.split(".") if path else []:
            node = node.setdefault(part, {})
        node.setdefault("_errors", []).append({"code": code, "message": message})
    return _ApiError(400, 50035, "Invalid Form Body", errors=root)


@dataclass
class _FaultRule:
    method: str
    pattern: re.Pattern[str]
    status: int | None
    body: dict[str, Any] | None
    headers: dict[str, str] | None
    times: int
    retry_after: float
    delay: float
    is_global: bool

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method.upper()) and self.pattern.search(path) is not None


@dataclass
class _RateRule:
    method: str
    pattern: re.Pattern[str]
    limit: int
    per: float
    bucket: str
    windows: dict[str, list[float]] = field(default_factory=dict)  # key -> [reset_at, count]


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


@dataclass
class _Ctx:
    request: web.Request
    record: RecordedRequest
    groups: dict[str, str]
    body_error: bool

    @property
    def json(self) -> Any:
        if self.body_error:
            raise _ApiError(400, 50109, "The request body contains invalid JSON.")
        return self.record.json

    @property
    def files(self) -> list[RecordedFile]:
        return self.record.files

    def gid(self, name: str) -> int:
        return int(self.groups[name])


_Handler = Callable[[_Ctx], Awaitable[web.StreamResponse]]


# ----------------------------------------------------------------------------------------------- the fake


class FakeDiscord:
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
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.ack_deadline = ack_deadline
        self.attachment_url_ttl = attachment_url_ttl
        self.privileged_intents = privileged_intents

        self._last_id = 0
        self._cdn_secret = secrets.token_bytes(32)
        self._cdn_clock_offset = 0.0
        self._conn_ids = itertools.count(1)
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()
        self._gateway_gate = asyncio.Event()
        self._gateway_gate.set()
        self._faults: list[_FaultRule] = []
        self._rate_rules: list[_RateRule] = []
        self._connections: set[_Connection] = set()
        self._session: _Session | None = None
        self._pending_announcements: set[asyncio.Task[Any]] = set()

        #: Every HTTP request received (API and CDN), in order.
        self.requests: list[RecordedRequest] = []
        #: Every gateway frame sent and received, in order.
        self.gateway_log: list[GatewayFrame] = []
        #: IDENTIFY payloads received (``d``), in order.
        self.identifies: list[dict[str, Any]] = []
        #: RESUME payloads received (``d``) with the path they arrived on.
        self.resumes: list[dict[str, Any]] = []
        self.heartbeats = 0
        self.users: dict[int, FakeUser] = {}
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.messages: dict[int, FakeMessage] = {}
        self.attachments: dict[int, FakeAttachment] = {}
        self.interactions: list[FakeInteraction] = []
        self._interactions_by_id: dict[int, FakeInteraction] = {}
        self._interactions_by_token: dict[str, FakeInteraction] = {}
        self._channel_message_ids: dict[int, list[int]] = {}
        self._dm_channels: dict[int, int] = {}
        self._global_commands: list[dict[str, Any]] = []
        self._guild_commands: dict[int, list[dict[str, Any]]] = {}
        self._command_ids: dict[tuple[int | None, str, int], int] = {}

        self._routes = self._build_routes()
        self.bot_user = self.add_user(bot_name, bot=True)
        self.app_owner = self.add_user("app-owner")
        self._application_id = self._next_id()
        self._upload_channel_id = self._next_id()

    # ------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Bind 127.0.0.1 on a free port and start serving."""
        app = web.Application(client_max_size=512 * 1024 * 1024)
        app.router.add_route("GET", "/gateway", self._gateway_handler)
        app.router.add_route("GET", "/gateway/", self._gateway_handler)
        app.router.add_route("GET", "/gateway-resume", self._gateway_handler)
        app.router.add_route("GET", "/gateway-resume/", self._gateway_handler)
        app.router.add_route("*", "/api/v{version:\\d+}/{tail:.*}", self._api_handler)
        cdn = (
            "/{prefix:(attachments|ephemeral-attachments)}/{channel_id:\\d+}/{attachment_id:\\d+}/{filename}"
        )
        app.router.add_get(cdn, self._cdn_handler)  # GET and HEAD
        app.router.add_get("/media" + cdn, self._cdn_handler)
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

    @property
    def gateway_url(self) -> str:
        """Value for ``DiscordWebSocket.DEFAULT_GATEWAY``."""
        return f"ws://127.0.0.1:{self._port}/gateway/"

    @property
    def resume_gateway_url(self) -> str:
        """The ``resume_gateway_url`` sent in READY (a distinct path, so tests can see it is used)."""
        return f"ws://127.0.0.1:{self._port}/gateway-resume"

    @property
    def application_id(self) -> int:
        return self._application_id

    @property
    def bot_id(self) -> int:
        return self.bot_user.id

    # ------------------------------------------------------------------------------- waiting

    def _bump(self) -> None:
        """Wake every waiter: something was recorded."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until ``predicate()`` is truthy and return its value; re-checked on every change.

        Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout}s")
            event = self._changed
            try:
                await asyncio.wait_for(event.wait(), timeout=min(remaining, 0.25))
            except TimeoutError:
                pass  # re-check: time-based conditions (expiry) change without events

    # ------------------------------------------------------------------------------- ids & model

    def _next_id(self) -> int:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        new = (ms << 22) | (1 << 17)
        if new <= self._last_id:
            new = self._last_id + 1
        self._last_id = new
        return new

    def add_user(self, name: str, *, bot: bool = False, global_name: str | None = None) -> FakeUser:
        """Create a user."""
        user = FakeUser(id=self._next_id(), name=name, bot=bot, global_name=global_name)
        self.users[user.id] = user
        return user

    def add_guild(
        self,
        name: str = "Test Guild",
        owner_id: int | None = None,
        *,
        premium_tier: int = 0,
        preferred_locale: str = "en-US",
        everyone_permissions: int = Perm.DEFAULT_EVERYONE,
        bot_permissions: int = Perm.DEFAULT_BOT,
        channels: Sequence[str] = ("general",),
    ) -> FakeGuild:
        """Create a guild the bot is in: @everyone role, the bot's managed role, the bot's member and
        text channels named by ``channels``. If the gateway is connected, GUILD_CREATE is sent at once
        (schedule it with ``await fake.flush()`` or any awaited fake call)."""
        if owner_id is None:
            owner_id = self.add_user(f"{name}-owner").id
        guild = FakeGuild(
            id=self._next_id(),
            name=name,
            owner_id=owner_id,
            premium_tier=premium_tier,
            preferred_locale=preferred_locale,
        )
        self.guilds[guild.id] = guild
        guild.roles[guild.id] = FakeRole(guild.id, guild.id, "@everyone", everyone_permissions, position=0)
        bot_role = FakeRole(
            self._next_id(),
            guild.id,
            self.bot_user.name,
            bot_permissions,
            position=1,
            managed=True,
            bot_id=self.bot_id,
        )
        guild.roles[bot_role.id] = bot_role
        guild.members[self.bot_id] = FakeMember(guild.id, self.bot_id, roles=[bot_role.id])
        if owner_id not in guild.members:
            guild.members[owner_id] = FakeMember(guild.id, owner_id)
        for ch in channels:
            self.add_channel(guild.id, ch, _announce=False)
        self._announce(self._dispatch_guild_create(guild))
        return guild

    def add_channel(
        self,
        guild_id: int,
        name: str,
        nsfw: bool = False,
        type: int = 0,
        *,
        parent_id: int | None = None,
        topic: str | None = None,
        _announce: bool = True,
    ) -> FakeChannel:
        """Create a guild channel (type 0 text, 2 voice, 4 category, 5 news, 11 thread …)."""
        guild = self.guilds[guild_id]
        channel = FakeChannel(
            id=self._next_id(),
            guild_id=guild_id,
            name=name,
            type=type,
            nsfw=nsfw,
            position=len(guild.channels),
            parent_id=parent_id,
            topic=topic,
        )
        guild.channels[channel.id] = channel
        self.channels[channel.id] = channel
        self._channel_message_ids[channel.id] = []
        if _announce:
            event = "THREAD_CREATE" if type in (10, 11, 12) else "CHANNEL_CREATE"
            self._announce(self._dispatch_soft(event, channel.to_payload(self), intent=Intents.GUILDS))
        return channel

    def add_role(self, guild_id: int, name: str, permissions: int = 0) -> FakeRole:
        """Create a role."""
        guild = self.guilds[guild_id]
        role = FakeRole(self._next_id(), guild_id, name, permissions, position=len(guild.roles))
        guild.roles[role.id] = role
        self._announce(
            self._dispatch_soft(
                "GUILD_ROLE_CREATE",
                {"guild_id": str(guild_id), "role": role.to_payload()},
                intent=Intents.GUILDS,
            )
        )
        return role

    def add_member(
        self,
        guild_id: int,
        user_id: int,
        roles: Sequence[int] = (),
        permissions: int | None = None,
        *,
        nick: str | None = None,
    ) -> FakeMember:
        """Add a user to a guild. ``permissions`` (if given) overrides the computed permissions that
        interactions report for this member."""
        guild = self.guilds[guild_id]
        if user_id not in self.users:
            raise KeyError(f"unknown user {user_id}")
        member = FakeMember(guild_id, user_id, roles=list(roles), nick=nick, permissions=permissions)
        guild.members[user_id] = member
        payload = {"guild_id": str(guild_id), **self._member_payload(member, with_user=True)}
        self._announce(self._dispatch_soft("GUILD_MEMBER_ADD", payload, intent=Intents.GUILD_MEMBERS))
        return member

    def add_attachment(
        self,
        data: bytes,
        filename: str,
        content_type: str | None = None,
        *,
        size: int | None = None,
        channel_id: int | None = None,
        description: str | None = None,
        ephemeral: bool = False,
    ) -> dict[str, Any]:
        """Store a user-uploaded file on the CDN and return its Discord attachment payload.

        ``size`` overrides the reported size (to test metadata checks); the served bytes are ``data``.
        The payload's ``url`` is signed; it is re-signed whenever the attachment is sent again.
        """
        att = self._store_attachment(
            data,
            filename,
            content_type,
            channel_id=channel_id or self._upload_channel_id,
            size=size,
            description=description,
            ephemeral=ephemeral,
        )
        return att.to_payload()

    def _store_attachment(
        self,
        data: bytes,
        filename: str,
        content_type: str | None,
        *,
        channel_id: int,
        size: int | None = None,
        description: str | None = None,
        ephemeral: bool = False,
    ) -> FakeAttachment:
        filename = _sanitize_filename(filename)
        content_type = content_type or _sniff_content_type(data, filename)
        width = height = None
        if content_type and content_type.startswith("image/"):
            dims = _image_size(data)
            if dims:
                width, height = dims
        att = FakeAttachment(
            id=self._next_id(),
            channel_id=channel_id,
            filename=filename,
            data=data,
            content_type=content_type,
            size=len(data) if size is None else size,
            width=width,
            height=height,
            description=description,
            ephemeral=ephemeral,
            fake=self,
        )
        self.attachments[att.id] = att
        return att

    def attachment(self, ref: int | str | Mapping[str, Any] | FakeAttachment) -> FakeAttachment:
        """Look up a stored attachment by id, payload or object."""
        if isinstance(ref, FakeAttachment):
            return ref
        if isinstance(ref, Mapping):
            ref = ref["id"]
        return self.attachments[int(ref)]

    def user(self, user_id: int) -> FakeUser:
        return self.users[user_id]

    def guild(self, guild_id: int) -> FakeGuild:
        return self.guilds[guild_id]

    def channel(self, channel_id: int) -> FakeChannel:
        return self.channels[channel_id]

    def message(self, message_id: int) -> FakeMessage:
        return self.messages[message_id]

    def channel_messages(self, channel_id: int, *, include_deleted: bool = False) -> list[FakeMessage]:
        """Messages posted in a channel (not ephemeral ones), oldest first."""
        msgs = [self.messages[m] for m in self._channel_message_ids.get(channel_id, [])]
        return [m for m in msgs if include_deleted or not m.deleted]

    def dm_channel(self, user_id: int) -> FakeChannel:
        """The DM channel between the bot and ``user_id`` (created on demand)."""
        cid = self._dm_channels.get(user_id)
        if cid is None:
            channel = FakeChannel(
                id=self._next_id(), guild_id=None, name=None, type=1, recipient_ids=[user_id]
            )
            self.channels[channel.id] = channel
            self._channel_message_ids[channel.id] = []
            self._dm_channels[user_id] = cid = channel.id
        return self.channels[cid]

    def add_message(
        self,
        channel_id: int,
        author_id: int,
        content: str = "",
        *,
        attachments: Sequence[Mapping[str, Any] | FakeAttachment] = (),
        embeds: Sequence[dict[str, Any]] = (),
    ) -> FakeMessage:
        """A user posts a message; MESSAGE_CREATE is sent to the bot (see :meth:`flush`).
        Attachments come from :meth:`add_attachment`."""
        channel = self._channel_or_404(channel_id)
        msg = FakeMessage(
            id=self._next_id(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author_id=author_id,
            content=content,
            embeds=list(embeds),
            attachments=[self.attachment(a) for a in attachments],
            fake=self,
        )
        self._compute_mentions(msg, None)
        self._store_message(msg, public=True)
        self._announce(self._message_event("MESSAGE_CREATE", msg))
        self._bump()
        return msg

    def delete_channel(self, channel_id: int) -> None:
        """Delete a channel: REST calls on it answer 404 Unknown Channel (10003). CHANNEL_DELETE is
        sent to the bot (see :meth:`flush`)."""
        channel = self.channels[channel_id]
        channel.deleted = True
        if channel.guild_id is not None:
            self._announce(
                self._dispatch_soft("CHANNEL_DELETE", channel.to_payload(self), intent=Intents.GUILDS)
            )
        self._bump()

    def deny(self, channel_id: int, *perms: str | int) -> None:
        """Deny the bot permissions in a channel with a member overwrite ("view", "send", "attach",
        "embed", "history", "manage_messages" or bits). REST calls needing them answer 403 Missing
        Permissions (50013; no "view" → 50001 Missing Access); later interactions' ``app_permissions``
        lack them; CHANNEL_UPDATE is sent to the bot (see :meth:`flush`)."""
        self._set_overwrite(channel_id, self._perm_bits(perms), deny=True)

    def allow(self, channel_id: int, *perms: str | int) -> None:
        """Undo :meth:`deny` for these permissions."""
        self._set_overwrite(channel_id, self._perm_bits(perms), deny=False)

    @staticmethod
    def _perm_bits(perms: Sequence[str | int]) -> int:
        bits = 0
        for p in perms:
            bits |= p if isinstance(p, int) else Perm.NAMES[p]
        return bits

    def _set_overwrite(self, channel_id: int, bits: int, *, deny: bool) -> None:
        channel = self.channels[channel_id]
        ow = next((o for o in channel.permission_overwrites if int(o["id"]) == self.bot_id), None)
        if ow is None:
            ow = {"id": str(self.bot_id), "type": 1, "allow": "0", "deny": "0"}
            channel.permission_overwrites.append(ow)
        current = int(ow["deny"])
        ow["deny"] = str(current | bits if deny else current & ~bits)
        if channel.guild_id is not None:
            self._announce(
                self._dispatch_soft("CHANNEL_UPDATE", channel.to_payload(self), intent=Intents.GUILDS)
            )
        self._bump()

    def _announce(self, coro: Awaitable[Any]) -> None:
        """Run a gateway announcement from sync model helpers: scheduled if a loop runs."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coro.close()  # type: ignore[attr-defined]
            return
        task = loop.create_task(coro)  # type: ignore[arg-type]
        self._pending_announcements.add(task)
        task.add_done_callback(self._pending_announcements.discard)

    async def flush(self) -> None:
        """Wait until gateway events announced by sync helpers (add_guild, add_channel, deny,
        add_message …) are sent. Interaction helpers (slash, click …) flush first on their own."""
        while self._pending_announcements:
            await asyncio.gather(*list(self._pending_announcements))

    # ------------------------------------------------------------------------------- permissions

    def _base_permissions(self, guild: FakeGuild, user_id: int) -> int:
        if user_id == guild.owner_id:
            return Perm.ALL
        member = guild.members.get(user_id)
        perms = guild.roles[guild.id].permissions
        for rid in member.roles if member else []:
            role = guild.roles.get(rid)
            if role is not None:
                perms |= role.permissions
        return Perm.ALL if perms & Perm.ADMINISTRATOR else perms

    def channel_permissions(self, channel_id: int, user_id: int) -> int:
        """Permissions of ``user_id`` in a channel, computed like Discord (roles, then overwrites)."""
        channel = self.channels[channel_id]
        if channel.guild_id is None:
            return Perm.DM
        guild = self.guilds[channel.guild_id]
        perms = self._base_permissions(guild, user_id)
        if perms == Perm.ALL:
            return perms
        overwrites = {int(o["id"]): o for o in channel.permission_overwrites}
        if channel.type in (10, 11, 12) and channel.parent_id in self.channels:
            overwrites = {int(o["id"]): o for o in self.channels[channel.parent_id].permission_overwrites}
        everyone = overwrites.get(guild.id)
        if everyone:
            perms = (perms & ~int(everyone["deny"])) | int(everyone["allow"])
        member = guild.members.get(user_id)
        allow = deny = 0
        for rid in member.roles if member else []:
            ow = overwrites.get(rid)
            if ow and ow.get("type", 0) == 0:
                allow |= int(ow["allow"])
                deny |= int(ow["deny"])
        perms = (perms & ~deny) | allow
        mow = overwrites.get(user_id)
        if mow and mow.get("type") == 1:
            perms = (perms & ~int(mow["deny"])) | int(mow["allow"])
        if not perms & Perm.VIEW_CHANNEL:
            return 0
        return perms

    def _member_permissions(self, channel_id: int, user_id: int) -> int:
        channel = self.channels[channel_id]
        if channel.guild_id is not None:
            member = self.guilds[channel.guild_id].members.get(user_id)
            if member is not None and member.permissions is not None:
                return member.permissions
        return self.channel_permissions(channel_id, user_id)

    # ------------------------------------------------------------------------------- payload builders

    def _member_payload(
        self, member: FakeMember, *, with_user: bool = True, permissions: int | None = None
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "roles": [str(r) for r in member.roles],
            "nick": member.nick,
            "avatar": None,
            "banner": None,
            "joined_at": member.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
            "unusual_dm_activity_until": None,
        }
        if with_user:
            data["user"] = self.users[member.user_id].to_payload()
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data

    def _guild_payload(self, guild: FakeGuild, intents: int) -> dict[str, Any]:
        members = list(guild.members.values())
        if not intents & Intents.GUILD_MEMBERS:
            members = [m for m in members if m.user_id == self.bot_id]
        channels = [c for c in guild.channels.values() if not c.deleted]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "features": [],
            "mfa_level": 0,
            "nsfw_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "max_members": 500000,
            "max_presences": None,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "vanity_url_code": None,
            "premium_tier": guild.premium_tier,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": guild.preferred_locale,
            "roles": [r.to_payload() for r in guild.roles.values()],
            "emojis": [],
            "stickers": [],
            "joined_at": guild.joined_at,
            "large": False,
            "unavailable": False,
            "lazy": True,
            "member_count": len(guild.members),
            "voice_states": [],
            "members": [self._member_payload(m) for m in members],
            "channels": [c.to_payload(self) for c in channels if c.type not in (10, 11, 12)],
            "threads": [c.to_payload(self) for c in channels if c.type in (10, 11, 12)],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "incidents_data": None,
        }

    def _interaction_channel_payload(self, channel: FakeChannel, user_id: int) -> dict[str, Any]:
        data = channel.to_payload(self)
        data["permissions"] = str(self._member_permissions(channel.id, user_id))
        return data

    # ------------------------------------------------------------------------------- CDN

    def _cdn_now(self) -> float:
        return time.time() + self._cdn_clock_offset

    def _cdn_signature(self, path: str, ex: str, is_: str) -> str:
        return hmac.new(self._cdn_secret, f"{path}|{ex}|{is_}".encode(), hashlib.sha256).hexdigest()

    def sign_cdn_path(self, path: str, *, media: bool = False) -> str:
        """A signed URL for a CDN path, like ``…/attachments/C/A/f.png?ex=…&is=…&hm=…&``."""
        now = self._cdn_now()
        ex = format(int(now + self.attachment_url_ttl), "x")
        is_ = format(int(now), "x")
        hm = self._cdn_signature(path, ex, is_)
        prefix = "/media" if media else ""
        return f"{self.base_url}{prefix}{path}?ex={ex}&is={is_}&hm={hm}&"

    def expire_attachment_urls(self) -> None:
        """Make every CDN URL issued so far expired (URLs signed afterwards are valid)."""
        self._cdn_clock_offset += self.attachment_url_ttl + 1

    async def _cdn_handler(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        record = RecordedRequest(
            method=request.method,
            path=path,
            query=dict(request.query),
            headers=dict(request.headers),
            json=None,
            files=[],
            time=asyncio.get_running_loop().time(),
            kind="cdn",
            route="cdn",
        )
        self.requests.append(record)
        resp = await self._apply_faults(record)
        if resp is None:
            resp = self._serve_cdn(request)
        record.status = resp.status
        self._bump()
        return resp

    def _serve_cdn(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        not_found = web.Response(status=404, text="This content is no longer available.")
        try:
            att = self.attachments[int(info["attachment_id"])]
        except (KeyError, ValueError):
            return web.Response(status=404, text="404: Not Found")
        path = f"/{info['prefix']}/{info['channel_id']}/{info['attachment_id']}/{info['filename']}"
        if path != att.path:
            return web.Response(status=404, text="404: Not Found")
        ex, is_, hm = (request.query.get(k) for k in ("ex", "is", "hm"))
        if not ex or not is_ or not hm:
            return not_found
        if not hmac.compare_digest(hm, self._cdn_signature(path, ex, is_)):
            return not_found
        try:
            if int(ex, 16) <= self._cdn_now():
                return not_found
        except ValueError:
            return not_found
        return web.Response(
            body=att.data,
            headers={
                "Content-Type": att.content_type or "application/octet-stream",
                "Cache-Control": "public",
            },
        )

    # ------------------------------------------------------------------------------- fault injection

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
        retry_after: float = 0.2,
        is_global: bool = False,
        delay: float = 0.0,
    ) -> None:
        """Answer the next ``times`` requests matching ``method`` ("*" for any) and ``path_regex``
        (``re.search`` on the path relative to ``api_base``, or the CDN URL path) with ``status``.

        429 gets Discord's body and headers (``Retry-After``, ``X-RateLimit-*``, ``Via``) so clients
        retry after ``retry_after``; other statuses get ``{"message": …, "code": 0}`` unless ``body``.
        """
        self._faults.append(
            _FaultRule(
                method=method.upper(),
                pattern=re.compile(path_regex),
                status=status,
                body=body,
                headers=headers,
                times=times,
                retry_after=retry_after,
                delay=delay,
                is_global=is_global,
            )
        )

    def delay_next(self, method: str, path_regex: str, seconds: float, *, times: int = 1) -> None:
        """Delay the next matching requests by ``seconds`` before handling them normally."""
        self._faults.append(
            _FaultRule(method.upper(), re.compile(path_regex), None, None, None, times, 0.0, seconds, False)
        )

    def set_rate_limit(self, method: str, path_regex: str, limit: int, per: float) -> None:
        """Enforce a real fixed-window rate limit (per channel / webhook) on matching API routes,
        with accurate ``X-RateLimit-*`` headers and 429s when exceeded."""
        bucket = hashlib.sha1(f"{method} {path_regex}".encode()).hexdigest()[:32]
        self._rate_rules.append(_RateRule(method.upper(), re.compile(path_regex), limit, per, bucket))

    def clear_faults(self) -> None:
        """Drop pending fault and rate-limit rules."""
        self._faults.clear()
        self._rate_rules.clear()

    async def _apply_faults(self, record: RecordedRequest) -> web.StreamResponse | None:
        for rule in list(self._faults):
            if not rule.matches(record.method, record.path):
                continue
            rule.times -= 1
            if rule.times <= 0:
                self._faults.remove(rule)
            if rule.delay:
                await asyncio.sleep(rule.delay)
            if rule.status is None:
                return None
            return self._fault_response(rule, record)
        return None

    def _fault_response(self, rule: _FaultRule, record: RecordedRequest) -> web.Response:
        status = rule.status or 500
        headers: dict[str, str] = {"Via": "1.1 google"}
        if status == 429:
            body = rule.body or {
                "message": "You are being rate limited.",
                "retry_after": rule.retry_after,
                "global": rule.is_global,
            }
            headers.update(
                {
                    "Retry-After": str(max(1, math.ceil(rule.retry_after))),
                    "X-RateLimit-Limit": "5",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": f"{time.time() + rule.retry_after:.3f}",
                    "X-RateLimit-Reset-After": f"{rule.retry_after:.3f}",
                    "X-RateLimit-Bucket": self._bucket_hash(record.route or record.path),
                    "X-RateLimit-Scope": "global" if rule.is_global else "user",
                }
            )
            if rule.is_global:
                headers["X-RateLimit-Global"] = "true"
        else:
            try:
                reason = HTTPStatus(status).phrase
            except ValueError:
                reason = "Error"
            body = rule.body or {"message": f"{status}: {reason}", "code": 0}
        headers.update(rule.headers or {})
        record.response = body
        return self._json(body, status=status, headers=headers, ratelimit=False)

    # ------------------------------------------------------------------------------- HTTP helpers

    @staticmethod
    def _bucket_hash(route: str) -> str:
        return hashlib.sha1(route.encode()).hexdigest()[:32]

    def _json(
        self,
        data: Any,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        route: str | None = None,
        ratelimit: bool = True,
    ) -> web.Response:
        h: dict[str, str] = {"Content-Type": "application/json", "Via": "1.1 google"}
        if ratelimit:
            h.update(
                {
                    "X-RateLimit-Limit": "50",
                    "X-RateLimit-Remaining": "49",
                    "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
                    "X-RateLimit-Reset-After": "1.000",
                    "X-RateLimit-Bucket": self._bucket_hash(route or "default"),
                }
            )
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
                name = part.name or ""  # type: ignore[union-attr]
                raw = await part.read()  # type: ignore[union-attr]
                if name == "payload_json":
                    try:
                        payload = json.loads(raw)
                    except ValueError:
                        bad = True
                elif part.filename is not None:  # type: ignore[union-attr]
                    files.append(
                        RecordedFile(
                            field=name,
                            filename=part.filename,  # type: ignore[union-attr]
                            content_type=part.headers.get("Content-Type"),  # type: ignore[union-attr]
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

    def _check_auth(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bot {self.token}":
            raise _ApiError(401, 0, "401: Unauthorized")

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
        route_name = "unknown"
        resp: web.StreamResponse | None = None
        try:
            handler: _Handler | None = None
            needs_auth = True
            groups: dict[str, str] = {}
            path_matched = False
            for method, name, rx, h, auth in self._routes:
                m = rx.match(path)
                if m is None:
                    continue
                path_matched = True
                if method != request.method:
                    continue
                handler, groups, route_name = h, m.groupdict(), name
                needs_auth = auth
                break
            record.route = route_name
            resp = await self._apply_faults(record)
            if resp is None:
                if (
                    request.headers.get("Authorization")
                    and request.headers["Authorization"] != f"Bot {self.token}"
                ):
                    raise _ApiError(401, 0, "401: Unauthorized")
                if handler is None:
                    if path_matched:
                        raise _ApiError(405, 0, "405: Method Not Allowed")
                    raise _ApiError(404, 0, "404: Not Found")
                if needs_auth:
                    self._check_auth(request)
                resp, rl_headers = self._check_rate_limit(record, groups)
                if resp is None:
                    resp = await handler(_Ctx(request, record, groups, body_error))
                    if rl_headers and isinstance(resp, web.Response):
                        resp.headers.update(rl_headers)
        except _ApiError as exc:
            record.response = exc.body
            resp = self._json(exc.body, status=exc.status, headers=exc.headers, route=route_name)
        record.status = resp.status
        self._bump()
        return resp

    def _check_rate_limit(
        self, record: RecordedRequest, groups: dict[str, str]
    ) -> tuple[web.Response | None, dict[str, str]]:
        """Apply :meth:`set_rate_limit` rules: a 429 response, or headers for the normal response."""
        out_headers: dict[str, str] = {}
        for rule in self._rate_rules:
            if rule.method not in ("*", record.method) or not rule.pattern.search(record.path):
                continue
            key = groups.get("channel_id") or groups.get("guild_id") or ""
            if "token" in groups:
                key = f"{groups.get('app') or groups.get('interaction_id')}:{groups['token']}"
            now = asyncio.get_running_loop().time()
            window = rule.windows.get(key)
            if window is None or now >= window[0]:
                window = rule.windows[key] = [now + rule.per, 0]
            reset_after = max(window[0] - now, 0.001)
            headers = {
                "X-RateLimit-Limit": str(rule.limit),
                "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
                "X-RateLimit-Reset-After": f"{reset_after:.3f}",
                "X-RateLimit-Bucket": rule.bucket,
            }
            if window[1] >= rule.limit:
                body = {
                    "message": "You are being rate limited.",
                    "retry_after": round(reset_after, 3),
                    "global": False,
                }
                headers.update(
                    {
                        "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Scope": "user",
                        "Retry-After": str(max(1, math.ceil(reset_after))),
                    }
                )
                record.response = body
                return self._json(body, status=429, headers=headers, ratelimit=False), {}
            window[1] += 1
            headers["X-RateLimit-Remaining"] = str(rule.limit - int(window[1]))
            out_headers = headers
        return None, out_headers

    # ------------------------------------------------------------------------------- REST: users/app

    def _bot_me_payload(self) -> dict[str, Any]:
        data = self.bot_user.to_payload()
        data.update(
            verified=True, mfa_enabled=False, email=None, locale="en-US", flags=0, premium_type=0, bio=""
        )
        return data

    async def _r_get_me(self, ctx: _Ctx) -> web.Response:
        return self._json(self._bot_me_payload(), route="users_me")

    async def _r_get_user(self, ctx: _Ctx) -> web.Response:
        user = self.users.get(ctx.gid("user_id"))
        if user is None:
            raise _ApiError(404, 10013, "Unknown User")
        return self._json(user.to_payload(), route="user")

    async def _r_create_dm(self, ctx: _Ctx) -> web.Response:
        body = ctx.json or {}
        try:
            user = self.users[int(body["recipient_id"])]
        except (KeyError, ValueError, TypeError):
            raise _form_error([("recipient_id", "BASE_TYPE_REQUIRED", "This field is required")]) from None
        return self._json(self.dm_channel(user.id).to_payload(self), route="dm_create")

    async def _r_app_info(self, ctx: _Ctx) -> web.Response:
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
            },
            route="app_info",
        )

    async def _r_gateway(self, ctx: _Ctx) -> web.Response:
        return self._json({"url": self.gateway_url.rstrip("/")}, route="gateway")

    async def _r_gateway_bot(self, ctx: _Ctx) -> web.Response:
        return self._json(
            {
                "url": self.gateway_url.rstrip("/"),
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            },
            route="gateway_bot",
        )

    # ------------------------------------------------------------------------------- REST: commands

    def _check_app(self, ctx: _Ctx) -> None:
        if ctx.gid("app") != self.application_id:
            raise _ApiError(403, 50001, "Missing Access")

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

    async def _r_get_commands(self, ctx: _Ctx) -> web.Response:
        self._check_app(ctx)
        gid = ctx.groups.get("guild_id")
        cmds = self._guild_commands.get(int(gid), []) if gid else self._global_commands
        return self._json(cmds, route="commands")

    async def _r_put_commands(self, ctx: _Ctx) -> web.Response:
        self._check_app(ctx)
        gid = int(ctx.groups["guild_id"]) if ctx.groups.get("guild_id") else None
        if gid is not None and gid not in self.guilds:
            raise _ApiError(403, 50001, "Missing Access")
        body = ctx.json
        if not isinstance(body, list):
            raise _form_error([("", "BASE_TYPE_ARRAY", "Must be an array.")])
        errors = self._validate_commands(body)
        if errors:
            raise _form_error(errors)
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
        return self._json(stored, route="commands")

    def _validate_commands(self, cmds: list[Any]) -> list[tuple[str, str, str]]:
        errs: list[tuple[str, str, str]] = []
        seen: set[tuple[str, int]] = set()
        counts: dict[int, int] = {}
        for i, cmd in enumerate(cmds):
            p = str(i)
            if not isinstance(cmd, dict) or "name" not in cmd:
                errs.append((f"{p}.name", "BASE_TYPE_REQUIRED", "This field is required"))
                continue
            ctype = cmd.get("type", 1)
            counts[ctype] = counts.get(ctype, 0) + 1
            if (cmd["name"], ctype) in seen:
                errs.append(
                    (p, "APPLICATION_COMMANDS_DUPLICATE_NAME", "Application command names must be unique")
                )
            seen.add((cmd["name"], ctype))
            errs += self._validate_names(p, cmd, chat=ctype == 1)
            if ctype != 1 and cmd.get("description"):
                errs.append((f"{p}.description", "BASE_TYPE_MAX_LENGTH", "Must be 0 or fewer in length."))
            errs += self._validate_options(f"{p}.options", cmd.get("options") or [], depth=0)
        if counts.get(1, 0) > 100:
            errs.append(("", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length."))
        for t in (2, 3):
            if counts.get(t, 0) > 15:
                errs.append(("", "APPLICATION_COMMANDS_TOO_MANY", "Too many context menu commands."))
        return errs

    @staticmethod
    def _name_ok(name: Any, chat: bool) -> bool:
        if not isinstance(name, str) or not 1 <= len(name) <= 32:
            return False
        if not chat:
            return True
        return re.fullmatch(r"[-_'\w]+", name) is not None and name == name.lower()

    def _validate_names(self, p: str, obj: Mapping[str, Any], *, chat: bool) -> list[tuple[str, str, str]]:
        errs: list[tuple[str, str, str]] = []
        if not self._name_ok(obj.get("name"), chat):
            errs.append((f"{p}.name", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"))
        if chat:
            desc = obj.get("description", "")
            if not isinstance(desc, str) or not 1 <= len(desc) <= 100:
                errs.append(
                    (f"{p}.description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
                )
        for key in ("name_localizations", "description_localizations"):
            for loc, value in (obj.get(key) or {}).items():
                if loc not in VALID_LOCALES:
                    errs.append(
                        (
                            f"{p}.{key}.{loc}",
                            "BASE_TYPE_CHOICES",
                            f"Value must be one of {sorted(VALID_LOCALES)}.",
                        )
                    )
                elif key == "name_localizations" and not self._name_ok(value, chat):
                    errs.append(
                        (f"{p}.{key}.{loc}", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
                    )
                elif key == "description_localizations" and chat and not 1 <= len(value) <= 100:
                    errs.append(
                        (f"{p}.{key}.{loc}", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
                    )
        return errs

    def _validate_options(
        self, p: str, options: list[dict[str, Any]], depth: int
    ) -> list[tuple[str, str, str]]:
        errs: list[tuple[str, str, str]] = []
        if len(options) > 25:
            errs.append((p, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."))
        names: set[str] = set()
        optional_seen = False
        for j, opt in enumerate(options):
            q = f"{p}.{j}"
            otype = opt.get("type")
            errs += self._validate_names(q, opt, chat=True)
            if opt.get("name") in names:
                errs.append(
                    (q, "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS", "Option names must be unique")
                )
            names.add(opt.get("name", ""))
            if otype in (1, 2):
                if depth >= (1 if otype == 2 else 2):
                    errs.append(
                        (q, "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID", "Sub-command nesting too deep")
                    )
                errs += self._validate_options(f"{q}.options", opt.get("options") or [], depth + 1)
                continue
            if otype not in (3, 4, 5, 6, 7, 8, 9, 10, 11):
                errs.append((f"{q}.type", "BASE_TYPE_CHOICES", "Value must be one of (1..11)."))
            if opt.get("required"):
                if optional_seen:
                    errs.append(
                        (
                            q,
                            "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                            "Required options must be placed before non-required options",
                        )
                    )
            else:
                optional_seen = True
            choices = opt.get("choices") or []
            if len(choices) > 25:
                errs.append((f"{q}.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."))
            if choices and opt.get("autocomplete"):
                errs.append(
                    (q, "APPLICATION_COMMAND_OPTION_CHOICES_AUTOCOMPLETE", "Autocomplete and choices")
                )
        return errs

    # ------------------------------------------------------------------------------- REST: guilds/channels

    def _guild_or_404(self, guild_id: int) -> FakeGuild:
        guild = self.guilds.get(guild_id)
        if guild is None:
            raise _ApiError(404, 10004, "Unknown Guild")
        return guild

    def _channel_or_404(self, channel_id: int) -> FakeChannel:
        channel = self.channels.get(channel_id)
        if channel is None or channel.deleted:
            raise _ApiError(404, 10003, "Unknown Channel")
        return channel

    def _bot_channel_perms(self, channel: FakeChannel, *needed: int) -> int:
        perms = self.channel_permissions(channel.id, self.bot_id)
        if not perms & Perm.VIEW_CHANNEL:
            raise _ApiError(403, 50001, "Missing Access")
        for bit in needed:
            if not perms & bit:
                raise _ApiError(403, 50013, "Missing Permissions")
        return perms

    async def _r_get_guild(self, ctx: _Ctx) -> web.Response:
        guild = self._guild_or_404(ctx.gid("guild_id"))
        data = self._guild_payload(guild, 0)
        for key in (
            "members",
            "channels",
            "threads",
            "voice_states",
            "presences",
            "joined_at",
            "large",
            "lazy",
        ):
            data.pop(key, None)
        return self._json(data, route="guild")

    async def _r_guild_channels(self, ctx: _Ctx) -> web.Response:
        guild = self._guild_or_404(ctx.gid("guild_id"))
        return self._json(
            [
                c.to_payload(self)
                for c in guild.channels.values()
                if not c.deleted and c.type not in (10, 11, 12)
            ],
            route="guild_channels",
        )

    async def _r_guild_roles(self, ctx: _Ctx) -> web.Response:
        guild = self._guild_or_404(ctx.gid("guild_id"))
        return self._json([r.to_payload() for r in guild.roles.values()], route="guild_roles")

    async def _r_guild_member(self, ctx: _Ctx) -> web.Response:
        guild = self._guild_or_404(ctx.gid("guild_id"))
        member = guild.members.get(ctx.gid("user_id"))
        if member is None:
            raise _ApiError(404, 10007, "Unknown Member")
        return self._json(self._member_payload(member), route="guild_member")

    async def _r_get_channel(self, ctx: _Ctx) -> web.Response:
        channel = self._channel_or_404(ctx.gid("channel_id"))
        if channel.guild_id is not None:
            self._bot_channel_perms(channel)
        return self._json(channel.to_payload(self), route="channel")

    async def _r_typing(self, ctx: _Ctx) -> web.Response:
        channel = self._channel_or_404(ctx.gid("channel_id"))
        self._bot_channel_perms(channel, Perm.SEND_MESSAGES)
        return self._no_content()

    def _channel_message_or_404(self, channel: FakeChannel, message_id: int) -> FakeMessage:
        msg = self.messages.get(message_id)
        if msg is None or msg.deleted or msg.channel_id != channel.id or msg.ephemeral:
            raise _ApiError(404, 10008, "Unknown Message")
        return msg

    async def _r_list_messages(self, ctx: _Ctx) -> web.Response:
        channel = self._channel_or_404(ctx.gid("channel_id"))
        self._bot_channel_perms(channel, Perm.READ_MESSAGE_HISTORY)
        q = ctx.record.query
        limit = max(1, min(100, int(q.get("limit", 50))))
        msgs = self.channel_messages(channel.id)
        if "before" in q:
            msgs = [m for m in msgs if m.id < int(q["before"])]
        if "after" in q:
            msgs = [m for m in msgs if m.id > int(q["after"])]
            msgs = msgs[:limit]
        else:
            msgs = msgs[-limit:]
        return self._json([m.to_payload() for m in reversed(msgs)], route="messages")

    async def _r_get_message(self, ctx: _Ctx) -> web.Response:
        channel = self._channel_or_404(ctx.gid("channel_id"))
        self._bot_channel_perms(channel, Perm.READ_MESSAGE_HISTORY)
        msg = self._channel_message_or_404(channel, ctx.gid("message_id"))
        return self._json(msg.to_payload(), route="message")

    def _upload_limit_for_channel(self, channel: FakeChannel) -> int:
        if channel.guild_id is None:
            return DEFAULT_ATTACHMENT_SIZE_LIMIT
        return self.guilds[channel.guild_id].attachment_size_limit

    async def _r_create_message(self, ctx: _Ctx) -> web.Response:
        channel = self._channel_or_404(ctx.gid("channel_id"))
        body = ctx.json or {}
        if not isinstance(body, dict):
            raise _form_error([("", "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")])
        if channel.type == 1:
            recipient = self.users[channel.recipient_ids[0]]
            if not recipient.dms_open:
                raise _ApiError(403, 50007, "Cannot send messages to this user")
        else:
            needed = [Perm.SEND_MESSAGES]
            if ctx.files:
                needed.append(Perm.ATTACH_FILES)
            if body.get("embeds"):
                needed.append(Perm.EMBED_LINKS)
            perms = self._bot_channel_perms(channel, *needed)
            if body.get("message_reference") and not perms & Perm.READ_MESSAGE_HISTORY:
                raise _ApiError(400, 160002, "Cannot reply without permission to read message history")
        if body.get("flags", 0) & MessageFlags.EPHEMERAL:
            raise _form_error(
                [("flags", "MESSAGE_FLAGS_INVALID", "Ephemeral messages require an interaction")]
            )
        nonce = body.get("nonce")
        if nonce is not None and len(str(nonce)) > 25:
            raise _form_error([("nonce", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")])
        if nonce is not None and body.get("enforce_nonce"):
            # Discord: a message by the same author with the same nonce in the past few minutes is
            # returned instead of creating a new one.
            cutoff_ms = (time.time() - NONCE_WINDOW_SECONDS) * 1000 - DISCORD_EPOCH_MS
            for existing in reversed(self.channel_messages(channel.id)):
                if (existing.id >> 22) < cutoff_ms:
                    break
                if existing.author_id == self.bot_id and existing.nonce == nonce:
                    return self._json(existing.to_payload(), route="messages")
        msg = FakeMessage(
            id=self._next_id(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author_id=self.bot_id,
            fake=self,
        )
        ref = body.get("message_reference")
        if ref:
            target = self.messages.get(int(ref.get("message_id", 0) or 0))
            if target is None or target.deleted or target.ephemeral:
                if ref.get("fail_if_not_exists", True):
                    raise _form_error(
                        [("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")]
                    )
                body = {k: v for k, v in body.items() if k != "message_reference"}
            else:
                msg.type = 19
                msg.message_reference = {
                    "type": 0,
                    "message_id": str(target.id),
                    "channel_id": str(target.channel_id),
                    **({"guild_id": str(target.guild_id)} if target.guild_id else {}),
                }
        self._apply_body(
            msg, body, ctx.files, size_limit=self._upload_limit_for_channel(channel), creating=True
        )
        msg.nonce = body.get("nonce")
        msg.tts = bool(body.get("tts", False))
        self._store_message(msg, public=True)
        await self._message_event("MESSAGE_CREATE", msg)
        return self._json(msg.to_payload(), route="messages")

    async def _r_edit_message(self, ctx: _Ctx) -> web.Response:
        channel = self._channel_or_404(ctx.gid("channel_id"))
        msg = self._channel_message_or_404(channel, ctx.gid("message_id"))
        if msg.author_id != self.bot_id:
            raise _ApiError(403, 50005, "Cannot edit a message authored by another user")
        body = ctx.json or {}
        self._apply_body(
            msg, body, ctx.files, size_limit=self._upload_limit_for_channel(channel), creating=False
        )
        await self._message_event("MESSAGE_UPDATE", msg)
        return self._json(msg.to_payload(), route="message")

    async def _r_delete_message(self, ctx: _Ctx) -> web.Response:
        channel = self._channel_or_404(ctx.gid("channel_id"))
        msg = self._channel_message_or_404(channel, ctx.gid("message_id"))
        if msg.author_id != self.bot_id and channel.guild_id is not None:
            self._bot_channel_perms(channel, Perm.MANAGE_MESSAGES)
        await self._delete_message(msg)
        return self._no_content()

    # ------------------------------------------------------------------------------- messages

    def _store_message(self, msg: FakeMessage, *, public: bool) -> None:
        self.messages[msg.id] = msg
        if public:
            self._channel_message_ids.setdefault(msg.channel_id, []).append(msg.id)
            channel = self.channels.get(msg.channel_id)
            if channel is not None:
                channel.last_message_id = msg.id

    async def _delete_message(self, msg: FakeMessage) -> None:
        msg.deleted = True
        if not msg.ephemeral:
            data = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
            if msg.guild_id:
                data["guild_id"] = str(msg.guild_id)
            await self._dispatch_soft("MESSAGE_DELETE", data, intent=self._message_intent(msg))
        self._bump()

    @staticmethod
    def _message_intent(msg: FakeMessage) -> int:
        return Intents.GUILD_MESSAGES if msg.guild_id else Intents.DIRECT_MESSAGES

    async def _message_event(self, event: str, msg: FakeMessage) -> None:
        if msg.ephemeral:
            return
        data = msg.to_payload()
        session = self._session
        intents = session.intents if session else 0
        if msg.guild_id:
            data["guild_id"] = str(msg.guild_id)
            member = self.guilds[msg.guild_id].members.get(msg.author_id)
            if member is not None and msg.webhook_id is None:
                data["member"] = self._member_payload(member, with_user=False)
        if (
            not intents & Intents.MESSAGE_CONTENT
            and msg.author_id != self.bot_id
            and msg.guild_id is not None
            and self.bot_id not in msg.mention_ids
        ):
            data.update(content="", embeds=[], attachments=[], components=[])
        await self._dispatch_soft(event, data, intent=self._message_intent(msg))

    def _compute_mentions(self, msg: FakeMessage, allowed: dict[str, Any] | None) -> None:
        parse = ["users", "roles", "everyone"] if allowed is None else list(allowed.get("parse") or [])
        explicit_users = {int(u) for u in (allowed or {}).get("users") or []}
        explicit_roles = {int(r) for r in (allowed or {}).get("roles") or []}
        users: list[int] = []
        for m in re.finditer(r"<@!?(\d+)>", msg.content):
            uid = int(m.group(1))
            if (("users" in parse) or uid in explicit_users) and uid in self.users and uid not in users:
                users.append(uid)
        if msg.message_reference:
            ref = self.messages.get(int(msg.message_reference["message_id"]))
            replied = True if allowed is None else bool(allowed.get("replied_user", False))
            if ref is not None and replied and ref.author_id not in users:
                users.append(ref.author_id)
        roles = []
        for m in re.finditer(r"<@&(\d+)>", msg.content):
            rid = int(m.group(1))
            if ("roles" in parse or rid in explicit_roles) and rid not in roles:
                roles.append(rid)
        msg.mention_ids = users
        msg.mention_role_ids = roles
        msg.mention_everyone = "everyone" in parse and bool(re.search(r"@(everyone|here)", msg.content))

    def _validate_body(self, body: Mapping[str, Any], flags: int) -> list[tuple[str, str, str]]:
        errs: list[tuple[str, str, str]] = []
        content = body.get("content")
        if content is not None:
            if not isinstance(content, str):
                errs.append(("content", "BASE_TYPE_STRING", "Must be a string."))
            elif len(content) > 2000:
                errs.append(("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length."))
        embeds = body.get("embeds")
        if embeds is not None:
            if len(embeds) > 10:
                errs.append(("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length."))
            total = 0
            for i, e in enumerate(embeds):
                p = f"embeds.{i}"

                def check_len(path: str, value: Any, limit: int) -> int:
                    if value is None:
                        return 0
                    if len(str(value)) > limit:
                        errs.append((path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."))
                    return len(str(value))

                total += check_len(f"{p}.title", e.get("title"), 256)
                total += check_len(f"{p}.description", e.get("description"), 4096)
                total += check_len(f"{p}.footer.text", (e.get("footer") or {}).get("text"), 2048)
                total += check_len(f"{p}.author.name", (e.get("author") or {}).get("name"), 256)
                fields = e.get("fields") or []
                if len(fields) > 25:
                    errs.append((f"{p}.fields", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."))
                for k, f in enumerate(fields):
                    for key, limit in (("name", 256), ("value", 1024)):
                        if not f.get(key):
                            errs.append(
                                (f"{p}.fields.{k}.{key}", "BASE_TYPE_REQUIRED", "This field is required")
                            )
                        total += check_len(f"{p}.fields.{k}.{key}", f.get(key), limit)
                urls = [("url", e.get("url"))]
                for key in ("image", "thumbnail", "video"):
                    urls.append((f"{key}.url", (e.get(key) or {}).get("url")))
                urls.append(("author.url", (e.get("author") or {}).get("url")))
                urls.append(("author.icon_url", (e.get("author") or {}).get("icon_url")))
                urls.append(("footer.icon_url", (e.get("footer") or {}).get("icon_url")))
                for path, url in urls:
                    if url is not None and not str(url).startswith(_URL_SCHEMES):
                        errs.append((f"{p}.{path}", "URL_TYPE_INVALID_URL", "Not a well formed URL."))
                color = e.get("color")
                if color is not None and not 0 <= int(color) <= 0xFFFFFF:
                    errs.append((f"{p}.color", "NUMBER_TYPE_MAX", "int value should be <= 16777215."))
            if total > 6000:
                errs.append(("embeds", "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000"))
        components = body.get("components")
        if components is not None:
            errs += self._validate_components(components, v2=bool(flags & MessageFlags.IS_COMPONENTS_V2))
        if flags & MessageFlags.IS_COMPONENTS_V2 and (body.get("content") or body.get("embeds")):
            errs.append(
                (
                    "content",
                    "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
                    "The 'content' and 'embeds' fields cannot be used with IS_COMPONENTS_V2",
                )
            )
        return errs

    @staticmethod
    def _validate_components(components: list[dict[str, Any]], *, v2: bool) -> list[tuple[str, str, str]]:
        errs: list[tuple[str, str, str]] = []
        if not v2:
            if len(components) > 5:
                errs.append(("components", "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length."))
            for i, row in enumerate(components):
                if row.get("type") != 1:
                    errs.append(
                        (f"components.{i}.type", "UNION_TYPE_CHOICES", "Value of field 'type' must be 1.")
                    )
                    continue
                children = row.get("components") or []
                if not 1 <= len(children) <= 5:
                    errs.append(
                        (
                            f"components.{i}.components",
                            "BASE_TYPE_BAD_LENGTH",
                            "Must be between 1 and 5 in length.",
                        )
                    )
                if any(c.get("type") in _SELECT_TYPES for c in children) and len(children) > 1:
                    errs.append(
                        (
                            f"components.{i}.components",
                            "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                            "The specified component exceeds the maximum width",
                        )
                    )
        elif sum(1 for _ in _walk_components(components)) > 40:
            errs.append(
                ("components", "COMPONENT_MAX_TOTAL_COMPONENTS_EXCEEDED", "Too many components (max 40).")
            )
        seen: set[str] = set()
        for comp in _walk_components(components):
            ctype = comp.get("type")
            cid = comp.get("custom_id")
            if cid is not None:
                if not 1 <= len(cid) <= 100:
                    errs.append(
                        (
                            "components",
                            "BASE_TYPE_BAD_LENGTH",
                            "custom_id must be between 1 and 100 in length.",
                        )
                    )
                if cid in seen:
                    errs.append(
                        (
                            "components",
                            "COMPONENT_CUSTOM_ID_DUPLICATED",
                            f"Component custom id {cid!r} is duplicated",
                        )
                    )
                seen.add(cid)
            if ctype == 2:
                style = comp.get("style")
                if style == 5:
                    if not comp.get("url") or cid is not None:
                        errs.append(
                            (
                                "components",
                                "BUTTON_COMPONENT_URL_REQUIRED",
                                "A link button needs url, no custom_id",
                            )
                        )
                elif style == 6:
                    if not comp.get("sku_id"):
                        errs.append(
                            (
                                "components",
                                "BUTTON_COMPONENT_SKU_ID_REQUIRED",
                                "A premium button needs sku_id",
                            )
                        )
                elif cid is None:
                    errs.append(
                        ("components", "BUTTON_COMPONENT_CUSTOM_ID_REQUIRED", "A button needs a custom_id")
                    )
                if len(comp.get("label") or "") > 80:
                    errs.append(("components", "BASE_TYPE_MAX_LENGTH", "Must be 80 or fewer in length."))
            elif ctype == 3 and len(comp.get("options") or []) > 25:
                errs.append(("components", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."))
        return errs

    def _apply_body(
        self,
        msg: FakeMessage,
        body: Mapping[str, Any],
        files: list[RecordedFile],
        *,
        size_limit: int,
        creating: bool,
        ephemeral: bool = False,
    ) -> None:
        """Validate a create/edit body and apply it to ``msg`` (raises _ApiError)."""
        new_flags = msg.flags
        if "flags" in body and body["flags"] is not None:
            requested = int(body["flags"])
            if creating:
                new_flags = requested & (
                    MessageFlags.SUPPRESS_EMBEDS
                    | MessageFlags.EPHEMERAL
                    | MessageFlags.SUPPRESS_NOTIFICATIONS
                    | MessageFlags.IS_COMPONENTS_V2
                )
            else:
                keep = msg.flags & ~(MessageFlags.SUPPRESS_EMBEDS | MessageFlags.IS_COMPONENTS_V2)
                new_flags = keep | (
                    requested & (MessageFlags.SUPPRESS_EMBEDS | MessageFlags.IS_COMPONENTS_V2)
                )
                if msg.flags & MessageFlags.IS_COMPONENTS_V2:
                    new_flags |= MessageFlags.IS_COMPONENTS_V2
        if ephemeral:
            new_flags |= MessageFlags.EPHEMERAL
        errs = self._validate_body(body, new_flags)
        if errs:
            raise _form_error(errs)
        for f in files:
            if f.size > size_limit:
                raise _ApiError(413, 40005, "Request entity too large")

        # attachments: keep listed existing ones, add new files (referenced by index, or unreferenced)
        new_files: dict[int, RecordedFile] = {}
        for idx, f in enumerate(files):
            m = re.fullmatch(r"files\[(\d+)\]", f.field) or re.fullmatch(r"file(\d*)", f.field)
            key = int(m.group(1)) if m and m.group(1) else idx
            new_files[key] = f
        is_ephemeral = bool(new_flags & MessageFlags.EPHEMERAL)
        existing = {a.id: a for a in msg.attachments}
        final: list[FakeAttachment] = []
        used: set[int] = set()
        if "attachments" in body and body["attachments"] is not None:
            for j, item in enumerate(body["attachments"]):
                aid = int(item.get("id", -1))
                if aid in existing:
                    final.append(existing[aid])
                elif aid in new_files:
                    f = new_files[aid]
                    used.add(aid)
                    final.append(self._upload(msg, f, item.get("description"), is_ephemeral))
                else:
                    raise _form_error([(f"attachments.{j}.id", "ATTACHMENT_NOT_FOUND", "Unknown attachment")])
        else:
            final = list(msg.attachments)
        for key in sorted(new_files):
            if key not in used:
                final.append(self._upload(msg, new_files[key], None, is_ephemeral))
        if len(final) > 10:
            raise _form_error([("attachments", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")])

        content = body["content"] if "content" in body else (None if creating else msg.content)
        embeds = body["embeds"] if "embeds" in body else (None if creating else msg.embeds)
        components = body["components"] if "components" in body else (None if creating else msg.components)
        has_anything = (
            bool(content) or bool(embeds) or bool(final) or bool(components) or bool(body.get("sticker_ids"))
        )
        if not has_anything and not body.get("poll"):
            raise _ApiError(400, 50006, "Cannot send an empty message")
        msg.content = content or ""
        msg.embeds = copy.deepcopy(list(embeds or []))
        msg.components = copy.deepcopy(list(components or []))
        msg.attachments = final
        msg.flags = new_flags
        if "allowed_mentions" in body:
            msg.allowed_mentions = body["allowed_mentions"]
        if creating or "content" in body or "allowed_mentions" in body:
            self._compute_mentions(msg, msg.allowed_mentions)
        if not creating:
            msg.edited_timestamp = _iso()

    def _upload(
        self, msg: FakeMessage, f: RecordedFile, description: str | None, ephemeral: bool
    ) -> FakeAttachment:
        ctype = f.content_type
        if not ctype or ctype == "application/octet-stream":
            ctype = _sniff_content_type(f.data, f.filename)
        return self._store_attachment(
            f.data, f.filename, ctype, channel_id=msg.channel_id, description=description, ephemeral=ephemeral
        )

    # ------------------------------------------------------------------------------- interactions

    def _interaction_or_error(self, ctx: _Ctx, *, webhook: bool) -> FakeInteraction:
        if webhook:
            if ctx.gid("app") != self.application_id:
                raise _ApiError(404, 10015, "Unknown Webhook")
            inter = self._interactions_by_token.get(ctx.groups["token"])
            if inter is None or inter.expired:
                raise _ApiError(401, 50027, "Invalid Webhook Token")
            return inter
        inter = self._interactions_by_id.get(ctx.gid("interaction_id"))
        if inter is None or inter.token != ctx.groups["token"] or inter.expired:
            raise _ApiError(404, 10062, "Unknown interaction")
        return inter

    def expire_interaction(self, inter: FakeInteraction) -> None:
        """Invalidate an interaction token now (like the 15-minute window passing)."""
        inter.revoked = True
        self._bump()

    def _interaction_size_limit(self, inter: FakeInteraction) -> int:
        return int(inter.payload.get("attachment_size_limit", DEFAULT_ATTACHMENT_SIZE_LIMIT))

    def _new_interaction_message(self, inter: FakeInteraction, *, followup: bool) -> FakeMessage:
        data = inter.payload.get("data") or {}
        if followup:
            mtype = 0
        elif inter.type == APPLICATION_COMMAND:
            mtype = 20 if data.get("type", 1) == 1 else 23
        else:
            mtype = 19
        user = inter.payload.get("member", {}).get("user") or inter.payload["user"]
        metadata: dict[str, Any] = {
            "id": str(inter.id),
            "type": inter.type,
            "user": user,
            "authorizing_integration_owners": inter.payload.get("authorizing_integration_owners", {}),
        }
        if inter.type == APPLICATION_COMMAND:
            metadata["name"] = data.get("name")
            metadata["command_type"] = data.get("type", 1)
        if inter.type == MESSAGE_COMPONENT and inter.source_message is not None:
            metadata["interacted_message_id"] = str(inter.source_message.id)
        if followup and inter.original is not None:
            metadata["original_response_message_id"] = str(inter.original.id)
        msg = FakeMessage(
            id=self._next_id(),
            channel_id=inter.channel_id,
            guild_id=inter.guild_id,
            author_id=self.bot_id,
            type=mtype,
            webhook_id=self.application_id,
            application_id=self.application_id,
            interaction_metadata=metadata,
            fake=self,
        )
        if inter.type == APPLICATION_COMMAND:
            msg.interaction = {
                "id": str(inter.id),
                "type": inter.type,
                "name": data.get("name"),
                "user": user,
            }
        return msg

    async def _r_callback(self, ctx: _Ctx) -> web.Response:
        inter = self._interaction_or_error(ctx, webhook=False)
        loop = asyncio.get_running_loop()
        now = loop.time()
        if inter.callbacks:
            raise _ApiError(400, 40060, "Interaction has already been acknowledged.")
        if self.ack_deadline is not None and now - inter.dispatched_at > self.ack_deadline:
            raise _ApiError(404, 10062, "Unknown interaction")
        body = ctx.json or {}
        ctype = body.get("type")
        data = body.get("data")
        if ctype not in _ALLOWED_CALLBACKS.get(inter.type, set()):
            raise _form_error(
                [("type", "INTERACTION_RESPONSE_TYPE_INVALID", "Invalid interaction response type")]
            )
        if ctype in (CB_DEFERRED_UPDATE, CB_UPDATE) and inter.source_message is None:
            raise _form_error([("type", "INTERACTION_RESPONSE_TYPE_INVALID", "No message to update")])
        limit = self._interaction_size_limit(inter)
        resource: dict[str, Any] = {"type": ctype}
        info: dict[str, Any] = {"id": str(inter.id), "type": inter.type}
        msg: FakeMessage | None = None
        event: str | None = None
        if ctype == CB_MESSAGE:
            msg = self._new_interaction_message(inter, followup=False)
            self._apply_body(msg, data or {}, ctx.files, size_limit=limit, creating=True)
            self._store_message(msg, public=not msg.ephemeral)
            inter.original = msg
            event = "MESSAGE_CREATE"
        elif ctype == CB_DEFERRED_MESSAGE:
            msg = self._new_interaction_message(inter, followup=False)
            msg.flags = MessageFlags.LOADING | (int((data or {}).get("flags") or 0) & MessageFlags.EPHEMERAL)
            self._store_message(msg, public=not msg.ephemeral)
            inter.original = msg
            event = "MESSAGE_CREATE"
        elif ctype == CB_DEFERRED_UPDATE:
            msg = inter.source_message
            inter.original = msg
        elif ctype == CB_UPDATE:
            msg = inter.source_message
            assert msg is not None
            self._apply_body(msg, data or {}, ctx.files, size_limit=limit, creating=False)
            inter.original = msg
            event = "MESSAGE_UPDATE"
        elif ctype == CB_AUTOCOMPLETE:
            choices = (data or {}).get("choices") or []
            if len(choices) > 25:
                raise _form_error(
                    [("data.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")]
                )
            inter.autocomplete_choices = choices
        elif ctype == CB_MODAL:
            errs = self._validate_modal(data or {})
            if errs:
                raise _form_error(errs)
            inter.modal = copy.deepcopy(data)
        inter.callbacks.append(
            CallbackRecord(
                type=ctype,
                data=copy.deepcopy(data),
                time=now,
                delay=now - inter.dispatched_at,
                files=list(ctx.files),
            )
        )
        if ctype == CB_UPDATE and msg is not None:
            inter.original_edits.append(
                EditRecord(
                    now,
                    "callback",
                    copy.deepcopy(data or {}),
                    [f.filename for f in ctx.files],
                    msg.snapshot(),
                )
            )
        if msg is not None:
            info.update(
                response_message_id=str(msg.id),
                response_message_loading=msg.loading,
                response_message_ephemeral=msg.ephemeral,
            )
            resource["message"] = msg.to_payload()
        if event and msg is not None:
            await self._message_event(event, msg)
        self._bump()
        if ctx.record.query.get("with_response", "").lower() not in ("1", "true"):
            return self._no_content()
        return self._json({"interaction": info, "resource": resource}, route="callback")

    @staticmethod
    def _validate_modal(data: Mapping[str, Any]) -> list[tuple[str, str, str]]:
        errs: list[tuple[str, str, str]] = []
        title = data.get("title")
        if not title or len(title) > 45:
            errs.append(("data.title", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 45 in length."))
        cid = data.get("custom_id")
        if not cid or len(cid) > 100:
            errs.append(("data.custom_id", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."))
        comps = data.get("components") or []
        if not 1 <= len(comps) <= 5:
            errs.append(("data.components", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length."))
        for i, comp in enumerate(comps):
            inner = (
                comp.get("components", [None])[0]
                if comp.get("type") == 1
                else comp.get("component")
                if comp.get("type") == 18
                else comp
            )
            if inner is None:
                errs.append((f"data.components.{i}", "BASE_TYPE_REQUIRED", "This field is required"))
                continue
            label = comp.get("label") if comp.get("type") == 18 else inner.get("label")
            if inner.get("type") == 4:
                if not label or len(label) > 45:
                    errs.append(
                        (
                            f"data.components.{i}.label",
                            "BASE_TYPE_BAD_LENGTH",
                            "Must be between 1 and 45 in length.",
                        )
                    )
                if int(inner.get("max_length") or 4000) > 4000:
                    errs.append(
                        (f"data.components.{i}.max_length", "NUMBER_TYPE_MAX", "int value should be <= 4000.")
                    )
        return errs

    async def _r_followup(self, ctx: _Ctx) -> web.StreamResponse:
        inter = self._interaction_or_error(ctx, webhook=True)
        if not inter.callbacks:
            raise _ApiError(404, 10015, "Unknown Webhook")
        body = ctx.json or {}
        limit = self._interaction_size_limit(inter)
        now = asyncio.get_running_loop().time()
        original = inter.original
        if (
            original is not None
            and original.loading
            and not inter.original_deleted
            and inter.callbacks[0].type == CB_DEFERRED_MESSAGE
        ):
            # Discord: the first follow-up after a deferred reply completes the loading original.
            body = {k: v for k, v in body.items() if k != "flags"}
            self._apply_body(original, body, ctx.files, size_limit=limit, creating=False)
            original.flags &= ~MessageFlags.LOADING
            msg = original
            inter.original_edits.append(
                EditRecord(
                    now, "followup", copy.deepcopy(body), [f.filename for f in ctx.files], msg.snapshot()
                )
            )
            await self._message_event("MESSAGE_UPDATE", msg)
        else:
            msg = self._new_interaction_message(inter, followup=True)
            self._apply_body(msg, body, ctx.files, size_limit=limit, creating=True)
            self._store_message(msg, public=not msg.ephemeral)
            await self._message_event("MESSAGE_CREATE", msg)
        inter.followups.append(msg)
        self._bump()
        if ctx.record.query.get("wait", "").lower() in ("1", "true"):
            return self._json(msg.to_payload(), route="followup")
        return self._no_content()

    def _webhook_message(self, inter: FakeInteraction, message_id: str) -> FakeMessage:
        if message_id == "@original":
            msg = inter.original
            if msg is None or inter.original_deleted or msg.deleted:
                raise _ApiError(404, 10008, "Unknown Message")
            return msg
        mid = int(message_id)
        for msg in [inter.original, *inter.followups]:
            if msg is not None and msg.id == mid and not msg.deleted:
                return msg
        raise _ApiError(404, 10008, "Unknown Message")

    async def _r_webhook_get(self, ctx: _Ctx) -> web.Response:
        inter = self._interaction_or_error(ctx, webhook=True)
        msg = self._webhook_message(inter, ctx.groups["message_id"])
        return self._json(msg.to_payload(), route="webhook_message")

    async def _r_webhook_edit(self, ctx: _Ctx) -> web.Response:
        inter = self._interaction_or_error(ctx, webhook=True)
        msg = self._webhook_message(inter, ctx.groups["message_id"])
        body = ctx.json or {}
        self._apply_body(msg, body, ctx.files, size_limit=self._interaction_size_limit(inter), creating=False)
        msg.flags &= ~MessageFlags.LOADING
        if msg is inter.original:
            inter.original_edits.append(
                EditRecord(
                    asyncio.get_running_loop().time(),
                    "patch",
                    copy.deepcopy(body),
                    [f.filename for f in ctx.files],
                    msg.snapshot(),
                )
            )
        await self._message_event("MESSAGE_UPDATE", msg)
        self._bump()
        return self._json(msg.to_payload(), route="webhook_message")

    async def _r_webhook_delete(self, ctx: _Ctx) -> web.Response:
        inter = self._interaction_or_error(ctx, webhook=True)
        msg = self._webhook_message(inter, ctx.groups["message_id"])
        if msg is inter.original:
            inter.original_deleted = True
        await self._delete_message(msg)
        return self._no_content()

    # ------------------------------------------------------------------------------- dispatching interactions

    def _resolve_context(
        self, user_id: int, guild_id: int | None, channel_id: int | None
    ) -> tuple[FakeUser, FakeGuild | None, FakeChannel]:
        user = self.users[user_id]
        if guild_id is None and channel_id is not None and self.channels[channel_id].guild_id is not None:
            guild_id = self.channels[channel_id].guild_id
        if guild_id is None:
            channel = self.channels[channel_id] if channel_id is not None else self.dm_channel(user_id)
            return user, None, channel
        guild = self.guilds[guild_id]
        if channel_id is None:
            if not guild.text_channels:
                raise LookupError(f"guild {guild_id} has no text channel")
            channel = guild.text_channels[0]
        else:
            channel = self.channels[channel_id]
            if channel.guild_id != guild_id:
                raise ValueError(f"channel {channel_id} is not in guild {guild_id}")
        if user_id not in guild.members:
            self.add_member(guild_id, user_id)
        return user, guild, channel

    async def _dispatch_interaction(
        self,
        itype: int,
        data: dict[str, Any],
        *,
        user_id: int,
        guild_id: int | None,
        channel_id: int | None,
        locale: str,
        attachment_size_limit: int | None,
        message: FakeMessage | None = None,
        parent: FakeInteraction | None = None,
    ) -> FakeInteraction:
        await self.flush()
        if self._session is None:
            raise RuntimeError("no gateway session: the bot has not connected (IDENTIFY) yet")
        user, guild, channel = self._resolve_context(user_id, guild_id, channel_id)
        iid = self._next_id()
        token = (
            base64.urlsafe_b64encode(f"interaction:{iid}:{secrets.token_hex(40)}".encode())
            .decode()
            .rstrip("=")
        )
        if attachment_size_limit is None:
            attachment_size_limit = guild.attachment_size_limit if guild else DEFAULT_ATTACHMENT_SIZE_LIMIT
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(self.application_id),
            "type": itype,
            "data": data,
            "token": token,
            "version": 1,
            "locale": locale,
            "app_permissions": str(self.channel_permissions(channel.id, self.bot_id)),
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": attachment_size_limit,
            "channel": self._interaction_channel_payload(channel, user.id),
            "channel_id": str(channel.id),
        }
        if guild is not None:
            member = guild.members[user.id]
            payload.update(
                guild_id=str(guild.id),
                guild={"id": str(guild.id), "locale": guild.preferred_locale, "features": []},
                guild_locale=guild.preferred_locale,
                member=self._member_payload(
                    member, permissions=self._member_permissions(channel.id, user.id)
                ),
                context=0,
                authorizing_integration_owners={"0": str(guild.id)},
            )
        else:
            payload.update(user=user.to_payload(), context=1, authorizing_integration_owners={"0": "0"})
        if message is not None:
            payload["message"] = message.to_payload()
        loop = asyncio.get_running_loop()
        now = loop.time()
        inter = FakeInteraction(
            self,
            payload,
            dispatched_at=now,
            expires_at=now + self.interaction_token_ttl,
            source_message=message,
            parent=parent,
        )
        self.interactions.append(inter)
        self._interactions_by_id[iid] = inter
        self._interactions_by_token[token] = inter
        await self.dispatch("INTERACTION_CREATE", payload)
        self._bump()
        return inter

    def _option_value(
        self,
        odef: Mapping[str, Any],
        value: Any,
        resolved: dict[str, dict[str, Any]],
        guild_id: int | None,
        channel_id: int | None,
        *,
        focused: bool = False,
    ) -> dict[str, Any]:
        name, otype = odef["name"], odef["type"]
        out: dict[str, Any] = {"name": name, "type": otype}
        if focused:
            out.update(value=str(value), focused=True)
            return out

        def snowflake(v: Any) -> int:
            if isinstance(v, Mapping):
                return int(v["id"])
            return int(getattr(v, "id", v))

        if otype == 3:
            if not isinstance(value, str):
                raise TypeError(f"option {name!r} is a string option, got {type(value).__name__}")
            if len(value) > int(odef.get("max_length", 6000)) or len(value) < int(odef.get("min_length", 0)):
                raise ValueError(f"option {name!r}: length {len(value)} outside the command's limits")
            out["value"] = value
        elif otype in (4, 10):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"option {name!r} is numeric, got {type(value).__name__}")
            if otype == 4 and not float(value).is_integer():
                raise TypeError(f"option {name!r} is an integer option, got {value!r}")
            if ("min_value" in odef and value < odef["min_value"]) or (
                "max_value" in odef and value > odef["max_value"]
            ):
                raise ValueError(f"option {name!r}: {value} outside the command's range")
            out["value"] = int(value) if otype == 4 else value
        elif otype == 5:
            if not isinstance(value, bool):
                raise TypeError(f"option {name!r} is a boolean option")
            out["value"] = value
        elif otype in (6, 9) and (snowflake(value) in self.users):
            uid = snowflake(value)
            resolved.setdefault("users", {})[str(uid)] = self.users[uid].to_payload()
            if guild_id is not None and uid in self.guilds[guild_id].members:
                member = self.guilds[guild_id].members[uid]
                perms = self._member_permissions(channel_id, uid) if channel_id else 0
                resolved.setdefault("members", {})[str(uid)] = self._member_payload(
                    member, with_user=False, permissions=perms
                )
            out["value"] = str(uid)
        elif otype in (8, 9):
            rid = snowflake(value)
            if guild_id is None or rid not in self.guilds[guild_id].roles:
                raise LookupError(f"option {name!r}: unknown role {rid}")
            resolved.setdefault("roles", {})[str(rid)] = self.guilds[guild_id].roles[rid].to_payload()
            out["value"] = str(rid)
        elif otype == 6:
            raise LookupError(f"option {name!r}: unknown user {value!r}")
        elif otype == 7:
            ch = self.channels[snowflake(value)]
            allowed = odef.get("channel_types")
            if allowed and ch.type not in allowed:
                raise ValueError(f"option {name!r}: channel type {ch.type} not in {allowed}")
            entry: dict[str, Any] = {
                "id": str(ch.id),
                "name": ch.name,
                "type": ch.type,
                "permissions": str(self._member_permissions(ch.id, self.bot_id)),
                "parent_id": str(ch.parent_id) if ch.parent_id else None,
                "nsfw": ch.nsfw,
            }
            if ch.type in (10, 11, 12):
                entry["thread_metadata"] = ch.to_payload(self)["thread_metadata"]
            resolved.setdefault("channels", {})[str(ch.id)] = entry
            out["value"] = str(ch.id)
        elif otype == 11:
            if isinstance(value, FakeAttachment):
                payload = value.to_payload()
            elif isinstance(value, Mapping):
                aid = int(value["id"])
                payload = self.attachments[aid].to_payload() if aid in self.attachments else dict(value)
            else:
                payload = self.attachments[int(value)].to_payload()
            resolved.setdefault("attachments", {})[payload["id"]] = payload
            out["value"] = payload["id"]
        else:
            raise TypeError(f"option {name!r}: unsupported option type {otype}")
        choices = odef.get("choices")
        if choices and out.get("value") not in [c["value"] for c in choices]:
            raise ValueError(f"option {name!r}: {out.get('value')!r} is not one of the choices")
        return out

    def _command_options(
        self, cmd: Mapping[str, Any], path: Sequence[str]
    ) -> tuple[list[dict[str, Any]], list[Mapping[str, Any]]]:
        defs: list[dict[str, Any]] = list(cmd.get("options") or [])
        chain: list[Mapping[str, Any]] = []
        for part in path:
            sub = next((o for o in defs if o["name"] == part and o["type"] in (1, 2)), None)
            if sub is None:
                raise LookupError(
                    f"{cmd['name']!r} has no subcommand/group {part!r} at {[o['name'] for o in defs]}"
                )
            chain.append(sub)
            defs = list(sub.get("options") or [])
        if any(o["type"] in (1, 2) for o in defs):
            raise ValueError(
                f"{cmd['name']!r} needs a subcommand path; choose from {[o['name'] for o in defs]}"
            )
        return defs, chain

    async def slash(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        user_id: int,
        guild_id: int | None = None,
        channel_id: int | None = None,
        locale: str = "en-US",
        attachments: Mapping[str, Any] | None = None,
        path: Sequence[str] = (),
        attachment_size_limit: int | None = None,
        raw_options: list[dict[str, Any]] | None = None,
    ) -> FakeInteraction:
        """Dispatch a chat-input command as a user would invoke it.

        ``name`` may contain the subcommand path ("kontext blocklist add") or pass ``path``.
        Option types come from the definitions the bot synced; ``attachments`` maps option names to
        payloads from :meth:`add_attachment` (these may also be given in ``options``). Users, roles and
        channels are given by id and end up in ``data.resolved``. Without ``guild_id``/``channel_id``
        the command comes from the user's DM with the bot; with only ``guild_id`` from its first text
        channel. ``raw_options`` bypasses option building.
        """
        parts = name.split()
        full_path = [*parts[1:], *path]
        gid = (
            guild_id if guild_id is not None else (self.channels[channel_id].guild_id if channel_id else None)
        )
        cmd = self.command(parts[0], type=1, guild_id=gid)
        resolved: dict[str, dict[str, Any]] = {}
        if raw_options is not None:
            opts = raw_options
        else:
            values = {**(options or {}), **(attachments or {})}
            defs, chain = self._command_options(cmd, full_path)
            by_name = {d["name"]: d for d in defs}
            for key in values:
                if key not in by_name:
                    raise LookupError(f"{name!r} has no option {key!r}; options: {list(by_name)}")
            missing = [d["name"] for d in defs if d.get("required") and d["name"] not in values]
            if missing:
                raise ValueError(f"{name!r}: required options missing: {missing}")
            channel_for_perms = channel_id
            if channel_for_perms is None and gid is not None and self.guilds[gid].text_channels:
                channel_for_perms = self.guilds[gid].text_channels[0].id
            opts = [
                self._option_value(by_name[d["name"]], values[d["name"]], resolved, gid, channel_for_perms)
                for d in defs
                if d["name"] in values
            ]
            for sub in reversed(chain):
                node: dict[str, Any] = {"name": sub["name"], "type": sub["type"]}
                if opts:
                    node["options"] = opts
                opts = [node]
        data: dict[str, Any] = {"id": cmd["id"], "name": cmd["name"], "type": 1}
        if opts:
            data["options"] = opts
        if resolved:
            data["resolved"] = resolved
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        return await self._dispatch_interaction(
            APPLICATION_COMMAND,
            data,
            user_id=user_id,
            guild_id=guild_id,
            channel_id=channel_id,
            locale=locale,
            attachment_size_limit=attachment_size_limit,
        )

    async def autocomplete(
        self,
        name: str,
        options: Mapping[str, Any],
        focused: str,
        *,
        user_id: int,
        guild_id: int | None = None,
        channel_id: int | None = None,
        locale: str = "en-US",
        path: Sequence[str] = (),
    ) -> FakeInteraction:
        """Dispatch an autocomplete interaction (type 4); ``focused`` names the option being typed.
        The bot's answer lands in ``inter.autocomplete_choices``."""
        parts = name.split()
        gid = (
            guild_id if guild_id is not None else (self.channels[channel_id].guild_id if channel_id else None)
        )
        cmd = self.command(parts[0], type=1, guild_id=gid)
        defs, chain = self._command_options(cmd, [*parts[1:], *path])
        by_name = {d["name"]: d for d in defs}
        resolved: dict[str, dict[str, Any]] = {}
        opts = [
            self._option_value(by_name[k], v, resolved, gid, channel_id, focused=k == focused)
            for k, v in options.items()
        ]
        for sub in reversed(chain):
            opts = [{"name": sub["name"], "type": sub["type"], "options": opts}]
        data: dict[str, Any] = {"id": cmd["id"], "name": cmd["name"], "type": 1, "options": opts}
        return await self._dispatch_interaction(
            AUTOCOMPLETE,
            data,
            user_id=user_id,
            guild_id=guild_id,
            channel_id=channel_id,
            locale=locale,
            attachment_size_limit=None,
        )

    async def message_command(
        self,
        name: str,
        target_message: FakeMessage | int,
        *,
        user_id: int,
        locale: str = "en-US",
        attachment_size_limit: int | None = None,
    ) -> FakeInteraction:
        """Dispatch a message context-menu command (type 2, ``data.type`` 3) on ``target_message``."""
        msg = target_message if isinstance(target_message, FakeMessage) else self.messages[target_message]
        cmd = self.command(name, type=3, guild_id=msg.guild_id)
        data: dict[str, Any] = {
            "id": cmd["id"],
            "name": cmd["name"],
            "type": 3,
            "target_id": str(msg.id),
            "resolved": {"messages": {str(msg.id): msg.to_payload()}},
        }
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        return await self._dispatch_interaction(
            APPLICATION_COMMAND,
            data,
            user_id=user_id,
            guild_id=msg.guild_id,
            channel_id=msg.channel_id,
            locale=locale,
            attachment_size_limit=attachment_size_limit,
        )

    async def user_command(
        self,
        name: str,
        target_user_id: int,
        *,
        user_id: int,
        guild_id: int | None = None,
        channel_id: int | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """Dispatch a user context-menu command (type 2, ``data.type`` 2)."""
        cmd = self.command(name, type=2, guild_id=guild_id)
        resolved: dict[str, Any] = {"users": {str(target_user_id): self.users[target_user_id].to_payload()}}
        if guild_id is not None and target_user_id in self.guilds[guild_id].members:
            member = self.guilds[guild_id].members[target_user_id]
            resolved["members"] = {str(target_user_id): self._member_payload(member, with_user=False)}
        data = {
            "id": cmd["id"],
            "name": cmd["name"],
            "type": 2,
            "target_id": str(target_user_id),
            "resolved": resolved,
        }
        return await self._dispatch_interaction(
            APPLICATION_COMMAND,
            data,
            user_id=user_id,
            guild_id=guild_id,
            channel_id=channel_id,
            locale=locale,
            attachment_size_limit=None,
        )

    def _message_ref(self, message: FakeMessage | int) -> FakeMessage:
        msg = message if isinstance(message, FakeMessage) else self.messages[message]
        current = self.messages.get(msg.id, msg)
        if current.deleted:
            raise LookupError(f"message {msg.id} was deleted")
        return current

    async def click(
        self,
        message: FakeMessage | int,
        custom_id: str,
        *,
        user_id: int,
        locale: str = "en-US",
        attachment_size_limit: int | None = None,
    ) -> FakeInteraction:
        """A user clicks the button ``custom_id`` on ``message`` (type 3, component_type 2).
        Raises if the message has no such enabled, clickable button."""
        msg = self._message_ref(message)
        comp = msg.component(custom_id)
        if comp is None:
            raise LookupError(f"message {msg.id} has no component {custom_id!r}; has {msg.custom_ids}")
        if comp.get("type") != 2 or comp.get("style") in (5, 6):
            raise ValueError(f"component {custom_id!r} is not a clickable button")
        if comp.get("disabled"):
            raise ValueError(f"button {custom_id!r} is disabled")
        return await self._component_interaction(
            msg, {"custom_id": custom_id, "component_type": 2}, user_id, locale, attachment_size_limit
        )

    async def select(
        self,
        message: FakeMessage | int,
        custom_id: str,
        values: Sequence[str],
        *,
        user_id: int,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """A user picks ``values`` in the select menu ``custom_id`` on ``message``."""
        msg = self._message_ref(message)
        comp = msg.component(custom_id)
        if comp is None or comp.get("type") not in _SELECT_TYPES:
            raise LookupError(f"message {msg.id} has no select {custom_id!r}")
        if comp.get("type") == 3:
            allowed = {o["value"] for o in comp.get("options", [])}
            bad = [v for v in values if v not in allowed]
            if bad:
                raise ValueError(f"values {bad} are not options of {custom_id!r}")
        data = {"custom_id": custom_id, "component_type": comp["type"], "values": list(values)}
        return await self._component_interaction(msg, data, user_id, locale, None)

    async def _component_interaction(
        self,
        msg: FakeMessage,
        data: dict[str, Any],
        user_id: int,
        locale: str,
        attachment_size_limit: int | None,
    ) -> FakeInteraction:
        return await self._dispatch_interaction(
            MESSAGE_COMPONENT,
            data,
            user_id=user_id,
            guild_id=msg.guild_id,
            channel_id=msg.channel_id,
            locale=locale,
            attachment_size_limit=attachment_size_limit,
            message=msg,
        )

    async def submit_modal(
        self,
        custom_id: str,
        values: Mapping[str, str | Sequence[str]],
        *,
        user_id: int | None = None,
        locale: str | None = None,
        attachment_size_limit: int | None = None,
    ) -> FakeInteraction:
        """Submit the modal ``custom_id`` that the bot opened most recently (type 5).

        ``values`` maps text-input custom_ids to text (select custom_ids to lists). The submit mirrors
        the modal's layout (legacy action rows or label components), enforces required/min/max like the
        client, and comes from the same user/channel as the interaction that opened the modal.
        """
        source = next(
            (i for i in reversed(self.interactions) if i.modal and i.modal.get("custom_id") == custom_id),
            None,
        )
        if source is None:
            raise LookupError(f"the bot never opened a modal with custom_id {custom_id!r}")
        assert source.modal is not None
        remaining = dict(values)
        ids = itertools.count(1)

        def submit_component(comp: Mapping[str, Any]) -> dict[str, Any]:
            ctype = comp.get("type")
            cid = comp.get("custom_id")
            out: dict[str, Any] = {"type": ctype, "id": comp.get("id") or next(ids)}
            if ctype == 4:
                value = remaining.pop(cid, comp.get("value") or "")
                if not isinstance(value, str):
                    raise TypeError(f"text input {cid!r} takes a string")
                if comp.get("required", True) and not value:
                    raise ValueError(f"text input {cid!r} is required")
                if value and not int(comp.get("min_length") or 0) <= len(value) <= int(
                    comp.get("max_length") or 4000
                ):
                    raise ValueError(f"text input {cid!r}: length {len(value)} outside min/max")
                out.update(custom_id=cid, value=value)
            elif ctype in _SELECT_TYPES:
                chosen = remaining.pop(cid, [])
                out.update(custom_id=cid, values=[chosen] if isinstance(chosen, str) else list(chosen))
            elif cid is not None:
                out["custom_id"] = cid
            return out

        components: list[dict[str, Any]] = []
        for comp in source.modal.get("components", []):
            if comp.get("type") == 1:
                row_id = comp.get("id") or next(ids)
                components.append(
                    {
                        "type": 1,
                        "id": row_id,
                        "components": [submit_component(c) for c in comp.get("components", [])],
                    }
                )
            elif comp.get("type") == 18:
                label_id = comp.get("id") or next(ids)
                components.append(
                    {"type": 18, "id": label_id, "component": submit_component(comp["component"])}
                )
            else:
                components.append(submit_component(comp))
        if remaining:
            raise LookupError(f"modal {custom_id!r} has no inputs {list(remaining)}")
        data = {"custom_id": custom_id, "components": components}
        src_payload = source.payload
        return await self._dispatch_interaction(
            MODAL_SUBMIT,
            data,
            user_id=user_id if user_id is not None else source.user_id,
            guild_id=source.guild_id,
            channel_id=source.channel_id,
            locale=locale or src_payload.get("locale", "en-US"),
            attachment_size_limit=attachment_size_limit,
            message=source.source_message,
            parent=source,
        )

    # ------------------------------------------------------------------------------- gateway

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

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: the client closes and resumes."""
        session = self._session
        if session is None or session.conn is None:
            raise RuntimeError("the gateway is not connected")
        await self._send_frame(session.conn, {"op": 7, "d": None, "s": None, "t": None})

    async def invalidate_session(self, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION (d = ``resumable``)."""
        session = self._session
        if session is None or session.conn is None:
            raise RuntimeError("the gateway is not connected")
        if not resumable:
            session.resumable = False
        await self._send_frame(session.conn, {"op": 9, "d": resumable, "s": None, "t": None})

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
