"""What a job costs: money as whole micro-units, the price table, calendar months, who pays what.

Amounts are integers of millionths of the currency (``micros``), so sums and comparisons against a
budget are exact whatever the number of jobs (floats would drift).

When a job is billed (see :func:`billed`), from what APIMart documents and what the bot can know:

* a job that never reached the provider (refused, failed while reading or hosting its input) costs
  nothing;
* a submission that the provider answered with an error (400/401/402/403/404/422/429, a 5xx reply
  other than a gateway timeout) or that could not even be sent created no task: nothing;
* a task that was created costs its model's price, whatever follows (completed, our download or
  delivery failed, the deadline passed);
* a submission whose outcome is unknown (no reply, a gateway timeout, an unreadable reply, a process
  that stopped mid-submit) is counted as billed: budgets must never under-count;
* a task that the provider reports ``failed`` (e.g. its safety filter refused the result) is billed
  unless the operator says otherwise (``CHARGE_FAILED_TASKS``): APIMart does not document refunds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from kontext.domain.errors import (
    ApiError,
    ApiMalformed,
    ApiSubmitUncertain,
    KontextError,
    TaskFailed,
)
from kontext.domain.jobs import JobState

MICROS = 1_000_000
#: The largest budget or price accepted (in whole units of the currency).
MAX_AMOUNT = 1_000_000


@dataclass(frozen=True, order=True)
class Money:
    """An amount of ``currency`` (ISO 4217) in millionths; the i18n layer writes it per locale."""

    micros: int
    currency: str

    @classmethod
    def of(cls, amount: float | Decimal | str, currency: str) -> Money:
        """``Money.of("0.04", "USD")``; rounded half-up to the micro."""
        micros = (Decimal(str(amount)) * MICROS).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        return cls(int(micros), currency)

    @property
    def amount(self) -> Decimal:
        return Decimal(self.micros) / MICROS

    def __str__(self) -> str:
        return f"{self.amount.normalize():f} {self.currency}"


def to_micros(amount: float | Decimal | str) -> int:
    """A whole-unit amount (``0.04``) in micros (``40000``), rounded half-up."""
    return Money.of(amount, "").micros


@dataclass(frozen=True)
class PriceTable:
    """The price of one image per model (micros) in one currency."""

    currency: str
    prices: Mapping[str, int]

    def price(self, model: str) -> int:
        """The model's price; an unknown model costs the dearest known price (never under-count)."""
        known = self.prices.get(model)
        if known is not None:
            return known
        return max(self.prices.values(), default=0)

    def money(self, micros: int) -> Money:
        return Money(micros, self.currency)


#: Public list prices of the underlying models (USD per image); operators set their own.
LIST_PRICES = PriceTable("USD", {"flux-kontext-pro": 40_000, "flux-kontext-max": 80_000})


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def utc_month(ts: float) -> str:
    """The UTC calendar month of a Unix time, ``'YYYY-MM'``."""
    return _utc(ts).strftime("%Y-%m")


def month_first_day(day: str) -> str:
    """The first day of the month of ``day`` (``'2026-12-06'`` → ``'2026-12-01'``)."""
    return day[:8] + "01"


def next_month_start(ts: float) -> float:
    """Unix time of the next first-of-the-month 00:00 UTC strictly after ``ts``."""
    now = _utc(ts)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


def month_days(ts: float) -> int:
    """How many days the UTC month of ``ts`` has."""
    start = _utc(ts).replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
    return math.ceil((next_month_start(ts) - start) / 86_400)


#: Errors from a submission that the provider answered (or that never left): no task was created.
_SUBMIT_UNCERTAIN = (ApiSubmitUncertain, ApiMalformed)


def billed(reached: JobState, error: KontextError | None, *, charge_failed_tasks: bool = True) -> bool:
    """Whether a job that ended in ``reached`` (its state when it ended) with ``error`` (None when it
    was delivered) was billed by the provider; see the module docstring."""
    if reached in (JobState.RECEIVED, JobState.HOSTED):
        return False
    if reached is JobState.SUBMITTING:
        return not isinstance(error, ApiError) or isinstance(error, _SUBMIT_UNCERTAIN)
    if isinstance(error, TaskFailed):
        return charge_failed_tasks
    return True
