"""Waiting for a provider task: poll on the adaptive schedule until it completes, fails or runs out of time.

Provider-neutral: it only needs :meth:`ImageProvider.poll`. A paid task is never abandoned for
transient trouble before its deadline; at the deadline, the trouble that kept us from the result is
reported rather than a bare timeout.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from kontext.domain.errors import ApiError, ApiMalformed, TaskFailed, TaskTimedOut
from kontext.domain.generation import TaskState, TaskStatus
from kontext.domain.poll_schedule import PollSchedule
from kontext.services.ports import ImageProvider
from kontext.support.retry import jittered_backoff

log = logging.getLogger("kontext.polling")

__all__ = ["wait_for_task"]

#: A "completed" status without a result URL is tolerated this many times in a row.
MAX_EMPTY_COMPLETIONS = 3
#: The longest pause between polls while the provider is in trouble.
MAX_TROUBLE_WAIT = 30.0

UpdateHook = Callable[[TaskStatus], Awaitable[None]]
SleepFn = Callable[[float], Awaitable[Any]]


async def wait_for_task(
    provider: ImageProvider,
    task_id: str,
    *,
    deadline: float,
    on_update: UpdateHook | None = None,
    schedule: PollSchedule | None = None,
    sleep: SleepFn = asyncio.sleep,
    rng: random.Random | None = None,
) -> TaskStatus:
    """Poll until completed (returned) or failed (:class:`TaskFailed`).

    ``deadline`` is in ``loop.time()`` terms; passing it raises :class:`TaskTimedOut` (or the last
    polling trouble). The first poll is immediate. ``on_update`` runs when state or progress
    changes; its exceptions are logged and do not stop the wait.
    """
    return await _Waiter(provider, task_id, deadline, on_update, schedule or PollSchedule(), sleep, rng).run()


class _Waiter:
    def __init__(
        self,
        provider: ImageProvider,
        task_id: str,
        deadline: float,
        on_update: UpdateHook | None,
        schedule: PollSchedule,
        sleep: SleepFn,
        rng: random.Random | None,
    ) -> None:
        self.provider = provider
        self.task_id = task_id
        self.deadline = deadline
        self.on_update = on_update
        self.schedule = schedule
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.loop = asyncio.get_running_loop()
        self.started = self.loop.time()
        # A poll started just before the deadline may finish a little after it.
        self.grace = min(provider.request_timeout, 2.0)
        self.trouble: ApiError | None = None  # the last transient polling error, if the last poll failed
        self.troubles = 0
        self.empty_completions = 0
        self.last: tuple[TaskState, int | None] | None = None

    async def run(self) -> TaskStatus:
        while True:
            if self.loop.time() >= self.deadline + self.grace:
                self._give_up()
            try:
                async with asyncio.timeout_at(self.deadline + self.grace):
                    status = await self.provider.poll(self.task_id)
            except TimeoutError:
                self._give_up()
            except ApiError as exc:
                await self._trouble(exc)
                continue
            self.trouble, self.troubles = None, 0
            await self._report(status)
            if self._finished(status):
                return status
            now = self.loop.time()
            if now >= self.deadline:
                self._timed_out(now)
            await self.sleep(min(self.schedule.next_delay(now - self.started, status), self.deadline - now))

    async def _trouble(self, exc: ApiError) -> None:
        """The task is paid for: transient trouble never ends the wait before the deadline."""
        if not (exc.retryable or isinstance(exc, ApiMalformed)):
            raise exc
        self.trouble, self.troubles = exc, self.troubles + 1
        base, cap = self.schedule.trouble_delays()
        backoff = jittered_backoff(self.troubles, base=base, cap=cap, rng=self.rng)
        wait = min(MAX_TROUBLE_WAIT, max(exc.params.get("retry_after") or 0.0, backoff))
        log.warning(
            "task %s: polling trouble (%s), still waiting; next try in %.1f s", self.task_id, exc.code, wait
        )
        now = self.loop.time()
        if now >= self.deadline:
            self._give_up()
        await self.sleep(min(wait, self.deadline - now))

    async def _report(self, status: TaskStatus) -> None:
        key = (status.state, status.progress)
        if key == self.last:
            return
        self.last = key
        log.debug("task %s: %s progress=%s", self.task_id, status.raw_status, status.progress)
        if self.on_update is None:
            return
        try:
            await self.on_update(status)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task %s: on_update callback failed", self.task_id)

    def _finished(self, status: TaskStatus) -> bool:
        if status.state is TaskState.FAILED:
            reason = status.error or "no reason given"
            raise TaskFailed(f"task {self.task_id} failed: {reason}", reason=reason, task_id=self.task_id)
        if status.state is not TaskState.COMPLETED:
            return False
        if status.result_urls:
            return True
        self.empty_completions += 1
        if self.empty_completions >= MAX_EMPTY_COMPLETIONS:
            raise ApiMalformed(f"task {self.task_id} completed without a result URL", task_id=self.task_id)
        return False

    def _give_up(self) -> NoReturn:
        """At the deadline: the polling error that kept us from the result, else a timeout."""
        if self.trouble is not None:
            raise self.trouble
        self._timed_out(self.loop.time())

    def _timed_out(self, now: float) -> NoReturn:
        waited = now - self.started
        raise TaskTimedOut(
            f"task {self.task_id} not finished after {waited:.1f} s",
            seconds=round(waited),
            task_id=self.task_id,
        )
