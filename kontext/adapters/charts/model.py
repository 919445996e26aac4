"""What a usage chart shows: plain data, checked when built, that crosses to the worker process."""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from babel import Locale, UnknownLocaleError

__all__ = ["MAX_DAYS", "UsageChart"]

#: Most days one chart shows.
MAX_DAYS: Final = 90
_CURRENCY: Final = re.compile(r"[A-Z]{3}")
_ONE_DAY: Final = datetime.timedelta(days=1)


@dataclass(frozen=True)
class UsageChart:
    """Jobs per day stacked by model, and the cost per day, for consecutive UTC days.

    Wording comes translated from the caller. The ``*_en`` fields are the English wording, drawn
    instead (with English dates and money) when no installed font has every glyph of the translation.
    A ``-`` in ``locale`` is read as ``_`` (``zh-TW`` is ``zh_TW``).
    """

    days: tuple[datetime.date, ...]
    jobs: Mapping[str, tuple[int, ...]]
    cost: tuple[float, ...]
    currency: str
    locale: str
    title: str
    jobs_label: str
    cost_label: str
    title_en: str = "Usage"
    jobs_label_en: str = "Jobs"
    cost_label_en: str = "Cost"

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # normalised once: tuples and a plain dict (picklable, never shared)
        set_(self, "days", tuple(self.days))
        set_(self, "jobs", {str(name): tuple(series) for name, series in self.jobs.items()})
        set_(self, "cost", tuple(self.cost))
        set_(self, "locale", self.locale.replace("-", "_"))
        _check_days(self.days)
        for name, series in self.jobs.items():
            _check_series(name, series, len(self.days))
        _check_cost(self.cost, len(self.days))
        _check_words(self)

    @property
    def total_jobs(self) -> tuple[int, ...]:
        """Jobs per day, every model together."""
        return tuple(sum(day) for day in zip(*self.jobs.values(), strict=True)) or (0,) * len(self.days)

    def in_english(self) -> UsageChart:
        """The same chart worded and formatted in English."""
        return dataclasses.replace(
            self,
            locale="en",
            title=self.title_en,
            jobs_label=self.jobs_label_en,
            cost_label=self.cost_label_en,
        )


def _check_days(days: tuple[datetime.date, ...]) -> None:
    if not 1 <= len(days) <= MAX_DAYS:
        raise ValueError(f"a usage chart shows 1 to {MAX_DAYS} days, not {len(days)}")
    if any(type(day) is not datetime.date for day in days):
        raise ValueError("days must be datetime.date values")
    if any(later - earlier != _ONE_DAY for earlier, later in itertools.pairwise(days)):
        raise ValueError("days must be consecutive, oldest first")


def _check_series(name: str, series: tuple[int, ...], length: int) -> None:
    if not name.strip():
        raise ValueError("a model name must not be empty")
    if len(series) != length:
        raise ValueError(f"model {name!r} has {len(series)} values for {length} days")
    if any(not isinstance(value, int) or isinstance(value, bool) or value < 0 for value in series):
        raise ValueError(f"model {name!r}: jobs must be whole numbers >= 0")


def _check_cost(cost: tuple[float, ...], length: int) -> None:
    if len(cost) != length:
        raise ValueError(f"cost has {len(cost)} values for {length} days")
    valid = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
        for value in cost
    )
    if not all(valid):
        raise ValueError("cost must be finite numbers >= 0")


def _check_words(chart: UsageChart) -> None:
    if not _CURRENCY.fullmatch(chart.currency):
        raise ValueError(f"currency must be an ISO 4217 code such as 'USD', not {chart.currency!r}")
    try:
        Locale.parse(chart.locale)
    except (ValueError, UnknownLocaleError) as exc:
        raise ValueError(f"unknown locale {chart.locale!r}") from exc
