"""The fake's data model: flags, permission bits, and the objects tests create and inspect.

Every model renders Discord's JSON with ``to_payload()``; objects that need the fake (to sign CDN URLs or
look up users) hold a reference to it in ``fake``.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .util import iso, sanitize_filename, walk_components

if TYPE_CHECKING:
    from .base import FakeDiscordBase
    from .records import CallbackRecord, EditRecord

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
ALLOWED_CALLBACKS = {
    APPLICATION_COMMAND: {CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_MODAL, 12},
    MESSAGE_COMPONENT: {CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_DEFERRED_UPDATE, CB_UPDATE, CB_MODAL, 12},
    AUTOCOMPLETE: {CB_AUTOCOMPLETE},
    MODAL_SUBMIT: {CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_DEFERRED_UPDATE, CB_UPDATE, 12},
}
SELECT_TYPES = {3, 5, 6, 7, 8}


@dataclass(eq=False)
class FakeUser:
    """A Discord user."""

    id: int
    name: str
    bot: bool = False
    global_name: str | None = None
    dms_open: bool = True  #: False → DMs to this user answer 403 50007
    nitro_upload_limit: int | None = None  #: bytes their Nitro lets them upload (None: no Nitro)

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

    def to_payload(self, fake: FakeDiscordBase | None = None) -> dict[str, Any]:
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
                    "archive_timestamp": iso(),
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
    joined_at: str = field(default_factory=iso)
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
    joined_at: str = field(default_factory=iso)

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
    fake: FakeDiscordBase | None = field(default=None, repr=False)

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
    timestamp: str = field(default_factory=iso)
    edited_timestamp: str | None = None
    deleted: bool = False
    fake: FakeDiscordBase | None = field(default=None, repr=False)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & MessageFlags.EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & MessageFlags.LOADING)

    def component(self, custom_id: str) -> dict[str, Any] | None:
        """The component with this custom_id, searched through rows, containers and sections."""
        for comp in walk_components(self.components):
            if comp.get("custom_id") == custom_id:
                return dict(comp)
        return None

    @property
    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in walk_components(self.components) if c.get("custom_id")]

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
                att = by_name.get(sanitize_filename(media["url"][len("attachment://") :]))
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
        fake: FakeDiscordBase,
        payload: dict[str, Any],
        *,
        dispatched_at: float,
        expires_at: float,
        source_message: FakeMessage | None = None,
    ) -> None:
        self.fake = fake
        self.payload = payload
        self.id = int(payload["id"])
        self.token: str = payload["token"]
        self.type: int = payload["type"]
        self.dispatched_at = dispatched_at
        self.expires_at = expires_at
        self.source_message = source_message
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
        assert user is not None, "an interaction carries member.user (guild) or user (DM)"
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
    def callback_type(self) -> int | None:
        return self.callbacks[0].type if self.callbacks else None

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
