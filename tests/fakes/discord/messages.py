"""Channel messages: the bot's REST routes to list/create/edit/delete them, how bodies (content,
embeds, components, files) are applied to a stored message, mentions, and MESSAGE_* gateway events.

Interaction responses reuse :meth:`MessagesMixin._apply_body` (see :mod:`.interactions`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .base import FakeDiscordBase
from .errors import ApiError, form_error
from .models import (
    DEFAULT_ATTACHMENT_SIZE_LIMIT,
    FakeAttachment,
    FakeChannel,
    FakeMessage,
    Intents,
    MessageFlags,
    Perm,
)
from .records import RecordedFile
from .rest import Ctx
from .util import iso, sniff_content_type
from .validation import validate_message_body


def _checked_nonce(body: Mapping[str, Any]) -> str | int | None:
    nonce = body.get("nonce")
    if nonce is not None and (isinstance(nonce, bool) or not isinstance(nonce, str | int)):
        raise form_error([("nonce", "BASE_TYPE_STRING", "Must be a string or an integer.")])
    if nonce is not None and len(str(nonce)) > 25:
        raise form_error([("nonce", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")])
    return nonce


def _flags_after(msg: FakeMessage, body: Mapping[str, Any], *, creating: bool, ephemeral: bool) -> int:
    """The message flags after a create/edit: what a bot may set, what an edit may change."""
    new_flags = msg.flags
    if body.get("flags") is not None:
        requested = int(body["flags"])
        if creating:
            new_flags = requested & (
                MessageFlags.SUPPRESS_EMBEDS
                | MessageFlags.EPHEMERAL
                | MessageFlags.SUPPRESS_NOTIFICATIONS
                | MessageFlags.IS_COMPONENTS_V2
            )
        else:
            editable = MessageFlags.SUPPRESS_EMBEDS | MessageFlags.IS_COMPONENTS_V2
            new_flags = (msg.flags & ~editable) | (requested & editable)
            new_flags |= msg.flags & MessageFlags.IS_COMPONENTS_V2  # cannot be switched off
    if ephemeral:
        new_flags |= MessageFlags.EPHEMERAL
    return new_flags


def _has_more_than_embeds(body: Mapping[str, Any], files: list[RecordedFile]) -> bool:
    """Whether a create body without its embeds would still be a message."""
    return bool(
        body.get("content") or files or body.get("components") or body.get("sticker_ids") or body.get("poll")
    )


class MessagesMixin(FakeDiscordBase):
    """Channel message routes and message bookkeeping (part of :class:`~.fake.FakeDiscord`)."""

    def _init_messages(self, nonce_window: float) -> None:
        #: Seconds during which ``enforce_nonce`` returns the earlier message (Discord: "a few minutes").
        self.nonce_window = nonce_window
        self._nonces: dict[tuple[int, int, Any], tuple[int, float]] = {}

    # ------------------------------------------------------------------------------- REST: messages

    def _channel_message_or_404(self, channel: FakeChannel, message_id: int) -> FakeMessage:
        msg = self.messages.get(message_id)
        if msg is None or msg.deleted or msg.channel_id != channel.id or msg.ephemeral:
            raise ApiError(404, 10008, "Unknown Message")
        return msg

    async def _r_list_messages(self, ctx: Ctx) -> web.Response:
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
        return self._json([m.to_payload() for m in reversed(msgs)])

    async def _r_get_message(self, ctx: Ctx) -> web.Response:
        channel = self._channel_or_404(ctx.gid("channel_id"))
        self._bot_channel_perms(channel, Perm.READ_MESSAGE_HISTORY)
        msg = self._channel_message_or_404(channel, ctx.gid("message_id"))
        return self._json(msg.to_payload())

    def _upload_limit_for_channel(self, channel: FakeChannel) -> int:
        if channel.guild_id is None:
            return DEFAULT_ATTACHMENT_SIZE_LIMIT
        return self.guilds[channel.guild_id].attachment_size_limit

    async def _r_create_message(self, ctx: Ctx) -> web.Response:
        channel = self._channel_or_404(ctx.gid("channel_id"))
        body = ctx.json or {}
        if not isinstance(body, dict):
            raise form_error([("", "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")])
        body = self._check_create_permissions(channel, body, ctx.files)
        if body.get("flags", 0) & MessageFlags.EPHEMERAL:
            raise form_error(
                [("flags", "MESSAGE_FLAGS_INVALID", "Ephemeral messages require an interaction")]
            )
        nonce = _checked_nonce(body)
        nonce_key = (channel.id, self.bot_id, nonce)
        if nonce is not None and body.get("enforce_nonce"):
            earlier = self._message_with_nonce(nonce_key)
            if earlier is not None:
                return self._json(earlier.to_payload())
        msg = FakeMessage(
            id=self._next_id(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author_id=self.bot_id,
            fake=self,
        )
        body = self._apply_reference(msg, body)
        self._apply_body(
            msg, body, ctx.files, size_limit=self._upload_limit_for_channel(channel), creating=True
        )
        msg.nonce = nonce
        msg.tts = bool(body.get("tts", False))
        if nonce is not None:
            self._nonces[nonce_key] = (msg.id, self.now())
        self._store_message(msg, public=True)
        await self._message_event("MESSAGE_CREATE", msg)
        return self._json(msg.to_payload())

    def _check_create_permissions(
        self, channel: FakeChannel, body: dict[str, Any], files: list[RecordedFile]
    ) -> dict[str, Any]:
        """Raise what Discord answers when the bot may not post this; returns the body Discord keeps."""
        if channel.type == 1:
            if not self.users[channel.recipient_ids[0]].dms_open:
                raise ApiError(403, 50007, "Cannot send messages to this user")
            return body
        needed = [Perm.SEND_MESSAGES, Perm.ATTACH_FILES] if files else [Perm.SEND_MESSAGES]
        perms = self._bot_channel_perms(channel, *needed)
        if body.get("embeds") and not perms & Perm.EMBED_LINKS:
            # Discord: without Embed Links the embeds are silently dropped; only a message that
            # would be embed-only is refused.
            body = {k: v for k, v in body.items() if k != "embeds"}
            if not _has_more_than_embeds(body, files):
                raise ApiError(403, 50013, "Missing Permissions")
        if body.get("message_reference") and not perms & Perm.READ_MESSAGE_HISTORY:
            raise ApiError(400, 160002, "Cannot reply without permission to read message history")
        return body

    def _message_with_nonce(self, key: tuple[int, int, Any]) -> FakeMessage | None:
        """Discord: a message by the same author with the same nonce in the past few minutes is
        returned instead of creating a new one (the window is ``nonce_window`` seconds here)."""
        seen = self._nonces.get(key)
        if seen is None or self.now() - seen[1] >= self.nonce_window:
            return None
        earlier = self.messages.get(seen[0])
        return earlier if earlier is not None and not earlier.deleted else None

    def _apply_reference(self, msg: FakeMessage, body: dict[str, Any]) -> dict[str, Any]:
        """Make ``msg`` a reply per ``message_reference``; returns the body without a dropped one."""
        ref = body.get("message_reference")
        if not ref:
            return body
        target = self.messages.get(int(ref.get("message_id", 0) or 0))
        if target is None or target.deleted or target.ephemeral:
            if ref.get("fail_if_not_exists", True):
                raise form_error(
                    [("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")]
                )
            return {k: v for k, v in body.items() if k != "message_reference"}
        msg.type = 19
        msg.message_reference = {
            "type": 0,
            "message_id": str(target.id),
            "channel_id": str(target.channel_id),
            **({"guild_id": str(target.guild_id)} if target.guild_id else {}),
        }
        return body

    async def _r_edit_message(self, ctx: Ctx) -> web.Response:
        channel = self._channel_or_404(ctx.gid("channel_id"))
        msg = self._channel_message_or_404(channel, ctx.gid("message_id"))
        if msg.author_id != self.bot_id:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        body = ctx.json or {}
        self._apply_body(
            msg, body, ctx.files, size_limit=self._upload_limit_for_channel(channel), creating=False
        )
        await self._message_event("MESSAGE_UPDATE", msg)
        return self._json(msg.to_payload())

    async def _r_delete_message(self, ctx: Ctx) -> web.Response:
        channel = self._channel_or_404(ctx.gid("channel_id"))
        msg = self._channel_message_or_404(channel, ctx.gid("message_id"))
        if msg.author_id != self.bot_id and channel.guild_id is not None:
            self._bot_channel_perms(channel, Perm.MANAGE_MESSAGES)
        await self._delete_message(msg)
        return self._no_content()

    # ------------------------------------------------------------------------------- bookkeeping

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
        if msg.guild_id:
            data["guild_id"] = str(msg.guild_id)
            member = self.guilds[msg.guild_id].members.get(msg.author_id)
            if member is not None and msg.webhook_id is None:
                data["member"] = self._member_payload(member, with_user=False)
        await self._dispatch_message(event, msg, data)

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
        """Validate a create/edit body and apply it to ``msg`` (raises ApiError)."""
        new_flags = _flags_after(msg, body, creating=creating, ephemeral=ephemeral)
        errs = validate_message_body(body, new_flags)
        if errs:
            raise form_error(errs)
        if any(f.size > size_limit for f in files):
            raise ApiError(413, 40005, "Request entity too large")
        final = self._attachments_after(msg, body, files, ephemeral=bool(new_flags & MessageFlags.EPHEMERAL))

        content = body["content"] if "content" in body else (None if creating else msg.content)
        embeds = body["embeds"] if "embeds" in body else (None if creating else msg.embeds)
        components = body["components"] if "components" in body else (None if creating else msg.components)
        has_anything = (
            bool(content) or bool(embeds) or bool(final) or bool(components) or bool(body.get("sticker_ids"))
        )
        if not has_anything and not body.get("poll"):
            raise ApiError(400, 50006, "Cannot send an empty message")
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
            msg.edited_timestamp = iso()

    def _attachments_after(
        self, msg: FakeMessage, body: Mapping[str, Any], files: list[RecordedFile], *, ephemeral: bool
    ) -> list[FakeAttachment]:
        """Keep the listed existing attachments, add new files (referenced by index, or unreferenced)."""
        new_files: dict[int, RecordedFile] = {}
        for idx, f in enumerate(files):
            m = re.fullmatch(r"files\[(\d+)\]", f.field) or re.fullmatch(r"file(\d*)", f.field)
            key = int(m.group(1)) if m and m.group(1) else idx
            new_files[key] = f
        existing = {a.id: a for a in msg.attachments}
        final: list[FakeAttachment] = []
        used: set[int] = set()
        if body.get("attachments") is None:
            final = list(msg.attachments)
        for j, item in enumerate(body.get("attachments") or []):
            aid = int(item.get("id", -1))
            if aid in existing:
                final.append(existing[aid])
            elif aid in new_files:
                used.add(aid)
                final.append(self._upload(msg, new_files[aid], item.get("description"), ephemeral))
            else:
                raise form_error([(f"attachments.{j}.id", "ATTACHMENT_NOT_FOUND", "Unknown attachment")])
        final += [
            self._upload(msg, new_files[k], None, ephemeral) for k in sorted(new_files) if k not in used
        ]
        if len(final) > 10:
            raise form_error([("attachments", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")])
        return final

    def _upload(
        self, msg: FakeMessage, f: RecordedFile, description: str | None, ephemeral: bool
    ) -> FakeAttachment:
        ctype = f.content_type
        if not ctype or ctype == "application/octet-stream":
            ctype = sniff_content_type(f.data, f.filename)
        return self._store_attachment(
            f.data, f.filename, ctype, channel_id=msg.channel_id, description=description, ephemeral=ephemeral
        )
