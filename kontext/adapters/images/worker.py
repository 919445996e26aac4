"""Runs :mod:`.processing` in a small dedicated thread pool so the event loop never decodes pixels.

Inline, normalising a 12 MP photo stalls the loop for most of a second; here the loop
only awaits a future. The semaphore admits at most ``max_threads`` jobs into the pool at a time:
callers queue on it (cancellable, nothing has started yet) instead of in the executor's unbounded
queue, and a slot is only given back when the thread has really finished, even if the caller was
cancelled meanwhile.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from kontext.adapters.images import processing as images
from kontext.domain.images import FittedResult, ImageLimits, NormalisedImage

T = TypeVar("T")

__all__ = ["ImageWorker"]


class ImageWorker:
    def __init__(self, max_threads: int = 2) -> None:
        if max_threads < 1:
            raise ValueError("max_threads must be at least 1")
        self.max_threads = max_threads
        self._executor = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="kontext-image")
        self._semaphore = asyncio.Semaphore(max_threads)
        self._running = 0
        self._closed = False

    @property
    def running(self) -> int:
        """Jobs currently in a worker thread."""
        return self._running

    async def normalise(self, data: bytes, limits: ImageLimits) -> NormalisedImage:
        return await self._run(images.normalise_image, data, limits)

    async def fit_result(self, data: bytes, max_bytes: int, *, max_pixels: int) -> FittedResult:
        return await self._run(functools.partial(images.fit_result, max_pixels=max_pixels), data, max_bytes)

    async def thumbnail(self, data: bytes, max_side: int = 256) -> bytes:
        return await self._run(images.thumbnail, data, max_side)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._closed:
            raise RuntimeError("ImageWorker is closed")
        await self._semaphore.acquire()
        try:
            if self._closed:
                raise RuntimeError("ImageWorker is closed")
            loop = asyncio.get_running_loop()
            ctx = contextvars.copy_context()
            future = loop.run_in_executor(self._executor, functools.partial(ctx.run, fn, *args))
        except BaseException:
            self._semaphore.release()
            raise
        self._running += 1
        future.add_done_callback(self._finished)
        # shield: cancelling the caller must not free the slot while the thread still works.
        return await asyncio.shield(future)

    def _finished(self, future: asyncio.Future[Any]) -> None:
        self._running -= 1
        self._semaphore.release()
        if not future.cancelled():
            future.exception()  # mark retrieved: a cancelled caller's error is not "never retrieved"

    def close(self, *, wait: bool = False) -> None:
        """Refuse new work and stop the threads (queued-but-unstarted work is cancelled)."""
        self._closed = True
        self._executor.shutdown(wait=wait, cancel_futures=True)
