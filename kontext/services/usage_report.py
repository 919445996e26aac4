"""``/kontext usage``: a server's jobs and spending over the last days, read from the ledger."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from kontext.domain.costs import PriceTable
from kontext.domain.generation import MODELS
from kontext.domain.usage import MAX_REPORT_DAYS, UsageReport, report_days, summarise
from kontext.services.ports import SpendStore


class UsageReports:
    """Builds :class:`~kontext.domain.usage.UsageReport`s; ``settle`` waits for counts being written."""

    def __init__(
        self,
        store: SpendStore,
        settle: Callable[[], Awaitable[None]],
        prices: PriceTable,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settle = settle
        self.prices = prices
        self.clock = clock

    async def report(self, guild_id: int, days: int) -> UsageReport:
        """The last ``days`` UTC days (1..90, today included) of ``guild_id``."""
        days = min(max(days, 1), MAX_REPORT_DAYS)
        now = self.clock()
        period = report_days(datetime.fromtimestamp(now, UTC).date(), days)
        await self.settle()
        rows = await self.store.spend_rows(guild_id, period[0].isoformat(), period[-1].isoformat())
        since = datetime(period[0].year, period[0].month, period[0].day, tzinfo=UTC).timestamp()
        failures = await self.store.failure_counts(guild_id, since)
        return summarise(rows, period, MODELS, self.prices.currency, failures)
