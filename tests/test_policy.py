"""Table-driven tests of the moderation policy (kontext.domain.policy) and block-list matching."""

from __future__ import annotations

import re
import string
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kontext.domain.blocklist import find_blocked
from kontext.domain.guild_settings import GuildSettings, SettingsError
from kontext.domain.policy import Allowed, BotDefaults, Denied, RequestFacts, decide, next_reset, utc_day
from kontext.i18n import t
from kontext.i18n.catalog import load
from kontext.i18n.languages import CATALOGS

PRO, MAX = "flux-kontext-pro", "flux-kontext-max"
NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
MIDNIGHT_AFTER_NOW = int(datetime(2023, 11, 15, tzinfo=UTC).timestamp())
DEFAULTS = BotDefaults(default_model=PRO, default_safety=2, allow_dms=False)
ADMIN = {"is_admin": True}


def facts(**overrides: Any) -> RequestFacts:
    base: dict[str, Any] = {
        "guild_id": 1,
        "channel_id": 10,
        "channel_is_nsfw": False,
        "user_id": 100,
        "role_ids": frozenset(),
        "is_admin": False,
        "prompt": "make the sky purple",
        "requested_model": None,
        "requested_safety": None,
        "now": NOW,
        "user_jobs_today": 0,
        "guild_jobs_today": 0,
        "user_last_job_at": None,
    }
    base.update(overrides)
    return RequestFacts(**base)


def allow(model: str = PRO, safety: int = 2) -> tuple[str, str, int]:
    return ("allow", model, safety)


def deny(code: str, **params: Any) -> tuple[str, str, dict[str, Any]]:
    return ("deny", code, params)


# (id, settings changes, fact overrides, expected)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], tuple[Any, ...]]] = [
    # --- defaults and safety ---
    ("new-server-defaults", {}, {}, allow(PRO, 2)),
    ("ordinary-channel-uses-safety", {"safety": 4, "nsfw_safety": 6}, {}, allow(safety=4)),
    (
        "nsfw-channel-uses-nsfw-safety",
        {"safety": 1, "nsfw_safety": 5},
        {"channel_is_nsfw": True},
        allow(safety=5),
    ),
    (
        "nsfw-value-ignored-outside-nsfw",
        {"safety": 0, "nsfw_safety": 6},
        {"channel_is_nsfw": False},
        allow(safety=0),
    ),
    ("stricter-request-honoured", {"safety": 4}, {"requested_safety": 1}, allow(safety=1)),
    ("stricter-request-zero", {"safety": 6}, {"requested_safety": 0}, allow(safety=0)),
    ("looser-request-clamped", {"safety": 2}, {"requested_safety": 6}, allow(safety=2)),
    ("equal-request", {"safety": 3}, {"requested_safety": 3}, allow(safety=3)),
    (
        "nsfw-stricter-request",
        {"nsfw_safety": 5},
        {"channel_is_nsfw": True, "requested_safety": 3},
        allow(safety=3),
    ),
    (
        "nsfw-looser-request-clamped",
        {"nsfw_safety": 5},
        {"channel_is_nsfw": True, "requested_safety": 6},
        allow(safety=5),
    ),
    ("out-of-range-request-clamped-to-0", {"safety": 3}, {"requested_safety": -4}, allow(safety=0)),
    ("admin-cannot-ask-looser", {"safety": 1}, {"requested_safety": 6, **ADMIN}, allow(safety=1)),
    # --- model selection ---
    ("requested-model-allowed", {}, {"requested_model": MAX}, allow(MAX)),
    (
        "requested-model-not-allowed",
        {"allowed_models": [PRO]},
        {"requested_model": MAX},
        deny("policy_model", model=MAX),
    ),
    ("requested-model-unknown", {}, {"requested_model": "dall-e"}, deny("policy_model", model="dall-e")),
    (
        "admin-cannot-use-disallowed-model",
        {"allowed_models": [PRO]},
        {"requested_model": MAX, **ADMIN},
        deny("policy_model"),
    ),
    ("server-default-model", {"default_model": MAX}, {}, allow(MAX)),
    ("request-beats-server-default", {"default_model": MAX}, {"requested_model": PRO}, allow(PRO)),
    ("bot-default-when-no-server-default", {}, {}, allow(PRO)),
    ("first-allowed-when-bot-default-disallowed", {"allowed_models": [MAX]}, {}, allow(MAX)),
    # --- channel allow-list ---
    ("channel-list-empty-everywhere", {"channels": []}, {"channel_id": 999}, allow()),
    ("channel-in-list", {"channels": [10, 11]}, {"channel_id": 11}, allow()),
    (
        "channel-not-in-list",
        {"channels": [11, 12]},
        {"channel_id": 10},
        deny("policy_channel", channels="<#11> <#12>"),
    ),
    ("thread-in-allowed-channel", {"channels": [11]}, {"channel_id": 55, "parent_channel_id": 11}, allow()),
    (
        "thread-in-other-channel",
        {"channels": [11]},
        {"channel_id": 55, "parent_channel_id": 12},
        deny("policy_channel"),
    ),
    ("admin-bypasses-channel-list", {"channels": [11]}, {"channel_id": 10, **ADMIN}, allow()),
    # --- role allow-list ---
    ("role-list-empty-everyone", {"roles": []}, {"role_ids": frozenset()}, allow()),
    ("role-missing", {"roles": [7]}, {"role_ids": frozenset({8})}, deny("policy_role", roles="<@&7>")),
    ("role-one-of-several", {"roles": [7, 8]}, {"role_ids": frozenset({3, 8})}, allow()),
    ("admin-bypasses-role-list", {"roles": [7]}, {"role_ids": frozenset(), **ADMIN}, allow()),
    # --- block-list (matching details are in BLOCK_CASES) ---
    ("blocked-prompt", {"blocklist": ["purple"]}, {}, deny("policy_blocked")),
    (
        "blocked-prompt-spaced",
        {"blocklist": ["purple"]},
        {"prompt": "make it p u r p l e"},
        deny("policy_blocked"),
    ),
    ("admin-not-exempt-from-blocklist", {"blocklist": ["purple"]}, ADMIN, deny("policy_blocked")),
    ("unblocked-prompt", {"blocklist": ["green"]}, {}, allow()),
    # --- cooldown (60 s) ---
    ("cooldown-off", {"cooldown_s": 0}, {"user_last_job_at": NOW}, allow()),
    ("cooldown-no-previous-job", {"cooldown_s": 60}, {"user_last_job_at": None}, allow()),
    (
        "cooldown-1s-left",
        {"cooldown_s": 60},
        {"user_last_job_at": NOW - 59},
        deny("policy_cooldown", seconds=1),
    ),
    (
        "cooldown-fraction-rounds-up",
        {"cooldown_s": 60},
        {"user_last_job_at": NOW - 0.5},
        deny("policy_cooldown", seconds=60),
    ),
    ("cooldown-exactly-over", {"cooldown_s": 60}, {"user_last_job_at": NOW - 60}, allow()),
    ("cooldown-long-over", {"cooldown_s": 60}, {"user_last_job_at": NOW - 3600}, allow()),
    (
        "cooldown-clock-skew-capped",
        {"cooldown_s": 60},
        {"user_last_job_at": NOW + 500},
        deny("policy_cooldown", seconds=60),
    ),
    ("admin-bypasses-cooldown", {"cooldown_s": 60}, {"user_last_job_at": NOW - 1, **ADMIN}, allow()),
    # --- per-user quota (5 / day) ---
    ("user-quota-unlimited", {"user_daily_quota": 0}, {"user_jobs_today": 10**6}, allow()),
    ("user-quota-one-left", {"user_daily_quota": 5}, {"user_jobs_today": 4}, allow()),
    (
        "user-quota-exactly-used",
        {"user_daily_quota": 5},
        {"user_jobs_today": 5},
        deny("policy_user_quota", limit=5, reset_at=MIDNIGHT_AFTER_NOW),
    ),
    ("user-quota-over", {"user_daily_quota": 5}, {"user_jobs_today": 9}, deny("policy_user_quota", limit=5)),
    ("admin-bypasses-user-quota", {"user_daily_quota": 5}, {"user_jobs_today": 5, **ADMIN}, allow()),
    # --- per-server quota (10 / day) ---
    ("guild-quota-unlimited", {"guild_daily_quota": 0}, {"guild_jobs_today": 10**6}, allow()),
    ("guild-quota-one-left", {"guild_daily_quota": 10}, {"guild_jobs_today": 9}, allow()),
    (
        "guild-quota-exactly-used",
        {"guild_daily_quota": 10},
        {"guild_jobs_today": 10},
        deny("policy_guild_quota", limit=10, reset_at=MIDNIGHT_AFTER_NOW),
    ),
    (
        "admin-not-exempt-from-guild-quota",
        {"guild_daily_quota": 10},
        {"guild_jobs_today": 10, **ADMIN},
        deny("policy_guild_quota"),
    ),
    # --- order of checks when several rules fail ---
    ("order-channel-before-role", {"channels": [11], "roles": [7]}, {}, deny("policy_channel")),
    (
        "order-role-before-model",
        {"roles": [7], "allowed_models": [PRO]},
        {"requested_model": MAX},
        deny("policy_role"),
    ),
    (
        "order-model-before-blocklist",
        {"allowed_models": [PRO], "blocklist": ["sky"]},
        {"requested_model": MAX},
        deny("policy_model"),
    ),
    (
        "order-blocklist-before-cooldown",
        {"blocklist": ["sky"], "cooldown_s": 60},
        {"user_last_job_at": NOW},
        deny("policy_blocked"),
    ),
    (
        "order-cooldown-before-user-quota",
        {"cooldown_s": 60, "user_daily_quota": 1},
        {"user_last_job_at": NOW, "user_jobs_today": 1},
        deny("policy_cooldown"),
    ),
    (
        "order-user-quota-before-guild-quota",
        {"user_daily_quota": 1, "guild_daily_quota": 1},
        {"user_jobs_today": 1, "guild_jobs_today": 1},
        deny("policy_user_quota"),
    ),
    (
        "admin-skips-personal-limits-hits-blocklist",
        {"channels": [11], "roles": [7], "cooldown_s": 60, "blocklist": ["sky"]},
        {"user_last_job_at": NOW, **ADMIN},
        deny("policy_blocked"),
    ),
    (
        "admin-skips-personal-limits-hits-guild-quota",
        {"channels": [11], "roles": [7], "cooldown_s": 60, "user_daily_quota": 1, "guild_daily_quota": 3},
        {"user_last_job_at": NOW, "user_jobs_today": 1, "guild_jobs_today": 3, **ADMIN},
        deny("policy_guild_quota"),
    ),
    (
        "everything-configured-and-satisfied",
        {
            "safety": 3,
            "nsfw_safety": 5,
            "allowed_models": [PRO, MAX],
            "default_model": MAX,
            "channels": [10],
            "roles": [7],
            "blocklist": ["gore"],
            "cooldown_s": 30,
            "user_daily_quota": 5,
            "guild_daily_quota": 50,
        },
        {
            "channel_is_nsfw": True,
            "role_ids": frozenset({7}),
            "requested_safety": 4,
            "user_last_job_at": NOW - 30,
            "user_jobs_today": 4,
            "guild_jobs_today": 49,
        },
        allow(MAX, 4),
    ),
]


def _check(result: Allowed | Denied, expected: tuple[Any, ...]) -> None:
    kind = expected[0]
    if kind == "allow":
        assert isinstance(result, Allowed), result
        assert (result.model, result.safety) == expected[1:]
    else:
        assert isinstance(result, Denied), result
        assert result.code == expected[1]
        for key, value in expected[2].items():
            assert result.params[key] == value, (key, result.params)
        assert result.detail


@pytest.mark.parametrize(
    ("changes", "overrides", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_decide(changes: dict[str, Any], overrides: dict[str, Any], expected: tuple[Any, ...]) -> None:
    settings = GuildSettings().with_changes(**changes)
    result = decide(settings, facts(**overrides), DEFAULTS)
    _check(result, expected)
    if isinstance(result, Allowed):
        assert result.settings == settings


# --- DMs -------------------------------------------------------------------------------------------

STRICT_SERVER = GuildSettings().with_changes(
    channels=[11],
    roles=[7],
    blocklist=["sky"],
    cooldown_s=60,
    user_daily_quota=1,
    guild_daily_quota=1,
    safety=0,
)

DM_CASES = [
    ("dm-disabled", False, {}, deny("policy_dm_disabled")),
    ("dm-disabled-even-for-admin", False, ADMIN, deny("policy_dm_disabled")),
    ("dm-enabled-bot-defaults", True, {}, allow(PRO, 3)),
    ("dm-enabled-server-rules-ignored", True, {"user_last_job_at": NOW, "user_jobs_today": 9}, allow(PRO, 3)),
    ("dm-stricter-request", True, {"requested_safety": 1}, allow(PRO, 1)),
    ("dm-looser-request-clamped", True, {"requested_safety": 6}, allow(PRO, 3)),
    ("dm-nsfw-flag-irrelevant", True, {"channel_is_nsfw": True}, allow(PRO, 3)),
    ("dm-requested-model", True, {"requested_model": MAX}, allow(MAX, 3)),
    ("dm-unknown-model", True, {"requested_model": "dall-e"}, deny("policy_model", model="dall-e")),
]


@pytest.mark.parametrize(
    ("allow_dms", "overrides", "expected"), [c[1:] for c in DM_CASES], ids=[c[0] for c in DM_CASES]
)
def test_decide_dm(allow_dms: bool, overrides: dict[str, Any], expected: tuple[Any, ...]) -> None:
    defaults = BotDefaults(default_model=PRO, default_safety=3, allow_dms=allow_dms)
    result = decide(STRICT_SERVER, facts(guild_id=None, **overrides), defaults)
    _check(result, expected)


def test_allowed_lists_are_truncated_in_denials() -> None:
    settings = GuildSettings().with_changes(channels=list(range(1, 31)))
    result = decide(settings, facts(channel_id=999), DEFAULTS)
    assert isinstance(result, Denied)
    assert result.params["channels"].count("<#") == 10 and result.params["channels"].endswith("…")


def test_blocked_entry_only_in_detail() -> None:
    result = decide(
        GuildSettings().with_changes(blocklist=["secret-word"]), facts(prompt="a SECRET word"), DEFAULTS
    )
    assert isinstance(result, Denied) and result.code == "policy_blocked"
    assert result.params == {} and "secret-word" in result.detail


# --- block-list matching ----------------------------------------------------------------------------

# (id, entries, prompt, expected match)
BLOCK_CASES: list[tuple[str, list[str], str, str | None]] = [
    ("plain", ["bad"], "a bad idea", "bad"),
    ("no-match", ["bad"], "a good idea", None),
    ("empty-list", [], "anything", None),
    ("case", ["bad"], "a BaD idea", "bad"),
    ("entry-case", ["BAD"], "a bad idea", "BAD"),
    ("spacing", ["bad"], "b a d", "bad"),
    ("punctuation", ["bad"], "b.a.d", "bad"),
    ("mixed-separators", ["bad"], "b-_a/ d!", "bad"),
    ("full-width", ["bad"], "ＢＡＤ", "bad"),
    ("full-width-entry", ["ＢＡＤ"], "bad", "ＢＡＤ"),
    ("zero-width-space", ["bad"], "b\u200bad", "bad"),
    ("bom-and-soft-hyphen", ["bad"], "b\ufeffa\u00add", "bad"),
    ("word-joiner-and-zwj", ["bad"], "b\u2060a\u200dd", "bad"),
    ("accent-in-prompt", ["cafe"], "un café", "cafe"),
    ("accent-in-entry", ["café"], "CAFE", "café"),
    ("zalgo", ["bad"], "b\u0336a\u0336d\u0336", "bad"),
    ("styled-letters", ["bad"], "𝐛𝐚𝐝 and ⓑⓐⓓ", "bad"),
    ("newlines-and-tabs", ["bad"], "b\na\td", "bad"),
    ("phrase-across-words", ["bad word"], "BAD-WORD", "bad word"),
    ("substring-matches-inside-words", ["ass"], "a class act", "ass"),
    ("quoted-whole-word-no-substring", ['"ass"'], "a class act", None),
    ("quoted-whole-word-match", ['"ass"'], "kick ASS!", '"ass"'),
    ("quoted-full-width", ['"ass"'], "ｍｙ ＡＳＳ", '"ass"'),
    ("quoted-zero-width", ['"ass"'], "a\u200bss here", '"ass"'),
    ("quoted-curly-quotes", ["“ass”"], "my ass.", "“ass”"),
    ("quoted-phrase", ['"bad word"'], "a bad, word here", '"bad word"'),
    ("quoted-phrase-needs-both-words", ['"bad word"'], "a bad words here", None),
    ("quoted-wildcard-within-word", ['"f*ck"'], "what the FUCK", '"f*ck"'),
    ("quoted-wildcard-not-across-words", ['"f*ck"'], "fix the truck", None),
    ("quoted-suffix-wildcard", ['"kill*"'], "killing time", '"kill*"'),
    ("quoted-prefix-wildcard", ['"*ing"'], "a thing", '"*ing"'),
    ("wildcard", ["f*ck"], "f**ck", "f*ck"),
    ("wildcard-empty-run", ["f*ck"], "fck", "f*ck"),
    ("wildcard-spans-words", ["b*d"], "big dog", "b*d"),
    ("wildcard-no-match", ["f*ck"], "fudge", None),
    ("wildcard-order-matters", ["a*b"], "b then a", None),
    ("cjk-substring", ["坏"], "这是一个坏图片", "坏"),
    ("cjk-ideographic-space", ["坏图"], "坏　图", "坏图"),
    ("cjk-quoted-is-substring", ['"坏"'], "这是一个坏图片", '"坏"'),
    ("cjk-full-width-punctuation", ["坏图"], "坏，图！", "坏图"),
    ("half-width-katakana", ["バカ"], "ﾊﾞｶ", "バカ"),
    ("dakuten-kept", ["が"], "か", None),
    ("hangul-with-zero-width", ["나쁜"], "나\u200b쁜 놈", "나쁜"),
    ("emoji-entry", ["🍆"], "an 🍆\ufe0f please", "🍆"),
    ("first-match-in-list-order", ["zzz", "sky", "make"], "make the sky purple", "sky"),
    ("invalid-entries-skipped", ["*", "...", "", "sky"], "make the sky purple", "sky"),
]


@pytest.mark.parametrize(
    ("entries", "prompt", "expected"), [c[1:] for c in BLOCK_CASES], ids=[c[0] for c in BLOCK_CASES]
)
def test_find_blocked(entries: list[str], prompt: str, expected: str | None) -> None:
    assert find_blocked(prompt, entries) == expected


def test_matching_is_fast_on_adversarial_input() -> None:
    entries = ["a*a*a*a*a*b", '"a*a*a*a*b"', '"*a*a*b"', '"坏*坏*x"', "a" * 99 + "b"]
    entries += [f"a*{c}*a*b" for c in string.ascii_lowercase]
    prompts = ["a" * 1800, "a " * 900, "坏" * 1800, ("a" * 50 + " ") * 35]
    start = time.perf_counter()
    for prompt in prompts:
        assert find_blocked(prompt, entries) is None
    assert time.perf_counter() - start < 1.0


# --- UTC days ---------------------------------------------------------------------------------------

DAY_CASES = [
    ("epoch", 0.0, "1970-01-01", 86_400.0),
    ("just-before-midnight", 86_399.999, "1970-01-01", 86_400.0),
    ("exactly-midnight", 86_400.0, "1970-01-02", 172_800.0),
    ("now", NOW, "2023-11-14", float(MIDNIGHT_AFTER_NOW)),
    (
        "leap-day",
        datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC).timestamp(),
        "2024-02-29",
        datetime(2024, 3, 1, tzinfo=UTC).timestamp(),
    ),
    (
        "new-year",
        datetime(2024, 12, 31, 12, tzinfo=UTC).timestamp(),
        "2024-12-31",
        datetime(2025, 1, 1, tzinfo=UTC).timestamp(),
    ),
]


@pytest.mark.parametrize(("ts", "day", "reset"), [c[1:] for c in DAY_CASES], ids=[c[0] for c in DAY_CASES])
def test_utc_day_and_next_reset(ts: float, day: str, reset: float) -> None:
    assert utc_day(ts) == day
    assert next_reset(ts) == reset
    assert utc_day(next_reset(ts)) != day
    assert utc_day(next_reset(ts) - 0.001) == day
    assert next_reset(ts) - ts <= timedelta(days=1).total_seconds()


# --- messages ---------------------------------------------------------------------------------------

DENIAL_PARAMS: dict[str, dict[str, Any]] = {
    "policy_dm_disabled": {},
    "policy_channel": {"channels": "<#1>"},
    "policy_role": {"roles": "<@&1>"},
    "policy_blocked": {},
    "policy_model": {"model": MAX, "models": PRO},
    "policy_cooldown": {"seconds": 5, "retry_at": 1},
    "policy_user_quota": {"limit": 5, "reset_at": MIDNIGHT_AFTER_NOW},
    "policy_guild_quota": {"limit": 5, "reset_at": MIDNIGHT_AFTER_NOW},
}


def _settings_error_params() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    attempts: list[dict[str, Any]] = [
        {"safety": 9},
        {"allowed_models": ["x"]},
        {"allowed_models": []},
        {"allowed_models": [PRO], "default_model": MAX},
        {"cooldown_s": -1},
        {"user_daily_quota": -1},
        {"blocklist": ["*"]},
        {"blocklist": ["x" * 101]},
        {"blocklist": [f"w{i}" for i in range(201)]},
        {"channels": [0]},
        {"roles": list(range(1, 502))},
    ]
    for change in attempts:
        with pytest.raises(SettingsError) as info:
            GuildSettings().with_changes(**change)
        found[info.value.code] = info.value.params
    return found


@pytest.mark.parametrize("catalog", CATALOGS)
def test_every_code_is_in_every_language_and_fills_in(catalog: str) -> None:
    codes = {**DENIAL_PARAMS, **_settings_error_params()}
    assert len(codes) == 8 + 11
    locale = catalog.replace("_", "-")
    for code, params in codes.items():
        assert code in load(catalog).ids, code
        text = t(code, locale, **params)
        assert not re.search(r"\{\w+\}", text), (code, text)
    assert "<t:" in t("policy_user_quota", locale, limit=1, reset_at=5) and ":R>" in t(
        "policy_guild_quota", locale, limit=1, reset_at=5
    )


def test_denial_params_fill_their_message() -> None:
    settings = GuildSettings().with_changes(channels=[11], user_daily_quota=1)
    for overrides in ({}, {"channel_id": 11, "user_jobs_today": 1}):
        result = decide(settings, facts(**overrides), DEFAULTS)
        assert isinstance(result, Denied)
        assert not re.search(r"\{\w+\}", t(result.code, "en-US", **result.params))
