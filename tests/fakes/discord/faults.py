"""Scripted faults: answer the next matching requests with an error or a delay, and opt-in rate limits."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import web

from .records import RecordedRequest


@dataclass
class _FaultRule:
    method: str
    pattern: re.Pattern[str]
    status: int | None
    body: dict[str, Any] | None
    headers: dict[str, str] | None
    times: int
    retry_after: float
    delay: float
    is_global: bool

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method.upper()) and self.pattern.search(path) is not None


@dataclass
class _RateRule:
    method: str
    pattern: re.Pattern[str]
    limit: int
    per: float
    bucket: str
    windows: dict[str, list[float]] = field(default_factory=dict)  # key -> [reset_at, count]


class FaultsMixin:
    """``fail_next`` / ``set_rate_limit`` (part of :class:`~.fake.FakeDiscord`)."""

    def _init_faults(self) -> None:
        self._faults: list[_FaultRule] = []
        self._rate_rules: list[_RateRule] = []

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

    def set_rate_limit(self, method: str, path_regex: str, limit: int, per: float) -> None:
        """Enforce a real fixed-window rate limit (per channel / webhook) on matching API routes,
        with accurate ``X-RateLimit-*`` headers and 429s when exceeded."""
        bucket = hashlib.sha1(f"{method} {path_regex}".encode()).hexdigest()[:32]
        self._rate_rules.append(_RateRule(method.upper(), re.compile(path_regex), limit, per, bucket))

    def clear_faults(self) -> None:
        """Drop pending fault and rate-limit rules."""
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
            if rule.status is None:
                return None
            return self._fault_response(rule, record)
        return None

    def _fault_response(self, rule: _FaultRule, record: RecordedRequest) -> web.Response:
        status = rule.status or 500
        headers: dict[str, str] = {"Via": "1.1 google"}
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
                    "X-RateLimit-Bucket": self._bucket_hash(record.route or record.path),
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
        return self._json(body, status=status, headers=headers, ratelimit=False)

    # ------------------------------------------------------------------------------- HTTP helpers

    def _check_rate_limit(
        self, record: RecordedRequest, groups: dict[str, str]
    ) -> tuple[web.Response | None, dict[str, str]]:
        """Apply :meth:`set_rate_limit` rules: a 429 response, or headers for the normal response."""
        out_headers: dict[str, str] = {}
        for rule in self._rate_rules:
            if rule.method not in ("*", record.method) or not rule.pattern.search(record.path):
                continue
            key = groups.get("channel_id") or groups.get("guild_id") or ""
            if "token" in groups:
                key = f"{groups.get('app') or groups.get('interaction_id')}:{groups['token']}"
            now = asyncio.get_running_loop().time()
            window = rule.windows.get(key)
            if window is None or now >= window[0]:
                window = rule.windows[key] = [now + rule.per, 0]
            reset_after = max(window[0] - now, 0.001)
            headers = {
                "X-RateLimit-Limit": str(rule.limit),
                "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
                "X-RateLimit-Reset-After": f"{reset_after:.3f}",
                "X-RateLimit-Bucket": rule.bucket,
            }
            if window[1] >= rule.limit:
                body = {
                    "message": "You are being rate limited.",
                    "retry_after": round(reset_after, 3),
                    "global": False,
                }
                headers.update(
                    {
                        "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Scope": "user",
                        "Retry-After": str(max(1, math.ceil(reset_after))),
                    }
                )
                record.response = body
                return self._json(body, status=429, headers=headers, ratelimit=False), {}
            window[1] += 1
            headers["X-RateLimit-Remaining"] = str(rule.limit - int(window[1]))
            out_headers = headers
        return None, out_headers

    # ------------------------------------------------------------------------------- REST: users/app
