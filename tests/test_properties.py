"""Property-based tests (hypothesis) for the parts that handle outside data.

* prompts: any Unicode, control characters, over-long text and mentions → refused politely or accepted
  clean; whatever the bot posts never pings anyone (unit level on intake/reporter, plus one e2e run);
* settings values: ``load_settings`` raises nothing but :class:`ConfigError`, whose text never holds a
  secret.
Task-status JSON of any shape is covered in tests/test_apimart_client.py (``parse_task`` never crashes).
"""

from __future__ import annotations

import asyncio
import re
import types
from typing import Any

import discord
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from kontext.adapters.discord.reporter import DiscordReporter, result_embed
from kontext.config import ConfigError, load_settings
from kontext.domain import jobs as m
from kontext.domain.errors import (
    ApiBadRequest,
    DeliveryError,
    ImageBomb,
    KontextError,
    NotAnImage,
    ResultError,
    TaskFailed,
)
from kontext.domain.events import Done, Failed, Note, Waiting
from kontext.domain.images import FittedResult
from kontext.i18n import t
from kontext.services.intake import MAX_PROMPT_CHARS, RefusedError, clean_prompt
from tests.fakes.discord import FakeInteraction, FakeMessage
from tests.harness import World, make_image

REQUESTER = 111_222_333_444_555_666
MENTIONS = st.sampled_from(
    ["@everyone", "@here", f"<@{REQUESTER}>", "<@987654321987654321>", "<@!987654321987654321>", "<@&42>"]
)
#: Text mixing any Unicode (control characters, bidi overrides, surrogates excluded by st.text) and mentions.
NASTY_TEXT = st.lists(st.one_of(st.text(max_size=40), MENTIONS), max_size=12).map("".join)
LOCALES = st.sampled_from(["en-US", "zh-CN", "fr", "xx-YY", ""])


# --- prompts --------------------------------------------------------------------------------------


@settings(max_examples=400)
@given(prompt=st.one_of(NASTY_TEXT, st.text()), locale=LOCALES)
@example(prompt="\x00\x1b[2J\u202e@everyone\u200b", locale="en-US")
@example(prompt=" \t\n\r\x0b\x0c ", locale="zh-CN")
def test_clean_prompt_accepts_clean_or_refuses_politely(prompt: str, locale: str) -> None:
    try:
        cleaned = clean_prompt(prompt)
    except RefusedError as error:
        refused = error.refused
        text = t(refused.code, locale, **refused.params)
        assert text and refused.reason in ("empty prompt", "prompt too long")
        assert len(text) < 200, "a refusal is one short sentence, never an echo of the prompt"
        return
    assert cleaned and cleaned == cleaned.strip()
    assert len(cleaned) <= MAX_PROMPT_CHARS
    assert all(ch in "\n\t" or ch.isprintable() for ch in cleaned), "no control/format characters"
    assert set(cleaned) <= set(prompt)


@settings(max_examples=50)
@given(st.text(alphabet=st.characters(categories=["L", "N", "P", "S"]), min_size=1, max_size=200))
def test_over_long_prompts_are_refused(unit: str) -> None:
    prompt = (unit * (MAX_PROMPT_CHARS // len(unit) + 2))[: MAX_PROMPT_CHARS + 1 + len(unit)]
    assume(len(prompt.strip()) > MAX_PROMPT_CHARS)
    with pytest.raises(RefusedError) as raised:
        clean_prompt(prompt)
    refused = raised.value.refused
    assert refused.reason == "prompt too long"
    assert f"{MAX_PROMPT_CHARS:,}" in t(
        refused.code, "en-US", **refused.params
    )  # "1,800": a localised number


def job_for(prompt: str, **changes: Any) -> m.JobRecord:
    job = m.JobRecord(
        id="18f0c0ffee12345678",
        kind=m.JobKind.EDIT,
        prompt=prompt,
        model="flux-kontext-pro",
        size="match_input_image",
        response_format="png",
        safety_tolerance=2,
        prompt_upsampling=False,
        user_id=REQUESTER,
        channel_id=5,
        guild_id=6,
        application_id=7,
        interaction_token="tok",
        token_issued_at=9e12,  # far future: the token counts as alive
        status_message_id=8,
    )
    for name, value in changes.items():
        setattr(job, name, value)
    return job


def cleaned_or_none(prompt: str) -> str | None:
    try:
        return clean_prompt(prompt)
    except RefusedError:
        return None


@settings(max_examples=300)
@given(prompt=st.one_of(NASTY_TEXT, st.text(min_size=900, max_size=MAX_PROMPT_CHARS)), locale=LOCALES)
def test_result_embed_stays_within_discord_limits(prompt: str, locale: str) -> None:
    cleaned = cleaned_or_none(prompt)
    assume(cleaned is not None)
    assert cleaned is not None
    job = job_for(cleaned, locale=locale)
    embed = result_embed(job, 12, "kontext-x.png").to_dict()
    assert len(embed.get("title", "")) <= 256
    fields = embed["fields"]
    for field in fields:
        assert 0 < len(field["name"]) <= 256 and 0 < len(field["value"]) <= 1024
    total = len(embed.get("title", "")) + len(embed["footer"]["text"])
    total += sum(len(f["name"]) + len(f["value"]) for f in fields)
    assert total <= 6000
    shown = fields[0]["value"]
    assert shown == cleaned or (shown.endswith("…") and cleaned.startswith(shown[:-1]))


# --- the reporter never pings ---------------------------------------------------------------------


class Recorder:
    """Stands in for the interaction webhook and the channel; records every call's keyword arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _message(self) -> Any:
        attachment = types.SimpleNamespace(url="https://cdn.example/x.png")
        return types.SimpleNamespace(id=99, attachments=[attachment])

    async def edit_message(self, message_id: int, **kwargs: Any) -> Any:
        self.calls.append(("edit", kwargs))
        return self._message()

    async def send(self, **kwargs: Any) -> Any:
        self.calls.append(("send", kwargs))
        return self._message()

    async def delete_message(self, message_id: int) -> None:
        self.calls.append(("delete", {}))


def reporter_with(job: m.JobRecord, recorder: Recorder, *, token_alive: bool) -> DiscordReporter:
    client = types.SimpleNamespace(user=None)  # no earlier posts to find
    reporter = DiscordReporter(client=client, job=job)  # type: ignore[arg-type]
    reporter._webhook = lambda: recorder  # type: ignore[assignment, method-assign, return-value]

    async def channel() -> Recorder:
        return recorder

    reporter._channel = channel  # type: ignore[assignment, method-assign]
    reporter._token_dead = not token_alive
    return reporter


def assert_cannot_ping(kind: str, kwargs: dict[str, Any], requester_allowed: bool) -> None:
    """Every posted text carries allowed mentions that forbid @everyone/@here, roles and other users."""
    if kind == "delete" or ("content" not in kwargs and "embed" not in kwargs):
        return
    allowed = kwargs.get("allowed_mentions")
    assert isinstance(allowed, discord.AllowedMentions), (kind, kwargs.get("content"))
    data = allowed.to_dict()
    assert not {"everyone", "roles", "users"} & set(data.get("parse", [])), data
    assert not data.get("roles") and not data.get("replied_user")
    users = {str(u) for u in data.get("users", [])}
    assert users <= ({str(REQUESTER)} if requester_allowed else set()), data


ERRORS = st.one_of(
    st.builds(lambda r: TaskFailed("task failed", reason=r), NASTY_TEXT.map(lambda s: s[:300])),
    st.builds(lambda r: ApiBadRequest("400", message=r), NASTY_TEXT.map(lambda s: s[:300])),
    st.builds(lambda r: ResultError("bad", reason=r), NASTY_TEXT.map(lambda s: s[:300])),
    st.just(NotAnImage("text", kind="text")),
    st.just(ImageBomb("bomb", megapixels=1e4, limit_mp=50)),
    st.just(DeliveryError("gone")),
    st.just(KontextError("unexpected RuntimeError")),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    prompt=NASTY_TEXT,
    error=ERRORS,
    token_alive=st.booleans(),
    position=st.integers(1, 10**6),
    locale=LOCALES,
)
def test_reporter_never_pings_whatever_it_posts(
    prompt: str, error: KontextError, token_alive: bool, position: int, locale: str
) -> None:
    job = job_for(cleaned_or_none(prompt) or "x", locale=locale)
    result = FittedResult(b"\x89PNG fake", "image/png", "png", 8, 8, reencoded=False)

    async def run() -> list[tuple[str, dict[str, Any]]]:
        recorder = Recorder()
        await reporter_with(job, recorder, token_alive=token_alive).status(Waiting(position))
        done = Done(result, position, (Note.LETTERBOXED, Note.REENCODED))
        await reporter_with(job, recorder, token_alive=token_alive).deliver(done)
        await reporter_with(job, recorder, token_alive=token_alive).fail(Failed(error))
        return recorder.calls

    calls = asyncio.run(run())
    assert calls, "something was posted"
    for kind, kwargs in calls:
        # only a channel post (token gone) may ping, and then only the requester
        assert_cannot_ping(kind, kwargs, requester_allowed=(kind == "send" and not token_alive))
        content = kwargs.get("content")
        assert content is None or len(content) <= 2000


# --- one end-to-end run with a nasty prompt -------------------------------------------------------


def recorded_texts(world: World) -> list[tuple[str, dict[str, Any]]]:
    """Every message body the bot sent to Discord (webhooks, channel posts, interaction callbacks)."""
    bodies: list[tuple[str, dict[str, Any]]] = []
    for request in world.discord.requests:
        if (
            request.kind != "api"
            or request.method not in ("POST", "PATCH")
            or not isinstance(request.json, dict)
        ):
            continue
        body = request.json
        if "/callback" in request.path:
            body = body.get("data") or {}
        if "content" in body or "embeds" in body:
            bodies.append((f"{request.method} {request.path}", body))
    return bodies


def recorded_messages(world: World, inters: list[FakeInteraction]) -> list[FakeMessage]:
    messages = list(world.discord.channel_messages(world.channel.id, include_deleted=True))
    for inter in inters:
        messages += [e.message for e in inter.original_edits] + inter.followups
    return messages


async def test_a_nasty_prompt_never_pings_anyone_end_to_end(world: World) -> None:
    role = world.discord.add_role(world.guild.id, "moderators")
    bob = world.discord.add_user("bob")
    world.discord.add_member(world.guild.id, bob.id)
    nasty = (
        f"@everyone @here <@&{role.id}> <@{bob.id}> <@!{bob.id}>\x00\x1b[2J\u202e\u200b make it blue"
        " ||spoiler|| `code` **bold**"
    )
    cleaned = clean_prompt(nasty)
    assert "@everyone" in cleaned and "\x00" not in cleaned and "\u202e" not in cleaned
    await world.start_bot()
    user = world.user.id
    inters: list[FakeInteraction] = []

    # 1. delivered normally: the prompt is shown in the embed, nobody is pinged
    inters.append(await world.edit(make_image(96, 64), nasty))
    result = await world.result_of(inters[-1])
    assert result.embeds[0]["fields"][0]["value"] == cleaned
    # 2. the API refuses it and echoes the prompt back into the public failure line
    world.apimart.script(duration=0.1, fail_reason=f"rejected: {cleaned}")
    inters.append(await world.edit(make_image(96, 64), nasty))
    text = await world.failure_of(inters[-1])
    assert "@everyone" in text and f"<@&{role.id}>" in text
    # 3. + 4. the token expires mid-job: late failure (echoing the prompt) and late delivery in the channel
    for fail_reason in (f"rejected: {cleaned}", None):
        world.apimart.script(duration=0.6, fail_reason=fail_reason)
        inters.append(await world.edit(make_image(96, 64), nasty))
        await inters[-1].wait_for(lambda i: any("Queued" in e.message.content for e in i.original_edits))
        world.discord.expire_interaction(inters[-1])
        wanted = 1 if fail_reason else 2

        def channel_posts_reach(wanted: int = wanted) -> bool:
            return len([m for m in world.discord.channel_messages(world.channel.id) if m.nonce]) >= wanted

        await world.discord.wait_until(channel_posts_reach, timeout=10)
    late = [m for m in world.discord.channel_messages(world.channel.id) if m.nonce]
    assert any("@everyone" in m.content for m in late), "the echoed prompt really was in a channel post"
    assert any(m.attachments for m in late)

    bodies = recorded_texts(world)
    assert len(bodies) >= 8
    for where, body in bodies:
        allowed = body.get("allowed_mentions")
        assert allowed is not None, f"{where} has no allowed_mentions: {body.get('content')!r}"
        assert not {"everyone", "roles", "users"} & set(allowed.get("parse", [])), (where, allowed)
        assert not allowed.get("roles") and not allowed.get("replied_user")
        assert {str(u) for u in allowed.get("users", [])} <= {str(user)}, (where, allowed)
    for message in recorded_messages(world, inters):
        assert not message.mention_everyone and not message.mention_role_ids, message.content
        assert set(message.mention_ids) <= {user}, (message.content, message.mention_ids)
        assert bob.id not in message.mention_ids
    assert re.search(rf"<@{user}>", " ".join(m.content for m in late))


# --- settings values ------------------------------------------------------------------------------

TOKEN = "MTA1NjY3ODkwMTIzNDU2Nzg5.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"
KEY = "sk-test-1234567890abcdef"
URL_VARS = ("APIMART_BASE_URL", "DISCORD_API_BASE", "DISCORD_GATEWAY_URL", "PUBLIC_BASE_URL")
OTHER_VARS = (
    "IMAGE_HOST",
    "HOSTED_FILE_TTL_SECONDS",
    "WEB_ENABLED",
    "WEB_HOST",
    "WEB_PORT",
    "DATA_DIR",
    "DEV_GUILD_ID",
    "LOG_LEVEL",
    "LOG_JSON",
    "DEFAULT_MODEL",
    "DEFAULT_SAFETY_TOLERANCE",
    "ALLOW_DMS",
    "MAX_INPUT_MB",
    "MAX_INPUT_MEGAPIXELS",
    "NORMALISE_MEGAPIXELS",
    "MAX_RESULT_MB",
    "JOB_TIMEOUT_SECONDS",
    "HTTP_TIMEOUT_SECONDS",
    "STATUS_UPDATE_INTERVAL_SECONDS",
    "MAX_CONCURRENT_JOBS",
    "MAX_JOBS_PER_USER",
    "MAX_QUEUED_JOBS",
    "ALLOW_PRIVATE_URLS",
)
NUMBERISH = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", " ", "1e999", "-0", "0x10", "1_000", "٣", "nan", "inf", "true", "yes", "LOCAL"]),
)
# Brackets are left out of URL values here: a lone "[" makes urlsplit raise ValueError, which
# load_settings does not turn into a ConfigError yet (see test_bracketed_url_is_a_config_error below).
URLISH = st.builds(
    lambda scheme, rest: scheme + rest,
    st.sampled_from(["http://", "https://", "ws://", "wss://", "ftp://", "", "//"]),
    st.text(alphabet=st.characters(exclude_characters="[]"), max_size=30),
)
SECRETISH = st.one_of(
    st.just(TOKEN),
    st.builds(lambda s: "SeCrEtT0KeN" + s, st.text(max_size=60)),
    st.builds(lambda s: "Bot SeCrEtT0KeN" + s, st.text(max_size=60)),
)
KEYISH = st.one_of(
    st.just(KEY),
    st.builds(lambda s: "SeCrEtKeY" + s, st.text(max_size=60)),
    st.builds(lambda s: "Bearer SeCrEtKeY" + s, st.text(max_size=60)),
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    token=st.one_of(SECRETISH, st.none()),
    key=st.one_of(KEYISH, st.none()),
    urls=st.dictionaries(st.sampled_from(URL_VARS), URLISH, max_size=4),
    others=st.dictionaries(
        st.sampled_from(OTHER_VARS), st.one_of(NUMBERISH, st.text(max_size=30)), max_size=8
    ),
)
def test_load_settings_raises_only_config_errors_without_secrets(
    token: str | None, key: str | None, urls: dict[str, str], others: dict[str, str]
) -> None:
    env = {**urls, **others}
    if token is not None:
        env["DISCORD_TOKEN"] = token
    if key is not None:
        env["APIMART_API_KEY"] = key
    try:
        loaded = load_settings(env)
    except ConfigError as exc:
        text = str(exc)
        assert text.startswith(exc.variable + ": ") and "\n" not in text
        for secret in (token, key):
            if secret:
                bare = secret.removeprefix("Bot ").removeprefix("Bearer ")
                assert secret not in text and bare not in text
        return
    for secret in (loaded.discord_token, loaded.apimart_api_key):
        assert secret not in repr(loaded)


@pytest.mark.parametrize("variable", URL_VARS)
@pytest.mark.parametrize("bad", ["[", "host:99999", "host:port", "ho st", "hóst"])
def test_malformed_urls_are_config_errors(variable: str, bad: str) -> None:
    value = ("ws://" if "GATEWAY" in variable else "http://") + bad
    with pytest.raises(ConfigError) as caught:
        load_settings({"DISCORD_TOKEN": TOKEN, "APIMART_API_KEY": KEY, variable: value})
    assert caught.value.variable == variable


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WEB_PORT", "٣"),
        ("WEB_PORT", "1_0"),
        ("MAX_INPUT_MB", "1_0"),
        ("MAX_INPUT_MB", "inf"),
        ("DATA_DIR", "a\x00b"),
    ],
)
def test_odd_numbers_and_paths_are_config_errors(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"DISCORD_TOKEN": TOKEN, "APIMART_API_KEY": KEY, variable: value})
    assert caught.value.variable == variable
