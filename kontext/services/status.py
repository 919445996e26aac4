"""The status line of one job: status events go to the reporter, throttled.

Repeats are dropped, and edits closer together than ``interval`` are skipped unless forced (phase
changes are forced so the requester always sees them; progress ticks are not).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from kontext.domain.events import StatusEvent
from kontext.services.ports import Reporter

log = logging.getLogger("kontext.status")


class StatusLine:
    """Throttles one job's status events on their way to its reporter."""

    def __init__(
        self, reporter: Reporter, interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.reporter = reporter
        self.interval = interval
        self.clock = clock
        self.last: StatusEvent | None = None
        self.last_at = float("-inf")
        self.sent = 0

    async def show(self, event: StatusEvent, *, force: bool = False) -> None:
        now = self.clock()
        if event == self.last or (not force and now - self.last_at < self.interval):
            return
        self.last, self.last_at = event, now
        self.sent += 1
        try:
            await self.reporter.status(event)
        except Exception as exc:  # noqa: BLE001 - a status edit must never break the job
            log.info("status update failed: %r", exc)
