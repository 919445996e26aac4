"""GuildSettings validation and storage round trips; text normalisation properties (hypothesis)."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kontext.domain.blocklist import (
    compile_pattern,
    find_blocked,
    is_whole_word,
    normalise_light,
    normalise_text,
)
from kontext.domain.generation import MODELS
from kontext.domain.guild_settings import (
    MAX_BLOCKLIST_ENTRIES,
    MAX_COOLDOWN_S,
    MAX_QUOTA,
    GuildSettings,
    SettingsError,
)
from kontext.i18n import error_text

PRO, MAX = "flux-kontext-pro", "flux-kontext-max"
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_valid(s: GuildSettings) -> None:
    """Valid = exactly what with_changes would accept and keep unchanged."""
    assert GuildSettings().with_changes(**s.to_dict()) == s
    assert s.allowed_models and all(m in MODELS for m in s.allowed_models)
    assert s.default_model is None or s.default_model in s.allowed_models


def test_defaults() -> None:
    s = GuildSettings()
    assert (s.safety, s.nsfw_safety) == (None, None), "the bot-wide default until an admin chooses"
    assert s.allowed_models == list(MODELS) and s.default_model is None
    assert s.channels == s.roles == s.blocklist == []
    assert (s.cooldown_s, s.user_daily_quota, s.guild_daily_quota, s.log_channel_id) == (0, 0, 0, None)
    assert_valid(s)


# --- with_changes: rejected values -------------------------------------------------------------------

ERROR_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("safety-negative", {"safety": -1}, "settings_safety_range"),
    ("safety-too-high", {"safety": 7}, "settings_safety_range"),
    ("nsfw-safety-too-high", {"nsfw_safety": 7}, "settings_safety_range"),
    ("models-empty", {"allowed_models": []}, "settings_models_empty"),
    ("model-unknown", {"allowed_models": [PRO, "dall-e"]}, "settings_model_unknown"),
    ("default-model-unknown", {"default_model": "dall-e"}, "settings_model_unknown"),
    (
        "default-model-not-allowed",
        {"allowed_models": [PRO], "default_model": MAX},
        "settings_default_model_not_allowed",
    ),
    ("cooldown-negative", {"cooldown_s": -1}, "settings_cooldown_range"),
    ("cooldown-over-a-day", {"cooldown_s": MAX_COOLDOWN_S + 1}, "settings_cooldown_range"),
    ("user-quota-negative", {"user_daily_quota": -1}, "settings_quota_range"),
    ("user-quota-absurd", {"user_daily_quota": MAX_QUOTA + 1}, "settings_quota_range"),
    ("guild-quota-negative", {"guild_daily_quota": -5}, "settings_quota_range"),
    ("guild-quota-absurd", {"guild_daily_quota": 10**9}, "settings_quota_range"),
    ("blocklist-empty-entry", {"blocklist": [""]}, "settings_blocklist_entry_empty"),
    ("blocklist-blank-entry", {"blocklist": ["   "]}, "settings_blocklist_entry_empty"),
    ("blocklist-wildcard-only", {"blocklist": ["**"]}, "settings_blocklist_entry_empty"),
    ("blocklist-punctuation-only", {"blocklist": ["..."]}, "settings_blocklist_entry_empty"),
    ("blocklist-empty-quotes", {"blocklist": ['""']}, "settings_blocklist_entry_empty"),
    ("blocklist-quoted-wildcard-only", {"blocklist": ['"* *"']}, "settings_blocklist_entry_empty"),
    ("blocklist-zero-width-only", {"blocklist": ["\u200b\u200b"]}, "settings_blocklist_entry_empty"),
    ("blocklist-entry-too-long", {"blocklist": ["x" * 101]}, "settings_blocklist_entry_too_long"),
    ("blocklist-too-many", {"blocklist": [f"w{i}" for i in range(201)]}, "settings_blocklist_full"),
    ("channel-id-zero", {"channels": [0]}, "settings_id_invalid"),
    ("role-id-negative", {"roles": [5, -5]}, "settings_id_invalid"),
    ("log-channel-zero", {"log_channel_id": 0}, "settings_id_invalid"),
    ("channels-too-many", {"channels": list(range(1, 502))}, "settings_list_too_long"),
]


@pytest.mark.parametrize(("changes", "code"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_with_changes_rejects(changes: dict[str, Any], code: str) -> None:
    original = GuildSettings()
    with pytest.raises(SettingsError) as info:
        original.with_changes(**changes)
    assert info.value.code == code
    assert error_text(info.value, "en-US") and error_text(info.value, "zh-CN")
    assert original == GuildSettings()


TYPE_ERROR_CASES = [
    ("unknown-field", {"colour": 3}),
    ("bool-as-int", {"safety": True}),
    ("string-as-int", {"cooldown_s": "5"}),
    ("string-as-list", {"blocklist": "bad"}),
    ("non-str-entry", {"blocklist": [3]}),
]


@pytest.mark.parametrize("changes", [c[1] for c in TYPE_ERROR_CASES], ids=[c[0] for c in TYPE_ERROR_CASES])
def test_with_changes_programming_errors(changes: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        GuildSettings().with_changes(**changes)


ACCEPT_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("safety-bounds", {"safety": 0, "nsfw_safety": 6}, {"safety": 0, "nsfw_safety": 6}),
    ("cooldown-one-day", {"cooldown_s": MAX_COOLDOWN_S}, {"cooldown_s": MAX_COOLDOWN_S}),
    (
        "quota-max",
        {"user_daily_quota": MAX_QUOTA, "guild_daily_quota": MAX_QUOTA},
        {"guild_daily_quota": MAX_QUOTA},
    ),
    ("zero-means-off", {"cooldown_s": 0, "user_daily_quota": 0}, {"cooldown_s": 0}),
    ("blocklist-full", {"blocklist": [f"w{i}" for i in range(200)]}, {}),
    ("entry-100-chars", {"blocklist": ["x" * 100]}, {"blocklist": ["x" * 100]}),
    ("blocklist-stripped-deduped", {"blocklist": [" bad ", "BAD", "ok"]}, {"blocklist": ["bad", "ok"]}),
    ("models-deduped", {"allowed_models": [MAX, MAX, PRO]}, {"allowed_models": [MAX, PRO]}),
    ("default-model", {"allowed_models": [MAX], "default_model": MAX}, {"default_model": MAX}),
    ("default-model-cleared", {"default_model": None}, {"default_model": None}),
    ("ids-deduped", {"channels": [5, 5, 6], "roles": [7]}, {"channels": [5, 6], "roles": [7]}),
    ("log-channel", {"log_channel_id": 123}, {"log_channel_id": 123}),
    ("log-channel-off", {"log_channel_id": None}, {"log_channel_id": None}),
]


@pytest.mark.parametrize(
    ("changes", "expect"), [c[1:] for c in ACCEPT_CASES], ids=[c[0] for c in ACCEPT_CASES]
)
def test_with_changes_accepts(changes: dict[str, Any], expect: dict[str, Any]) -> None:
    s = GuildSettings().with_changes(**changes)
    for key, value in expect.items():
        assert getattr(s, key) == value
    assert_valid(s)
    if "blocklist" in changes and "full" in str(changes):
        assert len(s.blocklist) == MAX_BLOCKLIST_ENTRIES


def test_default_model_falls_back_when_models_change() -> None:
    s = GuildSettings().with_changes(default_model=MAX)
    assert s.with_changes(allowed_models=[PRO]).default_model is None
    assert s.with_changes(allowed_models=[MAX]).default_model == MAX


def test_with_changes_copies() -> None:
    s = GuildSettings().with_changes(blocklist=["a"])
    t = s.with_changes(safety=3)
    t.blocklist.append("b")
    t.allowed_models.clear()
    assert s.blocklist == ["a"] and s.allowed_models == list(MODELS) and s.safety is None


# --- storage ---------------------------------------------------------------------------------------


def test_round_trip_through_json() -> None:
    s = GuildSettings().with_changes(
        safety=1,
        nsfw_safety=5,
        allowed_models=[MAX],
        default_model=MAX,
        channels=[1, 2**62],
        roles=[3],
        blocklist=['"ass"', "f*ck", "坏"],
        cooldown_s=30,
        user_daily_quota=5,
        guild_daily_quota=100,
        log_channel_id=99,
    )
    assert GuildSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s


FROM_DICT_CASES: list[tuple[str, Any, dict[str, Any]]] = [
    ("none", None, {}),
    ("not-a-mapping", ["safety", 3], {}),
    ("string", "garbage", {}),
    ("unknown-keys-ignored", {"safety": 3, "colour": "red", "version": 7}, {"safety": 3}),
    ("safety-clamped-high", {"safety": 9, "nsfw_safety": 99}, {"safety": 6, "nsfw_safety": 6}),
    ("safety-clamped-low", {"safety": -3}, {"safety": 0}),
    ("safety-from-string", {"safety": " 4 "}, {"safety": 4}),
    ("safety-from-float", {"safety": 3.7}, {"safety": 3}),
    ("safety-bool-ignored", {"safety": True}, {"safety": None}),
    ("safety-garbage", {"safety": {"x": 1}}, {"safety": None}),
    ("safety-nan", {"safety": float("nan")}, {"safety": None}),
    ("cooldown-clamped", {"cooldown_s": 10**9}, {"cooldown_s": MAX_COOLDOWN_S}),
    (
        "quota-negative-clamped",
        {"user_daily_quota": -2, "guild_daily_quota": 10**12},
        {"user_daily_quota": 0, "guild_daily_quota": MAX_QUOTA},
    ),
    ("models-unknown-dropped", {"allowed_models": ["dall-e", MAX]}, {"allowed_models": [MAX]}),
    ("models-none-valid", {"allowed_models": ["dall-e", 5]}, {"allowed_models": list(MODELS)}),
    ("models-not-a-list", {"allowed_models": PRO}, {"allowed_models": list(MODELS)}),
    (
        "default-not-allowed",
        {"allowed_models": [PRO], "default_model": MAX},
        {"allowed_models": [PRO], "default_model": None},
    ),
    ("default-garbage", {"default_model": 12}, {"default_model": None}),
    ("ids-as-strings", {"channels": ["123", 5, -1, "x", 1.5, True, None, 5]}, {"channels": [123, 5]}),
    ("ids-too-large", {"roles": [2**64, 7]}, {"roles": [7]}),
    (
        "blocklist-invalid-dropped",
        {"blocklist": ["ok", "", "*", 3, "x" * 101, "OK", None]},
        {"blocklist": ["ok"]},
    ),
    (
        "blocklist-truncated",
        {"blocklist": [f"w{i}" for i in range(250)]},
        {"blocklist": [f"w{i}" for i in range(200)]},
    ),
    ("log-channel-string", {"log_channel_id": "42"}, {"log_channel_id": 42}),
    ("log-channel-garbage", {"log_channel_id": "abc"}, {"log_channel_id": None}),
    ("huge-digit-string", {"safety": "9" * 5000}, {"safety": None}),
]


@pytest.mark.parametrize(
    ("data", "expect"), [c[1:] for c in FROM_DICT_CASES], ids=[c[0] for c in FROM_DICT_CASES]
)
def test_from_dict_tolerant(data: Any, expect: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="kontext.domain.guild_settings"):
        s = GuildSettings.from_dict(data)
    expected = {**GuildSettings().to_dict(), **expect}
    assert s.to_dict() == expected
    assert_valid(s)


def test_from_dict_logs_what_it_drops(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="kontext.domain.guild_settings"):
        GuildSettings.from_dict({"safety": 42, "blocklist": ["*"]})
    text = caplog.text
    assert "safety" in text and "block-list" in text


json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_value = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
FIELD_NAMES = list(GuildSettings().to_dict())
plausible = {
    "safety": st.integers(-10, 10),
    "nsfw_safety": st.integers(-10, 10),
    "allowed_models": st.lists(st.sampled_from([*MODELS, "x", ""]), max_size=4),
    "default_model": st.sampled_from([*MODELS, None, "x"]),
    "channels": st.lists(
        st.integers(-5, 2**64) | st.text(st.sampled_from("0123456789-x"), max_size=20), max_size=6
    ),
    "roles": st.lists(st.integers(-5, 2**64), max_size=6),
    "blocklist": st.lists(st.text(max_size=120), max_size=8),
    "cooldown_s": st.integers(-(10**6), 10**6),
    "user_daily_quota": st.integers(-(10**6), 10**6),
    "guild_daily_quota": st.integers(-(10**6), 10**6),
    "log_channel_id": st.none() | st.integers(-5, 2**64) | st.text(max_size=20),
}
stored_data = (
    json_value
    | st.dictionaries(st.sampled_from(FIELD_NAMES), json_value, max_size=len(FIELD_NAMES))
    | st.fixed_dictionaries({}, optional={k: v | json_value for k, v in plausible.items()})
)


@FAST
@given(stored_data)
def test_from_dict_never_raises_and_is_valid(data: Any) -> None:
    logging.getLogger("kontext.domain.guild_settings").disabled = True
    try:
        s = GuildSettings.from_dict(data)
    finally:
        logging.getLogger("kontext.domain.guild_settings").disabled = False
    assert_valid(s)
    assert GuildSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s


# --- text normalisation -------------------------------------------------------------------------------

NORMALISE_CASES = [
    ("spaces", "b a d", "bad"),
    ("dots", "b.a.d", "bad"),
    ("full-width", "ＢＡＤ", "bad"),
    ("zero-width", "b\u200bad", "bad"),
    ("bom", "\ufeffbad", "bad"),
    ("accents", "Crème Brûlée", "cremebrulee"),
    ("sharp-s", "STRAẞE", "strasse"),
    ("dotless-i", "bıt", "bit"),
    ("ligature", "ﬁne", "fine"),
    ("dotted-capital-i", "İstanbul", "istanbul"),
    ("cjk-kept", "坏 图。", "坏图"),
    ("dakuten-kept", "ｶﾞ", "ガ"),
    ("hangul-filler", "b\u3164ad", "bad"),
    ("digits-kept", "4 5 6", "456"),
    ("emoji-kept", "🍆 !", "🍆"),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in NORMALISE_CASES], ids=[c[0] for c in NORMALISE_CASES]
)
def test_normalise_text(text: str, expected: str) -> None:
    assert normalise_text(text) == expected


def test_normalise_light_keeps_words_apart() -> None:
    assert normalise_light("ＢＡＤ  W\u200bord!") == "bad  word!"
    assert is_whole_word('"x"') and is_whole_word("“x”") and not is_whole_word("x")


@FAST
@given(st.text(max_size=60))
def test_normalise_is_idempotent(text: str) -> None:
    once = normalise_text(text)
    assert normalise_text(once) == once
    light = normalise_light(text)
    assert normalise_light(light) == light
    assert normalise_text(light) == once


SEPARATORS = [" ", "\u200b", "\u200c", "\ufeff", "\u00ad", ".", "-", "_", "\u3000", "\t", "\u2060", "·", "/"]
word_chars = st.characters(whitelist_categories=("Lu", "Ll", "Lo", "Nd"))


@FAST
@given(
    word=st.text(word_chars, min_size=1, max_size=8),
    seps=st.lists(st.lists(st.sampled_from(SEPARATORS), max_size=3), min_size=8, max_size=8),
    before=st.text(max_size=15),
    after=st.text(max_size=15),
    upper=st.booleans(),
)
def test_separators_between_letters_do_not_bypass(
    word: str, seps: list[list[str]], before: str, after: str, upper: bool
) -> None:
    assume(normalise_text(word))
    spaced = "".join(ch + "".join(seps[i]) for i, ch in enumerate(word))
    if upper:
        spaced = spaced.upper()
    assert find_blocked(before + spaced + after, [word]) == word


@FAST
@given(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=10))
def test_full_width_does_not_bypass(word: str) -> None:
    assume(normalise_text(word) and "*" not in word and not is_whole_word(word))
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in word)
    assert find_blocked(f"x {full_width} y", [word]) == word


# The compiled regexes use atomic groups to stay linear; they must agree with naive backtracking ones.
_NO_SPACE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af]")


def _reference(entry: str, prompt: str) -> bool:
    if is_whole_word(entry):
        body = entry.strip()[1:-1]
        tokens = [re.sub(r"\*+", "*", tok) for tok in re.findall(r"[\w*]+", normalise_light(body))]
        if _NO_SPACE.match(tokens[0][0]):
            tokens[0] = "*" + tokens[0]
        if _NO_SPACE.match(tokens[-1][-1]):
            tokens[-1] += "*"
        parts = [r"\w*".join(map(re.escape, tok.split("*"))) for tok in tokens]
        regex = r"(?<!\w)" + r"\W+".join(parts) + r"(?!\w)"
        return re.search(regex, normalise_light(prompt)) is not None
    segments = [normalise_text(s) for s in entry.split("*")]
    return re.search(".*".join(map(re.escape, segments)), normalise_text(prompt), re.S) is not None


@FAST
@given(
    entry=st.text("ab坏* .", min_size=1, max_size=8),
    quoted=st.booleans(),
    prompt=st.text("ab坏 .", max_size=14),
)
def test_patterns_agree_with_naive_backtracking(entry: str, quoted: bool, prompt: str) -> None:
    if quoted:
        entry = f'"{entry}"'
    try:
        compile_pattern(entry)
    except ValueError:
        return
    assert (find_blocked(prompt, [entry]) is not None) == _reference(entry, prompt)
