"""heap.settle: what the bot does to the garbage collector once it is up."""

from __future__ import annotations

import ctypes
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


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo() -> _MallInfo2 | None:
    """glibc's heap statistics (``mallinfo2``, glibc 2.33+), None where there are none."""
    try:
        call = ctypes.CDLL(None).mallinfo2
    except AttributeError:
        return None
    call.restype = _MallInfo2
    info: _MallInfo2 = call()
    return info


def test_keep_freed_memory_keeps_a_result_sized_block_in_the_heap_for_reuse() -> None:
    try:
        ctypes.CDLL(None).mallopt  # noqa: B018 - probing the C library
    except AttributeError:
        assert heap.keep_freed_memory() is False  # musl, macOS: nothing to tune
        return
    assert heap.keep_freed_memory() is True
    size = 8 * 1024 * 1024  # a large result (a downloaded image, its copies)
    before = _mallinfo()
    block = bytearray(size)
    during = _mallinfo()
    del block
    after = _mallinfo()
    if before is None or during is None or after is None:
        return  # glibc before 2.33: no statistics to check the effect with
    assert during.hblkhd == before.hblkhd  # no mapping of its own (that is what got faulted afresh)
    assert after.fordblks >= size  # freed, and kept in the heap for the next one


def test_settle_keeps_freed_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def keep() -> bool:
        calls.append("kept")
        return True

    monkeypatch.setattr(heap, "keep_freed_memory", keep)
    thresholds = gc.get_threshold()
    try:
        heap.settle()
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    assert calls == ["kept"]
