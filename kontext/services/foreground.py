"""Acknowledgements first: job work waits while interactions are being acknowledged.

Discord gives an interaction 3 s to be acknowledged; a job's next step can wait a moment. asyncio
runs ready callbacks first come, first served, so during a burst (hundreds of ``/edit``s within a
second) the steps of jobs already running (downloads, uploads, status edits) would queue in front
of the next acknowledgements and push them towards the deadline. The intake marks each
acknowledgement while it is in progress (:meth:`Foreground.acknowledging`); the runner calls
:meth:`Foreground.yield_to_acknowledgements` before each step of a job and waits while any is in
progress and, in a burst, until none has been for ``quiet`` seconds (interactions of a burst arrive
a few milliseconds apart: without the quiet period, job steps would slip into every gap between two),
for at most ``max_wait`` seconds per step: a sustained stream of interactions slows jobs down,
never stops them. ``max_wait`` is 2 s, so a burst of a second or two is acknowledged whole before
the jobs it started take the loop back: with 0.5 s, every step held since the burst began was let
go at once half-way through a burst of 500 ``/edit``s in 1 s, and the rest of its defers waited
behind them (p99 530 ms; with 2 s, 37-57 ms). A lone acknowledgement (none other in progress or
within ``quiet`` before it) sets no quiet period: on a quiet bot, a job goes on the moment its own
acknowledgement is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterator

__all__ = ["Foreground"]


class Foreground:
    """Counts acknowledgements in progress; job steps wait until there are none."""

    def __init__(self, max_wait: float = 2.0, quiet: float = 0.05) -> None:
        self.max_wait = max_wait
        self.quiet = quiet
        self._last = -math.inf  #: loop time the last acknowledgement ended
        #: Whether the last acknowledgement came in a burst (close after or beside another one).
        self._burst = False
        self._busy = 0
        self._quiet = asyncio.Event()
        self._quiet.set()
        #: How many job steps waited (for tests and metrics).
        self.yielded = 0

    @property
    def busy(self) -> int:
        """Acknowledgements in progress."""
        return self._busy

    @contextlib.contextmanager
    def acknowledging(self) -> Iterator[None]:
        """Mark one interaction as being acknowledged for the duration of the block."""
        loop = asyncio.get_running_loop()
        self._burst = self._busy > 0 or loop.time() - self._last < self.quiet
        self._busy += 1
        self._quiet.clear()
        try:
            yield
        finally:
            self._busy -= 1
            self._last = loop.time()
            if self._busy == 0:
                self._quiet.set()

    def _calm_in(self) -> float:
        """Seconds until the quiet period is over (0: it is, or there is none; inf: an acknowledgement
        is in progress)."""
        if self._busy:
            return math.inf
        if not self._burst:
            return 0.0
        return max(0.0, self._last + self.quiet - asyncio.get_running_loop().time())

    async def yield_to_acknowledgements(self) -> None:
        """Return once no acknowledgement has been in progress for ``quiet`` seconds, or after
        ``max_wait`` seconds."""
        if self._calm_in() == 0:
            return
        self.yielded += 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.max_wait):
                while (wait := self._calm_in()) > 0:
                    if math.isinf(wait):
                        await self._quiet.wait()
                    else:
                        await asyncio.sleep(wait)  # the rest of the quiet period
