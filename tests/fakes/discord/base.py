"""What the role mixins share, declared once: :class:`FakeDiscordBase`.

Each mixin (:mod:`.world`, :mod:`.gateway`, :mod:`.rest` …) sets up its own state and uses the state and
methods of the others through ``self``, which at run time is the composed :class:`~.fake.FakeDiscord`.
Every mixin derives from :class:`FakeDiscordBase` so that a type checker sees, from inside each one,
what the others provide. At run time the class is empty (annotations only; the method declarations exist
for the type checker alone) and comes last in the MRO, so it changes no behaviour; the type checker in
turn checks every declaration here against the definition in the mixin that owns it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

    from .gateway import _Session
    from .models import (
        FakeAttachment,
        FakeChannel,
        FakeGuild,
        FakeInteraction,
        FakeMember,
        FakeMessage,
        FakeUser,
    )
    from .ratelimits import _RateRule
    from .records import RecordedFile, RecordedRequest
    from .rest import Ctx


class FakeDiscordBase:
    """The state and methods one part of :class:`~.fake.FakeDiscord` uses from another."""

    # FakeDiscord.__init__ / start()
    token: str
    interaction_token_ttl: float
    ack_deadline: float | None
    requests: list[RecordedRequest]
    _port: int | None

    # world
    users: dict[int, FakeUser]
    guilds: dict[int, FakeGuild]
    channels: dict[int, FakeChannel]
    messages: dict[int, FakeMessage]
    attachments: dict[int, FakeAttachment]
    _channel_message_ids: dict[int, list[int]]
    bot_user: FakeUser
    app_owner: FakeUser

    # gateway
    recommended_shards: int
    _sessions: dict[tuple[int, int], _Session]

    # interactions
    interactions: list[FakeInteraction]
    _interactions_by_id: dict[int, FakeInteraction]
    _interactions_by_token: dict[str, FakeInteraction]

    # rate limits
    _rate_rules: list[_RateRule]

    if TYPE_CHECKING:
        # fake
        @property
        def base_url(self) -> str: ...

        # world
        @property
        def application_id(self) -> int: ...
        @property
        def bot_id(self) -> int: ...
        def now(self) -> float: ...
        def _bump(self) -> None: ...
        async def wait_until(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any: ...
        async def flush(self) -> None: ...
        def _next_id(self, *, shard: tuple[int, int] | None = None) -> int: ...
        def add_member(
            self,
            guild_id: int,
            user_id: int,
            roles: Sequence[int] = (),
            permissions: int | None = None,
            *,
            nick: str | None = None,
        ) -> FakeMember: ...
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
        ) -> FakeAttachment: ...
        def channel_messages(
            self, channel_id: int, *, include_deleted: bool = False
        ) -> list[FakeMessage]: ...
        def dm_channel(self, user_id: int) -> FakeChannel: ...
        def channel_permissions(self, channel_id: int, user_id: int) -> int: ...
        def _member_permissions(self, channel_id: int, user_id: int) -> int: ...
        def _member_payload(
            self, member: FakeMember, *, with_user: bool = True, permissions: int | None = None
        ) -> dict[str, Any]: ...
        def _guild_payload(self, guild: FakeGuild, intents: int) -> dict[str, Any]: ...
        def _guild_object_payload(self, guild: FakeGuild) -> dict[str, Any]: ...
        def _interaction_channel_payload(self, channel: FakeChannel, user_id: int) -> dict[str, Any]: ...

        # gateway
        @property
        def gateway_url(self) -> str: ...
        def session_start_limit_payload(self) -> dict[str, int]: ...
        def _routed_sessions(self, guild_id: int | None) -> list[_Session]: ...
        async def dispatch(self, event: str, data: dict[str, Any]) -> int: ...
        async def _dispatch_soft(self, event: str, data: dict[str, Any], *, intent: int) -> None: ...
        async def _dispatch_guild_create(self, guild: FakeGuild) -> None: ...
        async def _dispatch_message(self, event: str, msg: FakeMessage, data: dict[str, Any]) -> None: ...

        # rest
        def _json(
            self, data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
        ) -> web.Response: ...
        def _no_content(self) -> web.Response: ...
        def _bot_me_payload(self) -> dict[str, Any]: ...
        def command(self, name: str, *, type: int = 1, guild_id: int | None = None) -> dict[str, Any]: ...
        def _channel_or_404(self, channel_id: int) -> FakeChannel: ...
        def _bot_channel_perms(self, channel: FakeChannel, *needed: int) -> int: ...

        # messages
        async def _r_list_messages(self, ctx: Ctx) -> web.Response: ...
        async def _r_get_message(self, ctx: Ctx) -> web.Response: ...
        async def _r_create_message(self, ctx: Ctx) -> web.Response: ...
        async def _r_edit_message(self, ctx: Ctx) -> web.Response: ...
        async def _r_delete_message(self, ctx: Ctx) -> web.Response: ...
        def _store_message(self, msg: FakeMessage, *, public: bool) -> None: ...
        async def _delete_message(self, msg: FakeMessage) -> None: ...
        async def _message_event(self, event: str, msg: FakeMessage) -> None: ...
        def _compute_mentions(self, msg: FakeMessage, allowed: dict[str, Any] | None) -> None: ...
        def _apply_body(
            self,
            msg: FakeMessage,
            body: Mapping[str, Any],
            files: list[RecordedFile],
            *,
            size_limit: int,
            creating: bool,
            ephemeral: bool = False,
        ) -> None: ...

        # interactions
        async def _r_callback(self, ctx: Ctx) -> web.Response: ...
        async def _r_followup(self, ctx: Ctx) -> web.StreamResponse: ...
        async def _r_webhook_get(self, ctx: Ctx) -> web.Response: ...
        async def _r_webhook_edit(self, ctx: Ctx) -> web.Response: ...
        async def _r_webhook_delete(self, ctx: Ctx) -> web.Response: ...

        # faults, rate limits, CDN
        async def _apply_faults(self, record: RecordedRequest) -> web.StreamResponse | None: ...
        def _rate_limit_peek(self, method: str, route: str, groups: Mapping[str, str]) -> dict[str, str]: ...
        def _rate_limit(
            self, record: RecordedRequest, route: str, groups: Mapping[str, str]
        ) -> dict[str, str]: ...
        def sign_cdn_path(self, path: str, *, media: bool = False) -> str: ...
