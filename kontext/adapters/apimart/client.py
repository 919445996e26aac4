"""APIMart client (Flux Kontext image generation) on one shared :class:`aiohttp.ClientSession`.

Retry policy (the money rule: never pay twice):

* ``GET /v1/tasks/{id}`` is idempotent: retried with exponential back-off and jitter on 408, 429,
  5xx, connection errors, timeouts and unparsable bodies, honouring ``Retry-After``.
* ``POST`` (submit and upload) is retried only when the request certainly created nothing: the
  connection was never made (:class:`aiohttp.ClientConnectorError`: refused, DNS, TLS handshake) or
  the API answered 429. A timeout or disconnect after a submission was sent, or a gateway timeout
  (502/504) on it, raises :class:`ApiSubmitUncertain`, never retried.

Every error goes through :func:`classify_error`. The API key is sent only in the ``Authorization``
header; it is redacted from any text the API echoes back and never logged.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import quote

import aiohttp

from kontext.domain.errors import (
    ApiAuthError,
    ApiBadRequest,
    ApiBalanceError,
    ApiError,
    ApiMalformed,
    ApiRateLimited,
    ApiServerError,
    ApiSubmitUncertain,
    ApiUnavailable,
    TaskFailed,
    TaskTimedOut,
    UnknownTaskStatus,
)
from kontext.domain.poll_schedule import PollSchedule

__all__ = [
    "ApimartClient",
    "GenerationRequest",
    "TaskStatus",
    "classify_error",
    "normalise_status",
    "parse_retry_after",
    "parse_submit_response",
    "parse_task",
]

log = logging.getLogger("kontext.adapters.apimart.client")

MAX_MESSAGE_CHARS = 300
MAX_BODY_BYTES = 2 * 1024 * 1024  # API replies are small JSON documents

SUBMIT_PATH = "/v1/images/generations"
UPLOAD_PATH = "/v1/uploads/images"
TASK_PATH = "/v1/tasks/{task_id}"

_STATES: dict[str, str] = {
    # queued
    "pending": "queued",
    "submitted": "queued",
    "queued": "queued",
    "queuing": "queued",
    "waiting": "queued",
    "created": "queued",
    # running
    "processing": "running",
    "in_progress": "running",
    "running": "running",
    "generating": "running",
    "started": "running",
    # completed
    "completed": "completed",
    "succeeded": "completed",
    "success": "completed",
    # failed (cancelled is a failure from the user's point of view)
    "failed": "failed",
    "failure": "failed",
    "error": "failed",
    "cancelled": "failed",
    "canceled": "failed",
}


# --- data --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationRequest:
    """One generation/edit request. Values are validated by the caller (config/cogs)."""

    model: str
    prompt: str
    image_url: str | None
    size: str
    response_format: str  # "png" | "jpg"
    safety_tolerance: int
    prompt_upsampling: bool

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "prompt": self.prompt}
        if self.image_url is not None:
            body["image_urls"] = [self.image_url]
        body["size"] = self.size
        body["response_format"] = self.response_format
        body["safety_tolerance"] = int(self.safety_tolerance)
        body["prompt_upsampling"] = bool(self.prompt_upsampling)
        return body


@dataclass(frozen=True)
class TaskStatus:
    """A task's status, normalised. ``state`` is one of queued | running | completed | failed."""

    task_id: str
    state: str
    raw_status: str
    progress: int | None
    estimated_time: float | None
    result_urls: tuple[str, ...]
    error: str | None
    expires_at: float | None

    @property
    def done(self) -> bool:
        return self.state in ("completed", "failed")


# --- helpers -----------------------------------------------------------------------------------


def _clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _number(value: Any) -> float | None:
    """A finite float from an int/float/numeric string, else None (bools are not numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value) if abs(value) < 10**15 else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _message_from(body: Any) -> str | None:
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


def _body_code(body: Any) -> tuple[bool, int | None]:
    """(is_error, numeric code) for a top-level ``code`` in a 2xx body."""
    if not isinstance(body, dict) or "code" not in body:
        return False, None
    code = body.get("code")
    if code is None or isinstance(code, bool):
        return False, None
    if isinstance(code, int | float) and not isinstance(code, bool):
        number = _number(code)
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
    raw: str | None = None
    for name, value in headers.items():
        if name.lower() == "retry-after":
            raw = value
            break
    if raw is None:
        return None
    raw = raw.strip()
    seconds = _number(raw)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:  # pragma: no cover - older Pythons
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def classify_error(
    status: int, body: Any, headers: Mapping[str, str], *, redact: Iterable[str] = ()
) -> ApiError:
    """The one classifier: HTTP status (or a non-200 ``code`` in a 2xx body) → typed :class:`ApiError`.

    ``body`` is the decoded JSON (or raw text, or None). ``redact`` lists secrets to remove from
    any text echoed by the API.
    """
    secrets = tuple(redact)
    effective = status
    api_code: Any = body.get("code") if isinstance(body, dict) else None
    if 200 <= status < 300:
        _is_error, numeric = _body_code(body)
        if numeric is not None and 400 <= numeric < 600:
            effective = numeric
    message = _message_from(body)
    message = _clip(_redact(message, secrets)) if message else None
    shown = message or "no message"
    where = f"HTTP {status}" if effective == status else f"HTTP {status}, code {effective}"
    detail = f"APIMart {where}: {shown}"
    params: dict[str, Any] = {"message": message}
    if api_code is not None and not isinstance(api_code, dict | list):
        params["api_code"] = _clip(_redact(str(api_code), secrets), 40)
    if effective == 401:
        return ApiAuthError(detail, status=effective, **params)
    if effective in (402, 403):
        return ApiBalanceError(detail, status=effective, **params)
    if effective == 429:
        return ApiRateLimited(detail, status=effective, retry_after=parse_retry_after(headers), **params)
    if effective == 408 or 500 <= effective < 600:
        return ApiServerError(detail, status=effective, **params)
    if 400 <= effective < 500:  # 400, 404, 422, 413 …
        return ApiBadRequest(detail, status=effective, **params)
    if 200 <= effective < 300:  # body code says error but is not an HTTP-like number
        return ApiBadRequest(detail, status=effective, **params)
    return ApiMalformed(f"APIMart unexpected HTTP {status}", status=status, **params)


def _raise_body_error(body: Any, status: int = 200) -> None:
    is_error, _ = _body_code(body)
    if is_error:
        raise classify_error(status, body, {})


def parse_submit_response(body: Any) -> str:
    """The task id from a submit reply: ``data[0].task_id`` (documented) or ``data.id`` (newer)."""
    if not isinstance(body, dict):
        raise ApiMalformed("submit reply is not a JSON object")
    _raise_body_error(body)
    data = body.get("data")
    if isinstance(data, list):
        data = data[0] if data else None
    if isinstance(data, dict):
        for key in ("task_id", "id"):
            value = data.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if isinstance(value, str) and value.strip():
                return value.strip()
    raise ApiMalformed("submit reply has no task id", shape=_shape(body))


def _shape(value: Any, depth: int = 0) -> str:
    """A short description of a JSON value's shape for logs (no values, so no secrets)."""
    if depth > 2:
        return "…"
    if isinstance(value, dict):
        inner = ", ".join(f"{str(k)[:20]}: {_shape(v, depth + 1)}" for k, v in list(value.items())[:8])
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + (_shape(value[0], depth + 1) if value else "") + "]"
    return type(value).__name__


def normalise_status(raw: str) -> str | None:
    """queued | running | completed | failed for a raw APIMart status, None if unknown."""
    return _STATES.get(raw.strip().lower().replace("-", "_").replace(" ", "_"))


def _urls(value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.strip()
        return [value] if value.startswith(("https://", "http://")) else []
    if isinstance(value, list):
        return [u for item in value for u in _urls(item) if isinstance(item, str)]
    return []


def _result(data: dict[str, Any]) -> tuple[tuple[str, ...], float | None]:
    urls: list[str] = []
    expires: float | None = None
    result = data.get("result")
    images: Any = None
    if isinstance(result, dict):
        images = result.get("images")
        if images is None:
            images = result.get("data")
        for key in ("url", "urls", "image_url", "image_urls"):
            urls += _urls(result.get(key))
        expires = _number(result.get("expires_at"))
    elif isinstance(result, list):
        images = result
    elif isinstance(result, str):
        urls += _urls(result)
    if isinstance(images, dict):
        images = [images]
    if isinstance(images, list):
        for image in images:
            if isinstance(image, dict):
                found = _urls(image.get("url")) or _urls(image.get("urls"))
                urls += found
                if found and expires is None:
                    expires = _number(image.get("expires_at"))
            else:
                urls += _urls(image)
    if expires is None:
        expires = _number(data.get("expires_at"))
    unique = tuple(dict.fromkeys(urls))
    return unique, expires


def _failure_reason(data: dict[str, Any]) -> str:
    candidates: list[Any] = []
    error = data.get("error")
    if isinstance(error, dict):
        candidates += [error.get("message"), error.get("msg"), error.get("reason"), error.get("type")]
        if isinstance(error.get("code"), str):
            candidates.append(error.get("code"))
    else:
        candidates.append(error)
    candidates += [
        data.get("fail_reason"),
        data.get("failure_reason"),
        data.get("message"),
        data.get("reason"),
    ]
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip():
            return _clip(candidate.strip())
    return "no reason given"


def parse_task(body: Any, task_id: str) -> TaskStatus:
    """Parse ``GET /v1/tasks/{id}`` tolerantly; raise a :class:`KontextError` subclass otherwise.

    Unknown status → :class:`UnknownTaskStatus`; unusable shape → :class:`ApiMalformed`; a body
    carrying an error ``code`` → the classified error.
    """
    if not isinstance(body, dict):
        raise ApiMalformed("task reply is not a JSON object", task_id=task_id)
    _raise_body_error(body)
    data: Any = body.get("data") if "data" in body else body
    if isinstance(data, list):  # early status sometimes comes as a one-element list
        data = data[0] if data else None
    if not isinstance(data, dict):
        raise ApiMalformed("task reply has no data object", task_id=task_id, shape=_shape(body))
    raw = data.get("status")
    if raw is None:
        raw = data.get("state")
    if not isinstance(raw, str) or not raw.strip():
        raise ApiMalformed("task reply has no status", task_id=task_id, shape=_shape(body))
    raw_status = _clip(raw.strip(), 60)
    state = normalise_status(raw_status)
    if state is None:
        unknown = UnknownTaskStatus(
            f"task {task_id} has unknown status {raw_status!r}", task_id=task_id, status_name=raw_status
        )
        unknown.params["status"] = raw_status  # for the user message; ``.status`` stays the HTTP status
        raise unknown
    reported_id = data.get("id") or data.get("task_id")
    tid = reported_id.strip() if isinstance(reported_id, str) and reported_id.strip() else task_id
    progress_value = _number(data.get("progress"))
    progress = None if progress_value is None else int(min(100.0, max(0.0, progress_value)))
    estimate = _number(data.get("estimated_time"))
    estimated_time = estimate if estimate is not None and estimate >= 0 else None
    urls, expires_at = _result(data) if state == "completed" else ((), None)
    error = _failure_reason(data) if state == "failed" else None
    return TaskStatus(
        task_id=tid,
        state=state,
        raw_status=raw_status,
        progress=progress,
        estimated_time=estimated_time,
        result_urls=urls,
        error=error,
        expires_at=expires_at,
    )


# --- client ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: Mapping[str, str]
    body: Any  # decoded JSON, or None when it was not JSON
    text: str  # a short excerpt for logs when not JSON
    is_json: bool


class _Connect(Exception):
    """The connection was never made (certainly nothing sent)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")


class _Sent(Exception):
    """The request may have been sent but no usable reply came (timeout, disconnect, bad stream)."""

    def __init__(self, cause: BaseException, *, timeout: bool) -> None:
        super().__init__("timeout" if timeout else f"{type(cause).__name__}: {cause}")
        self.timeout = timeout


SleepFn = Callable[[float], Awaitable[Any]]


class ApimartClient:
    """Talks to APIMart. One instance per bot, sharing the bot's :class:`aiohttp.ClientSession`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        max_get_attempts: int = 5,
        max_rate_limit_wait: float = 60.0,
        sleep: SleepFn = asyncio.sleep,
        language: str | None = None,
        max_post_attempts: int = 3,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        rng: random.Random | None = None,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._key = api_key
        self._timeout = timeout
        self._max_get_attempts = max(1, max_get_attempts)
        self._max_post_attempts = max(1, max_post_attempts)
        self._max_rate_limit_wait = max_rate_limit_wait
        self._sleep = sleep
        self._language = language
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._rng = rng or random.Random()

    def __repr__(self) -> str:
        return f"<ApimartClient base_url={self._base!r}>"

    # -- low level -------------------------------------------------------------------------------

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._key}", "Accept": "application/json"}
        if extra:
            headers.update(extra)
        return headers

    def _clean(self, text: str) -> str:
        return _redact(text, (self._key,))

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> _Reply:
        """One HTTP exchange. Raises :class:`_Connect` or :class:`_Sent`, never aiohttp errors."""
        url = self._base + path
        started = time.monotonic()
        try:
            async with self._session.request(
                method,
                url,
                json=json_body,
                data=data,
                headers=self._headers(headers),
                params=params,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                allow_redirects=False,
                raise_for_status=False,
            ) as resp:
                raw = await self._read(resp)
                status = resp.status
                reply_headers = dict(resp.headers)
        except aiohttp.ClientConnectorError as exc:
            log.debug("%s %s -> connection failed (%s)", method, path, type(exc).__name__)
            raise _Connect(exc) from None
        except TimeoutError as exc:
            log.debug("%s %s -> timeout after %.1f s", method, path, time.monotonic() - started)
            raise _Sent(exc, timeout=True) from None
        except aiohttp.ClientError as exc:
            log.debug("%s %s -> %s", method, path, type(exc).__name__)
            raise _Sent(exc, timeout=False) from None
        elapsed_ms = (time.monotonic() - started) * 1000
        try:
            body = json.loads(raw)
            is_json = True
        except (ValueError, UnicodeDecodeError):
            body, is_json = None, False
        text = "" if is_json else self._clean(_clip(raw[:200].decode("utf-8", "replace"), 120))
        log.debug(
            "%s %s -> HTTP %d%s (%.0f ms)", method, path, status, "" if is_json else " non-JSON", elapsed_ms
        )
        return _Reply(status=status, headers=reply_headers, body=body, text=text, is_json=is_json)

    @staticmethod
    async def _read(resp: aiohttp.ClientResponse) -> bytes:
        chunks: list[bytes] = []
        total = 0
        async for chunk in resp.content.iter_chunked(65536):
            total += len(chunk)
            if total > MAX_BODY_BYTES:
                raise aiohttp.ClientPayloadError("response body too large")
            chunks.append(chunk)
        return b"".join(chunks)

    def _error(self, reply: _Reply) -> ApiError:
        return classify_error(
            reply.status, reply.body if reply.is_json else reply.text, reply.headers, redact=(self._key,)
        )

    def _backoff(self, attempt: int) -> float:
        """Exponential back-off with jitter (half fixed, half random) for retry ``attempt`` (1-based)."""
        ceiling = min(self._backoff_cap, self._backoff_base * (2 ** (attempt - 1)))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _check_ok(self, reply: _Reply, what: str) -> Any:
        """The decoded 2xx JSON body, or raise the classified error."""
        if not 200 <= reply.status < 300:
            raise self._error(reply)
        if not reply.is_json:
            raise ApiMalformed(f"{what}: reply is not JSON ({reply.text!r})", status=reply.status)
        is_error, _ = _body_code(reply.body)
        if is_error:
            raise self._error(reply)
        return reply.body

    async def _post(self, path: str, what: str, make: Callable[[], dict[str, Any]]) -> _Reply:
        """POST with the safe retries only: connection never made, and 429."""
        attempt = 0
        rate_waited = 0.0
        while True:
            attempt += 1
            try:
                reply = await self._send("POST", path, **make())
            except _Connect as exc:
                if attempt >= self._max_post_attempts:
                    raise ApiUnavailable(
                        f"{what}: cannot connect to APIMart ({self._clean(str(exc))})"
                    ) from None
                delay = self._backoff(attempt)
                log.warning(
                    "%s: cannot connect (%s), retry %d in %.1f s", what, self._clean(str(exc)), attempt, delay
                )
                await self._sleep(delay)
                continue
            if reply.status == 429:
                error = self._error(reply)
                assert isinstance(error, ApiRateLimited)
                wait = error.retry_after if error.retry_after is not None else self._backoff(attempt)
                if attempt >= self._max_post_attempts or rate_waited + wait > self._max_rate_limit_wait:
                    raise error
                rate_waited += wait
                log.warning("%s: rate limited (429), retry %d in %.1f s", what, attempt, wait)
                await self._sleep(wait)
                continue
            return reply

    # -- endpoints -------------------------------------------------------------------------------

    async def upload_image(self, data: bytes, filename: str, content_type: str) -> str:
        """Upload to ``/v1/uploads/images``; returns the public URL (72 h). Not retried blindly."""

        def make() -> dict[str, Any]:
            form = aiohttp.FormData()
            form.add_field("file", data, filename=filename, content_type=content_type)
            return {"data": form}

        try:
            reply = await self._post(UPLOAD_PATH, "upload", make)
        except _Sent as exc:
            raise ApiUnavailable(f"upload: no reply from APIMart ({exc})") from None
        body = self._check_ok(reply, "upload")
        url = body.get("url") if isinstance(body, dict) else None
        if url is None and isinstance(body, dict) and isinstance(body.get("data"), dict):
            url = body["data"].get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ApiMalformed("upload reply has no URL", shape=_shape(body))
        log.debug("upload: %d bytes -> %s", len(data), url)
        return url

    async def submit(self, request: GenerationRequest, *, idempotency_key: str) -> str:
        """Submit a generation; returns the task id. See the module docstring for the retry rules."""
        body = request.to_json()
        try:
            reply = await self._post(
                SUBMIT_PATH,
                "submit",
                lambda: {"json_body": body, "headers": {"Idempotency-Key": idempotency_key}},
            )
        except _Sent as exc:
            raise ApiSubmitUncertain(
                f"submit: the request may have reached APIMart but no reply came ({exc})",
                idempotency_key=idempotency_key,
            ) from None
        if reply.status in (502, 504):  # a gateway gave up waiting: the job may exist upstream
            error = self._error(reply)
            raise ApiSubmitUncertain(
                f"submit: gateway error, job may exist ({error.detail})",
                status=reply.status,
                message=error.params.get("message"),
                idempotency_key=idempotency_key,
            )
        payload = self._check_ok(reply, "submit")
        task_id = parse_submit_response(payload)
        replayed = any(k.lower() == "idempotency-replayed" for k in reply.headers)
        log.debug("submit: task %s%s", task_id, " (idempotent replay)" if replayed else "")
        return task_id

    async def get_task(self, task_id: str) -> TaskStatus:
        """``GET /v1/tasks/{id}``, retried on transient failures (see the module docstring)."""
        path = TASK_PATH.format(task_id=quote(task_id, safe=""))
        params = {"language": self._language} if self._language else None
        attempt = 0
        rate_waited = 0.0
        while True:
            attempt += 1
            error: ApiError
            retry_after: float | None = None
            try:
                reply = await self._send("GET", path, params=params)
                if reply.status == 408 or reply.status == 429 or reply.status >= 500:
                    error = self._error(reply)
                    if isinstance(error, ApiRateLimited):
                        retry_after = error.retry_after
                else:
                    return parse_task(self._check_ok(reply, f"task {task_id}"), task_id)
            except _Connect as exc:
                error = ApiUnavailable(f"task {task_id}: cannot connect ({self._clean(str(exc))})")
            except _Sent as exc:
                error = ApiUnavailable(f"task {task_id}: no reply ({self._clean(str(exc))})")
            except UnknownTaskStatus as exc:
                log.warning("%s", exc.detail)
                raise
            except (ApiMalformed, ApiServerError) as exc:  # unparsable, or a 5xx-like code in a 200 body
                error = exc
            except ApiRateLimited as exc:  # a 429 code inside a 200 body
                error, retry_after = exc, exc.retry_after
            if attempt >= self._max_get_attempts:
                raise error
            delay = self._backoff(attempt)
            if retry_after is not None:
                if rate_waited + retry_after > self._max_rate_limit_wait:
                    raise error
                delay = max(delay, retry_after)
                rate_waited += delay
            log.warning("%s; retry %d in %.1f s", error.detail, attempt, delay)
            await self._sleep(delay)

    async def wait_for_task(
        self,
        task_id: str,
        *,
        deadline: float,
        on_update: Callable[[TaskStatus], Awaitable[None]] | None = None,
        schedule: PollSchedule | None = None,
    ) -> TaskStatus:
        """Poll until completed (returned) or failed (:class:`TaskFailed`).

        ``deadline`` is in ``loop.time()`` terms; passing it raises :class:`TaskTimedOut`. The first
        poll is immediate. ``on_update`` runs when state or progress changes; its exceptions are
        logged and do not stop the wait.
        """
        loop = asyncio.get_running_loop()
        schedule = schedule or PollSchedule()
        started = loop.time()
        last: tuple[str, int | None] | None = None
        empty_completed = 0
        # A poll started just before the deadline may finish a little after it.
        grace = min(self._timeout, 2.0)
        trouble: ApiError | None = None  # the last transient polling error, if the last poll failed
        troubles = 0
        while True:
            if loop.time() >= deadline + grace:
                self._give_up(task_id, loop.time() - started, trouble)
            try:
                async with asyncio.timeout_at(deadline + grace):
                    status = await self.get_task(task_id)
            except TimeoutError:
                self._give_up(task_id, loop.time() - started, trouble)
            except ApiError as exc:
                # The task is paid for: transient trouble never ends the wait before the deadline.
                if not (exc.retryable or isinstance(exc, ApiMalformed)):
                    raise
                trouble, troubles = exc, troubles + 1
                wait = min(30.0, max(exc.params.get("retry_after") or 0.0, self._backoff(troubles)))
                log.warning(
                    "task %s: polling trouble (%s), still waiting; next try in %.1f s",
                    task_id,
                    exc.code,
                    wait,
                )
                now = loop.time()
                if now >= deadline:
                    self._give_up(task_id, now - started, trouble)
                await self._sleep(min(wait, deadline - now))
                continue
            trouble, troubles = None, 0
            key = (status.state, status.progress)
            if key != last:
                last = key
                log.debug("task %s: %s progress=%s", task_id, status.raw_status, status.progress)
                if on_update is not None:
                    try:
                        await on_update(status)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.exception("task %s: on_update callback failed", task_id)
            if status.state == "failed":
                reason = status.error or "no reason given"
                raise TaskFailed(f"task {task_id} failed: {reason}", reason=reason, task_id=task_id)
            if status.state == "completed":
                if status.result_urls:
                    return status
                empty_completed += 1
                if empty_completed >= 3:
                    raise ApiMalformed(f"task {task_id} completed without a result URL", task_id=task_id)
            now = loop.time()
            if now >= deadline:
                self._timed_out(task_id, now - started)
            delay = schedule.next_delay(now - started, status)
            await self._sleep(min(delay, deadline - now))

    @classmethod
    def _give_up(cls, task_id: str, waited: float, trouble: ApiError | None) -> NoReturn:
        """At the deadline: the polling error that kept us from the result, else a timeout."""
        if trouble is not None:
            raise trouble
        cls._timed_out(task_id, waited)

    @staticmethod
    def _timed_out(task_id: str, waited: float) -> NoReturn:
        raise TaskTimedOut(
            f"task {task_id} not finished after {waited:.1f} s", seconds=round(waited), task_id=task_id
        )
