"""kontext.adapters.discord.files: a posted attachment's bytes are freed at once, not at the next
full garbage collection (discord.py's File.close() leaves a reference cycle on the buffer)."""

from __future__ import annotations

import gc
import weakref

from kontext.adapters.discord.files import attachment, file_of, release


def test_a_released_attachment_is_freed_by_reference_counting_alone() -> None:
    gc.disable()
    try:
        file = file_of(bytes(1_000_000), "result.png")
        buffer = weakref.ref(file.fp)
        file.close()  # what discord.py does after each request (it puts fp.close back on fp)
        release([file])
        del file
        assert buffer() is None, "no cycle left: freed without the collector"
    finally:
        gc.enable()


def test_attachment_releases_after_the_request_even_when_it_fails() -> None:
    gc.disable()
    try:
        buffers = []
        try:
            with attachment(b"\x89PNG...", "result.png") as file:
                buffers.append(weakref.ref(file.fp))
                file.close()
                raise RuntimeError("Discord said no")
        except RuntimeError:
            pass
        del file
        assert buffers[0]() is None
    finally:
        gc.enable()


def test_release_is_safe_twice_and_with_nothing() -> None:
    file = file_of(b"abc", "a.txt")
    release([file, None])
    release([file])
    assert file.fp.closed
