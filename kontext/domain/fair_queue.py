"""Concurrency caps with a fair waiting line.

A job runs when fewer than ``max_running`` jobs run bot-wide and fewer than ``max_per_user`` of its
requester's. Waiting jobs are served in arrival order, skipping those whose requester is at the cap
(so one user's burst never blocks everybody else). Resumed jobs join at the front. How long the
line may grow is the runner's decision (:meth:`kontext.services.runner.JobRunner.reserve`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any


PositionCallback = Callable[[int], Awaitable[None]]


@dataclass(eq=False)
class _Waiter:
    job_id: str
    user_id: int
    granted: asyncio.Future[None]
    moved: asyncio.Event = field(default_factory=asyncio.Event)


class FairScheduler:
    """Bot-wide and per-user caps; ``slot()`` waits for a turn and reports the line position."""

    def __init__(self, max_running: int, max_per_user: int) -> None:
        self.max_running = max_running
        self.max_per_user = max_per_user
        self._waiting: list[_Waiter] = []
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
        for index, waiter in enumerate(self._waiting):
            if waiter.job_id == job_id:
                return index + 1
        return None

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
        started = False
        for waiter in list(self._waiting):
            if self.running_total >= self.max_running:
                break
            if waiter.granted.done():
                continue
            if self._can_run(waiter.user_id):
                self._waiting.remove(waiter)
                self._start(waiter.user_id)
                waiter.granted.set_result(None)
                started = True
        if started:
            for waiter in self._waiting:
                waiter.moved.set()

    @asynccontextmanager
    async def slot(
        self, job_id: str, user_id: int, *, on_position: PositionCallback | None = None, front: bool = False
    ) -> AsyncIterator[None]:
        """Hold a running slot for the block; wait (reporting positions) while the caps are full."""
        if not self._waiting and self._can_run(user_id):
            self._start(user_id)
        else:
            waiter = _Waiter(job_id, user_id, asyncio.get_running_loop().create_future())
            if front:
                self._waiting.insert(0, waiter)
                for other in self._waiting[1:]:
                    other.moved.set()
            else:
                self._waiting.append(waiter)
            self._dispatch()
            reported: int | None = None
            try:
                while not waiter.granted.done():
                    position = self.position(job_id)
                    if on_position is not None and position is not None and position != reported:
                        reported = position
                        await on_position(position)
                    if waiter.granted.done():
                        break
                    waiter.moved.clear()
                    moved: asyncio.Future[Any] = asyncio.ensure_future(waiter.moved.wait())
                    pending: list[asyncio.Future[Any]] = [waiter.granted, moved]
                    try:
                        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        moved.cancel()
            except BaseException:
                if waiter.granted.done() and not waiter.granted.cancelled():
                    self._release(user_id)
                else:
                    waiter.granted.cancel()
                    if waiter in self._waiting:
                        self._waiting.remove(waiter)
                        for other in self._waiting:
                            other.moved.set()
                raise
        try:
            yield
        finally:
            self._release(user_id)
