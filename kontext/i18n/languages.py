"""The one locale rule: which catalog a Discord locale reads, and how its numbers are written.

Replies (:func:`kontext.i18n.t`) and command localisation (the Discord translator) both ask
:func:`catalog_for`, so a user never sees commands in one language and replies in another.

* Traditional Chinese (``zh-TW``, and ``zh-HK``/``zh-MO``/``zh-Hant`` from other sources) reads ``zh_TW``;
  it is never shown Simplified text. Other Chinese reads ``zh_CN``.
* Every Spanish (``es-ES``, Latin America's ``es-419``) reads ``es``, written in neutral Spanish;
  every Portuguese reads ``pt_BR`` (Discord offers only Brazilian Portuguese).
* Any other locale with a catalog of its language reads it (``de-AT`` → ``de``); anything else reads
  English. A message missing from a catalog falls back to English (tests keep catalogs complete).

Numbers are written the way the requester's own locale writes them when the text is in its language
(``es-419`` reads the ``es`` catalog but gets ``1,234.5``; ``de`` gets ``1.234,5``), else the way the
catalog's language does.
"""

from __future__ import annotations

from functools import lru_cache

from babel import Locale, UnknownLocaleError

#: The English catalog: the source language (command text also lives in the code, as Discord's default).
SOURCE = "en"
#: Every catalog under ``kontext/i18n/locale/``, source first.
CATALOGS = ("en", "zh_CN", "zh_TW", "ja", "ko", "es", "pt_BR", "de", "fr", "ru")

_TRADITIONAL_REGIONS = frozenset({"tw", "hk", "mo"})
_BY_LANGUAGE = {
    "en": "en",
    "ja": "ja",
    "ko": "ko",
    "es": "es",
    "pt": "pt_BR",
    "de": "de",
    "fr": "fr",
    "ru": "ru",
}


def _subtags(locale: str | None) -> list[str]:
    return [part for part in (locale or "").strip().replace("_", "-").lower().split("-") if part]


def _chinese(subtags: list[str]) -> str:
    script = next((s for s in subtags[1:] if len(s) == 4), None)
    region = next((s for s in subtags[1:] if len(s) in (2, 3)), None)
    if script == "hant" or (script is None and region in _TRADITIONAL_REGIONS):
        return "zh_TW"
    return "zh_CN"


def catalog_for(locale: str | None) -> str:
    """The catalog for a Discord (or BCP 47) locale.

    ``zh-TW`` → ``zh_TW``, ``es-419`` → ``es``, ``pt-BR`` → ``pt_BR``; ``it``, ``None`` or ``""`` → ``en``.
    """
    subtags = _subtags(locale)
    if not subtags:
        return SOURCE
    if subtags[0] == "zh":
        return _chinese(subtags)
    return _BY_LANGUAGE.get(subtags[0], SOURCE)


@lru_cache(maxsize=256)
def _parse(tag: str) -> Locale | None:
    try:
        return Locale.parse(tag, sep="-")
    except (UnknownLocaleError, ValueError, TypeError):
        return None


@lru_cache(maxsize=256)
def number_locale(locale: str | None) -> Locale:
    """The Babel locale that writes numbers in a reply to ``locale`` (see the module docstring)."""
    catalog = catalog_for(locale)
    catalog_locale = _parse(catalog.replace("_", "-"))
    assert catalog_locale is not None, catalog
    own = _parse("-".join(_subtags(locale))) if locale else None
    if own is not None and own.language == catalog_locale.language and catalog_for(str(own)) == catalog:
        return own
    return catalog_locale
