"""User-facing wording in the requester's language, from gettext catalogs.

* :mod:`kontext.i18n.catalog` — the ``.po`` catalogs under ``locale/`` (ids are stable keys),
  compiled in memory on first use;
* :mod:`kontext.i18n.languages` — the one rule from a Discord locale to a catalog (and fallbacks);
* :mod:`kontext.i18n.formatting` — placeholders and locale-aware numbers (Babel);
* :mod:`kontext.i18n.extract` — the ``pybabel extract`` method for the English catalog.

:func:`t` words a reply; :func:`error_text` words a :class:`~kontext.domain.errors.KontextError`;
:func:`command_text` gives the Discord translator a command string in a user's language.
"""

from __future__ import annotations

from typing import Any

from kontext.domain.costs import Money
from kontext.domain.errors import KontextError
from kontext.i18n.catalog import load
from kontext.i18n.formatting import LocaleFormatter, money
from kontext.i18n.languages import SOURCE, catalog_for, number_locale

__all__ = ["PLURAL_COUNTS", "catalog_for", "command_text", "error_text", "number", "price", "t"]

#: Messages with plural forms (``msgid_plural`` in the catalogs) → the parameter whose number picks
#: the form (``1 second`` / ``5 seconds``; Russian has three forms, Chinese one).
PLURAL_COUNTS: dict[str, str] = {
    "prompt_too_long": "length",
    "task_timeout": "seconds",
    "policy_cooldown": "seconds",
    "policy_user_quota": "limit",
    "policy_guild_quota": "limit",
    "settings_cooldown_range": "max",
    "settings_blocklist_entry_too_long": "length",
    "settings_blocklist_full": "limit",
    "settings_list_too_long": "limit",
    "show_blocklist_count": "count",
    "show_cooldown_value": "seconds",
    "show_usage_value": "total",
    "show_list_more": "count",
    "usage_title": "days",
    "usage_total_value": "jobs",
}
#: Shown for an id no catalog knows (a bug, but the user still hears back).
FALLBACK_KEY = "internal"
#: The plural form used when the count is not a number (e.g. ``?``): the general plural everywhere.
_UNKNOWN_COUNT = 5


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _UNKNOWN_COUNT
    return int(value)


def t(key: str, locale: str | None = None, **params: Any) -> str:
    """The sentence for ``key`` in the locale's language, with ``params`` filled in."""
    source = load(SOURCE)
    if key not in source.ids:
        key = FALLBACK_KEY
    translations = load(catalog_for(locale)).translations
    if key in source.plural_ids:
        text = translations.ngettext(key, key, _count(params.get(PLURAL_COUNTS.get(key, "count"))))
    else:
        text = translations.gettext(key)
    try:
        return LocaleFormatter(number_locale(locale)).format(text, **params)
    except (KeyError, IndexError, ValueError, AttributeError):
        return text


def error_text(error: KontextError, locale: str | None = None) -> str:
    """The user-facing sentence for an error (never its operator detail)."""
    params = {k: ("?" if v is None else v) for k, v in error.params.items()}
    return t(error.code, locale, **params)


def command_text(message_id: str, locale: str | None) -> str | None:
    """A command string (name, description, choice) for ``locale``; ``None`` keeps Discord's default.

    English locales, and locales that fall back to English, get ``None``: the English text is the
    command's own default, declared in the code.
    """
    name = catalog_for(locale)
    if name == SOURCE:
        return None
    catalog = load(name)
    if message_id not in catalog.ids:
        return None
    return catalog.translations.gettext(message_id)


def price(value: Money, locale: str | None) -> str:
    """An amount of money written the way ``locale`` writes it (``$0.04``, ``0,04 $``)."""
    return money(value, number_locale(locale))


def number(value: int | float, locale: str | None) -> str:
    """A number written the way ``locale`` writes it (``1,234``, ``1.234``, ``1 234``)."""
    return LocaleFormatter(number_locale(locale)).format_field(value, "")
