"""Discord's JSON error responses, raised by handlers and rendered by the REST dispatcher."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: A form-body problem: (dotted path into the body, error code, message).
FormError = tuple[str, str, str]


class ApiError(Exception):
    """An error answer: HTTP ``status`` with Discord's ``{"message", "code"[, "errors"]}`` body."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.body: dict[str, Any] = {"message": message, "code": code}
        if errors:
            self.body["errors"] = errors
        self.headers = headers or {}


def form_error(items: Sequence[FormError]) -> ApiError:
    """400 Invalid Form Body (50035) with Discord's nested ``errors`` object."""
    root: dict[str, Any] = {}
    for path, code, message in items:
        node = root
        for part in path.split(".") if path else []:
            node = node.setdefault(part, {})
        node.setdefault("_errors", []).append({"code": code, "message": message})
    return ApiError(400, 50035, "Invalid Form Body", errors=root)
