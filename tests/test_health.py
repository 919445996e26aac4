"""What /healthz reports: ok, and the problems, each from the part of the bot it is about."""

from __future__ import annotations

from pathlib import Path

import pytest

from kontext.adapters.images import sandbox as sandbox_module
from kontext.adapters.images.sandbox import ImageSandbox, SandboxLimits
from kontext.adapters.storage import SqliteStore
from kontext.domain.jobs import JobRecord
from kontext.services.health import DatabaseProbe, Health
from tests.fakes.memory import MemoryStore
from tests.test_runner import Rig
from tests.waiting import eventually, until


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FlakyStore(MemoryStore):
    """A store whose queries fail while ``down`` is set (and counts them)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.queries = 0

    async def get_job(self, job_id: str) -> JobRecord | None:
        self.queries += 1
        if self.down:
            raise ConnectionRefusedError("database is down")
        return await super().get_job(job_id)


async def test_the_database_is_checked_in_the_background_at_most_once_a_period() -> None:
    store, clock = FlakyStore(), Clock()
    probe = DatabaseProbe(store, every=10, clock=clock)
    store.down = True
    assert probe.reachable(), "the last known answer (it opened at start); a check is now under way"
    await until(lambda: not probe.reachable())
    assert store.queries == 1, "asked again within the period: no new query"
    store.down = False
    clock.now = 10.0
    assert not probe.reachable()  # starts the next check
    await until(probe.reachable)
    assert store.queries == 2
    await probe.close()


async def test_a_closed_sqlite_database_is_unreachable(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "k.sqlite3")
    await store.open()
    probe = DatabaseProbe(store)
    assert await probe.check()
    await store.close()
    assert not await probe.check()
    await probe.close()


@pytest.mark.parametrize(
    ("connected", "accepting", "images", "database", "problems"),
    [
        (True, True, True, True, []),
        (False, True, True, True, ["discord_disconnected"]),
        (True, False, True, True, ["shutting_down"]),
        (True, True, False, True, ["image_workers_unavailable"]),
        (True, True, True, False, ["database_unreachable"]),
        (False, False, False, False, ["discord_disconnected", "shutting_down", "image_workers_unavailable",
                                      "database_unreachable"]),
    ],
)  # fmt: skip
async def test_health_lists_each_problem(
    connected: bool, accepting: bool, images: bool, database: bool, problems: list[str]
) -> None:
    store = FlakyStore()
    store.down = not database
    probe = DatabaseProbe(store)
    await probe.check()
    rig = Rig(store=store)
    runner = rig.build()
    runner.accepting = accepting
    health = Health(
        runner,
        discord_connected=lambda: connected,
        latency=lambda: 0.0421,
        image_workers_available=lambda: images,
        database=probe,
    )
    report = health.report()
    assert report["problems"] == problems
    assert report["ok"] is (problems == [])
    assert report["discord_connected"] is connected
    assert report["latency_ms"] == (42 if connected else None)
    assert report["jobs_running"] == 0 and report["jobs_waiting"] == 0
    await probe.close()


async def test_an_unknown_latency_is_null() -> None:
    rig = Rig()
    probe = DatabaseProbe(rig.store)
    readings: list[float | None] = [float("nan"), float("inf"), None]
    health = Health(
        rig.build(),
        discord_connected=lambda: True,
        latency=readings.pop,
        image_workers_available=lambda: True,
        database=probe,
    )
    while readings:
        assert health.report()["latency_ms"] is None
    await probe.close()


async def test_image_workers_are_unavailable_while_none_can_be_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    box = ImageSandbox(SandboxLimits(workers=1))

    def refuse(*args: object) -> None:
        raise OSError("fork: resource temporarily unavailable")

    try:
        assert box.available
        with monkeypatch.context() as patched:
            patched.setattr(sandbox_module, "_launch", refuse)
            box.start()
            await eventually(lambda: not box.available)
        box.start()  # the next start works again
        await eventually(lambda: box.available and box.ready == 1)
    finally:
        await box.close()
    assert not box.available, "a closed sandbox runs no image work"
