"""Every command string the bot registers, found the way ``tree.sync`` finds them (no connection needed).

:func:`sync_payload` loads the cogs into a bot that never connects and builds the exact body
``tree.sync`` would send (``PUT /applications/{id}/commands``), translations included; the tests
validate it for every locale. :func:`collect_command_strings` lists each translatable string with its
catalog id, English text and kind; :func:`extract_commands` is the ``pybabel extract`` method that
puts them into the catalog template (see ``babel.cfg``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, Any, cast

import discord
from discord import app_commands
from discord.app_commands import TranslationContextLocation as Where

from kontext.adapters.discord.client import EXTENSIONS, Backend, KontextBot
from kontext.adapters.discord.translator import KontextTranslator, message_id
from kontext.config import load_settings

#: What Discord accepts for each kind of string (shown to translators in the template).
LIMITS = {
    "name": "chat command name: lower case, letters, digits, - _ ' only, no spaces, 1-32 characters",
    "menu": "message command name: 1-32 characters, spaces and capitals allowed",
    "description": "1-100 characters",
    "choice": "choice name: 1-100 characters",
}


@dataclass(frozen=True)
class CommandString:
    """One translatable string: its catalog id, English text, kind (a key of :data:`LIMITS`) and origin."""

    id: str
    english: str
    kind: str
    module: str
    line: int


#: Placeholders in the shape of real credentials: the bot below never connects, so they are never sent.
_OFFLINE = {
    "DISCORD_TOKEN": "offline-placeholder-id.offline.offline-placeholder-signature",
    "APIMART_API_KEY": "offline-placeholder",
}


class _NoBackend:
    """Enough of a backend for the cogs to be constructed (nothing runs)."""

    settings = interactions = moderation = modlog = runner = session_gate = None

    async def start(self, bot: KontextBot) -> None:  # pragma: no cover - never started
        return None

    async def resume(self) -> int:  # pragma: no cover - never started
        return 0

    async def close(self) -> None:
        return None


async def loaded_bot() -> KontextBot:
    """A bot with every cog loaded and the catalog translator set, never connected (default settings)."""
    bot = KontextBot(load_settings(_OFFLINE), cast(Backend, _NoBackend()))
    await bot.tree.set_translator(KontextTranslator())
    for extension in EXTENSIONS:
        await bot.load_extension(extension)
    return bot


async def sync_payload(translator: app_commands.Translator | None = None) -> list[dict[str, Any]]:
    """The body ``tree.sync()`` sends for the global commands (with ``translator``, default the bot's)."""
    bot = await loaded_bot()
    try:
        translator = translator or bot.tree.translator
        assert translator is not None
        return [
            await command.get_translated_payload(bot.tree, translator) for command in bot.tree.get_commands()
        ]
    finally:
        await (
            bot.http.close()
        )  # never logged in: nothing else to close (a sharded client cannot close unstarted)


def _kind(location: Where, data: object) -> str:
    if isinstance(data, app_commands.ContextMenu):
        return "menu"
    if location in (Where.command_name, Where.group_name, Where.parameter_name):
        return "name"
    if location is Where.choice_name:
        return "choice"
    return "description"


def _origin(data: object) -> tuple[str, int] | None:
    """The module and line that declare the command, group or option ``data`` (None for a choice)."""
    if isinstance(data, app_commands.Parameter):
        data = data.command
    if isinstance(data, (app_commands.Command, app_commands.ContextMenu)):
        code = getattr(data.callback, "__code__", None)
        return str(data.module), code.co_firstlineno if code else 1
    if isinstance(data, app_commands.Group):
        return str(data.module), 1
    return None


class _Recorder(app_commands.Translator):
    """Records every string discord.py asks to translate, once (choices belong to the option before)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, CommandString] = {}
        #: One id given two English texts (a copy-pasted key): a bug the tests report.
        self.conflicts: list[tuple[str, str, str]] = []
        self._origin = ("", 1)

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        self._origin = _origin(context.data) or self._origin
        key = message_id(string, context)
        if key is None:
            return None
        if key not in self.found:
            kind = _kind(context.location, context.data)
            self.found[key] = CommandString(key, string.message, kind, *self._origin)
        elif self.found[key].english != string.message:
            self.conflicts.append((key, self.found[key].english, string.message))
        return None


async def collect_command_strings() -> list[CommandString]:
    """Every translatable command string, in the order ``tree.sync`` meets them.

    Raises ValueError when one id is given two different English texts.
    """
    recorder = _Recorder()
    await sync_payload(recorder)
    if recorder.conflicts:
        raise ValueError(f"one id, two English texts: {recorder.conflicts}")
    return list(recorder.found.values())


@cache
def _command_strings_once() -> tuple[CommandString, ...]:
    return tuple(asyncio.run(collect_command_strings()))


def extract_commands(
    fileobj: IO[bytes], keywords: Collection[str], comment_tags: Collection[str], options: Mapping[str, Any]
) -> Iterator[tuple[int, str | None, str, list[str]]]:
    """Babel extraction method for ``cogs/*.py``: the command strings that file declares."""
    module = ".".join(Path(str(getattr(fileobj, "name", ""))).with_suffix("").parts[-2:])
    for found in _command_strings_once():
        if found.module == module:
            yield found.line, None, found.id, [f"en: {found.english}", f"limit: {LIMITS[found.kind]}"]
