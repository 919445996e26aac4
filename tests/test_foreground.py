"""Acknowledgements first (kontext.services.foreground): job steps give way to acknowledgements."""

from __future__ import annotations

import asyncio

from kontext.services.foreground import Foreground
from tests.test_runner import Rig, job
from tests.waiting import settle, until


async def test_nothing_waits_when_no_acknowledgement_is_in_progress() -> None:
    foreground = Foreground()
    await foreground.yield_to_acknowledgements()
    assert foreground.yielded == 0 and foreground.busy == 0


async def test_a_step_waits_until_every_acknowledgement_in_progress_is_done() -> None:
    foreground = Foreground(max_wait=60, quiet=0)
    with foreground.acknowledging():
        step = asyncio.create_task(foreground.yield_to_acknowledgements())
        with foreground.acknowledging():
            await settle()
            assert foreground.busy == 2 and not step.done()
        await settle()
        assert not step.done(), "one acknowledgement is still in progress"
    await until(step.done)
    assert foreground.yielded == 1 and foreground.busy == 0


async def test_a_step_never_waits_longer_than_max_wait() -> None:
    foreground = Foreground(max_wait=0.01)
    with foreground.acknowledging():
        await asyncio.wait_for(foreground.yield_to_acknowledgements(), 5)  # returns although still busy
        assert foreground.busy == 1


async def test_an_acknowledgement_that_raises_still_counts_down() -> None:
    foreground = Foreground()
    try:
        with foreground.acknowledging():
            raise RuntimeError("defer failed")
    except RuntimeError:
        pass
    assert foreground.busy == 0
    await foreground.yield_to_acknowledgements()


async def test_a_job_starts_its_first_step_only_after_the_acknowledgements() -> None:
    rig = Rig()
    runner = rig.build()
    runner.foreground = Foreground(max_wait=60)
    record = job()
    with runner.foreground.acknowledging():
        await runner.start_job(record)
        await settle()
        assert rig.images.owners == [] and rig.provider.submits == [], "no job step ran yet"
    await runner.wait_idle()
    assert rig.state(record) == "done" and runner.foreground.yielded >= 1


async def test_after_a_lone_acknowledgement_a_step_goes_on_at_once() -> None:
    """On a quiet bot a job's steps follow its own acknowledgement without a pause."""
    foreground = Foreground(max_wait=60, quiet=60)
    with foreground.acknowledging():
        pass
    await asyncio.wait_for(foreground.yield_to_acknowledgements(), 5)
    assert foreground.yielded == 0


async def test_in_a_burst_a_step_also_waits_out_the_quiet_period_after_the_last_acknowledgement() -> None:
    foreground = Foreground(max_wait=60, quiet=0.2)
    loop = asyncio.get_running_loop()
    with foreground.acknowledging():
        pass
    with foreground.acknowledging():  # a second one right after: a burst
        pass
    ended = loop.time()
    await foreground.yield_to_acknowledgements()
    assert loop.time() - ended >= 0.2 and foreground.yielded == 1
    await foreground.yield_to_acknowledgements()
    assert foreground.yielded == 1, "the quiet period is over: no second wait"
