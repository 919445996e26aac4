"""Scripted faults: answer the next matching requests (REST or CDN) with an error, after a delay."""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web

from .base import FakeDiscordBase
from .ratelimits import bucket_hash
from .records import RecordedRequest


@dataclass
class _FaultRule:
    method: str
    pattern: re.Pattern[str]
    status: int
    body: dict[str, Any] | None
    headers: dict[str, str] | None
    times: int
    retry_after: float
    delay: float
    is_global: bool

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method.upper()) and self.pattern.search(path) is not None


class FaultsMixin(FakeDiscordBase):
    """``fail_next`` and ``clear_faults`` (part of :class:`~.fake.FakeDiscord`)."""

    def _init_faults(self) -> None:
        self._faults: list[_FaultRule] = []

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
        retry_after: float = 0.2,
        is_global: bool = False,
        delay: float = 0.0,
    ) -> None:
        """Answer the next ``times`` requests matching ``method`` ("*" for any) and ``path_regex``
        (``re.search`` on the path relative to ``api_base``, or the CDN URL path) with ``status``.

        429 gets Discord's body and headers (``Retry-After``, ``X-RateLimit-*``, ``Via``) so clients
        retry after ``retry_after``; other statuses get ``{"message": …, "code": 0}`` unless ``body``.
        """
        self._faults.append(
            _FaultRule(
                method=method.upper(),
                pattern=re.compile(path_regex),
                status=status,
                body=body,
                headers=headers,
                times=times,
                retry_after=retry_after,
                delay=delay,
                is_global=is_global,
            )
        )

    def clear_faults(self) -> None:
        """Drop pending ``fail_next`` rules and ``set_rate_limit`` rules."""
        self._faults.clear()
        self._rate_rules.clear()

    async def _apply_faults(self, record: RecordedRequest) -> web.StreamResponse | None:
        for rule in list(self._faults):
            if not rule.matches(record.method, record.path):
                continue
            rule.times -= 1
            if rule.times <= 0:
                self._faults.remove(rule)
            if rule.delay:
                await asyncio.sleep(rule.delay)
            return self._fault_response(rule, record)
        return None

    def _fault_response(self, rule: _FaultRule, record: RecordedRequest) -> web.Response:
        status = rule.status
        headers: dict[str, str] = {}
        if status == 429:
            body = rule.body or {
                "message": "You are being rate limited.",
                "retry_after": rule.retry_after,
                "global": rule.is_global,
            }
            headers.update(
                {
                    "Retry-After": str(max(1, math.ceil(rule.retry_after))),
                    "X-RateLimit-Limit": "5",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": f"{time.time() + rule.retry_after:.3f}",
                    "X-RateLimit-Reset-After": f"{rule.retry_after:.3f}",
                    "X-RateLimit-Bucket": bucket_hash(record.route or record.path),
                    "X-RateLimit-Scope": "global" if rule.is_global else "user",
                }
            )
            if rule.is_global:
                headers["X-RateLimit-Global"] = "true"
        else:
            try:
                reason = HTTPStatus(status).phrase
            except ValueError:
                reason = "Error"
            body = rule.body or {"message": f"{status}: {reason}", "code": 0}
        headers.update(rule.headers or {})
        record.response = body
        return self._json(body, status=status, headers=headers)
