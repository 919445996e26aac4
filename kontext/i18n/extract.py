"""``pybabel extract`` method for the reply messages (see ``babel.cfg``).

Reply ids are stable keys whose English text lives in the English catalog; the code uses them as
``t("status_waiting", …)`` or through error codes. Extraction copies every reply id of the English
catalog into the template, its English text as an extracted comment (``#.``), so ``pybabel update``
shows translators the English sentence next to each id. Command strings (ids starting with one of
:data:`COMMAND_PREFIXES`) are extracted from the cogs instead, by
:func:`kontext.adapters.discord.commands.extract_commands`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import IO, Any

from babel.messages.pofile import read_po

#: Ids of command strings (declared in the cogs, English as Discord's default).
COMMAND_PREFIXES = ("cmd.", "option.", "choice.", "menu.")

Extracted = tuple[int, str | None, str | tuple[str, str], list[str]]


def is_command_id(message_id: str) -> bool:
    return message_id.startswith(COMMAND_PREFIXES)


def english_comment(text: str | tuple[str, ...]) -> list[str]:
    """The English text as extracted-comment lines (plural forms as ``one:`` / ``other:``)."""
    if isinstance(text, str):
        return [f"en: {line}" for line in text.splitlines() or [""]]
    return [
        f"en ({form}): {line}"
        for form, value in zip(("one", "other"), text, strict=False)
        for line in value.splitlines() or [""]
    ]


def extract_english(
    fileobj: IO[bytes], keywords: Collection[str], comment_tags: Collection[str], options: Mapping[str, Any]
) -> Iterator[Extracted]:
    """Babel extraction method: every reply id of the English catalog, English text as comment."""
    catalog = read_po(fileobj, locale="en")
    for message in catalog:
        key = str(message.id[0] if message.pluralizable else message.id)
        if not key or is_command_id(key):
            continue
        line = message.lineno or 0
        if message.pluralizable:
            forms = tuple(str(form) for form in message.string or ())
            yield line, "ngettext", (key, key), english_comment(forms)
        else:
            yield line, None, key, english_comment(str(message.string or ""))
