"""The catalogs stay honest: complete, same placeholders, really translated, within Discord's limits.

Also: the one locale rule (replies and commands agree), numbers and plurals through Babel, the command
payload ``tree.sync`` would send validating for every locale, the ``pybabel extract`` template in step
with the code, and the catalogs shipped as package data.
"""

from __future__ import annotations

import asyncio
import io
import re
import tomllib
import unicodedata
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import discord
import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.frontend import CommandLineInterface
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

from kontext.adapters.discord.command_strings import CommandString, collect_command_strings, sync_payload
from kontext.domain.errors import ImageTooLarge, ImageTooLargeUnknownSize
from kontext.i18n import PLURAL_COUNTS, catalog_for, command_text, error_text, t
from kontext.i18n.catalog import LOCALE_DIR, TEMPLATE, load, po_path, read
from kontext.i18n.extract import is_command_id
from kontext.i18n.formatting import SPECS, placeholders
from kontext.i18n.languages import CATALOGS, SOURCE
from tests.fakes.discord.validation import VALID_LOCALES, command_size, validate_commands

ROOT = Path(__file__).resolve().parents[1]
TRANSLATED = [name for name in CATALOGS if name != SOURCE]
#: Translations that are rightly the same as English: the product's name, a symbol, a word both share.
SAME_AS_ENGLISH = {
    "*": {"cmd.kontext", "status_failed"},  # "kontext"; "❌ {reason}"
    "es": {"cmd.kontext.roles", "show_roles", "seconds"},  # "roles"; "{elapsed} s" (the SI symbol)
    "pt_BR": {"seconds"},
    "de": {"seconds"},
    "fr": {"option.image", "option.format", "seconds"},  # "image", "format"
}
#: Text that must never reach a user: leftovers of templates and machine translation.
PLACEHOLDER_TEXT = re.compile(r"\b(TODO|FIXME|XXX|TRANSLATE ME)\b|^…$|^\.\.\.$|msgstr|\{\{|\}\}")


def strings(message: Message) -> list[str]:
    value = message.string
    return [str(v) for v in value] if isinstance(value, (tuple, list)) else [str(value or "")]


def key_of(message: Message) -> str:
    return str(message.id[0] if message.pluralizable else message.id)


def entries(catalog: Catalog) -> Iterator[tuple[str, Message]]:
    for message in catalog:
        if message.id:
            yield key_of(message), message


def template_of(path: Path) -> Catalog:
    return read_po(io.BytesIO(path.read_bytes()))


@pytest.fixture(scope="module")
def english() -> dict[str, Message]:
    return dict(entries(read(SOURCE)))


@pytest.fixture(scope="module")
def command_strings() -> list[CommandString]:
    return asyncio.run(collect_command_strings())


# --- completeness ---------------------------------------------------------------------------------


def _comment(message: Message) -> str:
    return " ".join(" ".join(message.auto_comments).split())


def test_template_matches_the_code_and_the_english_catalog(tmp_path: Path) -> None:
    """``pybabel extract`` (README) reproduces the committed template: same ids, same English comments."""
    out = tmp_path / "kontext.pot"
    CommandLineInterface().run(
        [
            "pybabel",
            "-q",
            "extract",
            "-F",
            str(ROOT / "babel.cfg"),
            "--no-location",
            "-o",
            str(out),
            str(ROOT),
        ]
    )
    fresh = {key: _comment(m) for key, m in entries(template_of(out))}
    committed = {key: _comment(m) for key, m in entries(template_of(TEMPLATE))}
    assert fresh == committed, "run the README's `pybabel extract` and `pybabel update`"


@pytest.mark.parametrize("name", CATALOGS)
def test_every_catalog_has_every_message_and_nothing_else(name: str) -> None:
    template = {key for key, _ in entries(template_of(TEMPLATE))}
    catalog = read(name)
    found = dict(entries(catalog))
    assert set(found) == template, f"{name}: missing {template - set(found)}, extra {set(found) - template}"
    for key, message in found.items():
        assert not message.fuzzy, f"{name}: {key} is fuzzy"
        assert len(strings(message)) == (catalog.num_plurals if message.pluralizable else 1), (name, key)
        assert all(s.strip() for s in strings(message)), f"{name}: {key} is not translated"
    assert load(name).ids == set(found), "every entry is served"


def test_plural_messages_and_their_counts_agree(english: dict[str, Message]) -> None:
    plural = {key for key, message in english.items() if message.pluralizable}
    assert plural == set(PLURAL_COUNTS)
    for key, count in PLURAL_COUNTS.items():
        for form in strings(english[key]):
            assert count in {name for name, _ in placeholders(form)}, (key, form)


@pytest.mark.parametrize("name", CATALOGS)
def test_plural_rules_are_the_languages_own(name: str) -> None:
    catalog = read(name)
    rule = get_plural(name)
    assert (catalog.num_plurals, catalog.plural_expr) == (rule.num_plurals, rule.plural_expr)


# --- faithful translations ------------------------------------------------------------------------


@pytest.mark.parametrize("name", TRANSLATED)
def test_translations_keep_every_placeholder_and_markup(name: str, english: dict[str, Message]) -> None:
    for key, message in entries(read(name)):
        source = sorted(placeholders(strings(english[key])[-1]))
        for text in strings(message):
            assert sorted(placeholders(text)) == source, f"{name}: {key}: {text!r}"
            assert text.count("<t:") == strings(english[key])[-1].count("<t:"), (name, key)
            assert "/kontext" not in strings(english[key])[-1] or "/kontext" in text, (name, key)


def test_placeholders_use_only_known_specs() -> None:
    for name in CATALOGS:
        for key, message in entries(read(name)):
            for text in strings(message):
                for _, spec in placeholders(text):
                    assert spec in SPECS, (name, key, spec)
                assert not re.search(r"<t:\{\w+\}", text), f"{name}: {key}: a timestamp needs :d"


@pytest.mark.parametrize("name", TRANSLATED)
def test_nothing_is_left_in_english_or_as_a_placeholder(name: str, english: dict[str, Message]) -> None:
    allowed = SAME_AS_ENGLISH["*"] | SAME_AS_ENGLISH.get(name, set())
    for key, message in entries(read(name)):
        for text in strings(message):
            assert not PLACEHOLDER_TEXT.search(text), (name, key, text)
            if key not in allowed:
                assert text not in strings(english[key]), f"{name}: {key} is still English: {text!r}"


def test_traditional_chinese_is_not_simplified() -> None:
    simplified, traditional = dict(entries(read("zh_CN"))), dict(entries(read("zh_TW")))
    differing = [key for key in simplified if strings(simplified[key]) != strings(traditional[key])]
    assert len(differing) > 0.8 * len(simplified), "zh_TW must be written in Traditional characters"
    simplified_only = set("们这个说设图编频务时发无请户删选输让")
    for key, message in traditional.items():
        for text in strings(message):
            assert not simplified_only & set(text), f"zh_TW: {key}: Simplified characters in {text!r}"


#: Discord's limits on where a reply string is shown: modal title and text-input label, button label.
UI_LIMITS = {
    "edit_again_title": 45,
    "edit_prompt_label": 45,
    "button_": 80,
    "result_title": 256,
    "field_": 256,
}


@pytest.mark.parametrize("name", CATALOGS)
def test_labels_and_titles_fit_their_components(name: str) -> None:
    for key, message in entries(read(name)):
        limit = next((n for prefix, n in UI_LIMITS.items() if key.startswith(prefix)), 2000)
        assert all(1 <= len(text) <= limit for text in strings(message)), (name, key)


# --- the locale rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "catalog"),
    [
        ("en-US", "en"),
        ("en-GB", "en"),
        ("zh-CN", "zh_CN"),
        ("zh-TW", "zh_TW"),
        ("zh-HK", "zh_TW"),
        ("zh-Hant", "zh_TW"),
        ("zh-Hans-HK", "zh_CN"),
        ("zh", "zh_CN"),
        ("ja", "ja"),
        ("ko", "ko"),
        ("es-ES", "es"),
        ("es-419", "es"),
        ("es-MX", "es"),
        ("pt-BR", "pt_BR"),
        ("pt-PT", "pt_BR"),
        ("de", "de"),
        ("de-AT", "de"),
        ("fr", "fr"),
        ("ru", "ru"),
        ("it", "en"),
        ("uk", "en"),
        ("xx-YY", "en"),
        ("", "en"),
        (None, "en"),
    ],
)
def test_one_rule_maps_locales_to_catalogs(locale: str | None, catalog: str) -> None:
    assert catalog_for(locale) == catalog


def test_replies_and_commands_follow_the_same_rule() -> None:
    """zh-TW users get Traditional Chinese commands *and* replies (issue 10 point 11); es-419 gets Spanish."""
    for locale in discord.Locale:
        name = catalog_for(locale.value)
        expected = None if name == SOURCE else load(name).translations.gettext("cmd.edit")
        assert command_text("cmd.edit", locale.value) == expected, locale
        assert t("button_delete", locale.value) == load(name).translations.gettext("button_delete"), locale
    assert command_text("cmd.edit", "zh-TW") == "編輯圖片" and t("button_delete", "zh-TW") == "刪除"
    assert command_text("option.prompt", "es-419") == command_text("option.prompt", "es-ES") == "instrucción"


def test_an_unknown_message_id_still_answers() -> None:
    assert t("no_such_message", "de") == t("internal", "de")


# --- numbers, plurals, dates ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en-US", ["Please wait 1 second", "Please wait 2 seconds", "Please wait 5 seconds"]),
        ("fr", ["Attends 1 seconde", "Attends 2 secondes", "Attends 5 secondes"]),
        ("ru", ["Подождите 1 секунду", "Подождите 2 секунды", "Подождите 5 секунд"]),
        ("ja", ["次の編集まで 1 秒", "次の編集まで 2 秒", "次の編集まで 5 秒"]),
    ],
)
def test_counts_pick_the_languages_plural_form(locale: str, expected: list[str]) -> None:
    for seconds, start in zip((1, 2, 5), expected, strict=True):
        assert t("policy_cooldown", locale, seconds=seconds).startswith(start)


def test_russian_has_three_forms_and_french_counts_zero_as_one() -> None:
    assert [t("show_blocklist_count", "ru", count=n).split(" (")[0] for n in (1, 3, 11, 21, 25)] == [
        "1 запись",
        "3 записи",
        "11 записей",
        "21 запись",
        "25 записей",
    ]
    assert t("show_cooldown_value", "fr", seconds=0) == "0 seconde"
    assert t("show_cooldown_value", "en", seconds=0) == "0 seconds"


@pytest.mark.parametrize("locale", ["en-US", "de", "fr", "ru", "es-ES", "es-419", "pt-BR", "ja"])
def test_numbers_are_written_the_readers_way(locale: str) -> None:
    babel_locale = locale.replace("-", "_")
    big = format_decimal(12345, locale=babel_locale)
    assert big in t("show_usage_value", locale, total=12345, reset_at=1_764_547_200)
    assert "<t:1764547200:R>" in t("show_usage_value", locale, total=12345, reset_at=1_764_547_200)
    text = error_text(ImageTooLarge("x", size_mb=30.04, limit_mb=0.5), locale)
    assert format_decimal(30.0, format="#,##0.0", locale=babel_locale) in text
    assert format_decimal(0.5, locale=babel_locale) in text
    assert ("30,0" in text) == (locale in ("de", "fr", "ru", "es-ES", "pt-BR"))
    over = error_text(ImageTooLargeUnknownSize("x", limit_mb=20.0), locale)
    assert "20" in over and "?" not in over


def test_dates_are_written_the_readers_way() -> None:
    day = date(2026, 11, 30)
    assert t("show_usage", "en-US", date=day) == "Usage today, Nov 30, 2026 (UTC)"
    assert "30.11.2026" in t("show_usage", "de", date=day)
    assert "2026/11/30" in t("show_usage", "ja", date=day)
    assert "2026年11月30日" in t("show_usage", "zh-TW", date=day)


def test_pixel_sizes_and_timestamps_stay_raw_digits() -> None:
    text = t("image_bad_shape", "de", width=12000, height=1000)
    assert "12000×1000" in text
    assert "<t:1764547200:R>" in t("policy_user_quota", "de", limit=1000, reset_at=1_764_547_200)
    assert "1.000 Bearbeitungen" in t("policy_user_quota", "de", limit=1000, reset_at=1_764_547_200)


# --- commands ---------------------------------------------------------------------------------------


def _name_ok(name: str) -> bool:
    """Discord's ``^[-_'\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]{1,32}$``, lower case where a letter has one."""
    return (
        1 <= len(name) <= 32
        and name == name.lower()
        and all(c in "-_'" or unicodedata.category(c)[0] in "LN" for c in name)
    )


@pytest.mark.parametrize("name", CATALOGS)
def test_every_command_string_fits_discord(name: str, command_strings: list[CommandString]) -> None:
    catalog = dict(entries(read(name)))
    for found in command_strings:
        text = strings(catalog[found.id])[0]
        if name == SOURCE:
            assert text == found.english, f"en catalog: {found.id} must read {found.english!r}"
        if found.kind == "name":
            assert _name_ok(text), f"{name}: {found.id}: invalid command name {text!r}"
        elif found.kind == "menu":
            assert 1 <= len(text) <= 32, (name, found.id)
        else:
            assert 1 <= len(text) <= 100, f"{name}: {found.id} has {len(text)} characters"
            assert text.strip() not in ("…", "...", "-"), (name, found.id)


def test_command_ids_are_exactly_the_codes_strings(command_strings: list[CommandString]) -> None:
    english = {key for key, _ in entries(read(SOURCE)) if is_command_id(key)}
    assert english == {found.id for found in command_strings}


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for option in node.get("options") or []:
        yield from _walk(option)


#: Names a language writes like English (so no localization is sent): Discord shows the default.
SAME_NAME = {"kontext": "*", "image": "fr", "format": "fr", "roles": "es"}
#: Choices that are identifiers, the same in every language (declared without an id).
IDENTIFIERS = {"PNG", "JPEG", "Flux Kontext Pro", "flux-kontext-pro", "flux-kontext-max"}


def _check_names(node: dict[str, Any], localized: set[str]) -> None:
    missing = localized - set(node.get("name_localizations") or {})
    same = SAME_NAME.get(node["name"])
    assert all(same in ("*", catalog_for(loc)) for loc in missing), (node["name"], missing)


def _check_choices(node: dict[str, Any], localized: set[str]) -> None:
    for choice in node.get("choices") or []:
        if choice["name"] in IDENTIFIERS or re.fullmatch(r"[\d:]+", choice["name"]):
            assert not choice.get("name_localizations"), choice
        else:
            assert set(choice.get("name_localizations") or {}) == localized, choice["name"]


async def test_the_synced_payload_validates_for_every_locale() -> None:
    payload = await sync_payload()
    assert validate_commands(payload) == []
    localized = {loc.value for loc in discord.Locale if catalog_for(loc.value) != SOURCE}
    assert localized >= {"zh-CN", "zh-TW", "ja", "ko", "es-ES", "es-419", "pt-BR", "de", "fr", "ru"}
    assert localized <= VALID_LOCALES
    for command in payload:
        _check_names(command, localized)
        if command.get("type", 1) != 1:
            continue  # a message command has a name only
        assert command_size(command) <= 4000, "well inside Discord's 8000 (its former limit was 4000)"
        for node in _walk(command):
            assert node["description"] not in ("…", ""), f"{node['name']} has no description"
            assert set(node.get("description_localizations") or {}) == localized, node["name"]
            _check_names(node, localized)
            _check_choices(node, localized)


async def test_traditional_chinese_users_see_traditional_commands() -> None:
    payload = {c["name"]: c for c in await sync_payload()}
    assert payload["edit"]["name_localizations"]["zh-TW"] == "編輯圖片"
    assert payload["edit"]["name_localizations"]["zh-CN"] == "编辑图片"
    kontext = {o["name"]: o for o in payload["kontext"]["options"]}
    assert kontext["blocklist"]["name_localizations"]["zh-TW"] == "封鎖詞"
    assert payload["Edit image"]["name_localizations"]["es-419"] == "Editar imagen"


async def test_a_renamed_description_keeps_its_translations() -> None:
    """Ids are stable: changing the English default does not lose the translation."""
    from kontext.adapters.discord.translator import KontextTranslator

    translator = KontextTranslator()
    string = discord.app_commands.locale_str("A brand new English wording", key="option.model.description")
    context: discord.app_commands.TranslationContextTypes = discord.app_commands.TranslationContext(
        discord.app_commands.TranslationContextLocation.other, None
    )
    assert await translator.translate(string, discord.Locale.german, context) == command_text(
        "option.model.description", "de"
    )


# --- packaging ----------------------------------------------------------------------------------------


def test_the_catalogs_ship_as_package_data() -> None:
    """``pip install .`` and the Docker image get every catalog (they are compiled in memory at first use)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]["kontext.i18n"]
    package = LOCALE_DIR.parent
    shipped = {p for pattern in globs for p in package.glob(pattern)}
    assert {po_path(name) for name in CATALOGS} | {TEMPLATE} <= shipped
    assert "babel" in " ".join(config["project"]["dependencies"]).lower()


async def test_one_id_given_two_english_texts_is_caught() -> None:
    from kontext.adapters.discord.command_strings import _Recorder

    recorder = _Recorder()
    context: discord.app_commands.TranslationContextTypes = discord.app_commands.TranslationContext(
        discord.app_commands.TranslationContextLocation.other, None
    )
    for text in ("Output file format", "Output format"):
        string = discord.app_commands.locale_str(text, key="option.format.description")
        await recorder.translate(string, discord.Locale.german, context)
    assert recorder.conflicts == [("option.format.description", "Output file format", "Output format")]
