"""APIMart (Flux Kontext) as an :class:`~kontext.services.ports.ImageProvider`.

Three endpoints: submit a generation, read a task's status, upload an input image. Transport and
retry rules live in :mod:`.transport`, reply parsing in :mod:`.parsing`, error classification in
:mod:`.errors`; waiting for a task (the poll schedule) is the provider-neutral
:func:`kontext.services.polling.wait_for_task`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any
from urllib.parse import quote

import aiohttp

from kontext.adapters.apimart.parsing import (
    parse_submit_response,
    parse_task,
    parse_upload_response,
    request_body,
)
from kontext.adapters.apimart.transport import RetryPolicy, Sent, SleepFn, Transport
from kontext.domain.errors import ApiSubmitUncertain, ApiUnavailable, UnknownTaskStatus
from kontext.domain.generation import GenerationRequest, TaskStatus

__all__ = ["ApimartClient"]

log = logging.getLogger("kontext.apimart")

SUBMIT_PATH = "/v1/images/generations"
UPLOAD_PATH = "/v1/uploads/images"
TASK_PATH = "/v1/tasks/{task_id}"


class ApimartClient:
    """Talks to APIMart. One instance per bot, sharing the bot's :class:`aiohttp.ClientSession`."""

    name = "apimart"

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
        policy = RetryPolicy(
            max_get_attempts=max(1, max_get_attempts),
            max_post_attempts=max(1, max_post_attempts),
            max_rate_limit_wait=max_rate_limit_wait,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
        )
        self._http = Transport(
            session, base_url, api_key, timeout=timeout, policy=policy, sleep=sleep, rng=rng
        )
        self._language = language

    def __repr__(self) -> str:
        return f"<ApimartClient base_url={self._http.base_url!r}>"

    @property
    def request_timeout(self) -> float:
        """Seconds one request may take (a poll started before a deadline may end this much after)."""
        return self._http.timeout

    async def upload(self, data: bytes, filename: str, content_type: str) -> str:
        """Upload to ``/v1/uploads/images``; returns the public URL (72 h). Not retried blindly."""

        def make() -> dict[str, Any]:
            form = aiohttp.FormData()
            form.add_field("file", data, filename=filename, content_type=content_type)
            return {"data": form}

        try:
            reply = await self._http.post(UPLOAD_PATH, "upload", make)
        except Sent as exc:
            raise ApiUnavailable(f"upload: no reply from APIMart ({exc})") from None
        url = parse_upload_response(self._http.check_ok(reply, "upload"))
        log.debug("upload: %d bytes -> %s", len(data), url)
        return url

    async def submit(self, request: GenerationRequest, *, idempotency_key: str) -> str:
        """Submit a generation; returns the task id. Never retried once it may have been sent."""
        body = request_body(request)
        try:
            reply = await self._http.post(
                SUBMIT_PATH,
                "submit",
                lambda: {"json_body": body, "headers": {"Idempotency-Key": idempotency_key}},
            )
        except Sent as exc:
            raise ApiSubmitUncertain(
                f"submit: the request may have reached APIMart but no reply came ({exc})",
                idempotency_key=idempotency_key,
            ) from None
        if reply.status in (502, 504):  # a gateway gave up waiting: the job may exist upstream
            error = self._http.error(reply)
            raise ApiSubmitUncertain(
                f"submit: gateway error, job may exist ({error.detail})",
                status=reply.status,
                message=error.params.get("message"),
                idempotency_key=idempotency_key,
            )
        task_id = parse_submit_response(self._http.check_ok(reply, "submit"))
        replayed = any(k.lower() == "idempotency-replayed" for k in reply.headers)
        log.debug("submit: task %s%s", task_id, " (idempotent replay)" if replayed else "")
        return task_id

    async def poll(self, task_id: str) -> TaskStatus:
        """``GET /v1/tasks/{id}`` once, retried on transient failures; raises typed API errors."""
        path = TASK_PATH.format(task_id=quote(task_id, safe=""))
        params = {"language": self._language} if self._language else None
        try:
            status: TaskStatus = await self._http.get_json(
                path, f"task {task_id}", params=params, parse=lambda body: parse_task(body, task_id)
            )
        except UnknownTaskStatus as exc:
            log.warning("%s", exc.detail)
            raise
        return status
