"""The floor under the bot's CPU per job: a discord.py bot that does a job's wire work and nothing else.

    python bench/job_floor.py [--smoke] [--json FILE] [--jobs N]

``bench/job_bench.py``'s ``idle`` scenario measures the Kontext bot's CPU per job. This runs the
same scenario (same fakes, same inputs, same task shapes, same measurement: :class:`session.Session`)
against the smallest bot that makes the same requests as a Kontext job, in its own process with
the Kontext bot's client settings (``AutoShardedBot``, guilds intent only). Its ``/edit`` does:

1. ``defer(thinking=True)`` (the callback; its reply names the status message);
2. reads the attachment from the CDN;
3. uploads it to APIMart (``POST /v1/uploads/images``) and submits the task;
4. polls the task on the bot's own :class:`~kontext.domain.poll_schedule.PollSchedule` (the same
   requests at the same times), editing the status message when the task's state changes;
5. downloads the result and edits the status message into it (file + embed).

No database, no policy, no image checks, no logging, no translations, no metrics. Its
``cpu_ms_per_job`` is what discord.py and aiohttp cost for a job's requests on this machine;
``cpu_ms_per_request`` divides it by the requests it made (``requests_per_job``: Discord REST,
APIMart with the result download, the CDN read). ``bench/run_all.py`` scales that to the Kontext
bot's own request count and prints it next to the bot's CPU per job. Prints, never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # the floor bot runs as a script: kontext's pure parts importable

import aiohttp  # noqa: E402
import discord  # noqa: E402
import minimal_bot  # noqa: E402
from jobstats import BOT_AGENT  # noqa: E402

from kontext.adapters.apimart.parsing import (  # noqa: E402
    parse_submit_response,
    parse_task,
    parse_upload_response,
    request_body,
)
from kontext.domain.generation import GenerationRequest, TaskState  # noqa: E402
from kontext.domain.poll_schedule import PollSchedule  # noqa: E402

if TYPE_CHECKING:  # the floor bot's own process does not import the bench driver
    from job_bench import Config

# --------------------------------------------------------------------------------------- the bot


class FloorBot:
    """The minimal job: requests only (see the module docstring)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.base = env["APIMART_BASE_URL"].rstrip("/")
        self.headers = {"Authorization": f"Bearer {env['APIMART_API_KEY']}"}
        self.schedule = PollSchedule()
        self.running = 0
        self.http: aiohttp.ClientSession | None = None

    async def job(
        self, interaction: discord.Interaction[Any], image: discord.Attachment, prompt: str
    ) -> None:
        self.running += 1
        try:
            await self._job(interaction, image, prompt)
        finally:
            self.running -= 1

    async def _job(
        self, interaction: discord.Interaction[Any], image: discord.Attachment, prompt: str
    ) -> None:
        assert self.http is not None
        deferred = await interaction.response.defer(thinking=True)
        message_id = deferred.message_id if deferred else None
        assert message_id is not None
        data = await image.read()
        form = aiohttp.FormData()
        form.add_field("file", data, filename=image.filename, content_type=image.content_type or "image/jpeg")
        async with self.http.post(f"{self.base}/v1/uploads/images", data=form, headers=self.headers) as resp:
            url = parse_upload_response(await resp.json())
        request = GenerationRequest("flux-kontext-pro", prompt, url, "auto", "png", 2, False)
        async with self.http.post(
            f"{self.base}/v1/images/generations", json=request_body(request), headers=self.headers
        ) as resp:
            task_id = parse_submit_response(await resp.json())
        loop = asyncio.get_running_loop()
        started, last = loop.time(), None
        while True:
            async with self.http.get(f"{self.base}/v1/tasks/{task_id}", headers=self.headers) as resp:
                status = parse_task(await resp.json(), task_id)
            if status.state is TaskState.COMPLETED:
                break
            if status.state is TaskState.FAILED:
                await interaction.followup.edit_message(message_id, content="❌ failed")
                return
            if status.state != last:
                last = status.state
                await interaction.followup.edit_message(message_id, content=f"⏳ {status.raw_status}")
            await asyncio.sleep(self.schedule.next_delay(loop.time() - started, status))
        # the bot's User-Agent: the bench counts result downloads by it (as it does the bot's)
        async with self.http.get(status.result_urls[0], headers={"User-Agent": BOT_AGENT}) as resp:
            result = await resp.read()
        embed = discord.Embed(title=prompt[:256]).set_image(url="attachment://result.png")
        await interaction.followup.edit_message(
            message_id,
            content="✅",
            embed=embed,
            attachments=[discord.File(io.BytesIO(result), "result.png")],
        )


def serve_bot(env_file: Path) -> None:
    """The floor bot (run in its own process by the bench, with ``--env-file ENV_FILE``)."""
    env = minimal_bot.settings(env_file)
    floor = FloorBot(env)

    def started(http: aiohttp.ClientSession) -> None:
        floor.http = http

    minimal_bot.run(env, floor.job, jobs_running=lambda: floor.running, started=started)


# --------------------------------------------------------------------------------------- the driver


async def measure(cfg: Config) -> dict[str, Any]:
    """The ``idle`` scenario of ``job_bench.py`` on the floor bot, and its CPU per request."""
    from fakes_server import make_inputs
    from job_bench import scenario_idle

    figures = await scenario_idle(cfg, make_inputs(), random.Random(cfg.seed), script=Path(__file__))
    cpu, requests = figures.get("cpu_ms_per_job"), figures.get("requests_per_job")
    if cpu is not None and requests:
        figures["cpu_ms_per_request"] = cpu / requests
    return dict(figures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--env-file", type=Path, help=argparse.SUPPRESS)  # the floor bot itself
    parser.add_argument("--smoke", action="store_true", help="a quick run (2 short jobs)")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--jobs", type=int, help="jobs one after another (default 8, smoke 2)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.env_file:
        serve_bot(args.env_file)
        return 0
    from job_bench import build_parser, config

    smoke = ["--smoke"] if args.smoke else []
    jobs = ["--idle-jobs", str(args.jobs)] if args.jobs else []
    bench_args = build_parser().parse_args([*smoke, *jobs, "--seed", str(args.seed)])
    figures = asyncio.run(measure(config(bench_args)))
    per_request = figures.get("cpu_ms_per_request")
    print(
        f"floor: {figures.get('cpu_ms_per_job', float('nan')):.1f} ms of CPU per job for"
        f" {figures.get('requests_per_job', float('nan')):.2f} requests"
        f" ({per_request if per_request is not None else float('nan'):.2f} ms per request)"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
