"""docker-compose.yml describes a working scale-out: PostgreSQL, S3, one bot per shard, all healthy first.

There is no container engine here, so this checks the file itself: every shard runs exactly once,
every variable the bots get is a real setting, services have health checks and volumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kontext.config import Settings
from kontext.config.schema import specs

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    return data


def bots(services: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in services.items() if name.startswith("bot-")}


def test_every_shard_runs_exactly_once() -> None:
    running = bots(compose()["services"])
    counts = {int(service["environment"]["SHARD_COUNT"]) for service in running.values()}
    assert len(counts) == 1, "all bot processes agree on SHARD_COUNT"
    shards = sorted(
        int(s) for service in running.values() for s in service["environment"]["SHARD_IDS"].split(",")
    )
    assert shards == list(range(counts.pop()))


def test_bots_get_only_real_settings_and_share_one_database_and_bucket() -> None:
    known = {spec.env for spec in specs(Settings)}
    running = bots(compose()["services"])
    assert len(running) >= 2
    for name, service in running.items():
        environment = service["environment"]
        assert set(environment) <= known, f"{name}: unknown variables {set(environment) - known}"
        assert (
            environment["DATABASE_URL"].startswith("postgresql://")
            and "@postgres:5432/" in environment["DATABASE_URL"]
        )
        assert environment["IMAGE_HOST"] == "s3" and environment["S3_BUCKET"] == "kontext"
        assert service["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "s3": {"condition": "service_healthy"},
        }
        assert service["build"] == "." and service["volumes"], f"{name} keeps its data in a volume"


def test_servers_have_health_checks_and_volumes() -> None:
    data = compose()
    for name in ("postgres", "s3"):
        service = data["services"][name]
        assert service["healthcheck"]["test"], name
        assert service["volumes"], name
    declared = set(data["volumes"])
    used = {v.split(":", 1)[0] for s in data["services"].values() for v in s.get("volumes", [])}
    assert used <= declared
    assert "HEALTHCHECK" in (ROOT / "Dockerfile").read_text(), "the bot image checks /healthz itself"
