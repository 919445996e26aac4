"""End to end: `/edit` in every language — status, result and an error in the user's language, and the
commands localised by the same rule (a zh-TW user gets Traditional Chinese for both)."""

from __future__ import annotations

import re

import discord
import pytest

from kontext.i18n import catalog_for, command_text, t
from kontext.i18n.catalog import load
from kontext.i18n.formatting import placeholders
from tests.harness import World

#: Every Discord locale with a catalog of its own language (es-419 shares es), and English twice.
LOCALES = ["en-US", "en-GB", *(loc.value for loc in discord.Locale if catalog_for(loc.value) != "en")]


def sentence(key: str, locale: str) -> re.Pattern[str]:
    """The locale's sentence for ``key`` with any value in its placeholders."""
    text = load(catalog_for(locale)).translations.gettext(key)
    for name, spec in set(placeholders(text)):
        text = text.replace("{" + name + (":" + spec if spec else "") + "}", "\x00")
    return re.compile("^" + re.escape(text).replace("\x00", ".+?") + "$", re.S)


def english_unless(locale: str, key: str) -> bool:
    """True when ``key`` reads differently from English in ``locale`` (so a match proves the language)."""
    return catalog_for(locale) == "en" or t(key, locale) != t(key, "en")


@pytest.mark.parametrize("locale", LOCALES)
async def test_edit_speaks_the_users_language_end_to_end(world: World, locale: str) -> None:
    await world.start_bot()
    edit = world.discord.command("edit")
    assert edit["name_localizations"].get(locale) == command_text("cmd.edit", locale)

    inter = await world.edit(prompt="make the sky purple", locale=locale)
    result = await world.result_of(inter)

    statuses = [e.message.content for e in inter.original_edits][:-1]
    working = [
        sentence(key, locale) for key in ("status_queued", "status_editing", "status_editing_noprogress")
    ]
    assert any(p.match(s) for p in working for s in statuses), statuses
    assert english_unless(locale, "status_uploading")

    assert sentence("status_done", locale).match(result.content), result.content
    embed = result.embeds[0]
    assert embed["title"] == t("result_title", locale) and english_unless(locale, "result_title")
    names = [f["name"] for f in embed["fields"]]
    assert names == [t(k, locale) for k in ("field_prompt", "field_model", "field_requester", "field_time")]
    assert sentence("seconds", locale).match(embed["fields"][3]["value"])
    labels = [c.get("label") for row in result.components for c in row.get("components", [])]
    assert labels == [t(k, locale) for k in ("button_reroll", "button_edit_again", "button_delete")]

    world.apimart.script(duration=0.2, fail_reason="flagged by the safety filter")
    failed = await world.edit(prompt="make it rain", locale=locale)
    text = await world.failure_of(failed)
    reason = t("task_failed", locale, reason="flagged by the safety filter")
    assert text == t("status_failed", locale, reason=reason) and english_unless(locale, "task_failed")


async def test_traditional_chinese_never_gets_simplified(world: World) -> None:
    await world.start_bot()
    menu = world.discord.command("Edit image", type=3)
    assert menu["name_localizations"]["zh-TW"] == "編輯圖片" != menu["name_localizations"]["zh-CN"]
    refused = await world.edit(
        b"just some text", filename="notes.txt", content_type="text/plain", locale="zh-TW"
    )
    data = (await refused.wait_for_callback()).data
    assert data is not None
    assert data["content"] == t("attachment_not_image", "zh-TW")
    assert data["content"].startswith("這個附件看起來不是圖片")
