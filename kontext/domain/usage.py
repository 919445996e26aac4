"""A server's usage over some days, summarised for ``/kontext usage`` (pure: rows in, report out)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from kontext.domain.costs import Money

#: The longest period ``/kontext usage`` covers (days).
MAX_REPORT_DAYS = 90


@dataclass(frozen=True)
class LedgerRow:
    """Jobs and money (micros) of one user with one model on one UTC day (``YYYY-MM-DD``)."""

    day: str
    user_id: int
    model: str
    jobs: int
    cost: int


@dataclass(frozen=True)
class UserTotal:
    user_id: int
    jobs: int
    cost: int


@dataclass(frozen=True)
class UsageReport:
    """Jobs per day per model, money per day, the heaviest users and failures by reason."""

    days: tuple[date, ...]
    models: tuple[str, ...]
    #: model → jobs per day (aligned with ``days``)
    jobs: Mapping[str, tuple[int, ...]]
    #: model → money per day (micros, aligned with ``days``)
    spent: Mapping[str, tuple[int, ...]]
    currency: str
    top_users: tuple[UserTotal, ...]
    #: (error code, failed jobs), most first
    failures: tuple[tuple[str, int], ...]

    @property
    def cost(self) -> tuple[int, ...]:
        """Money per day over every model (micros)."""
        return tuple(sum(day) for day in zip(*self.spent.values(), strict=True)) or (0,) * len(self.days)

    @property
    def total_jobs(self) -> int:
        return sum(sum(per_day) for per_day in self.jobs.values())

    @property
    def total_cost(self) -> Money:
        return Money(sum(self.cost), self.currency)

    def jobs_of(self, model: str) -> int:
        return sum(self.jobs.get(model, ()))

    def csv(self) -> str:
        """Every day and model as ``day,model,jobs,cost`` (cost in whole units), for spreadsheets."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["day", "model", "jobs", f"cost_{self.currency.lower()}"])
        for index, day in enumerate(self.days):
            for model in self.models:
                money = Money(self.spent[model][index], self.currency)
                writer.writerow([day.isoformat(), model, self.jobs[model][index], f"{money.amount:f}"])
        return out.getvalue()


def report_days(today: date, days: int) -> tuple[date, ...]:
    """The ``days`` UTC days ending with ``today``, oldest first."""
    return tuple(today - timedelta(days=offset) for offset in range(days - 1, -1, -1))


def summarise(
    rows: Iterable[LedgerRow],
    days: tuple[date, ...],
    models: Iterable[str],
    currency: str,
    failures: Mapping[str, int],
    *,
    top: int = 5,
) -> UsageReport:
    """The report over ``days`` from ledger rows (rows outside the days are ignored)."""
    index = {day.isoformat(): n for n, day in enumerate(days)}
    known = list(dict.fromkeys(models))
    jobs: dict[str, list[int]] = {model: [0] * len(days) for model in known}
    spent: dict[str, list[int]] = {model: [0] * len(days) for model in known}
    per_user_jobs: Counter[int] = Counter()
    per_user_cost: Counter[int] = Counter()
    for row in rows:
        position = index.get(row.day)
        if position is None:
            continue
        jobs.setdefault(row.model, [0] * len(days))[position] += row.jobs
        spent.setdefault(row.model, [0] * len(days))[position] += row.cost
        per_user_jobs[row.user_id] += row.jobs
        per_user_cost[row.user_id] += row.cost
    ranked = sorted(per_user_jobs, key=lambda user: (-per_user_cost[user], -per_user_jobs[user], user))
    return UsageReport(
        days=days,
        models=tuple(jobs),
        jobs={model: tuple(per_day) for model, per_day in jobs.items()},
        spent={model: tuple(per_day) for model, per_day in spent.items()},
        currency=currency,
        top_users=tuple(UserTotal(u, per_user_jobs[u], per_user_cost[u]) for u in ranked[:top]),
        failures=tuple(sorted(failures.items(), key=lambda item: (-item[1], item[0]))),
    )
