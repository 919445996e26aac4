"""One way to run work in the background: references kept, failures logged with a traceback, awaited on close.

``asyncio.create_task`` alone loses a task the moment nobody holds it (the loop keeps only a weak
reference) and swallows its exception until garbage collection. :class:`BackgroundTasks` is the one
place the bot starts fire-and-forget work: the job runner, usage write-behind, moderation-log posts,
the hosted-file sweeper, retention and signal handling all go through it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["BackgroundTasks", "every"]


class BackgroundTasks:
    """A named set of tasks; :meth:`close` cancels what is left and waits for it."""

    def __init__(self, name: str, logger: logging.Logger | None = None) -> None:
        self.name = name
        self._log = logger or logging.getLogger(f"kontext.{name}")
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(
        self,
        coro: Coroutine[Any, Any, T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[T]:
        """Start ``coro``; an exception it raises is logged with its traceback, never lost."""
        if self._closed:
            coro.close()
            raise RuntimeError(f"background tasks {self.name!r} are closed")
        task = asyncio.get_running_loop().create_task(coro, name=name, context=context)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._log.error(
                "background task %s failed",
                task.get_name(),
                exc_info=(type(error), error, error.__traceback__),
            )

    async def drain(self) -> None:
        """Wait until every task (including ones started meanwhile) has finished."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def settle(self) -> None:
        """Wait for the tasks running now (not for ones started meanwhile: never starved by a stream)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a shutdown budget, not a wait
        """Refuse new work, cancel what runs and wait up to ``timeout`` seconds for it to end."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                self._log.warning("background task %s did not stop within %.1f s", task.get_name(), timeout)


async def every(
    interval: float | Callable[[], float],
    work: Callable[[], Awaitable[None]],
    *,
    logger: logging.Logger,
    what: str,
) -> None:
    """Run ``work`` now and then every ``interval`` seconds forever; one failure is logged, not fatal."""
    while True:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s failed", what)
        await asyncio.sleep(interval() if callable(interval) else interval)
