"""kontext.services.status.StatusLine.during: a step's own status only when the step takes a while,
and never after what comes next."""

from __future__ import annotations

import asyncio

from kontext.domain.events import Downloading, Queued, StatusEvent, Uploading
from kontext.services.status import StatusLine
from tests.fakes.memory import RecordingReporter


class SlowReporter(RecordingReporter):
    """A status edit that takes a while to reach Discord."""

    async def status(self, event: StatusEvent) -> None:
        await asyncio.sleep(0.1)
        await super().status(event)


async def test_a_quick_step_shows_nothing_of_its_own() -> None:
    reporter = RecordingReporter()
    line = StatusLine(reporter, interval=1.0)
    async with line.during(Uploading(), after=0.2):
        await asyncio.sleep(0.01)
    await line.show(Queued(1), force=True)
    await asyncio.sleep(0.3)  # the cancelled timer never fires late
    assert reporter.statuses == [Queued(1)]
    assert line.sent == 1


async def test_a_slow_step_shows_its_status_and_it_lands_before_the_next() -> None:
    reporter = SlowReporter()
    line = StatusLine(reporter, interval=1.0)
    async with line.during(Downloading(3), after=0.02):
        await asyncio.sleep(0.05)  # the edit started at 0.02 s and is still on its way at the end
    assert reporter.statuses == [Downloading(3)], "the block's end waited for the edit under way"
    await line.show(Queued(4), force=True)
    assert reporter.statuses == [Downloading(3), Queued(4)]


async def test_a_step_that_fails_still_cancels_its_pending_status() -> None:
    reporter = RecordingReporter()
    line = StatusLine(reporter, interval=1.0)
    try:
        async with line.during(Uploading(), after=0.05):
            raise ValueError("download failed")
    except ValueError:
        pass
    await asyncio.sleep(0.1)
    assert reporter.statuses == []
