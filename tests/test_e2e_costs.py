"""End to end: what each job costs, server and member budgets, the operator's cap, /usage, and the
moderation log in the server's language."""

from __future__ import annotations

import asyncio
import csv
import io
import sqlite3
from typing import Any

import pytest
from PIL import Image

from tests.fakes.discord import FakeInteraction, FakeMessage
from tests.harness import World, make_image
from tests.test_e2e_moderation import admin, fail_the_next_acknowledgement, kontext, refused, reply_text

PRICES = {"PRICE_FLUX_KONTEXT_PRO": "0.05", "PRICE_FLUX_KONTEXT_MAX": "0.12"}


def job_costs(world: World) -> list[tuple[str, str, int]]:
    """(model, state, cost in micros) of every job, read from the SQLite file."""
    conn = sqlite3.connect(world.data_dir / "kontext.sqlite3", timeout=5)
    try:
        rows = conn.execute("SELECT model, state, cost FROM jobs ORDER BY created_at").fetchall()
    finally:
        conn.close()
    return [(str(m), str(s), int(c)) for m, s, c in rows]


def spend_rows(world: World) -> dict[tuple[int, str], tuple[int, int]]:
    """(user, model) -> (jobs, cost in micros) of the spending ledger."""
    conn = sqlite3.connect(world.data_dir / "kontext.sqlite3", timeout=5)
    try:
        rows = conn.execute("SELECT user_id, model, SUM(jobs), SUM(cost) FROM spend GROUP BY 1, 2").fetchall()
    finally:
        conn.close()
    return {(int(u), str(m)): (int(j), int(c)) for u, m, j, c in rows}


async def settled(world: World) -> None:
    await world.bot.backend.runner.wait_idle()
    await world.bot.backend.moderation.flush()


async def test_each_job_records_its_model_s_price(world: World) -> None:
    await world.start_bot(**PRICES)
    await world.result_of(await world.edit())
    await world.result_of(await world.edit(model="flux-kontext-max"))
    await settled(world)
    assert job_costs(world) == [("flux-kontext-pro", "done", 50_000), ("flux-kontext-max", "done", 120_000)]
    assert spend_rows(world) == {
        (world.user.id, "flux-kontext-pro"): (1, 50_000),
        (world.user.id, "flux-kontext-max"): (1, 120_000),
    }
    mod = await admin(world)
    show = reply_text(await kontext(world, "show", user_id=mod))
    assert "Server: $0.17 spent this month (no cap)" in show
    assert "flux-kontext-pro $0.05 · flux-kontext-max $0.12" in show


async def test_a_job_that_never_reached_the_api_costs_nothing(world: World) -> None:
    """Refused in the image sandbox (not an image): nothing was billed, the price goes back."""
    await world.start_bot(**PRICES)
    await world.failure_of(await world.edit(b"this is not an image at all", filename="x.png"))
    await settled(world)
    assert job_costs(world) == [("flux-kontext-pro", "failed", 0)]
    assert spend_rows(world) == {(world.user.id, "flux-kontext-pro"): (1, 0)}


@pytest.mark.parametrize("charge_failed", [True, False])
async def test_a_task_the_api_ends_failed_counts_as_the_operator_says(
    world: World, charge_failed: bool
) -> None:
    await world.start_bot(CHARGE_FAILED_TASKS=str(charge_failed).lower(), **PRICES)
    world.apimart.script(fail_reason="content policy")
    await world.failure_of(await world.edit())
    await settled(world)
    assert job_costs(world) == [("flux-kontext-pro", "failed", 50_000 if charge_failed else 0)]


async def test_a_submission_the_api_refused_costs_nothing(world: World) -> None:
    await world.start_bot(**PRICES)
    world.apimart.fail_next("submit", 422, body={"error": {"message": "bad size", "code": 422}})
    await world.failure_of(await world.edit())
    await settled(world)
    assert job_costs(world) == [("flux-kontext-pro", "failed", 0)]


async def test_the_server_budget_refuses_exactly_when_it_would_be_exceeded(world: World) -> None:
    await world.start_bot(**PRICES)
    mod = await admin(world)
    await kontext(world, "budget", {"monthly": 0.15}, user_id=mod)
    for _ in range(3):  # 3 x $0.05 = the whole $0.15
        await world.result_of(await world.edit())
    submitted = len(world.apimart.submissions)
    text = await refused(world, await world.edit())
    assert "spending cap for this month is reached" in text
    assert "$0.00 of $0.15 left" in text and "costs $0.05" in text and "<t:" in text
    assert len(world.apimart.submissions) == submitted, "a refused request submits nothing"
    max_text = await refused(world, await world.edit(model="flux-kontext-max"))
    assert "costs $0.12" in max_text
    show = reply_text(await kontext(world, "show", user_id=mod))
    assert "Server: $0.15 of $0.15 spent this month" in show
    await kontext(world, "budget", {"monthly": 0.2}, user_id=mod)
    await world.result_of(await world.edit())  # $0.05 left again: exactly one more


async def test_a_burst_never_overshoots_the_server_budget(world: World) -> None:
    """20 requests at once against a budget for 10: exactly 10 are admitted and submitted."""
    await world.start_bot(MAX_CONCURRENT_JOBS="20", **PRICES)
    mod = await admin(world)
    await kontext(world, "budget", {"monthly": 0.5}, user_id=mod)
    users = [world.discord.add_user(f"fan{i}") for i in range(20)]
    for user in users:
        world.discord.add_member(world.guild.id, user.id)
    await world.discord.flush()
    image = make_image()
    burst = await asyncio.gather(*(world.edit(image, user_id=user.id) for user in users))
    callbacks = await asyncio.gather(*(inter.wait_for_callback() for inter in burst))
    refusals = [c for c in callbacks if c.type == 4]
    assert len(refusals) == 10
    assert all("spending cap" in (c.data or {}).get("content", "") for c in refusals)
    admitted = [inter for inter, c in zip(burst, callbacks, strict=True) if c.type != 4]
    await asyncio.gather(*(world.result_of(inter) for inter in admitted))
    await settled(world)
    assert len(world.apimart.submissions) == 10
    assert sum(cost for _, cost in spend_rows(world).values()) == 500_000


async def test_the_member_budget_holds_and_admins_are_exempt(world: World) -> None:
    await world.start_bot(**PRICES)
    mod = await admin(world)
    await kontext(world, "budget", {"user-daily": 0.1}, user_id=mod)
    await world.result_of(await world.edit())
    await world.result_of(await world.edit())
    text = await refused(world, await world.edit())
    assert "daily spending cap" in text and "$0.00 of $0.10 left" in text
    await world.result_of(await world.edit(user_id=mod))  # Manage Server is not held to it


async def test_the_operator_cap_covers_every_server(world: World) -> None:
    await world.start_bot(OPERATOR_MONTHLY_BUDGET="0.1", **PRICES)
    other = world.discord.add_guild("Second Club")
    world.discord.add_member(other.id, world.user.id)
    await world.discord.flush()
    await world.result_of(await world.edit())
    await world.result_of(await world.edit(guild_id=other.id, channel_id=other.text_channels[0].id))
    text = await refused(world, await world.edit())
    assert "This bot's spending cap for this month is reached" in text


async def test_a_refund_gives_the_price_back(world: World) -> None:
    """The acknowledgement failed: the request never became a job, so nothing stays counted."""
    bot = await world.start_bot(**PRICES)
    await bot.backend.moderation.change(world.guild.id, monthly_budget=50_000)
    fail_the_next_acknowledgement(world)
    await world.edit()
    await world.discord.wait_until(lambda: bool(world.discord.find_requests("POST", "callback")), timeout=10)
    await settled(world)
    await world.result_of(await world.edit())  # the whole budget is there again


def embed_of(inter: FakeInteraction) -> dict[str, Any]:
    data = inter.callbacks[0].data or {}
    [embed] = data["embeds"]
    assert data["flags"] & 64, "private"
    return dict(embed)


@pytest.mark.parametrize(
    ("locale", "title", "jobs", "spent"),
    [
        ("en-US", "Your usage on this server", "1 of 3 (2 left)", "$0.05 of $1.00 ($0.95 left)"),
        ("zh-CN", "你在本服务器的用量", "1 / 3（还剩 2）", "US$0.05 / US$1.00（还剩 US$0.95）"),
    ],
)
async def test_usage_shows_a_member_their_day_in_their_language(
    world: World, locale: str, title: str, jobs: str, spent: str
) -> None:
    bot = await world.start_bot(**PRICES)
    await bot.backend.moderation.change(
        world.guild.id, user_daily_quota=3, cooldown_s=600, user_daily_budget=1_000_000
    )
    await world.result_of(await world.edit())
    inter = await world.discord.slash(
        "usage", {}, user_id=world.user.id, guild_id=world.guild.id, locale=locale
    )
    await inter.wait_for_callback()
    embed = embed_of(inter)
    fields = [f["value"] for f in embed["fields"]]
    assert embed["title"] == title
    assert fields[0] == jobs
    assert "<t:" in fields[2], "the cooldown says when the next request is possible"
    assert fields[3] == spent
    assert "flux-kontext-max" in fields[5]


async def test_the_moderation_log_speaks_the_server_s_language(world: World) -> None:
    guild = world.discord.add_guild("Kunstklub", preferred_locale="de")
    world.discord.add_member(guild.id, world.user.id)
    bot = await world.start_bot(**PRICES)
    log_channel = world.discord.add_channel(guild.id, "mod-log")
    await world.discord.flush()
    await bot.backend.moderation.change(guild.id, log_channel_id=log_channel.id)
    channel = guild.text_channels[0]
    await world.result_of(await world.edit(prompt="mach es blau", guild_id=guild.id, channel_id=channel.id))
    await bot.backend.modlog.drain()
    await world.discord.wait_until(lambda: bool(world.discord.channel_messages(log_channel.id)), timeout=10)
    [entry] = world.discord.channel_messages(log_channel.id)
    assert entry.embeds[0]["title"] == "Bearbeitung fertig"
    fields = {f["name"]: f["value"] for f in entry.embeds[0]["fields"]}
    assert fields["Anweisung"] == "mach es blau" and fields["Ergebnis"] == "Fertig"
    assert fields["Kosten"] == "0,05\xa0$"


async def usage_report(world: World, mod: int, days: int, locale: str = "en-US") -> FakeMessage:
    inter = await world.discord.slash(
        "kontext usage", {"days": days}, user_id=mod, guild_id=world.guild.id, locale=locale
    )
    callback = await inter.wait_for_callback()
    assert callback.type == 5, "deferred: the chart takes a moment"
    return await inter.wait_for(lambda i: i.followups[0] if i.followups else None, timeout=30)


@pytest.mark.parametrize(
    ("locale", "title"), [("en-US", "Usage of the last 7 days"), ("ja", "直近 7 日間の利用状況")]
)
async def test_kontext_usage_posts_a_chart_and_figures_that_match_the_jobs(
    world: World, locale: str, title: str
) -> None:
    await world.start_bot(**PRICES)
    mod = await admin(world)
    await world.result_of(await world.edit())
    await world.result_of(await world.edit())
    await world.result_of(await world.edit(model="flux-kontext-max"))
    world.apimart.script(fail_reason="content policy")
    await world.failure_of(await world.edit())
    await settled(world)

    report = await usage_report(world, mod, 7, locale)
    assert report.ephemeral, "usage is for the admins who ask"
    [embed] = report.embeds
    assert embed["title"] == title
    files = {a.filename: a for a in report.attachments}
    assert set(files) == {"kontext-usage.png", "kontext-usage.csv"}
    assert embed["image"]["url"].endswith("kontext-usage.png")
    png = files["kontext-usage.png"].data
    assert png.startswith(b"\x89PNG") and len(png) < 1024 * 1024
    with Image.open(io.BytesIO(png)) as picture:
        assert picture.size == (1200, 600)
    rows = list(csv.DictReader(io.StringIO(files["kontext-usage.csv"].data.decode())))
    assert len(rows) == 7 * 2, "every day, every model"
    today = [r for r in rows if r["day"] == rows[-1]["day"]]
    assert {r["model"]: (int(r["jobs"]), r["cost_usd"]) for r in today} == {
        "flux-kontext-pro": (3, "0.15"),  # two done and one failed task (billed: CHARGE_FAILED_TASKS)
        "flux-kontext-max": (1, "0.12"),
    }
    assert all(int(r["jobs"]) == 0 for r in rows if r["day"] != rows[-1]["day"])
    if locale == "en-US":
        assert embed["description"] == "4 edits, $0.27 spent"
        fields = {f["name"]: f["value"] for f in embed["fields"]}
        assert (
            fields["By model (edits · spent)"] == "flux-kontext-pro: 3 · $0.15\nflux-kontext-max: 1 · $0.12"
        )
        assert fields["Top members (edits · spent)"] == f"<@{world.user.id}>: 4 · $0.27"
        assert fields["Failures by reason"] == "`task_failed`: 1"


async def test_kontext_usage_of_a_quiet_server(world: World) -> None:
    await world.start_bot()
    mod = await admin(world)
    report = await usage_report(world, mod, 1)
    [embed] = report.embeds
    assert embed["title"] == "Usage of the last 1 day" and embed["description"] == "No edits in this period."
    assert {a.filename for a in report.attachments} == {"kontext-usage.png", "kontext-usage.csv"}
