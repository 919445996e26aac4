"""The fake's world: users, guilds, channels, roles, members, attachments and user-posted messages,
permissions computed like Discord, and the payloads that describe them.

Sync helpers that change what the bot can see (``add_guild``, ``deny`` …) announce it over the gateway
in the background; ``await fake.flush()`` waits until those events were sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from .base import FakeDiscordBase
from .models import (
    DISCORD_EPOCH_MS,
    PREMIUM_TIER_UPLOAD_LIMITS,
    FakeAttachment,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeMessage,
    FakeRole,
    FakeUser,
    Intents,
    Perm,
)
from .util import image_size, sanitize_filename, sniff_content_type


class WorldMixin(FakeDiscordBase):
    """State and helpers for the objects tests create (part of :class:`~.fake.FakeDiscord`)."""

    def _init_world(self, bot_name: str, clock: Callable[[], float] | None) -> None:
        self._clock = clock or time.time
        self._clock_offset = 0.0
        self._last_id = 0
        self._changed = asyncio.Event()
        self._pending_announcements: set[asyncio.Task[Any]] = set()
        self.users: dict[int, FakeUser] = {}
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.messages: dict[int, FakeMessage] = {}
        self.attachments: dict[int, FakeAttachment] = {}
        self._channel_message_ids: dict[int, list[int]] = {}
        self._dm_channels: dict[int, int] = {}
        self.bot_user = self.add_user(bot_name, bot=True)
        self.app_owner = self.add_user("app-owner")
        self._application_id = self._next_id()
        self._upload_channel_id = self._next_id()

    @property
    def application_id(self) -> int:
        return self._application_id

    @property
    def bot_id(self) -> int:
        return self.bot_user.id

    # ------------------------------------------------------------------------------- time

    def now(self) -> float:
        """The fake's clock (epoch seconds): ``clock()`` given to the constructor (``time.time`` by
        default) plus :meth:`advance_clock` jumps. Snowflakes, CDN signatures, the ``enforce_nonce``
        window, rate-limit windows and IDENTIFY concurrency windows are measured on it."""
        return self._clock() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Jump the fake's clock forward (past a nonce window, a rate-limit window …)."""
        self._clock_offset += seconds
        self._bump()

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

    # ------------------------------------------------------------------------------- ids & objects

    def _next_id(self, *, shard: tuple[int, int] | None = None) -> int:
        """A new snowflake, greater than every earlier one. With ``shard=(shard_id, shard_count)`` its
        timestamp part is chosen so that ``(id >> 22) % shard_count == shard_id`` (a few ms ahead)."""
        ms = int(self.now() * 1000) - DISCORD_EPOCH_MS
        if shard is None:
            new = (ms << 22) | (1 << 17)
            if new <= self._last_id:
                new = self._last_id + 1
        else:
            shard_id, shard_count = shard
            ms = max(ms, (self._last_id >> 22) + 1)
            ms += (shard_id - ms) % shard_count
            new = (ms << 22) | (1 << 17)
        self._last_id = new
        return new

    def add_user(
        self,
        name: str,
        *,
        bot: bool = False,
        global_name: str | None = None,
        nitro_upload_limit: int | None = None,
    ) -> FakeUser:
        """Create a user. ``nitro_upload_limit`` (bytes): the upload limit their Nitro gives them
        (None: no Nitro); interactions they start carry ``attachment_size_limit`` =
        max(this, the guild's boost-tier limit)."""
        user = FakeUser(
            id=self._next_id(),
            name=name,
            bot=bot,
            global_name=global_name,
            nitro_upload_limit=nitro_upload_limit,
        )
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
        shard: tuple[int, int] | None = None,
    ) -> FakeGuild:
        """Create a guild the bot is in: @everyone role, the bot's managed role, the bot's member and
        text channels named by ``channels``. If the gateway is connected, GUILD_CREATE is sent at once
        (schedule it with ``await fake.flush()`` or any awaited fake call).

        Guild ids are snowflakes whose timestamps make ``(id >> 22) % n`` go round-robin over
        ``n`` shards for every n dividing 60 (the k-th guild lands on shard ``k % n``);
        ``shard=(shard_id, shard_count)`` picks the shard explicitly. ``premium_tier`` (0–3) sets the
        boost tier, which sets the guild's upload limit (see :meth:`set_premium_tier`)."""
        if shard is None:
            shard = (len(self.guilds) % 60, 60)
        elif not 0 <= shard[0] < shard[1]:
            raise ValueError(f"shard hint {shard} is not (shard_id < shard_count)")
        if owner_id is None:
            owner_id = self.add_user(f"{name}-owner").id
        guild = FakeGuild(
            id=self._next_id(shard=shard),
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
        filename = sanitize_filename(filename)
        content_type = content_type or sniff_content_type(data, filename)
        width = height = None
        if content_type and content_type.startswith("image/"):
            dims = image_size(data)
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

    def _attachment_ref(self, ref: int | str | Mapping[str, Any] | FakeAttachment) -> FakeAttachment:
        """A stored attachment by id, payload or object."""
        if isinstance(ref, FakeAttachment):
            return ref
        attachment_id = ref["id"] if isinstance(ref, Mapping) else ref
        return self.attachments[int(attachment_id)]

    def user(self, user_id: int) -> FakeUser:
        return self.users[user_id]

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
            attachments=[self._attachment_ref(a) for a in attachments],
            fake=self,
        )
        self._compute_mentions(msg, None)
        self._store_message(msg, public=True)
        self._announce(self._message_event("MESSAGE_CREATE", msg))
        self._bump()
        return msg

    def set_premium_tier(self, guild_id: int, tier: int) -> None:
        """Set a guild's boost tier (0–3): its upload limit becomes 10 MiB (0–1), 50 MiB (2) or
        100 MiB (3) for the bot's channel messages and the guild part of interactions'
        ``attachment_size_limit``. GUILD_UPDATE is sent to the bot (see :meth:`flush`)."""
        if tier not in PREMIUM_TIER_UPLOAD_LIMITS:
            raise ValueError(f"premium tier must be one of {sorted(PREMIUM_TIER_UPLOAD_LIMITS)}")
        guild = self.guilds[guild_id]
        guild.premium_tier = tier
        self._announce(
            self._dispatch_soft("GUILD_UPDATE", self._guild_object_payload(guild), intent=Intents.GUILDS)
        )
        self._bump()

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
        self._deny_bot(channel_id, self._perm_bits(perms))

    @staticmethod
    def _perm_bits(perms: Sequence[str | int]) -> int:
        bits = 0
        for p in perms:
            bits |= p if isinstance(p, int) else Perm.NAMES[p]
        return bits

    def _deny_bot(self, channel_id: int, bits: int) -> None:
        channel = self.channels[channel_id]
        ow = next((o for o in channel.permission_overwrites if int(o["id"]) == self.bot_id), None)
        if ow is None:
            ow = {"id": str(self.bot_id), "type": 1, "allow": "0", "deny": "0"}
            channel.permission_overwrites.append(ow)
        ow["deny"] = str(int(ow["deny"]) | bits)
        if channel.guild_id is not None:
            self._announce(
                self._dispatch_soft("CHANNEL_UPDATE", channel.to_payload(self), intent=Intents.GUILDS)
            )
        self._bump()

    def _announce(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a gateway announcement from sync model helpers: scheduled if a loop runs."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coro.close()
            return
        task = loop.create_task(coro)
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

    def _guild_object_payload(self, guild: FakeGuild) -> dict[str, Any]:
        """The guild object of GET /guilds/{id} and GUILD_UPDATE (no GUILD_CREATE extras)."""
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
        return data

    def _interaction_channel_payload(self, channel: FakeChannel, user_id: int) -> dict[str, Any]:
        data = channel.to_payload(self)
        data["permissions"] = str(self._member_permissions(channel.id, user_id))
        return data
