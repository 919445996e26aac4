"""End to end: command sync modes and the operator endpoints of a running bot."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.harness import World
from tests.processes import BotProcess
from tests.scrape import Scrape


async def test_dev_guild_gets_commands_instantly_and_nothing_global(world: World) -> None:
    await world.start_bot(DEV_GUILD_ID=str(world.guild.id))
    names = {c["name"] for c in world.discord.guild_commands(world.guild.id)}
    assert {"edit", "imagine", "kontext", "Edit image"} <= names
    assert world.discord.commands == []


async def test_healthz_and_metrics_of_a_running_bot(world: World) -> None:
    bot = await world.start_bot()
    await world.result_of(await world.edit())
    base = f"http://127.0.0.1:{bot.backend.web_port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(base + "/healthz") as resp:
            assert resp.status == 200
            health = await resp.json()
        async with session.get(base + "/metrics") as resp:
            metrics = await resp.text()
        async with session.get(base + "/files/") as resp:
            assert resp.status == 404, "no hosted-file route unless IMAGE_HOST=local"
    assert health["ok"] is True and health["discord_connected"] is True and health["problems"] == []
    scraped = Scrape.parse(metrics)
    assert scraped.value("kontext_jobs_total", model="flux-kontext-pro", outcome="done") == 1
    assert scraped.value("kontext_jobs_submitted_total", model="flux-kontext-pro") == 1
    assert scraped.value("kontext_jobs_running") == 0
    await world.stop_bot()


async def test_a_gateway_that_refuses_the_handshake_is_one_line_and_exit_1(
    world: World, tmp_path: Path
) -> None:
    """A wrong DISCORD_GATEWAY_URL (HTTP 404 on the websocket upgrade) must not loop on tracebacks."""
    world.discord.refuse_gateway(404)
    process = await BotProcess("bot", {**world.env, "LOG_LEVEL": "INFO"}, tmp_path).start()
    assert process.process is not None
    code = await asyncio.wait_for(process.process.wait(), 60)
    log = process.log()
    assert code == 1, log
    assert "Traceback" not in log, log
    [line] = [line for line in log.splitlines() if "DISCORD_GATEWAY_URL" in line]
    assert "could not start" in line and "HTTP 404" in line


@pytest.mark.parametrize(("allow_dms", "contexts"), [("false", [0]), ("true", [0, 1])])
async def test_commands_are_offered_in_dms_only_when_they_work_there(
    world: World, allow_dms: str, contexts: list[int]
) -> None:
    """Interaction contexts: 0 = servers, 1 = the bot's DMs (Discord's command payload)."""
    await world.start_bot(ALLOW_DMS=allow_dms)
    for name, kind in (("edit", 1), ("imagine", 1), ("Edit image", 3)):
        assert sorted(world.discord.command(name, type=kind)["contexts"]) == contexts, name
    assert world.discord.command("kontext")["contexts"] == [0], "settings are per server, never in DMs"
