"""Rate limits: per-route buckets with Discord's ``X-RateLimit-*`` headers on every REST answer, 429s
with ``retry_after`` when a bucket is exhausted, and the global limit.

Discord does not document per-route numbers ("rate limits should not be hard coded"); the realistic
table below uses values observed on the real API, with sources:

* ``POST /channels/{id}/messages`` and ``PATCH /channels/{id}/messages/{id}``: 5 per 5 s per channel,
  reported under the same ``X-RateLimit-Bucket`` hash but counted separately (discord-api-docs issues
  #5646 — headers ``limit 5, reset-after 5.588`` —, #2761, #1442 and #8073).
* Interaction webhooks — follow-ups ``POST /webhooks/{app}/{token}`` and
  ``PATCH /webhooks/{app}/{token}/messages/{id}``: 5 per 2 s per token (webhook limit quoted in
  discord-api-docs #6753; discordgo #1384 observed a limit of 5 on ``@original``).

Documented: the global limit of 50 requests per second per bot, which interaction endpoints (the
callback and the interaction webhooks) are not bound to; ``X-RateLimit-Scope`` (``user``/``global``)
on 429s only; the 429 body ``{"message", "retry_after", "global"}`` (docs/topics/rate-limits).
Routes without an observed limit get :data:`DEFAULT_ROUTE_LIMIT` (the global rate, so it never binds
before the global limit does).

Windows are fixed: they start at a bucket's first request and reset ``per`` seconds later, measured
on the fake's clock (:meth:`~.world.WorldMixin.now`), so ``advance_clock`` can jump past them.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .base import FakeDiscordBase
from .errors import ApiError
from .records import RecordedRequest


@dataclass(frozen=True)
class RouteLimit:
    """``limit`` requests per ``per`` seconds, per top-level resource (channel, guild or webhook token).
    Routes with the same ``bucket`` name report the same ``X-RateLimit-Bucket`` hash."""

    limit: int
    per: float
    bucket: str


#: Realistic per-route limits by ``"METHOD route_name"`` (route names from :mod:`.rest`).
DISCORD_RATE_LIMITS: Mapping[str, RouteLimit] = {
    "POST messages": RouteLimit(5, 5.0, "channel-messages"),
    "PATCH message": RouteLimit(5, 5.0, "channel-messages"),
    "POST followup": RouteLimit(5, 2.0, "interaction-webhook"),
    "PATCH webhook_message": RouteLimit(5, 2.0, "interaction-webhook"),
}
#: Any other route: the global rate, so it never binds first (and is what the fake reports for every
#: route when realistic limits are off, without refusing anything).
DEFAULT_ROUTE_LIMIT = RouteLimit(50, 1.0, "")
#: Requests per second a bot may make outside interaction endpoints (Discord: 50).
GLOBAL_RATE_LIMIT = 50
#: Routes that are interaction endpoints: not bound to the global limit.
INTERACTION_ROUTES = frozenset({"callback", "followup", "webhook_message"})


@dataclass
class _Window:
    reset_at: float
    count: int = 0


@dataclass
class _RateRule:
    """A rule added with :meth:`RateLimitMixin.set_rate_limit`."""

    method: str
    pattern: re.Pattern[str]
    limit: int
    per: float
    bucket: str
    windows: dict[str, _Window] = field(default_factory=dict)


def bucket_hash(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:32]


def _resource_key(groups: Mapping[str, str]) -> str:
    """The top-level resource a route's limit is counted per."""
    if "token" in groups:
        return f"{groups.get('app') or groups.get('interaction_id')}:{groups['token']}"
    return groups.get("channel_id") or groups.get("guild_id") or ""


class RateLimitMixin(FakeDiscordBase):
    """Per-route and global rate limits (part of :class:`~.fake.FakeDiscord`).

    ``FakeDiscord(realistic_rate_limits=True)`` enforces :data:`DISCORD_RATE_LIMITS` (override or
    extend them with ``rate_limits={"POST messages": RouteLimit(…)}``; edit ``fake.rate_limits`` at
    run time) and the global limit (``global_rate_limit``, None disables it). With
    ``realistic_rate_limits=False`` every route reports :data:`DEFAULT_ROUTE_LIMIT` headers and nothing
    is refused, except by rules from :meth:`set_rate_limit`, which are enforced in both modes.
    """

    def _init_rate_limits(
        self,
        *,
        realistic: bool,
        rate_limits: Mapping[str, RouteLimit] | None,
        global_rate_limit: int | None,
    ) -> None:
        self.realistic_rate_limits = realistic
        self.rate_limits: dict[str, RouteLimit] = {**DISCORD_RATE_LIMITS, **(rate_limits or {})}
        self.global_rate_limit = global_rate_limit
        self._route_windows: dict[tuple[str, str], _Window] = {}
        self._global_window = _Window(reset_at=0.0)
        self._rate_rules: list[_RateRule] = []

    def set_rate_limit(self, method: str, path_regex: str, limit: int, per: float) -> None:
        """Enforce a real fixed-window rate limit (per channel / webhook) on matching API routes,
        with accurate ``X-RateLimit-*`` headers and 429s when exceeded (in addition to the route's
        own bucket). ``clear_faults()`` removes these rules."""
        bucket = bucket_hash(f"{method} {path_regex}")
        self._rate_rules.append(_RateRule(method.upper(), re.compile(path_regex), limit, per, bucket))

    # ------------------------------------------------------------------------------- internals

    def _route_limit(self, method: str, route: str) -> tuple[RouteLimit, str]:
        """The limit of a route and the name its bucket hash is made of."""
        if self.realistic_rate_limits:
            spec = self.rate_limits.get(f"{method} {route}")
            if spec is not None:
                return spec, spec.bucket or f"{method} {route}"
        return DEFAULT_ROUTE_LIMIT, f"{method} {route}"

    @staticmethod
    def _window(windows: dict[Any, _Window], key: Any, per: float, now: float) -> _Window:
        """The current fixed window of ``key`` (a new one once the old has ended)."""
        window = windows.get(key)
        if window is None or now >= window.reset_at:
            window = windows[key] = _Window(reset_at=now + per)
        return window

    @staticmethod
    def _headers(limit: int, remaining: int, reset_after: float, bucket: str) -> dict[str, str]:
        reset_after = max(reset_after, 0.001)
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(remaining, 0)),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket,
        }

    @staticmethod
    def _too_many(headers: dict[str, str], retry_after: float, *, is_global: bool) -> ApiError:
        retry_after = round(max(retry_after, 0.001), 3)
        headers = {
            **headers,
            "Retry-After": str(max(1, math.ceil(retry_after))),
            "X-RateLimit-Scope": "global" if is_global else "user",
        }
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        else:
            headers["X-RateLimit-Remaining"] = "0"
        error = ApiError(429, 0, "You are being rate limited.", headers=headers)
        error.body = {
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": is_global,
        }
        return error

    def _rate_limit_peek(self, method: str, route: str, groups: Mapping[str, str]) -> dict[str, str]:
        """Headers describing a route's bucket without counting a request (for refused requests)."""
        spec, name = self._route_limit(method, route)
        now = self.now()
        window = self._route_windows.get((f"{method} {route}", _resource_key(groups)))
        if window is None or now >= window.reset_at:
            return self._headers(spec.limit, spec.limit, spec.per, bucket_hash(name))
        return self._headers(spec.limit, spec.limit - window.count, window.reset_at - now, bucket_hash(name))

    def _rate_limit(self, record: RecordedRequest, route: str, groups: Mapping[str, str]) -> dict[str, str]:
        """Count a request against its buckets: the headers for the answer, or ApiError(429)."""
        now = self.now()
        method = record.method
        # the global limit (interaction endpoints are exempt)
        if self.realistic_rate_limits and self.global_rate_limit and route not in INTERACTION_ROUTES:
            glob = self._global_window
            if now >= glob.reset_at:
                glob.reset_at, glob.count = now + 1.0, 0
            if glob.count >= self.global_rate_limit:
                raise self._too_many({}, glob.reset_at - now, is_global=True)
        # the route's own bucket
        spec, name = self._route_limit(method, route)
        window = self._window(
            self._route_windows, (f"{method} {route}", _resource_key(groups)), spec.per, now
        )
        headers = self._headers(
            spec.limit, spec.limit - window.count, window.reset_at - now, bucket_hash(name)
        )
        enforce = self.realistic_rate_limits
        if enforce and window.count >= spec.limit:
            raise self._too_many(headers, window.reset_at - now, is_global=False)
        # rules from set_rate_limit: their headers win
        hits: list[tuple[_RateRule, _Window]] = []
        for rule in self._rate_rules:
            if rule.method not in ("*", method) or not rule.pattern.search(record.path):
                continue
            rule_window = self._window(rule.windows, _resource_key(groups), rule.per, now)
            rule_headers = self._headers(
                rule.limit, rule.limit - rule_window.count, rule_window.reset_at - now, rule.bucket
            )
            if rule_window.count >= rule.limit:
                raise self._too_many(rule_headers, rule_window.reset_at - now, is_global=False)
            hits.append((rule, rule_window))
            headers = rule_headers
        # the request passes: count it everywhere
        if self.realistic_rate_limits and self.global_rate_limit and route not in INTERACTION_ROUTES:
            self._global_window.count += 1
        window.count += 1
        headers["X-RateLimit-Remaining"] = str(max(spec.limit - window.count, 0))
        for rule, rule_window in hits:
            rule_window.count += 1
            headers["X-RateLimit-Remaining"] = str(max(rule.limit - rule_window.count, 0))
        return headers
