"""The loopback fakes of Discord and APIMart for benchmarks, in a process of their own (not the bot's).

    python bench/fakes_server.py [--env-file FILE] [--task-seconds S] [--control-port P]

run alone, it starts both fakes, writes the bot's settings to ``FILE`` (default: a temporary file)
and serves until Ctrl+C, so the bot can be run (and profiled) by hand against it::

    python bot.py --env-file FILE
    curl -X POST 'http://127.0.0.1:8099/edit?n=100&window=1'    # 100 users run /edit within 1 s
    curl http://127.0.0.1:8099/summary                          # how those jobs ended so far

The benchmarks (:mod:`job_bench`) import :class:`BenchFakes` instead and script the fakes from their
own event loop: the driver lives in this process, the bot in another (``python bot.py``), so the
bot's CPU time, memory and event loop are its own.

What differs from the fakes as the tests use them (all of it is the fakes' side; the bot is not
touched):

* Discord enforces its observed rate limits (``realistic_rate_limits=True``), so a bot that edits too
  often pays for it in 429s and retries that show up in the request counts.
* The fake APIMart's "edit" (the input with inverted colours, encoded as PNG) is memoised per distinct
  input: the driver uses a handful of pictures, so the fakes' process spends its CPU on HTTP rather
  than on encoding the same result again (it shares the machine's CPUs with the bot).
* Task durations are scripted per submission by the driver (:meth:`BenchFakes.script_tasks`):
  realistic shapes (queued, then running with progress, an estimate off by up to ±30 %) but seconds
  long rather than tens of seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import io
import os
import random
import signal
import socket
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402
from jobstats import outcome, pct  # noqa: E402
from PIL import Image  # noqa: E402

from tests.fakes import apimart_fake  # noqa: E402
from tests.fakes.apimart_fake import FakeApimart, FakeTask  # noqa: E402
from tests.fakes.discord import FakeDiscord, FakeInteraction  # noqa: E402

#: A well-formed bot token (the fake checks it; Discord never sees it).
TOKEN = "MTA1NjY3ODkwMTIzNDU2Nzg5.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"
API_KEY = FakeApimart.DEFAULT_KEY
INPUT_SIZE = (1152, 864)  #: ~1 MP
#: Fraction by which a task's reported ``estimated_time`` may be off (uniform, either way).
ESTIMATE_ERROR = 0.3


@functools.lru_cache(maxsize=16)
def _invert_cached(digest: str, fmt: str, data: bytes) -> bytes:
    return _INVERT(data, fmt)


def _invert_memoised(data: bytes, fmt: str) -> bytes:
    """The fake's edit, computed once per distinct input (the cache key is the input's SHA-1)."""
    return _invert_cached(hashlib.sha1(data).hexdigest(), fmt, data)


_INVERT = apimart_fake._invert  #: the fake's own edit (put back by BenchFakes.close)


@dataclass(frozen=True)
class TaskShape:
    """How long the fake's tasks take: ``uniform(lo, hi)`` seconds, estimate off by up to ±30 %."""

    lo: float
    hi: float

    def draw(self, rng: random.Random) -> tuple[float, float]:
        duration = rng.uniform(self.lo, self.hi)
        estimate = duration * rng.uniform(1 - ESTIMATE_ERROR, 1 + ESTIMATE_ERROR)
        return duration, round(estimate, 3)


class BenchFakes:
    """Both fakes on 127.0.0.1 with one guild per shard (``shards``; one by default), one channel
    each and ``users`` members in every guild (one per job)."""

    def __init__(self, users: int = 1, shards: int = 1) -> None:
        self.discord = FakeDiscord(TOKEN, realistic_rate_limits=True, shards=shards)
        self.apimart = FakeApimart(API_KEY)
        self.user_count = max(1, users)
        self.shards = max(1, shards)
        self.user_ids: list[int] = []
        self.guild_ids: list[int] = []
        self.channel_ids: list[int] = []

    async def start(self) -> None:
        apimart_fake._invert = _invert_memoised
        await self.discord.start()
        await self.apimart.start()
        for shard in range(self.shards):
            guild = self.discord.add_guild(f"Bench Club {shard}", shard=(shard, self.shards))
            self.guild_ids.append(guild.id)
            self.channel_ids.append(guild.text_channels[0].id)
        self.user(self.user_count - 1)
        await self.discord.flush()

    async def close(self) -> None:
        await self.discord.close()
        await self.apimart.close()
        apimart_fake._invert = _INVERT

    async def __aenter__(self) -> BenchFakes:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- the bot's settings ---------------------------------------------------------------------

    def bot_env(self, data_dir: Path, web_port: int, **overrides: str) -> dict[str, str]:
        """What a user puts in ``.env`` to run the bot against these fakes: the two secrets, the three
        endpoints, ``ALLOW_PRIVATE_URLS`` (the fakes live on loopback), the web server's port on
        127.0.0.1 and ``DATA_DIR``; everything else is the bot's default unless ``overrides`` says."""
        return {
            "DISCORD_TOKEN": TOKEN,
            "APIMART_API_KEY": API_KEY,
            "DISCORD_API_BASE": self.discord.api_base,
            "DISCORD_GATEWAY_URL": self.discord.gateway_url,
            "APIMART_BASE_URL": self.apimart.base_url,
            "ALLOW_PRIVATE_URLS": "true",
            "WEB_HOST": "127.0.0.1",
            "WEB_PORT": str(web_port),
            "DATA_DIR": str(data_dir),
            **overrides,
        }

    # --- scripting ------------------------------------------------------------------------------

    def script_tasks(self, count: int, shape: TaskShape, rng: random.Random) -> None:
        """The next ``count`` submissions get tasks shaped by ``shape`` (left-over scripts dropped)."""
        self.apimart._scripts.clear()
        for _ in range(count):
            duration, estimate = shape.draw(rng)
            self.apimart.script(duration=duration, estimated_time=estimate)

    def hold_tasks(self, count: int, hold: float, estimate: float | None = None) -> None:
        """The next ``count`` submissions get tasks that run for ``hold`` seconds (until
        :meth:`release_tasks`) and say they take ``estimate`` (default: ``hold``)."""
        self.apimart._scripts.clear()
        for _ in range(count):
            self.apimart.script(duration=hold, estimated_time=hold if estimate is None else estimate)

    def release_tasks(self, tasks: Iterable[FakeTask], after: Callable[[int], float]) -> None:
        """Let held tasks finish: the ``i``-th of ``tasks`` completes ``after(i)`` seconds from now,
        and its estimate says so from now on (the bot sees the end approaching, like a real task)."""
        now = asyncio.get_running_loop().time() + self.apimart._offset
        for i, task in enumerate(tasks):
            duration = now - task.created + after(i)
            task.script.duration = duration
            task.script.estimated_time = round(duration, 3)
            task.script.queue_fraction = 0.0

    def user(self, i: int) -> int:
        """The id of the ``i``-th member (more are added as needed): one user per job, so that the
        bot's per-user cap (MAX_JOBS_PER_USER) never holds a job back."""
        while len(self.user_ids) <= i:
            user = self.discord.add_user(f"user{len(self.user_ids)}")
            for guild_id in self.guild_ids:
                self.discord.add_member(guild_id, user.id)
            self.user_ids.append(user.id)
        return self.user_ids[i]

    async def edit(
        self, user: int, prompt: str, data: bytes, filename: str, guild: int = 0
    ) -> tuple[FakeInteraction, int]:
        """User ``user`` (an index) runs `/edit` in the ``guild``-th guild with ``data`` attached, as
        Discord sends it (a signed CDN URL in the interaction); returns the interaction and the
        attachment's id."""
        channel_id = self.channel_ids[guild]
        attachment = self.discord.add_attachment(data, filename, "image/jpeg", channel_id=channel_id)
        inter = await self.discord.slash(
            "edit",
            {"prompt": prompt},
            attachments={"image": attachment},
            user_id=self.user(user),
            guild_id=self.guild_ids[guild],
            channel_id=channel_id,
        )
        return inter, int(attachment["id"])

    def has_command(self, name: str) -> bool:
        try:
            self.discord.command(name)
        except LookupError:
            return False
        return True


def photo(width: int, height: int, seed: int) -> Image.Image:
    """A photo-like picture (gradients, a fractal, noise); ``seed`` moves the fractal window."""
    size = (width, height)
    x = -2.2 + 0.15 * seed
    r = Image.linear_gradient("L").resize(size)
    g = Image.effect_mandelbrot(size, (x, -1.2, x + 3.2, 1.2), 48)
    b = Image.radial_gradient("L").resize(size)
    noise = Image.effect_noise(size, 24)
    return Image.merge("RGB", (Image.blend(r, noise, 0.3), g, Image.blend(b, noise, 0.3)))


def make_inputs(count: int = 4) -> list[tuple[bytes, str]]:
    """``count`` ~1 MP JPEGs (quality 90, like a phone photo as Discord clients upload it)."""
    inputs = []
    for i in range(count):
        out = io.BytesIO()
        photo(*INPUT_SIZE, seed=i).save(out, "JPEG", quality=90)
        inputs.append((out.getvalue(), f"photo{i}.jpg"))
    return inputs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_env_file(path: Path, env: Mapping[str, str]) -> None:
    path.write_text("".join(f"{key}={value}\n" for key, value in env.items()), encoding="utf-8")


class Control:
    """The standalone server's control API on 127.0.0.1 (for running the bot by hand under load):

    * ``POST /edit?n=N&window=S`` — N users run ``/edit`` over S seconds (default 1 and 0);
    * ``GET /summary`` — how the dispatched jobs ended so far, and each ``/edit`` batch's defer
      times (p50 / p99 / max in ms, of the jobs acknowledged so far) (JSON).
    """

    def __init__(self, fakes: BenchFakes) -> None:
        self.fakes = fakes
        self.inputs = make_inputs()
        self.interactions: list[FakeInteraction] = []
        self.batches: list[tuple[int, int]] = []  # (first interaction, count) per POST /edit

    async def edit(self, request: web.Request) -> web.Response:
        count = int(request.query.get("n", "1"))
        window = float(request.query.get("window", "0"))
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.batches.append((len(self.interactions), count))
        for i in range(count):
            delay = start + window * i / max(1, count) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # the arrival schedule
            data, filename = self.inputs[len(self.interactions) % len(self.inputs)]
            number = len(self.interactions) + 1
            inter, _ = await self.fakes.edit(len(self.interactions), f"job {number}", data, filename)
            self.interactions.append(inter)
        return web.json_response({"dispatched": count})

    async def summary(self, request: web.Request) -> web.Response:
        now = asyncio.get_running_loop().time()
        ended = Counter(
            outcome(i, now, self.fakes.discord.ack_deadline) or "running" for i in self.interactions
        )
        batches = []
        for first, count in self.batches:
            batch = self.interactions[first : first + count]
            defers = [i.callbacks[0].delay * 1000 for i in batch if i.callbacks]
            figures: dict[str, float] = {"n": count, "acknowledged": len(defers)}
            if defers:  # nearest-rank quantiles, in ms
                figures |= {"p50": pct(defers, 50), "p99": pct(defers, 99), "max": max(defers)}
            batches.append({key: round(value, 1) for key, value in figures.items()})
        return web.json_response(dict(ended) | {"batches": batches})


async def serve(users: int, env_file: Path | None, task_seconds: float, control_port: int) -> None:
    """Run the fakes until SIGINT/SIGTERM (for running the bot by hand against them)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with tempfile.TemporaryDirectory(prefix="kontext-fakes-") as tmp:
        async with BenchFakes(users) as fakes:
            fakes.apimart.script(duration=task_seconds, persist=True)
            control = Control(fakes)
            app = web.Application()
            app.router.add_post("/edit", control.edit)
            app.router.add_get("/summary", control.summary)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", control_port).start()
            path = env_file or Path(tmp) / "bench.env"
            web_port = free_port()
            write_env_file(path, fakes.bot_env(Path(tmp) / "data", web_port))
            print(f"fakes: Discord {fakes.discord.base_url}, APIMart {fakes.apimart.base_url}")
            print(f"bot settings in {path}; run: python bot.py --env-file {path}")
            print(f"the bot's /healthz and /metrics will be on http://127.0.0.1:{web_port}")
            print(f"control: curl -X POST 'http://127.0.0.1:{control_port}/edit?n=100&window=1'")
            print(f"         curl http://127.0.0.1:{control_port}/summary   (Ctrl+C to stop)")
            try:
                await stop.wait()
            finally:
                await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=1, help="members of the guild (default 1)")
    parser.add_argument("--env-file", type=Path, help="where to write the bot's settings")
    parser.add_argument("--task-seconds", type=float, default=5.0, help="every task's duration (default 5)")
    parser.add_argument(
        "--control-port", type=int, default=8099, help="the control API's port (default 8099)"
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.users, args.env_file, args.task_seconds, args.control_port))
    return 0


def settings_env_names() -> frozenset[str]:
    """Every variable the bot reads (so a benchmark can keep the caller's own out of the bot's way)."""
    from kontext.config.schema import specs
    from kontext.config.settings import Settings

    return frozenset(spec.env for spec in specs(Settings))


def clean_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any bot setting (``bot.py`` lets the environment win over
    its env file), plus ``extra``."""
    names = settings_env_names()
    env = {key: value for key, value in os.environ.items() if key not in names}
    env.update(extra or {})
    return env


__all__ = [
    "API_KEY",
    "TOKEN",
    "BenchFakes",
    "TaskShape",
    "clean_environ",
    "main",
    "write_env_file",
]


if __name__ == "__main__":
    sys.exit(main())
