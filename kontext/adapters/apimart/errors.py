"""The one APIMart error classifier: HTTP status and body → a typed :class:`ApiError`.

Used for every endpoint (submit, upload, task status), so retry decisions and user messages are the
same everywhere. Texts echoed by the API are clipped and stripped of secrets.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterable, Mapping
from typing import Any

from kontext.domain.errors import (
    ApiAuthError,
    ApiBadRequest,
    ApiBalanceError,
    ApiError,
    ApiMalformed,
    ApiRateLimited,
    ApiServerError,
)
from kontext.domain.values import clip, finite_number

__all__ = ["body_code", "classify_error", "message_from", "parse_retry_after", "raise_body_error", "scrub"]

MAX_MESSAGE_CHARS = 300


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every non-empty secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def message_from(body: Any) -> str | None:
    """The API's human-readable message: ``message`` | ``error.message`` | ``error`` string."""
    if isinstance(body, str):
        return body.strip() or None
    if not isinstance(body, dict):
        return None
    candidates: list[Any] = [body.get("message")]
    error = body.get("error")
    if isinstance(error, dict):
        candidates += [error.get("message"), error.get("msg")]
    else:
        candidates.append(error)
    candidates += [body.get("msg"), body.get("detail")]
    data = body.get("data")
    if isinstance(data, dict):
        candidates.append(data.get("message"))
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return None


def body_code(body: Any) -> tuple[bool, int | None]:
    """(is_error, numeric code) for a top-level ``code`` in a 2xx body."""
    if not isinstance(body, dict) or "code" not in body:
        return False, None
    code = body.get("code")
    if code is None or isinstance(code, bool):
        return False, None
    if isinstance(code, int | float):
        number = finite_number(code)
        if number is None:
            return True, None
        return not 200 <= number < 300, int(number)
    if isinstance(code, str):
        stripped = code.strip()
        if stripped.isascii() and stripped.isdigit():
            value = int(stripped)
            return not 200 <= value < 300, value
        return stripped.lower() not in ("", "ok", "success"), None
    return True, None


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or None if absent/invalid."""
    raw = next((value for name, value in headers.items() if name.lower() == "retry-after"), None)
    if raw is None:
        return None
    raw = raw.strip()
    seconds = finite_number(raw)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _effective_status(status: int, body: Any) -> int:
    """The HTTP status, or an HTTP-like error ``code`` carried by a 2xx body."""
    if 200 <= status < 300:
        _is_error, numeric = body_code(body)
        if numeric is not None and 400 <= numeric < 600:
            return numeric
    return status


def classify_error(
    status: int, body: Any, headers: Mapping[str, str], *, redact: Iterable[str] = ()
) -> ApiError:
    """HTTP status (or a non-200 ``code`` in a 2xx body) → typed :class:`ApiError`.

    ``body`` is the decoded JSON (or raw text, or None). ``redact`` lists secrets to remove
    from any text echoed by the API.
    """
    secrets = tuple(redact)
    effective = _effective_status(status, body)
    api_code: Any = body.get("code") if isinstance(body, dict) else None
    message = message_from(body)
    message = clip(scrub(message, secrets), MAX_MESSAGE_CHARS, squash=True) if message else None
    where = f"HTTP {status}" if effective == status else f"HTTP {status}, code {effective}"
    detail = f"APIMart {where}: {message or 'no message'}"
    params: dict[str, Any] = {"message": message}
    if api_code is not None and not isinstance(api_code, dict | list):
        params["api_code"] = clip(scrub(str(api_code), secrets), 40, squash=True)
    kind = _error_class(effective)
    if kind is ApiRateLimited:
        return ApiRateLimited(detail, status=effective, retry_after=parse_retry_after(headers), **params)
    if kind is ApiMalformed:
        return ApiMalformed(f"APIMart unexpected HTTP {status}", status=status, **params)
    return kind(detail, status=effective, **params)


def _error_class(status: int) -> type[ApiError]:
    if status == 401:
        return ApiAuthError
    if status in (402, 403):
        return ApiBalanceError
    if status == 429:
        return ApiRateLimited
    if status == 408 or 500 <= status < 600:
        return ApiServerError
    if 400 <= status < 500 or 200 <= status < 300:  # 400, 404, 422, 413 …; or a non-numeric body code
        return ApiBadRequest
    return ApiMalformed


def raise_body_error(body: Any, status: int = 200) -> None:
    """Raise the classified error when a 2xx body carries an error ``code``."""
    is_error, _ = body_code(body)
    if is_error:
        raise classify_error(status, body, {})
