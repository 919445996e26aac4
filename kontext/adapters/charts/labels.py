"""The chart's words and numbers in the reader's locale (Babel): day ticks, job counts, money."""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from typing import Final

from babel.dates import format_skeleton
from babel.numbers import format_currency, format_decimal, get_currency_precision

__all__ = [
    "MAX_DAY_LABELS",
    "MAX_INTERVALS",
    "cost_step",
    "day_label",
    "day_step",
    "day_ticks",
    "job_scale",
    "jobs_text",
    "minor_unit",
    "money",
    "nice_step",
]

#: At most this many day labels under the bars (fewer when the locale's dates are long).
MAX_DAY_LABELS: Final = 12
#: Most gridline intervals up the jobs axis (the cost axis shares the gridlines).
MAX_INTERVALS: Final = 7
#: Room above the tallest bar and the highest cost.
HEADROOM: Final = 1.06
#: Days between two labels, tried in order (weekly and fortnightly for long ranges).
_STEPS: Final = (1, 2, 3, 4, 7, 14)


def day_label(day: datetime.date, locale: str) -> str:
    """A short date as the locale writes it: ``Jan 5``, ``1月5日``, ``5 янв.``, ``5 de jan.``."""
    return str(format_skeleton("MMMd", day, locale=locale))


def day_step(count: int, most: int = MAX_DAY_LABELS) -> int:
    """Days between two labelled days, so that at most ``most`` of ``count`` days are labelled."""
    return next((step for step in _STEPS if math.ceil(count / step) <= most), _STEPS[-1])


def day_ticks(
    days: Sequence[datetime.date], locale: str, most: int = MAX_DAY_LABELS
) -> list[tuple[int, str]]:
    """``(index, label)`` of the labelled days: the newest always, then every :func:`day_step` back."""
    step = day_step(len(days), most)
    return [
        (index, day_label(days[index], locale)) for index in range((len(days) - 1) % step, len(days), step)
    ]


def jobs_text(value: float, locale: str) -> str:
    """A job count as the locale writes it (``1,234``, ``1.234``, ``1 234``)."""
    return str(format_decimal(round(value), locale=locale))


def money(value: float, currency: str, locale: str) -> str:
    """An amount with its currency, as the locale writes it (``$1.50``, ``1,50 $``, ``US$1.50``)."""
    return str(format_currency(value, currency, locale=locale))


def minor_unit(currency: str) -> float:
    """The smallest amount the currency writes (0.01 for USD, 1 for JPY)."""
    return float(10 ** -int(get_currency_precision(currency)))


def nice_step(least: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``least`` (> 0)."""
    power = 10.0 ** math.floor(math.log10(least))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= least * (1 - 1e-9))


def job_scale(peak: int) -> tuple[int, int]:
    """``(step, intervals)`` of the jobs axis: whole-number gridlines up to just above ``peak``."""
    height = max(peak, 1) * HEADROOM
    step = max(1, round(nice_step(height / MAX_INTERVALS)))
    return step, math.ceil(height / step)


def cost_step(peak: float, intervals: int, currency: str) -> float:
    """The cost between two gridlines, so ``intervals`` of them hold ``peak``: a round amount, never
    less than the currency's smallest unit (so no two tick labels round to the same amount)."""
    return nice_step(max(peak * HEADROOM / intervals, minor_unit(currency)))
