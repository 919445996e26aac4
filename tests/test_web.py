"""The web server's handlers: /metrics behind METRICS_TOKEN, /healthz always open and saying why."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from kontext.adapters.web.app import authorized, build_app, start_web
from kontext.support.metrics import Metrics
from tests.scrape import Scrape, get

TOKEN = "s3cret-metrics-token-0123456789"


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),  # the scheme is case-insensitive
        (f"  Bearer   {TOKEN}  ", True),
        (None, False),
        ("", False),
        ("Bearer", False),
        ("Bearer ", False),
        (f"Basic {TOKEN}", False),
        (f"Bearer {TOKEN}x", False),
        (f"Bearer {TOKEN[:-1]}", False),
        (f"Bearer {TOKEN.upper()}", False),
        ("Bearer tökén", False),
    ],
)
def test_bearer_token_check(header: str | None, ok: bool) -> None:
    assert authorized(header, TOKEN) is ok


def test_without_a_token_everything_is_authorized() -> None:
    assert authorized(None, None) and authorized("Bearer anything", None)


@pytest.fixture
async def served() -> AsyncIterator[tuple[int, dict[str, Any]]]:
    """A web server guarded by TOKEN; the test changes what ``health()`` answers through the dict."""
    state: dict[str, Any] = {"ok": True, "problems": []}
    metrics = Metrics()
    metrics.watch_jobs(running=lambda: 2, waiting=lambda: 5)
    runner, port = await start_web(
        build_app(metrics, lambda: dict(state), None, metrics_token=TOKEN), "127.0.0.1", 0
    )
    try:
        yield port, state
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("token", [None, "wrong-token-0123456789", TOKEN[:-1]])
async def test_metrics_refuses_a_missing_or_wrong_token(
    served: tuple[int, dict[str, Any]], token: str | None
) -> None:
    port, _ = served
    status, body, headers = await get(port, "/metrics", token)
    assert status == 401
    assert headers["WWW-Authenticate"] == "Bearer"
    assert TOKEN not in body and "kontext_" not in body
    assert headers["Cache-Control"] == "no-store"


async def test_metrics_answers_the_right_token(served: tuple[int, dict[str, Any]]) -> None:
    port, _ = served
    status, body, headers = await get(port, "/metrics", TOKEN)
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff"
    scraped = Scrape.parse(body)
    assert scraped.value("kontext_jobs_running") == 2 and scraped.value("kontext_jobs_waiting") == 5
    assert TOKEN not in body


async def test_healthz_needs_no_token_and_says_why_it_is_unhealthy(
    served: tuple[int, dict[str, Any]],
) -> None:
    port, state = served
    status, body, _ = await get(port, "/healthz")
    assert status == 200 and '"ok": true' in body and '"problems": []' in body
    state.update(ok=False, problems=["discord_disconnected", "shutting_down"])
    status, body, _ = await get(port, "/healthz")
    assert status == 503
    assert '"problems": ["discord_disconnected", "shutting_down"]' in body
    assert "uptime_s" in body
