"""heap.settle: what the bot does to the garbage collector once it is up."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from kontext.support import heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_settle_freezes_what_is_alive_and_collects_the_young_generation_less_often() -> None:
    gc.set_threshold(700, 10, 10)
    survivor = [object() for _ in range(100)]
    heap.settle()
    assert gc.get_freeze_count() >= len(survivor)
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, 10, 10)
    assert heap.YOUNG_THRESHOLD > 700


@pytest.mark.usefixtures("restored_gc")
def test_settle_keeps_the_older_generations_thresholds() -> None:
    gc.set_threshold(700, 7, 3)
    heap.settle()
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, 7, 3)


@pytest.mark.usefixtures("restored_gc")
def test_garbage_cycles_are_still_collected_after_settle() -> None:
    heap.settle()

    class Node:
        other: Node | None = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2
