"""Waiting for a condition in tests without fixed sleeps: yield to the event loop until it holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


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
