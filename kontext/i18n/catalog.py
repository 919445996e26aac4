"""The gettext catalogs: ``locale/<catalog>/LC_MESSAGES/kontext.po``, compiled in memory on first use.

The ``.po`` files are the only form kept in the repository and shipped in the package. A catalog is
read with Babel and compiled to the binary ``.mo`` form in memory the first time a message of its
language is needed (a few milliseconds each), then served by :mod:`gettext`'s own lookup and plural
rules. There is no build step to forget: ``pip install .``, ``pip install -e .``, a Docker image and a
plain checkout all read the same ``.po`` text, and a ``.mo`` can never be stale. Entries marked
fuzzy or left empty are not used (gettext's rule); tests keep every catalog complete.

Message ids are stable keys (``status_waiting``, ``cmd.edit.description``), never English sentences:
editing the English text leaves every translation in place.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from kontext.i18n.languages import CATALOGS, SOURCE

#: Where the catalogs live (package data).
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
#: The gettext domain: the name of every ``.po`` file and of the template ``kontext.pot``.
DOMAIN = "kontext"
TEMPLATE = LOCALE_DIR / f"{DOMAIN}.pot"


def po_path(name: str) -> Path:
    return LOCALE_DIR / name / "LC_MESSAGES" / f"{DOMAIN}.po"


def read(name: str) -> Catalog:
    """The Babel catalog of ``name`` as written in its ``.po`` file."""
    if name not in CATALOGS:
        raise LookupError(f"no catalog {name!r}")
    with po_path(name).open("rb") as file:
        return read_po(file, locale=name, domain=DOMAIN)


@dataclass(frozen=True)
class Loaded:
    """One catalog, ready to serve: gettext lookups (English behind) and the ids it translates."""

    name: str
    translations: Translations
    ids: frozenset[str]
    plural_ids: frozenset[str]


@cache
def load(name: str) -> Loaded:
    """Catalog ``name`` compiled in memory (cached); missing entries fall back to English."""
    catalog = read(name)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    translations = Translations(buffer, domain=DOMAIN)
    if name != SOURCE:
        translations.add_fallback(load(SOURCE).translations)
    ids: set[str] = set()
    plural_ids: set[str] = set()
    for message in catalog:
        if not message.id or message.fuzzy or not message.string:
            continue
        if message.pluralizable:
            key = str(message.id[0])
            plural_ids.add(key)
        else:
            key = str(message.id)
        ids.add(key)
    return Loaded(name, translations, frozenset(ids), frozenset(plural_ids))
