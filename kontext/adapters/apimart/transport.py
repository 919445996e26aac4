"""HTTP exchanges with APIMart and the retry rules (the money rule: never pay twice).

* ``GET`` is idempotent: retried with exponential back-off and jitter on 408, 429, 5xx, connection
  errors, timeouts and unparsable bodies, honouring ``Retry-After``.
* ``POST`` (submit and upload) is retried only when the request certainly created nothing: the
  connection was never made (:class:`aiohttp.ClientConnectorError`: refused, DNS, TLS handshake) or
  the API answered 429. A timeout or disconnect after a submission was sent is :class:`Sent` and
  the caller decides (never a blind retry).

The API key is sent only in the ``Authorization`` header and scrubbed from every text kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from kontext.adapters.apimart.errors import body_code, classify_error, scrub
from kontext.domain.errors import ApiError, ApiMalformed, ApiRateLimited, ApiServerError, ApiUnavailable
from kontext.domain.values import clip
from kontext.support.retry import jittered_backoff

log = logging.getLogger("kontext.apimart")

#: API replies are small JSON documents.
MAX_BODY_BYTES = 2 * 1024 * 1024

SleepFn = Callable[[float], Awaitable[Any]]


@dataclass(frozen=True)
class Reply:
    """One HTTP reply, read in full (bounded)."""

    status: int
    headers: Mapping[str, str]
    body: Any  # decoded JSON, or None when it was not JSON
    text: str  # a short excerpt for logs when not JSON
    is_json: bool


class Connect(Exception):
    """The connection was never made (certainly nothing sent)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")


class Sent(Exception):
    """The request may have been sent but no usable reply came (timeout, disconnect, bad stream)."""

    def __init__(self, cause: BaseException, *, timeout: bool) -> None:
        super().__init__("timeout" if timeout else f"{type(cause).__name__}: {cause}")
        self.timeout = timeout


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the transport tries before giving up."""

    max_get_attempts: int = 5
    max_post_attempts: int = 3
    max_rate_limit_wait: float = 60.0
    backoff_base: float = 0.5
    backoff_cap: float = 8.0


class Transport:
    """Sends requests to one APIMart base URL with one key on a shared session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        api_key: str,
        *,
        timeout: float,
        policy: RetryPolicy,
        sleep: SleepFn = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._key = api_key
        self.timeout = timeout
        self.policy = policy
        self.sleep = sleep
        self._rng = rng or random.Random()

    @property
    def base_url(self) -> str:
        return self._base

    def clean(self, text: str) -> str:
        """``text`` without the API key."""
        return scrub(text, (self._key,))

    def backoff(self, attempt: int) -> float:
        return jittered_backoff(
            attempt, base=self.policy.backoff_base, cap=self.policy.backoff_cap, rng=self._rng
        )

    def error(self, reply: Reply) -> ApiError:
        return classify_error(
            reply.status, reply.body if reply.is_json else reply.text, reply.headers, redact=(self._key,)
        )

    def check_ok(self, reply: Reply, what: str) -> Any:
        """The decoded 2xx JSON body, or raise the classified error."""
        if not 200 <= reply.status < 300:
            raise self.error(reply)
        if not reply.is_json:
            raise ApiMalformed(f"{what}: reply is not JSON ({reply.text!r})", status=reply.status)
        is_error, _ = body_code(reply.body)
        if is_error:
            raise self.error(reply)
        return reply.body

    async def send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Reply:
        """One HTTP exchange. Raises :class:`Connect` or :class:`Sent`, never aiohttp errors."""
        started = time.monotonic()
        request_headers = {"Authorization": f"Bearer {self._key}", "Accept": "application/json"}
        request_headers.update(headers or {})
        try:
            async with self._session.request(
                method,
                self._base + path,
                json=json_body,
                data=data,
                headers=request_headers,
                params=params,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                allow_redirects=False,
                raise_for_status=False,
            ) as resp:
                raw = await self._read(resp)
                status = resp.status
                reply_headers = dict(resp.headers)
        except aiohttp.ClientConnectorError as exc:
            log.debug("%s %s -> connection failed (%s)", method, path, type(exc).__name__)
            raise Connect(exc) from None
        except TimeoutError as exc:
            log.debug("%s %s -> timeout after %.1f s", method, path, time.monotonic() - started)
            raise Sent(exc, timeout=True) from None
        except aiohttp.ClientError as exc:
            log.debug("%s %s -> %s", method, path, type(exc).__name__)
            raise Sent(exc, timeout=False) from None
        try:
            body, is_json = json.loads(raw), True
        except (ValueError, UnicodeDecodeError):
            body, is_json = None, False
        text = "" if is_json else self.clean(clip(raw[:200].decode("utf-8", "replace"), 120, squash=True))
        log.debug(
            "%s %s -> HTTP %d%s (%.0f ms)",
            method,
            path,
            status,
            "" if is_json else " non-JSON",
            (time.monotonic() - started) * 1000,
        )
        return Reply(status=status, headers=reply_headers, body=body, text=text, is_json=is_json)

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

    async def post(self, path: str, what: str, make: Callable[[], dict[str, Any]]) -> Reply:
        """POST with the safe retries only: connection never made, and 429. :class:`Sent` passes up."""
        attempt = 0
        rate_waited = 0.0
        while True:
            attempt += 1
            try:
                reply = await self.send("POST", path, **make())
            except Connect as exc:
                if attempt >= self.policy.max_post_attempts:
                    raise ApiUnavailable(
                        f"{what}: cannot connect to APIMart ({self.clean(str(exc))})"
                    ) from None
                delay = self.backoff(attempt)
                log.warning(
                    "%s: cannot connect (%s), retry %d in %.1f s", what, self.clean(str(exc)), attempt, delay
                )
                await self.sleep(delay)
                continue
            if reply.status != 429:
                return reply
            error = self.error(reply)
            assert isinstance(error, ApiRateLimited)
            wait = error.retry_after if error.retry_after is not None else self.backoff(attempt)
            if (
                attempt >= self.policy.max_post_attempts
                or rate_waited + wait > self.policy.max_rate_limit_wait
            ):
                raise error
            rate_waited += wait
            log.warning("%s: rate limited (429), retry %d in %.1f s", what, attempt, wait)
            await self.sleep(wait)

    async def get_json(
        self, path: str, what: str, *, params: Mapping[str, str] | None, parse: Callable[[Any], Any]
    ) -> Any:
        """GET ``path`` and ``parse`` its JSON, retried on transient failures (module docstring)."""
        attempt = 0
        rate_waited = 0.0
        while True:
            attempt += 1
            outcome, retry_after = await self._get_once(path, what, params, parse)
            if isinstance(outcome, _Parsed):
                return outcome.value
            error = outcome
            if attempt >= self.policy.max_get_attempts:
                raise error
            delay = self.backoff(attempt)
            if retry_after is not None:
                if rate_waited + retry_after > self.policy.max_rate_limit_wait:
                    raise error
                delay = max(delay, retry_after)
                rate_waited += delay
            log.warning("%s; retry %d in %.1f s", error.detail, attempt, delay)
            await self.sleep(delay)

    async def _get_once(
        self, path: str, what: str, params: Mapping[str, str] | None, parse: Callable[[Any], Any]
    ) -> tuple[ApiError | _Parsed, float | None]:
        """One GET: (parsed value, None) or (a retryable error, its Retry-After); others raise."""
        try:
            reply = await self.send("GET", path, params=params)
        except Connect as exc:
            return ApiUnavailable(f"{what}: cannot connect ({self.clean(str(exc))})"), None
        except Sent as exc:
            return ApiUnavailable(f"{what}: no reply ({self.clean(str(exc))})"), None
        if reply.status in (408, 429) or reply.status >= 500:
            error = self.error(reply)
            return error, error.retry_after if isinstance(error, ApiRateLimited) else None
        try:
            return _Parsed(parse(self.check_ok(reply, what))), None
        except ApiRateLimited as exc:  # a 429 code inside a 200 body
            return exc, exc.retry_after
        except (ApiMalformed, ApiServerError) as exc:  # unparsable, or a 5xx-like code in a 200 body
            return exc, None


@dataclass(frozen=True)
class _Parsed:
    value: Any
