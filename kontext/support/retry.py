"""Retry timing shared by every client that backs off."""

from __future__ import annotations

import random


def jittered_backoff(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Exponential back-off for retry ``attempt`` (1-based): half fixed, half random, at most ``cap``."""
    ceiling = min(cap, base * 2.0 ** (max(1, attempt) - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)
