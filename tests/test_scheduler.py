"""The fair scheduler: caps hold, positions are right, one user's burst does not block others."""

from __future__ import annotations

import asyncio

from kontext.domain.fair_queue import FairScheduler
from tests.waiting import settle


async def test_caps_and_positions() -> None:
    sched = FairScheduler(max_running=2, max_per_user=1)
    release: dict[str, asyncio.Event] = {}
    positions: dict[str, list[int]] = {}
    order: list[str] = []

    async def job(job_id: str, user: int) -> None:
        release[job_id] = asyncio.Event()
        positions[job_id] = []

        async def report(position: int) -> None:
            positions[job_id].append(position)

        async with sched.slot(job_id, user, on_position=report):
            order.append(job_id)
            assert sched.running_total <= 2
            assert sched.running_for(user) <= 1
            await release[job_id].wait()

    tasks = [asyncio.create_task(job(j, u)) for j, u in [("a1", 1), ("a2", 1), ("b1", 2), ("c1", 3)]]
    await settle()
    # a1 and b1 run (a2 is blocked by user 1's cap, c1 by the global cap)
    assert order == ["a1", "b1"]
    assert positions["a2"] == [1] and positions["c1"] == [2]
    release["b1"].set()
    await settle()
    # c1 starts before a2 because a2's user is still at the cap
    assert order == ["a1", "b1", "c1"]
    release["a1"].set()
    await settle()
    assert order == ["a1", "b1", "c1", "a2"]
    release["c1"].set()
    release["a2"].set()
    await asyncio.gather(*tasks)
    assert sched.running_total == 0 and sched.waiting_count == 0
    assert sched.peak_running == 2


async def test_cancelled_waiter_leaves_the_line() -> None:
    sched = FairScheduler(max_running=1, max_per_user=1)
    hold = asyncio.Event()

    async def job(job_id: str, user: int) -> None:
        async with sched.slot(job_id, user):
            await hold.wait()

    t1 = asyncio.create_task(job("1", 1))
    t2 = asyncio.create_task(job("2", 2))
    t3 = asyncio.create_task(job("3", 3))
    await settle()
    assert sched.position("3") == 2
    t2.cancel()
    await settle()
    assert sched.position("2") is None and sched.position("3") == 1
    hold.set()
    await asyncio.gather(t1, t3)
    assert sched.running_total == 0


async def test_front_jumps_the_line() -> None:
    sched = FairScheduler(max_running=1, max_per_user=5)
    hold = asyncio.Event()
    order: list[str] = []

    async def job(job_id: str, front: bool = False) -> None:
        async with sched.slot(job_id, 1, front=front):
            order.append(job_id)
            await hold.wait()

    tasks = [asyncio.create_task(job("first")), asyncio.create_task(job("new"))]
    await settle()
    tasks.append(asyncio.create_task(job("resumed", front=True)))
    await settle()
    assert sched.position("resumed") == 1 and sched.position("new") == 2
    hold.set()
    await asyncio.gather(*tasks)
    assert order == ["first", "resumed", "new"]


async def test_a_job_whose_turn_comes_soon_never_reports_a_position() -> None:
    sched = FairScheduler(max_running=1, max_per_user=1)
    reports: list[int] = []

    async def report(position: int) -> None:
        reports.append(position)

    gate = asyncio.Event()

    async def first() -> None:
        async with sched.slot("first", 1):
            await gate.wait()

    async def second() -> None:
        async with sched.slot("second", 2, on_position=report, first_report_after=60):
            pass

    running = asyncio.create_task(first())
    await settle()
    waiting = asyncio.create_task(second())
    await settle()
    assert sched.position("second") == 1 and reports == [], "the first report waits"
    gate.set()
    await asyncio.wait_for(asyncio.gather(running, waiting), 5)
    assert reports == [], "its turn came before the first report was due"


async def test_positions_follow_every_change_of_the_line() -> None:
    sched = FairScheduler(max_running=1, max_per_user=1)
    gate = asyncio.Event()

    async def hold(job_id: str, user: int, front: bool = False) -> None:
        async with sched.slot(job_id, user, front=front):
            await gate.wait()

    tasks = [asyncio.create_task(hold(f"j{i}", i)) for i in range(5)]
    await settle()
    assert [sched.position(f"j{i}") for i in range(5)] == [None, 1, 2, 3, 4]
    tasks[2].cancel()
    await settle()
    assert [sched.position(f"j{i}") for i in (1, 3, 4)] == [1, 2, 3] and sched.position("j2") is None
    tasks.append(asyncio.create_task(hold("resumed", 9, front=True)))
    await settle()
    assert sched.position("resumed") == 1 and sched.position("j4") == 4
    gate.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert sched.waiting_count == 0 and sched.running_total == 0
