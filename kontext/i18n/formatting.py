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
* ``{price}`` — a :class:`~kontext.domain.costs.Money`, as the locale writes money (``$0.04``,
  ``0,04 $``, ``US$0.04``), with at least the currency's usual decimals and up to six.

Anything that is not a number (a mention, a model name, an error text) is inserted as it is.
"""

from __future__ import annotations

import functools
import re
import string
from datetime import date
from decimal import Decimal
from typing import Any

from babel import Locale
from babel.dates import format_date
from babel.numbers import format_currency, format_decimal, get_currency_precision

from kontext.domain.costs import Money

_FIXED = re.compile(r"\.(\d)f")
#: The format specs a message may use (see the module docstring).
SPECS = ("", "d", ".1f", ".2f")


class LocaleFormatter(string.Formatter):
    """:meth:`str.format` semantics, with numbers written for ``locale``."""

    def __init__(self, locale: Locale) -> None:
        super().__init__()
        self.locale = locale

    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, Money):
            return money(value, self.locale)
        if isinstance(value, date) and not format_spec:
            return format_date(value, format="medium", locale=self.locale)
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            return str(super().format_field(value, format_spec))
        if format_spec == "d":
            return str(int(value))
        fixed = _FIXED.fullmatch(format_spec)
        if fixed:
            return _decimal(type(value).__name__, value, "#,##0." + "0" * int(fixed.group(1)), self.locale)
        if format_spec:
            return str(super().format_field(value, format_spec))
        return _decimal(type(value).__name__, value, None, self.locale)


@functools.lru_cache(maxsize=4096)
def _decimal(kind: str, value: float | Decimal, pattern: str | None, locale: Locale) -> str:
    """Babel's ``format_decimal``, remembered: status lines write the same few numbers (progress
    percentages, counts) again and again, and each costs Babel ~50 µs. ``kind`` keeps ``1`` and
    ``1.0`` apart."""
    return format_decimal(value, format=pattern, locale=locale)


def placeholders(text: str) -> list[tuple[str, str]]:
    """The ``(name, spec)`` of every placeholder in ``text``, in order."""
    return [(name, spec or "") for _, name, spec, _ in string.Formatter().parse(text) if name is not None]


def money(value: Money, locale: Locale) -> str:
    """``value`` written as ``locale`` writes money, keeping sub-cent prices (``$0.0035``)."""
    amount = value.amount
    exponent = amount.normalize().as_tuple().exponent
    needed = min(6, -exponent) if isinstance(exponent, int) and exponent < 0 else 0
    if needed <= get_currency_precision(value.currency):
        return format_currency(amount, value.currency, locale=locale)
    pattern = locale.currency_formats["standard"].pattern.split(";")[0].replace("0.00", "0." + "0" * needed)
    return format_currency(amount, value.currency, format=pattern, locale=locale, currency_digits=False)
