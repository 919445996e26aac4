"""Command names, descriptions, options and choices in every user's language, from the gettext catalogs.

discord.py passes every command string through :meth:`KontextTranslator.translate` when the commands
are synced; the answer comes from the same catalogs, and the same locale rule, as the replies
(:func:`kontext.i18n.command_text`). The English text is declared in the cogs (it is what Discord
shows by default); the message id is stable, so editing a description never loses its translations:

* an explicit ``locale_str(english, key="…")`` wins (shared strings, choices);
* a command or group name is ``cmd.<qualified name, dotted>`` (``cmd.kontext.blocklist.add``), its
  description ``cmd.<…>.description``; a context-menu name is ``menu.<name in snake case>``;
* an option name is ``option.<name>`` (one word for one name everywhere), an option description
  ``cmd.<command>.<option>.description``;
* a choice without a key (``PNG``, ``16:9``, a model id) is the same in every language.
"""

from __future__ import annotations

import re

import discord
from discord import app_commands
from discord.app_commands import TranslationContextLocation as Where

from kontext.i18n import command_text

_NAME_LOCATIONS = (Where.command_name, Where.group_name)
_DESCRIPTION_LOCATIONS = (Where.command_description, Where.group_description)


def _qualified(data: object) -> str:
    return str(getattr(data, "qualified_name", "")).replace(" ", ".")


def message_id(string: app_commands.locale_str, context: app_commands.TranslationContextTypes) -> str | None:
    """The catalog id of a command string (see the module docstring); ``None``: not translated."""
    key = string.extras.get("key")
    if isinstance(key, str):
        return key
    location, data = context.location, context.data
    if isinstance(data, app_commands.ContextMenu):
        return "menu." + re.sub(r"\W+", "_", data.name.lower()).strip("_")
    if location in _NAME_LOCATIONS:
        return "cmd." + _qualified(data)
    if location in _DESCRIPTION_LOCATIONS:
        return f"cmd.{_qualified(data)}.description"
    if isinstance(data, app_commands.Parameter):
        if location is Where.parameter_name:
            return f"option.{data.name}"
        return f"cmd.{_qualified(data.command)}.{data.name}.description"
    return None


class KontextTranslator(app_commands.Translator):
    """Answers discord.py's translation requests from the gettext catalogs (``None`` = English default)."""

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        key = message_id(string, context)
        if key is None:
            return None
        text = command_text(key, locale.value)
        return None if text == string.message else text
