"""One sandbox worker process: set its own limits, do one piece of image work, answer, exit.

:func:`serve` is the ``multiprocessing`` target started by :mod:`.sandbox`. Before it reads the
request it lowers its own priority and caps itself (Linux ``setrlimit``; each limit is set for the
soft and the hard value, so the process cannot raise it again):

* ``RLIMIT_CPU``: the CPU seconds it may use; the kernel ends it with SIGXCPU past that, even if the
  bot itself were stuck and its wall-clock timeout did not fire;
* ``RLIMIT_AS``: its address space as forked (interpreter and Pillow, shared with the fork server)
  plus the configured per-image memory; an allocation past it fails (``MemoryError``) instead of
  pushing the container into the OOM killer;
* ``RLIMIT_CORE`` 0: a crash leaves no core file;
* ``oom_score_adj`` 1000: should the container run out of memory anyway, the kernel's OOM killer
  takes a worker, not the bot.

A worker serves exactly one request: whatever a hostile file did to its memory dies with it, and
the next image (maybe another user's) gets a fresh process. Replies are JSON headers plus raw bytes
(:mod:`.wire`); a typed failure travels as the error's class name, detail and parameters.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from typing import Any

from PIL import Image
from PIL import _imaging as pillow_core

from kontext.adapters.images import processing, wire
from kontext.adapters.images.structure import StructureLimits
from kontext.domain.errors import BrokenImage, ImageTooHeavy, KontextError
from kontext.domain.images import ImageLimits

__all__ = ["Reply", "handle", "serve"]

Reply = tuple[dict[str, Any], list[bytes]]


def _address_space() -> int:
    """Bytes of address space this process has mapped now (``VmSize``)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _usage() -> dict[str, float]:
    """CPU this worker used since it was forked (its start, the request and the work) and its peak
    resident memory."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return {}
    used = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cpu_ms": round((used.ru_utime + used.ru_stime) * 1000, 1),
        "rss_mb": round(used.ru_maxrss / 1024, 1),
    }


def limit_resources(config: dict[str, Any]) -> None:
    """Lower the priority, volunteer first for the OOM killer, set the CPU, address-space and
    core-file limits (hard = soft)."""
    with contextlib.suppress(OSError):
        os.nice(int(config.get("nice", 0)))
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w", encoding="ascii") as adj:
        adj.write("1000")  # if memory runs out anyway, the kernel kills a worker, never the bot
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX: only the bot's wall-clock timeout applies
        return
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = int(used.ru_utime + used.ru_stime) + int(config["cpu_s"])
    # SIGXCPU at the soft limit (its default action ends the process), SIGKILL one second later.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    memory = _address_space() + int(config["memory_bytes"])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _normalise(header: dict[str, Any], payload: bytes) -> Reply:
    limits = ImageLimits(**header["limits"])
    image = processing.normalise_image(
        payload,
        limits,
        StructureLimits.from_wire(header.get("structure")),
        thumbnail=bool(header.get("thumbnail", True)),
    )
    fields = {
        "ok": True,
        "content_type": image.content_type,
        "extension": image.extension,
        "width": image.width,
        "height": image.height,
        "source_format": image.source_format,
        "letterboxed": image.letterboxed,
        "dct_eighths": image.dct_eighths,
    }
    return fields, [image.data, image.thumbnail]


def _fit(header: dict[str, Any], payload: bytes) -> Reply:
    fitted = processing.fit_result(
        payload,
        int(header["max_bytes"]),
        max_pixels=int(header["max_pixels"]),
        structure=StructureLimits.from_wire(header.get("structure")),
    )
    unchanged = fitted.data is payload
    fields = {
        "ok": True,
        "unchanged": unchanged,  # then the bot posts the bytes it already has: no copy comes back
        "content_type": fitted.content_type,
        "extension": fitted.extension,
        "width": fitted.width,
        "height": fitted.height,
        "reencoded": fitted.reencoded,
        "cleaned": fitted.cleaned,
    }
    return fields, [b"" if unchanged else fitted.data, fitted.thumbnail]


OPERATIONS: dict[str, Callable[[dict[str, Any], bytes], Reply]] = {"normalise": _normalise, "fit": _fit}


def handle(header: dict[str, Any], payload: bytes) -> Reply:
    """Run one request; every failure becomes an error reply (the bot decides what to say)."""
    operation = OPERATIONS.get(str(header.get("op")))
    if operation is None:
        return wire.error_header(KontextError(f"unknown operation {header.get('op')!r}")), []
    try:
        return operation(header, payload)
    except KontextError as exc:
        return wire.error_header(exc), []
    except MemoryError:
        return wire.error_header(ImageTooHeavy("ran out of its address-space limit")), []
    except Exception as exc:  # noqa: BLE001 - any other failure on hostile bytes: an unreadable image
        return wire.error_header(BrokenImage(f"unexpected {type(exc).__name__}: {exc}")), []


#: Pillow memory blocks (16 MB each) a spare maps ahead: a 12 MP JPEG decoded at 3/8 fits in one.
PREFAULTED_BLOCKS = 1
#: Small images the fork server leaves here (:mod:`.zygote`) for a new worker to rehearse on.
REHEARSAL: list[bytes] = []


def rehearse() -> None:
    """Normalise the rehearsal images while this worker is still a spare, waiting for a request.

    A forked worker pays for its first pass through the code in copy-on-write page faults (every
    object it touches sits on a page shared with the fork server): ~10 ms of CPU. Paid here, ahead,
    it is off the request's path; the rehearsal itself costs ~1 ms."""
    for data in REHEARSAL:
        with contextlib.suppress(Exception):
            processing.normalise_image(data, ImageLimits())
    with contextlib.suppress(Exception):
        # One of Pillow's memory blocks, written once and kept mapped for the decode: a fresh
        # process would otherwise fault its ~1,700 pages in (~3-5 ms) while the request waits.
        pillow_core.set_blocks_max(PREFAULTED_BLOCKS)  # what PILLOW_BLOCKS_MAX sets at import
        Image.new("RGBA", (2048, 2048 * PREFAULTED_BLOCKS), (1, 1, 1, 1)).close()


def serve(sock: socket.socket, config: dict[str, Any]) -> None:
    """The worker process: limits, a rehearsal, one request, one reply, exit (EOF first: the bot
    closed it)."""
    limit_resources(config)
    rehearse()
    with sock:
        try:
            sock.sendall(wire.READY)
        except OSError:  # the bot already let this spare go
            return
        request = wire.receive_blocking(sock, int(config["max_request"]))
        if request is None:
            return
        header, parts = request
        payload = parts[0] if parts else b""
        del parts
        reply, out = handle(header, payload)
        del payload
        reply.update(_usage())
        wire.send_blocking(sock, reply, out)
