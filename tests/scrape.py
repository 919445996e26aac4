"""Reading a bot's ``/metrics`` and ``/healthz`` the way Prometheus and a load balancer would."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    """One parsed ``/metrics`` answer."""

    families: dict[str, Metric]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        return cls({family.name: family for family in text_string_to_metric_families(text)})

    def sample_names(self) -> set[str]:
        """Every exposed series name (``kontext_jobs_total``, ``…_bucket``, ``…_created`` …)."""
        return {s.name for family in self.families.values() for s in family.samples}

    def value(self, name: str, **labels: str) -> float:
        """The one sample called ``name`` whose labels include ``labels``; AssertionError otherwise."""
        found = [
            s.value
            for family in self.families.values()
            for s in family.samples
            if s.name == name and labels.items() <= s.labels.items()
        ]
        assert len(found) == 1, f"{len(found)} samples {name}{labels}"
        return float(found[0])

    def total(self, name: str, **labels: str) -> float:
        """The sum of every sample called ``name`` whose labels include ``labels`` (0 when none)."""
        return sum(
            float(s.value)
            for family in self.families.values()
            for s in family.samples
            if s.name == name and labels.items() <= s.labels.items()
        )


async def get(port: int, path: str, token: str | None = None) -> tuple[int, str, dict[str, str]]:
    """Status, body and headers of ``GET path`` on the bot's web server (with a bearer token if given)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as resp:
            return resp.status, await resp.text(), dict(resp.headers)


async def scrape(port: int, token: str | None = None) -> Scrape:
    status, text, headers = await get(port, "/metrics", token)
    assert status == 200, (status, text)
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4"), headers
    return Scrape.parse(text)


async def health(port: int) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of ``/healthz``."""
    status, text, _ = await get(port, "/healthz")
    return status, json.loads(text)
