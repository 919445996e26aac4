"""Waiting for a condition in tests without fixed sleeps: yield to the event loop until it holds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def until(condition: Callable[[], object], *, turns: int = 10_000) -> None:
    """Give the event loop up to ``turns`` turns for ``condition()`` to become true (no wall clock)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"condition still false after {turns} event-loop turns")


async def settle(turns: int = 50) -> None:
    """Let every ready callback run (to show that something did NOT happen, after a triggering step)."""
    for _ in range(turns):
        await asyncio.sleep(0)


async def eventually(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds when it depends on other processes or servers (polled, bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition still false after {timeout} s")
        await asyncio.sleep(0.01)


async def eventually_async(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """:func:`eventually` for a condition that must itself be awaited (an HTTP probe, a query)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition still false after {timeout} s")
        await asyncio.sleep(0.05)
