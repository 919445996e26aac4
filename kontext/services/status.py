"""The status line of one job: status events go to the reporter, few and far enough apart.

Phase changes (``force``: uploading, queued, downloading) are always shown; a step's own phase
(uploading the input, downloading the result) only if the step takes a while (:meth:`during`).
Progress ticks (line position, percent done) are optional: each is shown only if it differs from
the last one, no sooner than ``interval`` after the previous edit, with the gap doubling after
every optional edit and at most ``optional_budget`` of them per job. So a job costs a bounded
number of Discord requests however long its line or its task, and the status still moves early,
when people watch it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from kontext.domain.events import StatusEvent
from kontext.services.ports import Reporter

log = logging.getLogger("kontext.status")

#: Optional status edits (positions, progress) per job at most.
OPTIONAL_BUDGET = 5


class StatusLine:
    """Throttles one job's status events on their way to its reporter."""

    def __init__(
        self,
        reporter: Reporter,
        interval: float,
        *,
        optional_budget: int = OPTIONAL_BUDGET,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reporter = reporter
        self.interval = interval
        self.clock = clock
        self.optional_left = optional_budget
        self.gap = interval
        self.last: StatusEvent | None = None
        self.last_at = float("-inf")
        self.sent = 0

    async def show(self, event: StatusEvent, *, force: bool = False) -> None:
        now = self.clock()
        if event == self.last:
            return
        if not force:
            if self.optional_left <= 0 or now - self.last_at < self.gap:
                return
            self.optional_left -= 1
            self.gap = max(self.interval, self.gap * 2)
        self.last, self.last_at = event, now
        self.sent += 1
        try:
            await self.reporter.status(event)
        except Exception as exc:  # noqa: BLE001 - a status edit must never break the job
            log.info("status update failed: %r", exc)

    @contextlib.asynccontextmanager
    async def during(self, event: StatusEvent, *, after: float) -> AsyncIterator[None]:
        """Show ``event`` (a phase change) only if the block is still running ``after`` seconds on.

        A step that ends sooner needs no edit of its own: the next phase's replaces it a moment
        later. Once the edit is under way, the block's end waits for it, so it never lands after
        whatever the caller shows next."""
        showing = False

        async def later() -> None:
            nonlocal showing
            await asyncio.sleep(after)
            showing = True
            await self.show(event, force=True)

        task = asyncio.get_running_loop().create_task(later())
        try:
            yield
        finally:
            if showing:
                await task
            else:
                task.cancel()
