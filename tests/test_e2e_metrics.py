"""End to end: /metrics and /healthz of a running bot, the README's metrics table and the Grafana
dashboard, checked against what the bot really exports."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from tests.harness import ROOT, World
from tests.scrape import Scrape, get, health, scrape
from tests.test_e2e_durable import wait_for_state
from tests.waiting import eventually_async

METRICS_TOKEN = "metrics-token-for-the-tests-0123456789"
PRO = {"model": "flux-kontext-pro"}
DASHBOARD = ROOT / "docs" / "grafana" / "kontext.json"


def documented_metrics() -> dict[str, tuple[str, set[str]]]:
    """The README's metrics table: name -> (type, label names)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Metrics and health\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(kontext_\w+)` \| (\w+) \| ([^|]*) \|", section, flags=re.MULTILINE)
    assert len(rows) >= 19, "the README lists every metric"
    return {name: (kind, set(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}


def family_of(scraped: Scrape, name: str, kind: str) -> Any:
    """The family a documented name belongs to (a counter's family drops ``_total``)."""
    family_name = name.removesuffix("_total") if kind == "counter" else name
    assert family_name in scraped.families, f"{name} is documented but not exported"
    return scraped.families[family_name]


async def test_metrics_count_a_done_and_a_failed_job(world: World) -> None:
    bot = await world.start_bot(METRICS_TOKEN=METRICS_TOKEN)
    await world.result_of(await world.edit())
    world.apimart.fail_next("submit", 401, body={"error": {"message": "bad key", "type": "auth"}})
    await world.failure_of(await world.edit())
    scraped = await scrape(bot.backend.web_port, METRICS_TOKEN)

    assert scraped.value("kontext_jobs_total", outcome="done", **PRO) == 1
    assert scraped.value("kontext_jobs_total", outcome="failed", **PRO) == 1
    assert scraped.total("kontext_jobs_total") == 2, "no other model or outcome"
    assert scraped.value("kontext_job_failures_total", reason="api_auth") == 1
    assert scraped.total("kontext_job_failures_total") == 1
    assert scraped.value("kontext_jobs_accepted_total", **PRO) == 2
    assert scraped.value("kontext_jobs_submitted_total", **PRO) == 1, "the refused submit created no task"
    spent = scraped.value("kontext_spent_total", currency="USD", **PRO)
    assert spent == pytest.approx(0.04), "the done job's price; the refused submit was not billed"
    assert scraped.total("kontext_jobs_resumed_total") == 0
    # both requests were acknowledged and got a slot; only the done one reached the end
    assert scraped.value("kontext_ack_latency_seconds_count") == 2
    assert scraped.value("kontext_queue_wait_seconds_count") == 2
    assert scraped.value("kontext_api_seconds_count", **PRO) == 1
    assert scraped.value("kontext_job_duration_seconds_count", **PRO) == 1
    assert scraped.value("kontext_overhead_seconds_count") == 1
    for histogram in (
        "kontext_ack_latency_seconds",
        "kontext_queue_wait_seconds",
        "kontext_overhead_seconds",
    ):
        assert scraped.value(f"{histogram}_bucket", le="+Inf") == scraped.value(f"{histogram}_count")
    duration = scraped.value("kontext_job_duration_seconds_sum", **PRO)
    assert duration >= scraped.value("kontext_api_seconds_sum", **PRO), "end to end includes the API's time"
    assert scraped.value("kontext_jobs_running") == 0 and scraped.value("kontext_jobs_waiting") == 0
    assert scraped.value("kontext_image_workers_busy") == 0
    assert scraped.value("process_resident_memory_bytes") > 0

    for name, (kind, labels) in documented_metrics().items():
        family = family_of(scraped, name, kind)
        assert family.type == kind, f"{name} is a {family.type}, the README says {kind}"
        exported = {label for sample in family.samples for label in sample.labels} - {"le"}
        assert exported == labels, f"{name} has labels {exported}, the README says {labels}"
    assert METRICS_TOKEN not in json.dumps([s.labels for f in scraped.families.values() for s in f.samples])


async def test_metrics_token_is_enforced_and_healthz_stays_open(world: World) -> None:
    bot = await world.start_bot(METRICS_TOKEN=f"Bearer {METRICS_TOKEN}")  # a pasted "Bearer " is dropped
    port = bot.backend.web_port
    for token in (None, "wrong-token-0123456789abcdef", METRICS_TOKEN + "x"):
        status, body, headers = await get(port, "/metrics", token)
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer", token
        assert METRICS_TOKEN not in body
    status, body, _ = await get(port, "/metrics", METRICS_TOKEN)
    assert status == 200 and "kontext_jobs_running" in body
    status, state = await health(port)
    assert status == 200 and state["ok"] is True and state["problems"] == []


async def health_is(port: int, status: int, problems: list[str]) -> bool:
    answer, state = await health(port)
    return answer == status and state["problems"] == problems


async def test_healthz_reports_a_disconnected_gateway_until_it_is_back(world: World) -> None:
    bot = await world.start_bot()
    port = bot.backend.web_port

    await world.discord.disconnect_gateway(hold=True)
    await eventually_async(lambda: health_is(port, 503, ["discord_disconnected"]))
    _, state = await health(port)  # held: still disconnected
    assert state["ok"] is False and state["discord_connected"] is False and state["latency_ms"] is None
    world.discord.release_gateway()
    await eventually_async(lambda: health_is(port, 200, []))
    assert (await health(port))[1]["discord_connected"] is True


async def test_healthz_says_shutting_down_while_the_bot_stops(world: World) -> None:
    bot = await world.start_bot()
    port = bot.backend.web_port
    world.apimart.slow_next("submit", 6.0)  # stopping waits (up to 3 s) for a submit on the wire
    await world.edit()
    await wait_for_state(world.data_dir, "submitting")
    stopping = asyncio.create_task(world.stop_bot())

    async def shutting_down() -> bool:
        status, state = await health(port)
        return status == 503 and "shutting_down" in state["problems"]

    await eventually_async(shutting_down)
    await stopping


# --- the Grafana dashboard -------------------------------------------------------------------------

#: Names a PromQL expression of the dashboard may use that are not metrics.
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "label_values", "le", "instance"}
PROMQL_WORDS |= {"model", "outcome", "reason", "cause", "kind", "currency"}  # label names the panels group by


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels, "the dashboard has panels"
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    exprs = [target["expr"] for panel in panels for target in panel["targets"]]
    return [*exprs, variables["instance"]["query"]["query"]]


def metric_names(expr: str) -> set[str]:
    """The metric names of a PromQL expression: identifiers that are not functions, keywords,
    labels, label values (quoted), legends or durations."""
    unquoted = re.sub(r'"[^"]*"', '""', expr)
    unquoted = re.sub(r"\[[^\]]*\]", "", unquoted)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", unquoted))
    return words - PROMQL_WORDS


async def test_every_metric_of_the_dashboard_is_exported(world: World) -> None:
    bot = await world.start_bot()
    await world.result_of(await world.edit())
    scraped = await scrape(bot.backend.web_port)
    exported = scraped.sample_names() | set(scraped.families)
    used: set[str] = set()
    for expr in dashboard_expressions():
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        used |= names
    assert not used - exported, f"the dashboard uses metrics the bot does not export: {used - exported}"
    # what the dashboard must show
    needed = {
        "kontext_jobs_total",
        "kontext_job_failures_total",
        "kontext_spent_total",
        "kontext_jobs_running",
        "kontext_jobs_waiting",
        "kontext_image_workers_busy",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    }
    needed |= {
        f"{name}_bucket"
        for name in (
            "kontext_ack_latency_seconds",
            "kontext_queue_wait_seconds",
            "kontext_api_seconds",
            "kontext_job_duration_seconds",
            "kontext_overhead_seconds",
        )
    }
    assert needed <= used, needed - used
    quantiles = [e for e in dashboard_expressions() if e.startswith("histogram_quantile(")]
    assert {e.split(",")[0] for e in quantiles} == {
        f"histogram_quantile({q}" for q in ("0.5", "0.95", "0.99")
    }
    assert all("rate(" in e and "_bucket{" in e and "[5m]" in e for e in quantiles)
