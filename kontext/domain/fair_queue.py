"""Concurrency caps with a fair waiting line.

A job runs when fewer than ``max_running`` jobs run bot-wide and fewer than ``max_per_user`` of its
requester's. Waiting jobs are served in arrival order, skipping those whose requester is at the cap
(so one user's burst never blocks everybody else). Resumed jobs join at the front. How long the
line may grow is the runner's decision (:meth:`kontext.services.runner.JobRunner.reserve`).

A waiting job is woken when its turn comes, and otherwise only every ``report_every`` seconds to
report its position if it changed: a start never wakes the whole line (that made the work, and the
status edits, grow with the square of the line's length). With ``first_report_after`` the first
report waits that long: a job whose turn comes sooner never reports a place in line at all (in a
burst, most of them). Positions come from an index rebuilt only after the line changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

PositionCallback = Callable[[int], Awaitable[None]]


@dataclass(eq=False)
class _Waiter:
    job_id: str
    user_id: int
    granted: asyncio.Future[None]


class FairScheduler:
    """Bot-wide and per-user caps; ``slot()`` waits for a turn and reports the line position."""

    def __init__(self, max_running: int, max_per_user: int) -> None:
        self.max_running = max_running
        self.max_per_user = max_per_user
        self._waiting: list[_Waiter] = []
        #: job id -> index in ``_waiting``; None after the line changed (rebuilt on demand)
        self._index: dict[str, int] | None = None
        self._running: dict[int, int] = {}
        self.running_total = 0
        self.peak_running = 0
        self.peak_per_user = 0

    @property
    def waiting_count(self) -> int:
        return len(self._waiting)

    def running_for(self, user_id: int) -> int:
        return self._running.get(user_id, 0)

    def position(self, job_id: str) -> int | None:
        """1-based place in the waiting line, or None when not waiting."""
        if self._index is None:
            self._index = {waiter.job_id: index for index, waiter in enumerate(self._waiting)}
        index = self._index.get(job_id)
        return None if index is None else index + 1

    def _can_run(self, user_id: int) -> bool:
        return self.running_total < self.max_running and self._running.get(user_id, 0) < self.max_per_user

    def _start(self, user_id: int) -> None:
        self.running_total += 1
        self.peak_running = max(self.peak_running, self.running_total)
        self._running[user_id] = self._running.get(user_id, 0) + 1
        self.peak_per_user = max(self.peak_per_user, self._running[user_id])

    def _release(self, user_id: int) -> None:
        self.running_total -= 1
        left = self._running.get(user_id, 1) - 1
        if left:
            self._running[user_id] = left
        else:
            self._running.pop(user_id, None)
        self._dispatch()

    def _dispatch(self) -> None:
        if self.running_total >= self.max_running or not self._waiting:
            return  # nothing can start: do not walk (or copy) the line
        for waiter in list(self._waiting):
            if self.running_total >= self.max_running:
                break
            if not waiter.granted.done() and self._can_run(waiter.user_id):
                self._waiting.remove(waiter)
                self._index = None
                self._start(waiter.user_id)
                waiter.granted.set_result(None)

    @asynccontextmanager
    async def slot(
        self,
        job_id: str,
        user_id: int,
        *,
        on_position: PositionCallback | None = None,
        front: bool = False,
        report_every: float = 1.0,
        first_report_after: float = 0.0,
    ) -> AsyncIterator[None]:
        """Hold a running slot for the block; wait (reporting positions) while the caps are full."""
        if not self._waiting and self._can_run(user_id):
            self._start(user_id)
        else:
            waiter = _Waiter(job_id, user_id, asyncio.get_running_loop().create_future())
            if front:
                self._waiting.insert(0, waiter)
            else:
                self._waiting.append(waiter)
            self._index = None
            self._dispatch()
            try:
                await self._wait_turn(waiter, on_position, report_every, first_report_after)
            except BaseException:
                self._abandon(waiter)
                raise
        try:
            yield
        finally:
            self._release(user_id)

    async def _wait_turn(
        self,
        waiter: _Waiter,
        on_position: PositionCallback | None,
        report_every: float,
        first_report_after: float,
    ) -> None:
        reported: int | None = None
        if first_report_after > 0 and not waiter.granted.done():
            await asyncio.wait([waiter.granted], timeout=first_report_after)
        while not waiter.granted.done():
            position = self.position(waiter.job_id)
            if on_position is not None and position is not None and position != reported:
                reported = position
                await on_position(position)
            if not waiter.granted.done():
                await asyncio.wait([waiter.granted], timeout=report_every)

    def _abandon(self, waiter: _Waiter) -> None:
        """A waiter was cancelled: give its slot back if it had just been granted one, else leave the line."""
        if waiter.granted.done() and not waiter.granted.cancelled():
            self._release(waiter.user_id)
            return
        waiter.granted.cancel()
        if waiter in self._waiting:
            self._waiting.remove(waiter)
            self._index = None
