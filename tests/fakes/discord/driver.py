"""The test driver: act as Discord users — invoke slash and context-menu commands, autocomplete, click
buttons, pick select options, submit modals. Each call dispatches INTERACTION_CREATE to the bot and returns
the :class:`~.models.FakeInteraction` that records what the bot answered.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from .base import FakeDiscordBase
from .models import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    DEFAULT_ATTACHMENT_SIZE_LIMIT,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    SELECT_TYPES,
    FakeAttachment,
    FakeChannel,
    FakeGuild,
    FakeInteraction,
    FakeMessage,
    FakeUser,
)


def _snowflake(v: Any) -> int:
    """An id given as a number, a string, a payload or an object with ``id``."""
    if isinstance(v, Mapping):
        return int(v["id"])
    return int(getattr(v, "id", v))


def _scalar_option(odef: Mapping[str, Any], value: Any) -> Any:
    """A string (3), integer (4), boolean (5) or number (10) option value, checked like the client."""
    name, otype = odef["name"], odef["type"]
    if otype == 3:
        if not isinstance(value, str):
            raise TypeError(f"option {name!r} is a string option, got {type(value).__name__}")
        if len(value) > int(odef.get("max_length", 6000)) or len(value) < int(odef.get("min_length", 0)):
            raise ValueError(f"option {name!r}: length {len(value)} outside the command's limits")
        return value
    if otype == 5:
        if not isinstance(value, bool):
            raise TypeError(f"option {name!r} is a boolean option")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"option {name!r} is numeric, got {type(value).__name__}")
    if otype == 4 and not float(value).is_integer():
        raise TypeError(f"option {name!r} is an integer option, got {value!r}")
    if ("min_value" in odef and value < odef["min_value"]) or (
        "max_value" in odef and value > odef["max_value"]
    ):
        raise ValueError(f"option {name!r}: {value} outside the command's range")
    return int(value) if otype == 4 else value


def _submitted_components(
    modal: Mapping[str, Any], values: Mapping[str, str | Sequence[str]]
) -> list[dict[str, Any]]:
    """A modal submit's ``components``: the modal's layout (action rows or labels) with values."""
    # looked up by each input's custom_id, which may be missing (None)
    remaining: dict[str | None, str | Sequence[str]] = dict(values.items())
    ids = itertools.count(1)

    def submit(comp: Mapping[str, Any]) -> dict[str, Any]:
        ctype = comp.get("type")
        cid = comp.get("custom_id")
        out: dict[str, Any] = {"type": ctype, "id": comp.get("id") or next(ids)}
        if ctype == 4:
            value = _text_input_value(comp, remaining.pop(cid, comp.get("value") or ""))
            out.update(custom_id=cid, value=value)
        elif ctype in SELECT_TYPES:
            chosen = remaining.pop(cid, [])
            out.update(custom_id=cid, values=[chosen] if isinstance(chosen, str) else list(chosen))
        elif cid is not None:
            out["custom_id"] = cid
        return out

    components: list[dict[str, Any]] = []
    for comp in modal.get("components", []):
        if comp.get("type") == 1:
            row_id = comp.get("id") or next(ids)
            components.append(
                {"type": 1, "id": row_id, "components": [submit(c) for c in comp.get("components", [])]}
            )
        elif comp.get("type") == 18:
            label_id = comp.get("id") or next(ids)
            components.append({"type": 18, "id": label_id, "component": submit(comp["component"])})
        else:
            components.append(submit(comp))
    if remaining:
        raise LookupError(f"modal {modal.get('custom_id')!r} has no inputs {list(remaining)}")
    return components


def _text_input_value(comp: Mapping[str, Any], value: Any) -> str:
    """A text input's submitted value, checked like the client does (required, min/max length)."""
    cid = comp.get("custom_id")
    if not isinstance(value, str):
        raise TypeError(f"text input {cid!r} takes a string")
    if comp.get("required", True) and not value:
        raise ValueError(f"text input {cid!r} is required")
    if value and not int(comp.get("min_length") or 0) <= len(value) <= int(comp.get("max_length") or 4000):
        raise ValueError(f"text input {cid!r}: length {len(value)} outside min/max")
    return value


class DriverMixin(FakeDiscordBase):
    """What tests call to act as users (part of :class:`~.fake.FakeDiscord`)."""

    # ------------------------------------------------------------------------------- user actions

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
            opts = self._slash_options(cmd, name, full_path, values, resolved, gid, channel_id)
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
        if comp is None or comp.get("type") not in SELECT_TYPES:
            raise LookupError(f"message {msg.id} has no select {custom_id!r}")
        if comp.get("type") == 3:
            allowed = {o["value"] for o in comp.get("options", [])}
            bad = [v for v in values if v not in allowed]
            if bad:
                raise ValueError(f"values {bad} are not options of {custom_id!r}")
        data = {"custom_id": custom_id, "component_type": comp["type"], "values": list(values)}
        return await self._component_interaction(msg, data, user_id, locale, None)

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
        components = _submitted_components(source.modal, values)
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
        )

    # ------------------------------------------------------------------------------- internals

    def _slash_options(
        self,
        cmd: Mapping[str, Any],
        name: str,
        path: Sequence[str],
        values: Mapping[str, Any],
        resolved: dict[str, dict[str, Any]],
        guild_id: int | None,
        channel_id: int | None,
    ) -> list[dict[str, Any]]:
        """``data.options`` for a slash command invoked with ``values``, nested in its subcommand path."""
        defs, chain = self._command_options(cmd, path)
        by_name = {d["name"]: d for d in defs}
        for key in values:
            if key not in by_name:
                raise LookupError(f"{name!r} has no option {key!r}; options: {list(by_name)}")
        missing = [d["name"] for d in defs if d.get("required") and d["name"] not in values]
        if missing:
            raise ValueError(f"{name!r}: required options missing: {missing}")
        channel_for_perms = channel_id
        if channel_for_perms is None and guild_id is not None and self.guilds[guild_id].text_channels:
            channel_for_perms = self.guilds[guild_id].text_channels[0].id
        opts = [
            self._option_value(by_name[d["name"]], values[d["name"]], resolved, guild_id, channel_for_perms)
            for d in defs
            if d["name"] in values
        ]
        for sub in reversed(chain):
            node: dict[str, Any] = {"name": sub["name"], "type": sub["type"]}
            if opts:
                node["options"] = opts
            opts = [node]
        return opts

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
    ) -> FakeInteraction:
        await self.flush()
        if not self._sessions:
            raise RuntimeError("no gateway session: the bot has not connected (IDENTIFY) yet")
        user, guild, channel = self._resolve_context(user_id, guild_id, channel_id)
        if not self._routed_sessions(guild.id if guild else None):
            raise RuntimeError(f"no gateway session receives shard events of guild {guild and guild.id}")
        iid = self._next_id()
        token = (
            base64.urlsafe_b64encode(f"interaction:{iid}:{secrets.token_hex(40)}".encode())
            .decode()
            .rstrip("=")
        )
        if attachment_size_limit is None:
            # Discord: the larger of what the user's Nitro and the guild's boost tier allow
            place_limit = guild.attachment_size_limit if guild else DEFAULT_ATTACHMENT_SIZE_LIMIT
            attachment_size_limit = max(user.nitro_upload_limit or 0, place_limit)
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
        """One entry of ``data.options``, checked against the synced definition ``odef``; users,
        roles, channels and attachments are added to ``resolved``."""
        name, otype = odef["name"], odef["type"]
        out: dict[str, Any] = {"name": name, "type": otype}
        if focused:
            out.update(value=str(value), focused=True)
            return out
        if otype in (3, 4, 5, 10):
            out["value"] = _scalar_option(odef, value)
        elif otype in (6, 8, 9):
            out["value"] = self._mentionable_option(odef, value, resolved, guild_id, channel_id)
        elif otype == 7:
            out["value"] = self._channel_option(odef, value, resolved)
        elif otype == 11:
            out["value"] = self._attachment_option(value, resolved)
        else:
            raise TypeError(f"option {name!r}: unsupported option type {otype}")
        choices = odef.get("choices")
        if choices and out.get("value") not in [c["value"] for c in choices]:
            raise ValueError(f"option {name!r}: {out.get('value')!r} is not one of the choices")
        return out

    def _mentionable_option(
        self,
        odef: Mapping[str, Any],
        value: Any,
        resolved: dict[str, dict[str, Any]],
        guild_id: int | None,
        channel_id: int | None,
    ) -> str:
        """A user (6), role (8) or mentionable (9) option."""
        name, otype = odef["name"], odef["type"]
        sid = _snowflake(value)
        if otype in (6, 9) and sid in self.users:
            resolved.setdefault("users", {})[str(sid)] = self.users[sid].to_payload()
            if guild_id is not None and sid in self.guilds[guild_id].members:
                member = self.guilds[guild_id].members[sid]
                perms = self._member_permissions(channel_id, sid) if channel_id else 0
                resolved.setdefault("members", {})[str(sid)] = self._member_payload(
                    member, with_user=False, permissions=perms
                )
            return str(sid)
        if otype == 6:
            raise LookupError(f"option {name!r}: unknown user {value!r}")
        if guild_id is None or sid not in self.guilds[guild_id].roles:
            raise LookupError(f"option {name!r}: unknown role {sid}")
        resolved.setdefault("roles", {})[str(sid)] = self.guilds[guild_id].roles[sid].to_payload()
        return str(sid)

    def _channel_option(
        self, odef: Mapping[str, Any], value: Any, resolved: dict[str, dict[str, Any]]
    ) -> str:
        ch = self.channels[_snowflake(value)]
        allowed = odef.get("channel_types")
        if allowed and ch.type not in allowed:
            raise ValueError(f"option {odef['name']!r}: channel type {ch.type} not in {allowed}")
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
        return str(ch.id)

    def _attachment_option(self, value: Any, resolved: dict[str, dict[str, Any]]) -> Any:
        if isinstance(value, FakeAttachment):
            payload = value.to_payload()
        elif isinstance(value, Mapping):
            aid = int(value["id"])
            payload = self.attachments[aid].to_payload() if aid in self.attachments else dict(value)
        else:
            payload = self.attachments[int(value)].to_payload()
        resolved.setdefault("attachments", {})[payload["id"]] = payload
        return payload["id"]

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

    def _message_ref(self, message: FakeMessage | int) -> FakeMessage:
        msg = message if isinstance(message, FakeMessage) else self.messages[message]
        current = self.messages.get(msg.id, msg)
        if current.deleted:
            raise LookupError(f"message {msg.id} was deleted")
        return current

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
