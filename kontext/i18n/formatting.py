"""Fill a message's ``{placeholders}``, writing numbers the reader's way (Babel, CLDR data).

A placeholder's format spec says how a number is written, and every translation keeps the spec of
the English message (tests check it):

* ``{count}`` — a number in the locale's style: ``1,234`` (en), ``1.234`` (de), ``1 234`` (fr, ru);
  fractions keep up to three digits (``2.5``, ``2,5``).
* ``{size_mb:.1f}`` — exactly one decimal, in the locale's style (``30.0``, ``30,0``).
* ``{reset_at:d}`` — raw digits, for machine values inside Discord markup (``<t:{reset_at:d}:R>``,
  which Discord itself shows as a relative time in the reader's language and time zone) and pixel
  sizes.
* ``{date}`` — a :class:`datetime.date`, in the locale's medium style (``Nov 30, 2026``,
  ``30.11.2026``, ``2026年11月30日``).

Anything that is not a number (a mention, a model name, an error text) is inserted as it is.
"""

from __future__ import annotations

import re
import string
from datetime import date
from decimal import Decimal
from typing import Any

from babel import Locale
from babel.dates import format_date
from babel.numbers import format_decimal

_FIXED = re.compile(r"\.(\d)f")
#: The format specs a message may use (see the module docstring).
SPECS = ("", "d", ".1f", ".2f")


class LocaleFormatter(string.Formatter):
    """:meth:`str.format` semantics, with numbers written for ``locale``."""

    def __init__(self, locale: Locale) -> None:
        super().__init__()
        self.locale = locale

    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, date) and not format_spec:
            return format_date(value, format="medium", locale=self.locale)
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            return str(super().format_field(value, format_spec))
        if format_spec == "d":
            return str(int(value))
        fixed = _FIXED.fullmatch(format_spec)
        if fixed:
            return format_decimal(value, format="#,##0." + "0" * int(fixed.group(1)), locale=self.locale)
        if format_spec:
            return str(super().format_field(value, format_spec))
        return format_decimal(value, locale=self.locale)


def placeholders(text: str) -> list[tuple[str, str]]:
    """The ``(name, spec)`` of every placeholder in ``text``, in order."""
    return [(name, spec or "") for _, name, spec, _ in string.Formatter().parse(text) if name is not None]
