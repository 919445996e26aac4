"""Interaction responses: the callback route (``POST /interactions/{id}/{token}/callback``) and the
interaction webhook routes (``/webhooks/{app}/{token}`` follow-ups and ``messages/@original``).

Tokens expire ``interaction_token_ttl`` seconds after dispatch; the first callback must arrive within
``ack_deadline`` seconds. What happened is recorded on the :class:`~.models.FakeInteraction`.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from aiohttp import web

from .base import FakeDiscordBase
from .errors import ApiError, form_error
from .models import (
    ALLOWED_CALLBACKS,
    APPLICATION_COMMAND,
    CB_AUTOCOMPLETE,
    CB_DEFERRED_MESSAGE,
    CB_DEFERRED_UPDATE,
    CB_MESSAGE,
    CB_MODAL,
    CB_UPDATE,
    DEFAULT_ATTACHMENT_SIZE_LIMIT,
    MESSAGE_COMPONENT,
    FakeInteraction,
    FakeMessage,
    MessageFlags,
)
from .records import CallbackRecord, EditRecord, RecordedFile
from .rest import Ctx
from .validation import validate_modal


class InteractionsMixin(FakeDiscordBase):
    """Interaction callback and webhook routes (part of :class:`~.fake.FakeDiscord`)."""

    def _init_interactions(self) -> None:
        self.interactions: list[FakeInteraction] = []
        self._interactions_by_id: dict[int, FakeInteraction] = {}
        self._interactions_by_token: dict[str, FakeInteraction] = {}

    def _interaction_or_error(self, ctx: Ctx, *, webhook: bool) -> FakeInteraction:
        if webhook:
            if ctx.gid("app") != self.application_id:
                raise ApiError(404, 10015, "Unknown Webhook")
            inter = self._interactions_by_token.get(ctx.groups["token"])
            if inter is None or inter.expired:
                raise ApiError(401, 50027, "Invalid Webhook Token")
            return inter
        inter = self._interactions_by_id.get(ctx.gid("interaction_id"))
        if inter is None or inter.token != ctx.groups["token"] or inter.expired:
            raise ApiError(404, 10062, "Unknown interaction")
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

    async def _r_callback(self, ctx: Ctx) -> web.Response:
        inter = self._interaction_or_error(ctx, webhook=False)
        now = asyncio.get_running_loop().time()
        if inter.callbacks:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        if self.ack_deadline is not None and now - inter.dispatched_at > self.ack_deadline:
            raise ApiError(404, 10062, "Unknown interaction")
        body = ctx.json or {}
        ctype = body.get("type")
        data = body.get("data")
        if ctype not in ALLOWED_CALLBACKS.get(inter.type, set()):
            raise form_error(
                [("type", "INTERACTION_RESPONSE_TYPE_INVALID", "Invalid interaction response type")]
            )
        if ctype in (CB_DEFERRED_UPDATE, CB_UPDATE) and inter.source_message is None:
            raise form_error([("type", "INTERACTION_RESPONSE_TYPE_INVALID", "No message to update")])
        msg, event = self._apply_callback(inter, ctype, data or {}, ctx.files)
        inter.callbacks.append(
            CallbackRecord(
                type=ctype,
                data=copy.deepcopy(data),
                time=now,
                delay=now - inter.dispatched_at,
                files=list(ctx.files),
            )
        )
        resource: dict[str, Any] = {"type": ctype}
        info: dict[str, Any] = {"id": str(inter.id), "type": inter.type}
        if msg is not None:
            if ctype == CB_UPDATE:
                edit = EditRecord(
                    now,
                    "callback",
                    copy.deepcopy(data or {}),
                    [f.filename for f in ctx.files],
                    msg.snapshot(),
                )
                inter.original_edits.append(edit)
            info.update(
                response_message_id=str(msg.id),
                response_message_loading=msg.loading,
                response_message_ephemeral=msg.ephemeral,
            )
            resource["message"] = msg.to_payload()
            if event:
                await self._message_event(event, msg)
        self._bump()
        if ctx.record.query.get("with_response", "").lower() not in ("1", "true"):
            return self._no_content()
        return self._json({"interaction": info, "resource": resource})

    def _apply_callback(
        self, inter: FakeInteraction, ctype: int, data: dict[str, Any], files: list[RecordedFile]
    ) -> tuple[FakeMessage | None, str | None]:
        """Do what a callback of type ``ctype`` does; returns the message it shows and its event."""
        limit = self._interaction_size_limit(inter)
        if ctype in (CB_MESSAGE, CB_DEFERRED_MESSAGE):
            msg = self._new_interaction_message(inter, followup=False)
            if ctype == CB_MESSAGE:
                self._apply_body(msg, data, files, size_limit=limit, creating=True)
            else:
                msg.flags = MessageFlags.LOADING | (int(data.get("flags") or 0) & MessageFlags.EPHEMERAL)
            self._store_message(msg, public=not msg.ephemeral)
            inter.original = msg
            return msg, "MESSAGE_CREATE"
        if ctype in (CB_DEFERRED_UPDATE, CB_UPDATE):
            source = inter.source_message
            assert source is not None
            inter.original = source
            if ctype == CB_DEFERRED_UPDATE:
                return source, None
            self._apply_body(source, data, files, size_limit=limit, creating=False)
            return source, "MESSAGE_UPDATE"
        if ctype == CB_AUTOCOMPLETE:
            choices = data.get("choices") or []
            if len(choices) > 25:
                raise form_error([("data.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")])
            inter.autocomplete_choices = choices
        elif ctype == CB_MODAL:
            errs = validate_modal(data)
            if errs:
                raise form_error(errs)
            inter.modal = copy.deepcopy(data)
        return None, None

    async def _r_followup(self, ctx: Ctx) -> web.StreamResponse:
        inter = self._interaction_or_error(ctx, webhook=True)
        if not inter.callbacks:
            raise ApiError(404, 10015, "Unknown Webhook")
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
            return self._json(msg.to_payload())
        return self._no_content()

    def _webhook_message(self, inter: FakeInteraction, message_id: str) -> FakeMessage:
        if message_id == "@original":
            msg = inter.original
            if msg is None or inter.original_deleted or msg.deleted:
                raise ApiError(404, 10008, "Unknown Message")
            return msg
        mid = int(message_id)
        for msg in [inter.original, *inter.followups]:
            if msg is not None and msg.id == mid and not msg.deleted:
                return msg
        raise ApiError(404, 10008, "Unknown Message")

    async def _r_webhook_get(self, ctx: Ctx) -> web.Response:
        inter = self._interaction_or_error(ctx, webhook=True)
        msg = self._webhook_message(inter, ctx.groups["message_id"])
        return self._json(msg.to_payload())

    async def _r_webhook_edit(self, ctx: Ctx) -> web.Response:
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
        return self._json(msg.to_payload())

    async def _r_webhook_delete(self, ctx: Ctx) -> web.Response:
        inter = self._interaction_or_error(ctx, webhook=True)
        msg = self._webhook_message(inter, ctx.groups["message_id"])
        if msg is inter.original:
            inter.original_deleted = True
        await self._delete_message(msg)
        return self._no_content()
