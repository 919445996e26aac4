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
* Every REST answer carries ``X-RateLimit-Limit/-Remaining/-Reset/-Reset-After/-Bucket`` for the
  route's bucket (per channel, guild or webhook token). ``FakeDiscord(realistic_rate_limits=True)``
  (or ``FAKE_DISCORD_REALISTIC_RATE_LIMITS=1``) enforces Discord's observed per-route limits and the
  global 50/s with 429s (``retry_after``, ``X-RateLimit-Scope``); off by default because it slows the
  e2e suite down. ``set_rate_limit`` adds a custom limit in either mode.
* Upload limits: an interaction's ``attachment_size_limit`` is max(the user's Nitro limit —
  ``add_user(nitro_upload_limit=…)`` —, the guild's boost-tier limit); the bot's own channel messages
  get only the guild's limit (10/10/50/100 MiB by tier, ``set_premium_tier``). Over it: 413 (40005).
* Without Embed Links, a channel message's embeds are silently dropped if it has content or files;
  an embed-only message answers 403 Missing Permissions (50013).
* ``enforce_nonce`` returns the earlier message with the same nonce only within ``nonce_window``
  seconds (300 by default) measured on the fake's clock (``clock=``, ``advance_clock``).
* ``refuse_gateway(404)`` makes websocket upgrades fail like a wrong DISCORD_GATEWAY_URL.
* Sharding: GET /gateway/bot returns ``shards`` and ``session_start_limit``; IDENTIFY may carry
  ``shard``; a guild's events go to shard ``(guild_id >> 22) % num_shards`` (DMs to shard 0); too-early
  IDENTIFYs (per ``max_concurrency`` key per 5 s) are recorded in ``identify_violations`` (answered with
  op 9 with ``enforce_identify_concurrency=True``). Guild ids spread round-robin over shards.

Layout (one module per role; :class:`FakeDiscord` in :mod:`.fake` composes the mixins, which all derive
from :class:`~.base.FakeDiscordBase`, where what they use of one another is declared for the type checker):

* :mod:`.models` — flags, permission bits and the objects (users, guilds, channels, messages, attachments,
  interactions); :mod:`.records` — what the fake records (requests, frames, callbacks, edits)
* :mod:`.world` — creating and looking up objects, permissions, payload builders, ``wait_until``
* :mod:`.rest` — REST routing and the simple routes; :mod:`.messages` — channel messages;
  :mod:`.interactions` — interaction callbacks and webhooks; :mod:`.validation` — Discord's limits
* :mod:`.gateway` — websocket sessions; :mod:`.cdn` — signed attachment URLs
* :mod:`.faults` — scripted failures; :mod:`.ratelimits` — rate-limit buckets and headers
* :mod:`.driver` — acting as users (slash, message_command, click, select, submit_modal …)
"""

from __future__ import annotations

from .fake import FakeDiscord
from .models import (
    DEFAULT_ATTACHMENT_SIZE_LIMIT,
    FakeAttachment,
    FakeChannel,
    FakeGuild,
    FakeInteraction,
    FakeMember,
    FakeMessage,
    FakeRole,
    FakeUser,
    Intents,
    MessageFlags,
    Perm,
)
from .ratelimits import DISCORD_RATE_LIMITS, RouteLimit
from .records import CallbackRecord, EditRecord, GatewayFrame, RecordedFile, RecordedRequest

__all__ = [
    "DEFAULT_ATTACHMENT_SIZE_LIMIT",
    "DISCORD_RATE_LIMITS",
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
    "RouteLimit",
]
