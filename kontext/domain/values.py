"""Tolerant readers for untrusted values (JSON from APIs, stored settings) and text clipping."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["clip", "finite_number", "whole_number"]

#: Integers beyond this are not trusted as numbers (they cannot be exact floats).
_MAX_EXACT = 10**15


def finite_number(value: Any) -> float | None:
    """A finite float from an int, float or numeric string; None otherwise (bools are not numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value) if abs(value) < _MAX_EXACT else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def whole_number(value: Any, *, allow_float: bool = True) -> int | None:
    """An int from an int, a digit string or (if ``allow_float``) a finite float; None otherwise.

    Large ids (Discord snowflakes) lose precision as floats: read them with ``allow_float=False``.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if allow_float and isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def clip(text: str, limit: int, *, squash: bool = False) -> str:
    """``text`` cut to at most ``limit`` characters, ending in "…" when cut.

    ``squash`` first folds every run of whitespace into one space (for one-line log/user details).
    """
    if squash:
        text = " ".join(text.split())
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"
