"""The fake behaves like real Discord in the corners bots get wrong: rate-limit headers and buckets,
upload limits, Embed Links, enforce_nonce's window, a refused gateway handshake, and sharding.

Most tests talk raw HTTP / websocket to the fake so they can check the wire format exactly; a few run
the real discord.py client to show it obeys what the fake says. Nothing here sleeps for a fixed time:
tests wait on conditions, or jump the fake's clock with ``advance_clock``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
import yarl

from tests.fakes.discord import FakeDiscord, FakeGuild, RouteLimit

TOKEN = "MTIzNDU2Nzg5.fake.bot-token"
AUTH = {"Authorization": f"Bot {TOKEN}"}
MiB = 1024 * 1024
RATE_HEADERS = (
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-RateLimit-Reset-After",
    "X-RateLimit-Bucket",
)


# ----------------------------------------------------------------------------------------------- helpers


async def started(**options: Any) -> FakeDiscord:
    fake = FakeDiscord(TOKEN, **options)
    await fake.start()
    return fake


def frozen() -> float:
    """A clock that stands still: rate-limit windows end only when a test calls ``advance_clock``."""
    return 1_800_000_000.0


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def fakes() -> AsyncIterator[list[FakeDiscord]]:
    """Fakes a test started; closed afterwards (with discord.py's globals restored)."""
    made: list[FakeDiscord] = []
    old_base, old_gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    try:
        yield made
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway
        for fake in made:
            await fake.close()


async def new_fake(fakes: list[FakeDiscord], **options: Any) -> FakeDiscord:
    fake = await started(**options)
    fakes.append(fake)
    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    return fake


class RawGateway:
    """A bare gateway client: IDENTIFY (optionally sharded) and keep reading frames."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, http: aiohttp.ClientSession, fake: FakeDiscord) -> RawGateway:
        ws = await http.ws_connect(fake.gateway_url + "?v=10&encoding=json")
        return cls(ws)

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.frames.append(json.loads(msg.data))

    async def identify(self, shard: list[int] | None = None, intents: int = 513) -> None:
        d: dict[str, Any] = {"token": TOKEN, "intents": intents, "properties": {"os": "linux"}}
        if shard is not None:
            d["shard"] = shard
        await self.ws.send_json({"op": 2, "d": d})

    async def close(self) -> None:
        await self.ws.close()
        await self.reader


def connection_of(fake: FakeDiscord, shard: list[int] | None) -> int:
    """The fake's connection id on which the last IDENTIFY with this shard arrived."""
    frames = [
        f for f in fake.gateway_log if f.direction == "recv" and f.op == 2 and f.d.get("shard") == shard
    ]
    return frames[-1].connection


async def sync_ping_command(http: aiohttp.ClientSession, fake: FakeDiscord) -> None:
    url = f"{fake.api_base}/applications/{fake.application_id}/commands"
    async with http.put(url, json=[{"name": "ping", "description": "Ping", "type": 1}], headers=AUTH) as resp:
        assert resp.status == 200


async def post_message(
    http: aiohttp.ClientSession,
    fake: FakeDiscord,
    channel_id: int,
    body: dict[str, Any],
    files: dict[str, bytes] | None = None,
) -> aiohttp.ClientResponse:
    url = f"{fake.api_base}/channels/{channel_id}/messages"
    if files:
        form = aiohttp.FormData()
        form.add_field("payload_json", json.dumps(body), content_type="application/json")
        for i, (name, data) in enumerate(files.items()):
            form.add_field(f"files[{i}]", data, filename=name, content_type="application/octet-stream")
        resp = await http.post(url, data=form, headers=AUTH)
    else:
        resp = await http.post(url, json=body, headers=AUTH)
    await resp.read()
    return resp


# ----------------------------------------------------------------------------------------------- rate limits


async def test_every_rest_answer_carries_rate_limit_headers(http: aiohttp.ClientSession) -> None:
    fake = await started(clock=frozen)
    try:
        guild = fake.add_guild("Headers")
        channel = guild.text_channels[0]
        answers = [
            await http.get(f"{fake.api_base}/users/@me", headers=AUTH),  # 200
            await http.get(f"{fake.api_base}/users/@me", headers={"Authorization": "Bot nope"}),  # 401
            await http.get(f"{fake.api_base}/no/such/route", headers=AUTH),  # 404
            await http.post(f"{fake.api_base}/channels/{channel.id}/typing", headers=AUTH),  # 204
            await http.get(f"{fake.api_base}/channels/1/messages", headers=AUTH),  # 404 Unknown Channel
            await post_message(http, fake, channel.id, {}),  # 400 empty message
            await post_message(http, fake, channel.id, {"content": "hi"}),  # 200
        ]
        assert [r.status for r in answers] == [200, 401, 404, 204, 404, 400, 200]
        for resp in answers:
            for name in RATE_HEADERS:
                assert name in resp.headers, (resp.status, resp.url.path, name)
            assert "X-RateLimit-Scope" not in resp.headers  # only on 429s
            assert float(resp.headers["X-RateLimit-Reset-After"]) > 0
            resp.release()
        # one bucket per route: two sends in a channel count down the same bucket
        second = await post_message(http, fake, channel.id, {"content": "again"})
        assert second.headers["X-RateLimit-Bucket"] == answers[-1].headers["X-RateLimit-Bucket"]
        assert (
            int(second.headers["X-RateLimit-Remaining"])
            == int(answers[-1].headers["X-RateLimit-Remaining"]) - 1
        )
    finally:
        await fake.close()


async def test_realistic_channel_message_bucket_answers_429_then_resets(http: aiohttp.ClientSession) -> None:
    fake = await started(realistic_rate_limits=True, clock=frozen)
    try:
        guild = fake.add_guild("Busy", channels=("one", "two"))
        one, two = guild.text_channels
        sent = [await post_message(http, fake, one.id, {"content": f"m{i}"}) for i in range(5)]
        assert [r.status for r in sent] == [200] * 5
        assert [r.headers["X-RateLimit-Remaining"] for r in sent] == ["4", "3", "2", "1", "0"]
        assert {r.headers["X-RateLimit-Limit"] for r in sent} == {"5"}
        assert 0 < float(sent[0].headers["X-RateLimit-Reset-After"]) <= 5

        refused = await post_message(http, fake, one.id, {"content": "too many"})
        body = await refused.json()
        assert refused.status == 429
        assert body["message"] == "You are being rate limited." and body["global"] is False
        assert 0 < body["retry_after"] <= 5
        assert (
            refused.headers["X-RateLimit-Scope"] == "user" and refused.headers["X-RateLimit-Remaining"] == "0"
        )
        assert int(refused.headers["Retry-After"]) >= 1 and "X-RateLimit-Global" not in refused.headers
        assert refused.headers["X-RateLimit-Bucket"] == sent[0].headers["X-RateLimit-Bucket"]
        assert refused.headers["Via"]  # discord.py only retries a 429 that has one
        assert len(fake.channel_messages(one.id)) == 5

        # the limit is per channel; editing shares the bucket hash but counts on its own
        other = await post_message(http, fake, two.id, {"content": "elsewhere"})
        assert other.status == 200 and other.headers["X-RateLimit-Remaining"] == "4"
        mid = fake.channel_messages(one.id)[0].id
        async with http.patch(
            f"{fake.api_base}/channels/{one.id}/messages/{mid}", json={"content": "edited"}, headers=AUTH
        ) as edit:
            assert edit.status == 200 and edit.headers["X-RateLimit-Remaining"] == "4"
            assert edit.headers["X-RateLimit-Bucket"] == sent[0].headers["X-RateLimit-Bucket"]

        fake.advance_clock(5.0)  # the window is over
        again = await post_message(http, fake, one.id, {"content": "later"})
        assert again.status == 200 and again.headers["X-RateLimit-Remaining"] == "4"
    finally:
        await fake.close()


async def test_interaction_webhooks_have_own_buckets_and_skip_the_global_limit(
    http: aiohttp.ClientSession,
) -> None:
    fake = await started(realistic_rate_limits=True, global_rate_limit=3, clock=frozen)
    gateway = None
    try:
        guild = fake.add_guild("Hooks")
        user = fake.add_user("alice")
        await sync_ping_command(http, fake)  # 1st bot request this second
        gateway = await RawGateway.connect(http, fake)
        await gateway.identify()
        await fake.wait_until(lambda: fake.connected)
        first = await fake.slash("ping", user_id=user.id, guild_id=guild.id)
        second = await fake.slash("ping", user_id=user.id, guild_id=guild.id)
        for inter in (first, second):
            async with http.post(
                f"{fake.api_base}/interactions/{inter.id}/{inter.token}/callback", json={"type": 5}
            ) as resp:
                assert resp.status == 204 and "X-RateLimit-Bucket" in resp.headers

        # the global limit (3/s here) binds bot requests …
        statuses = []
        for _ in range(3):
            async with http.get(f"{fake.api_base}/users/@me", headers=AUTH) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    body = await resp.json()
                    assert body["global"] is True and resp.headers["X-RateLimit-Global"] == "true"
                    assert resp.headers["X-RateLimit-Scope"] == "global"
        assert statuses == [200, 200, 429]

        # … but not interaction webhooks: 5 edits per 2 s per token, then 429 for that token only
        def edit(inter: Any, text: str) -> Any:
            url = f"{fake.api_base}/webhooks/{fake.application_id}/{inter.token}/messages/@original"
            return http.patch(url, json={"content": text})

        remaining = []
        for i in range(5):
            async with edit(first, f"step {i}") as resp:
                assert resp.status == 200
                remaining.append(resp.headers["X-RateLimit-Remaining"])
                assert resp.headers["X-RateLimit-Limit"] == "5"
                assert 0 < float(resp.headers["X-RateLimit-Reset-After"]) <= 2
        assert remaining == ["4", "3", "2", "1", "0"]
        async with edit(first, "one too many") as resp:
            body = await resp.json()
            assert resp.status == 429 and body["global"] is False and 0 < body["retry_after"] <= 2
            assert resp.headers["X-RateLimit-Scope"] == "user"
        async with edit(second, "other token") as resp:
            assert resp.status == 200 and resp.headers["X-RateLimit-Remaining"] == "4"
        assert first.original is not None and first.original.content == "step 4"

        fake.advance_clock(2.0)
        async with edit(first, "after the window") as resp:
            assert resp.status == 200
        async with http.get(f"{fake.api_base}/users/@me", headers=AUTH) as resp:
            assert resp.status == 200
    finally:
        if gateway is not None:
            await gateway.close()
        await fake.close()


async def test_discord_py_waits_on_exhausted_buckets(fakes: list[FakeDiscord]) -> None:
    fake = await new_fake(
        fakes,
        realistic_rate_limits=True,
        rate_limits={"POST messages": RouteLimit(2, 0.6, "channel-messages")},
    )
    guild = fake.add_guild("Polite")
    channel = guild.text_channels[0]
    client = discord.Client(intents=discord.Intents.none())
    await client.login(TOKEN)
    try:
        target = client.get_partial_messageable(channel.id)
        for i in range(4):
            await target.send(f"message {i}")
    finally:
        await client.close()
    posts = fake.find_requests("POST", rf"^/channels/{channel.id}/messages$")
    assert [r.status for r in posts] == [200, 200, 200, 200]  # no 429: discord.py read the headers
    assert posts[2].time - posts[0].time >= 0.5  # it waited for the first window (0.6 s) to end
    assert [m.content for m in fake.channel_messages(channel.id)] == [f"message {i}" for i in range(4)]


async def test_set_rate_limit_still_enforces_in_both_modes(http: aiohttp.ClientSession) -> None:
    fake = await started(clock=frozen)
    try:
        channel = fake.add_guild("Legacy").text_channels[0]
        fake.set_rate_limit("POST", r"^/channels/\d+/messages$", 2, 60)
        answers = [await post_message(http, fake, channel.id, {"content": str(i)}) for i in range(3)]
        assert [r.status for r in answers] == [200, 200, 429]
        assert (
            answers[1].headers["X-RateLimit-Limit"] == "2"
            and answers[1].headers["X-RateLimit-Remaining"] == "0"
        )
        assert (await answers[2].json())["retry_after"] > 50
        fake.clear_faults()
        assert (await post_message(http, fake, channel.id, {"content": "free"})).status == 200
    finally:
        await fake.close()


# ------------------------------------------------------------------------------------------- upload limits


async def test_interaction_attachment_size_limit_is_the_larger_of_nitro_and_boosts(
    http: aiohttp.ClientSession,
) -> None:
    fake = await started()
    gateway = None
    try:
        plain = fake.add_guild("Plain")
        boosted = fake.add_guild("Boosted", premium_tier=2)
        nitro = fake.add_user("nitro", nitro_upload_limit=500 * MiB)
        basic = fake.add_user("basic", nitro_upload_limit=50 * MiB)
        nobody = fake.add_user("nobody")
        await sync_ping_command(http, fake)
        gateway = await RawGateway.connect(http, fake)
        await gateway.identify(intents=513 | (1 << 12))
        await fake.wait_until(lambda: fake.connected)

        async def limit(user_id: int, guild: FakeGuild | None) -> int:
            inter = await fake.slash("ping", user_id=user_id, guild_id=guild.id if guild else None)
            return int(inter.payload["attachment_size_limit"])

        assert await limit(nobody.id, plain) == 10 * MiB
        assert await limit(nobody.id, boosted) == 50 * MiB
        assert await limit(nitro.id, plain) == 500 * MiB
        assert await limit(basic.id, boosted) == 50 * MiB
        assert await limit(nitro.id, None) == 500 * MiB  # a DM: only Nitro counts
        fake.set_premium_tier(boosted.id, 3)
        assert await limit(basic.id, boosted) == 100 * MiB
        await fake.flush()
        update = fake.dispatched("GUILD_UPDATE")[-1]
        assert update.d["id"] == str(boosted.id) and update.d["premium_tier"] == 3
    finally:
        if gateway is not None:
            await gateway.close()
        await fake.close()


async def test_bot_channel_messages_get_only_the_guilds_limit(http: aiohttp.ClientSession) -> None:
    fake = await started()
    try:
        guild = fake.add_guild("Uploads")
        channel = guild.text_channels[0]
        at_limit = await post_message(
            http, fake, channel.id, {"content": "ok"}, {"a.bin": b"\0" * (10 * MiB)}
        )
        assert at_limit.status == 200
        over = await post_message(
            http, fake, channel.id, {"content": "big"}, {"b.bin": b"\0" * (10 * MiB + 1)}
        )
        assert over.status == 413 and await over.json() == {
            "message": "Request entity too large",
            "code": 40005,
        }
        assert "X-RateLimit-Bucket" in over.headers

        fake.set_premium_tier(guild.id, 2)  # 50 MiB
        assert (
            await post_message(http, fake, channel.id, {}, {"c.bin": b"\0" * (10 * MiB + 1)})
        ).status == 200
        too_big = await post_message(http, fake, channel.id, {}, {"d.bin": b"\0" * (50 * MiB + 1)})
        assert too_big.status == 413
        assert [len(m.attachments) for m in fake.channel_messages(channel.id)] == [1, 1]
    finally:
        await fake.close()


# ----------------------------------------------------------------------------------------------- Embed Links


async def test_without_embed_links_embeds_are_dropped_unless_the_message_is_embed_only(
    http: aiohttp.ClientSession,
) -> None:
    fake = await started()
    try:
        channel = fake.add_guild("No embeds").text_channels[0]
        embed = {"title": "Result", "description": "a cat"}
        fake.deny(channel.id, "embed")

        with_text = await post_message(http, fake, channel.id, {"content": "done", "embeds": [embed]})
        assert with_text.status == 200 and (await with_text.json())["embeds"] == []
        with_file = await post_message(http, fake, channel.id, {"embeds": [embed]}, {"cat.png": b"png"})
        assert with_file.status == 200 and (await with_file.json())["embeds"] == []
        only_embed = await post_message(http, fake, channel.id, {"embeds": [embed]})
        assert only_embed.status == 403
        assert await only_embed.json() == {"message": "Missing Permissions", "code": 50013}

        stored = fake.channel_messages(channel.id)
        assert [(m.content, m.embeds, len(m.attachments)) for m in stored] == [("done", [], 0), ("", [], 1)]
        sent = fake.find_requests("POST", rf"^/channels/{channel.id}/messages$")
        assert sent[0].json["embeds"] == [embed]  # what the bot asked for stays visible to tests

        allowed = fake.add_guild("Embeds ok").text_channels[0]
        kept = await post_message(http, fake, allowed.id, {"content": "done", "embeds": [embed]})
        assert (await kept.json())["embeds"][0]["title"] == "Result"
    finally:
        await fake.close()


# ------------------------------------------------------------------------------------------- enforce_nonce


async def test_enforce_nonce_deduplicates_only_within_the_window(http: aiohttp.ClientSession) -> None:
    now = [1_800_000_000.0]
    fake = await started(clock=lambda: now[0], nonce_window=120.0)
    try:
        channel = fake.add_guild("Nonces").text_channels[0]
        body = {"content": "result", "nonce": "job-7", "enforce_nonce": True}
        first = await (await post_message(http, fake, channel.id, body)).json()
        now[0] += 119.0
        again = await (await post_message(http, fake, channel.id, body)).json()
        assert again["id"] == first["id"] and len(fake.channel_messages(channel.id)) == 1

        fake.advance_clock(2.0)  # 121 s after the first: the window is over
        later = await (await post_message(http, fake, channel.id, body)).json()
        assert later["id"] != first["id"] and later["nonce"] == "job-7"
        assert len(fake.channel_messages(channel.id)) == 2
        # the window restarts at the newest message with that nonce
        assert (await (await post_message(http, fake, channel.id, body)).json())["id"] == later["id"]
        # without enforce_nonce the nonce is only echoed
        plain = await (await post_message(http, fake, channel.id, {"content": "x", "nonce": "job-7"})).json()
        assert plain["id"] not in (first["id"], later["id"])
        assert fake.nonce_window == 120.0 and FakeDiscord(TOKEN).nonce_window == 300.0
    finally:
        await fake.close()


# ----------------------------------------------------------------------------------------------- gateway


async def test_refused_gateway_handshake_answers_404(http: aiohttp.ClientSession) -> None:
    fake = await started()
    try:
        fake.refuse_gateway()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(fake.gateway_url + "?v=10&encoding=json")
        assert refused.value.status == 404
        assert len(fake.gateway_refusals) == 1 and fake.gateway_refusals[0].status == 404
        assert fake.gateway_refusals[0].path == "/gateway/" and not fake.connected

        fake.refuse_gateway(None)
        gateway = await RawGateway.connect(http, fake)
        await fake.wait_until(lambda: gateway.frames and gateway.frames[0]["op"] == 10)
        await gateway.close()
    finally:
        await fake.close()


async def test_discord_py_start_fails_on_a_refused_gateway(fakes: list[FakeDiscord]) -> None:
    fake = await new_fake(fakes)
    fake.refuse_gateway(404)
    client = discord.Client(intents=discord.Intents.none())
    try:
        await client.login(TOKEN)  # REST works; only the websocket upgrade is refused
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.connect(reconnect=False)
        assert refused.value.status == 404
    finally:
        await client.close()
    assert fake.gateway_refusals and not fake.identifies


# ----------------------------------------------------------------------------------------------- sharding


async def test_gateway_bot_reports_shards_and_session_start_limit(http: aiohttp.ClientSession) -> None:
    fake = await started(shards=4, max_concurrency=2, session_start_limit=1000)
    gateway = None
    try:
        async with http.get(f"{fake.api_base}/gateway/bot", headers=AUTH) as resp:
            body = await resp.json()
        assert body["shards"] == 4 and body["url"].startswith("ws://127.0.0.1:")
        assert body["session_start_limit"] == {
            "total": 1000,
            "remaining": 1000,
            "reset_after": 0,
            "max_concurrency": 2,
        }
        gateway = await RawGateway.connect(http, fake)
        await gateway.identify(shard=[0, 4])
        await fake.wait_until(lambda: fake.connected)
        async with http.get(f"{fake.api_base}/gateway/bot", headers=AUTH) as resp:
            limit = (await resp.json())["session_start_limit"]
        assert limit["remaining"] == 999 and 0 < limit["reset_after"] <= 86_400_000
    finally:
        if gateway is not None:
            await gateway.close()
        await fake.close()


async def test_guild_ids_spread_over_shards() -> None:
    fake = FakeDiscord(TOKEN)
    guilds = [fake.add_guild(f"g{i}") for i in range(6)]
    assert [fake.shard_of(g.id, 2) for g in guilds] == [0, 1, 0, 1, 0, 1]
    assert [fake.shard_of(g.id, 3) for g in guilds] == [0, 1, 2, 0, 1, 2]
    hinted = fake.add_guild("hinted", shard=(2, 5))
    assert (hinted.id >> 22) % 5 == 2
    ids = [g.id for g in [*guilds, hinted]]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    with pytest.raises(ValueError):
        fake.add_guild("bad", shard=(3, 3))


async def test_events_go_to_the_shard_of_their_guild(http: aiohttp.ClientSession) -> None:
    fake = await started(shards=2, max_concurrency=2)
    gateways: list[RawGateway] = []
    try:
        even = fake.add_guild("even", shard=(0, 2))
        odd = fake.add_guild("odd", shard=(1, 2))
        user = fake.add_user("alice")
        await sync_ping_command(http, fake)
        for shard in ([0, 2], [1, 2]):
            gateway = await RawGateway.connect(http, fake)
            gateways.append(gateway)
            await gateway.identify(shard=shard, intents=513 | (1 << 12))
        await fake.wait_until(lambda: len(fake.dispatched("READY")) == 2 and fake.connected)
        assert fake.sessions.keys() == {(0, 2), (1, 2)} and not fake.identify_violations
        conn0, conn1 = connection_of(fake, [0, 2]), connection_of(fake, [1, 2])

        ready = {f.connection: f.d for f in fake.dispatched("READY")}
        assert [g["id"] for g in ready[conn0]["guilds"]] == [str(even.id)] and ready[conn0]["shard"] == [0, 2]
        assert [g["id"] for g in ready[conn1]["guilds"]] == [str(odd.id)] and ready[conn1]["shard"] == [1, 2]
        creates = {(f.connection, f.d["id"]) for f in fake.dispatched("GUILD_CREATE")}
        assert creates == {(conn0, str(even.id)), (conn1, str(odd.id))}

        in_odd = await fake.slash("ping", user_id=user.id, guild_id=odd.id)
        in_dm = await fake.slash("ping", user_id=user.id)
        in_even = await fake.slash("ping", user_id=user.id, guild_id=even.id)
        routed = {f.d["id"]: f.connection for f in fake.dispatched("INTERACTION_CREATE")}
        assert routed == {str(in_odd.id): conn1, str(in_dm.id): conn0, str(in_even.id): conn0}

        fake.add_message(odd.text_channels[0].id, user.id, "hello odd")
        fake.add_message(even.text_channels[0].id, user.id, "hello even")
        await fake.flush()
        messages = [(f.connection, f.d["guild_id"]) for f in fake.dispatched("MESSAGE_CREATE")]
        assert messages == [(conn1, str(odd.id)), (conn0, str(even.id))]
        # each session numbers its own events
        for conn in (conn0, conn1):
            seqs = [f.s for f in fake.gateway_log if f.direction == "send" and f.connection == conn and f.s]
            assert seqs == list(range(1, len(seqs) + 1))
    finally:
        for gateway in gateways:
            await gateway.close()
        await fake.close()


async def test_identify_concurrency_is_recorded_or_enforced(http: aiohttp.ClientSession) -> None:
    # recorded: the second shard identified in the same 5 s as the first with max_concurrency 1
    fake = await started(shards=2, max_concurrency=1)
    gateways: list[RawGateway] = []
    try:
        for shard in ([0, 2], [1, 2]):
            gateway = await RawGateway.connect(http, fake)
            gateways.append(gateway)
            await gateway.identify(shard=shard)
        await fake.wait_until(lambda: len(fake.dispatched("READY")) == 2)
        assert [(v["shard"], v["key"], v["refused"]) for v in fake.identify_violations] == [
            ([1, 2], 0, False)
        ]
        assert fake.identify_violations[0]["since_previous"] < 5
    finally:
        for gateway in gateways:
            await gateway.close()
        await fake.close()

    # enforced: Discord answers op 9 Invalid Session; after 5 s the same IDENTIFY is accepted
    fake = await started(shards=2, max_concurrency=1, enforce_identify_concurrency=True)
    gateways = []
    try:
        first, second = await RawGateway.connect(http, fake), await RawGateway.connect(http, fake)
        gateways += [first, second]
        await first.identify(shard=[0, 2])
        await fake.wait_until(lambda: fake.dispatched("READY"))
        await second.identify(shard=[1, 2])
        await fake.wait_until(lambda: any(f["op"] == 9 for f in second.frames))
        assert next(f for f in second.frames if f["op"] == 9)["d"] is False
        assert len(fake.dispatched("READY")) == 1 and fake.identify_violations[0]["refused"] is True
        fake.advance_clock(5.0)
        await second.identify(shard=[1, 2])
        await fake.wait_until(lambda: len(fake.dispatched("READY")) == 2)
        assert fake.sessions.keys() == {(0, 2), (1, 2)}

        # an impossible shard closes the connection with 4010 Invalid Shard
        third = await RawGateway.connect(http, fake)
        gateways.append(third)
        await third.identify(shard=[2, 2])
        await third.reader
        assert third.ws.close_code == 4010
    finally:
        for gateway in gateways:
            await gateway.close()
        await fake.close()


class ShardedBot(discord.AutoShardedClient):
    def __init__(self) -> None:
        super().__init__(
            intents=discord.Intents.default(), chunk_guilds_at_startup=False, guild_ready_timeout=0.1
        )
        self.ready = asyncio.Event()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py sleeps 5 s before every shard but the first; skipped to show the fake notices."""

    async def on_ready(self) -> None:
        self.ready.set()


async def test_discord_py_auto_sharded_client_gets_each_guild_on_its_shard(fakes: list[FakeDiscord]) -> None:
    fake = await new_fake(fakes, shards=2, max_concurrency=1)
    even = fake.add_guild("even", shard=(0, 2))
    odd = fake.add_guild("odd", shard=(1, 2))
    bot = ShardedBot()
    task = asyncio.create_task(bot.start(TOKEN))
    try:
        await asyncio.wait_for(bot.ready.wait(), 10)
        assert bot.shard_count == 2 and sorted(bot.shards) == [0, 1]
        assert sorted(d["shard"] for d in fake.identifies) == [[0, 2], [1, 2]]
        got_even, got_odd = bot.get_guild(even.id), bot.get_guild(odd.id)
        assert got_even is not None and got_even.shard_id == 0
        assert got_odd is not None and got_odd.shard_id == 1
        # the hook was skipped, so both shards identified within 5 s on one max_concurrency key
        assert [v["shard"] for v in fake.identify_violations] == [[1, 2]]
    finally:
        await bot.close()
        await asyncio.wait_for(task, 10)
