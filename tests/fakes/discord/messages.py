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


def _has_more_than_embeds(body: Mapping[str, Any], files: list[RecordedFile]) -> bool:
    """Whether a create body without its embeds would still be a message."""
    return bool(
        body.get("content") or files or body.get("components") or body.get("sticker_ids") or body.get("poll")
    )


class MessagesMixin:
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
        if channel.type == 1:
            recipient = self.users[channel.recipient_ids[0]]
            if not recipient.dms_open:
                raise ApiError(403, 50007, "Cannot send messages to this user")
        else:
            needed = [Perm.SEND_MESSAGES]
            if ctx.files:
                needed.append(Perm.ATTACH_FILES)
            perms = self._bot_channel_perms(channel, *needed)
            if body.get("embeds") and not perms & Perm.EMBED_LINKS:
                # Discord: without Embed Links the embeds are silently dropped; only a message that
                # would be embed-only is refused.
                body = {k: v for k, v in body.items() if k != "embeds"}
                if not _has_more_than_embeds(body, ctx.files):
                    raise ApiError(403, 50013, "Missing Permissions")
            if body.get("message_reference") and not perms & Perm.READ_MESSAGE_HISTORY:
                raise ApiError(400, 160002, "Cannot reply without permission to read message history")
        if body.get("flags", 0) & MessageFlags.EPHEMERAL:
            raise form_error(
                [("flags", "MESSAGE_FLAGS_INVALID", "Ephemeral messages require an interaction")]
            )
        nonce = body.get("nonce")
        if nonce is not None and (isinstance(nonce, bool) or not isinstance(nonce, str | int)):
            raise form_error([("nonce", "BASE_TYPE_STRING", "Must be a string or an integer.")])
        if nonce is not None and len(str(nonce)) > 25:
            raise form_error([("nonce", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")])
        nonce_key = (channel.id, self.bot_id, nonce)
        if nonce is not None and body.get("enforce_nonce"):
            # Discord: a message by the same author with the same nonce in the past few minutes is
            # returned instead of creating a new one (the window is ``nonce_window`` seconds here).
            seen = self._nonces.get(nonce_key)
            if seen is not None and self.now() - seen[1] < self.nonce_window:
                existing = self.messages.get(seen[0])
                if existing is not None and not existing.deleted:
                    return self._json(existing.to_payload())
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
                    raise form_error(
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
        msg.nonce = nonce
        msg.tts = bool(body.get("tts", False))
        if nonce is not None:
            self._nonces[nonce_key] = (msg.id, self.now())
        self._store_message(msg, public=True)
        await self._message_event("MESSAGE_CREATE", msg)
        return self._json(msg.to_payload())

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
        errs = validate_message_body(body, new_flags)
        if errs:
            raise form_error(errs)
        for f in files:
            if f.size > size_limit:
                raise ApiError(413, 40005, "Request entity too large")

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
                    raise form_error([(f"attachments.{j}.id", "ATTACHMENT_NOT_FOUND", "Unknown attachment")])
        else:
            final = list(msg.attachments)
        for key in sorted(new_files):
            if key not in used:
                final.append(self._upload(msg, new_files[key], None, is_ephemeral))
        if len(final) > 10:
            raise form_error([("attachments", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")])

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

    def _upload(
        self, msg: FakeMessage, f: RecordedFile, description: str | None, ephemeral: bool
    ) -> FakeAttachment:
        ctype = f.content_type
        if not ctype or ctype == "application/octet-stream":
            ctype = sniff_content_type(f.data, f.filename)
        return self._store_attachment(
            f.data, f.filename, ctype, channel_id=msg.channel_id, description=description, ephemeral=ephemeral
        )
