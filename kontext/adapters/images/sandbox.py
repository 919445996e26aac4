"""The image sandbox: untrusted image work in worker processes that can be killed.

:class:`ImageSandbox` implements the :class:`~kontext.services.ports.ImageProcessor` port. Every piece
of image work (input normalisation with its thumbnail, result checking/fitting with its thumbnail)
runs in a worker *process* (:mod:`.child`) with

* a wall-clock timeout (``IMAGE_TIMEOUT_SECONDS``, default 10 s): past it the worker is killed
  (SIGKILL) and the job gets :class:`~kontext.domain.errors.ImageTooSlow`;
* a CPU-time limit (``RLIMIT_CPU``, the timeout rounded up) and an address-space limit
  (``RLIMIT_AS``, ``IMAGE_MEMORY_MB`` over the worker's size at start, default 512 MiB) that the
  worker sets on itself before it reads the request; running out of memory is
  :class:`~kontext.domain.errors.ImageTooHeavy`, a decoder crash (segfault, abort) is
  :class:`~kontext.domain.errors.BrokenImage`;
* a lower CPU priority (``nice``), so the bot's event loop and its gateway heartbeat always get the CPU.

A worker does one job and exits; the pool keeps ``workers`` fresh ones started ahead of time, so a
job never waits for a process to start and a killed worker is simply not reused. At most ``workers``
jobs run at once, and at most ``per_owner`` of one requester's (fewer than ``workers``): one user's
files can never occupy every worker; everyone else's wait in a fair line
(:class:`~kontext.domain.fair_queue.FairScheduler`).

Start method: **forkserver**. ``fork`` from this process is unsafe: it has threads (discord.py's
heartbeat, the default executor, aiosqlite) whose locks a child would inherit held, and the child
would carry the bot's open sockets and every byte of its memory. ``spawn`` is clean but starts a new
interpreter for every worker, imports Pillow and re-runs the main script's imports in it (~0.4 s of
CPU each for the bot's). The fork server is spawned once, single-threaded, from a fresh interpreter;
it imports the main script's modules and Pillow once and warms Pillow up (:mod:`.zygote`), and forks
each worker from that clean state: a worker is ready ~5 ms of CPU after it is asked for.
Process starts and reaping run in one helper thread (``Process.start`` blocks while the fork server
boots, ~0.5 s once), so the event loop never waits; the loop only reads and writes the worker's
socket (non-blocking) and learns that a worker ended from its sentinel (``loop.add_reader``).

Bytes travel raw over a socket pair (:mod:`.wire`), never pickled: moving them costs ~2 ms per image.
A fresh worker also spends CPU faulting its memory in (copy-on-write pages shared with the fork
server, fresh pages for the pixels): ~10 ms for a small image, ~20-35 ms for a 12 MP one. A spare
pays most of that ahead, while it waits: it rehearses on a small JPEG and maps one of Pillow's 16 MB
memory blocks (:func:`.child.rehearse`), then sends a ready byte; only then is it counted as a spare
(12 MP JPEG through the sandbox: ~62 -> ~55 ms at the median; 16 MB more per worker). That is the
price of a clean process per image: whatever a hostile file did to a worker's memory never meets
the next image, which may be another user's.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import multiprocessing
import os
import signal
import socket
import sys
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import ModuleType
from typing import Any, Final, TypeVar

from kontext.adapters.images import child, passthrough, structure, wire
from kontext.adapters.images.structure import StructureLimits
from kontext.domain.errors import (
    BrokenImage,
    ImageError,
    ImageTooHeavy,
    ImageTooSlow,
    ResultError,
    ShuttingDown,
)
from kontext.domain.fair_queue import FairScheduler
from kontext.domain.images import FittedResult, ImageLimits, NormalisedImage
from kontext.support.background import BackgroundTasks
from kontext.support.metrics import Metrics

log = logging.getLogger("kontext.adapters.images.sandbox")

T = TypeVar("T")
Target = Callable[[socket.socket, dict[str, Any]], None]

__all__ = ["ImageSandbox", "SandboxLimits"]

MIB: Final = 1024 * 1024
#: Seconds to wait for a worker's exit status after its connection closed.
EXIT_WAIT_S: Final = 2.0
#: A normalised image is at most target pixels x 4 bytes (PNG of RGBA noise), plus headers.
_REPLY_SLACK: Final = 4 * MIB
_IMAGE_TYPES: Final = {
    ("image/jpeg", "jpg"): b"\xff\xd8\xff",
    ("image/png", "png"): b"\x89PNG\r\n\x1a\n",
    ("image/webp", "webp"): b"RIFF",
}


@dataclass(frozen=True)
class SandboxLimits:
    """How many workers, and what each may use (from the settings; see :mod:`kontext.app`)."""

    workers: int = 2
    timeout_s: float = 10.0
    memory_bytes: int = 512 * MIB
    #: Added to the workers' nice value (lower priority than the bot).
    nice: int = 5
    #: Largest request payload a worker accepts (the input cap, or the result cap).
    max_request: int = 64 * MIB
    #: CPU seconds a worker may use (RLIMIT_CPU); default: the timeout, rounded up.
    cpu_seconds: int | None = None

    def __post_init__(self) -> None:
        if self.workers < 1 or self.timeout_s <= 0 or self.memory_bytes <= 0:
            raise ValueError("sandbox limits must be positive")

    @property
    def per_owner(self) -> int:
        """Jobs of one requester at once: fewer than all workers (unless there is only one)."""
        return max(1, self.workers - 1)

    @property
    def cpu_s(self) -> int:
        return self.cpu_seconds or max(1, math.ceil(self.timeout_s))


def _main_preload() -> list[str]:
    """The main script's importable name (``bot`` for ``python bot.py``) and the modules it imported.

    Every worker runs the main script again as ``__mp_main__`` while it starts (multiprocessing's
    rule for forkserver and spawn). When the fork server has already imported what the script
    imports, that costs about a millisecond; otherwise ~0.4 s of CPU per worker for the bot's
    imports. CPython 3.11's own ``"__main__"`` preload never takes effect (it looks for a
    ``main_path`` key that is never set), hence this list.
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if main is None or (spec is not None and str(spec.name).endswith("__main__")):
        return []  # python -m package: workers do not re-run it
    names: set[str] = set()
    path = getattr(main, "__file__", None)
    if spec is not None:
        names.add(str(spec.name))
    elif isinstance(path, str) and Path(path).stem.isidentifier():
        names.add(Path(path).stem)
    for value in list(vars(main).values()):
        module = (
            value if isinstance(value, ModuleType) else sys.modules.get(str(getattr(value, "__module__", "")))
        )
        if isinstance(module, ModuleType) and module.__name__ not in ("__main__", "builtins"):
            names.add(module.__name__)
    return sorted(names)


Context = multiprocessing.context.ForkServerContext | multiprocessing.context.SpawnContext


def _context() -> Context:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")  # pragma: no cover - Windows: no fork server
    context = multiprocessing.get_context("forkserver")
    # the zygote last: it warms Pillow up and freezes the GC over everything imported before it
    context.set_forkserver_preload(["__main__", *_main_preload(), "kontext.adapters.images.zygote"])
    return context


class _DeadOnArrival(Exception):
    """The worker had ended before the request reached it (the job is tried once more)."""


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    sock: socket.socket
    pid: int
    exited: asyncio.Future[None] = field(repr=False)
    killed: bool = False
    #: Exit status, once collected (see :func:`_collect`).
    code: int | None = None
    collected: bool = False

    @property
    def alive(self) -> bool:
        return not self.exited.done()

    def kill(self) -> None:
        """SIGKILL, unless it already ended (its pid could belong to someone else by now)."""
        if self.alive and not self.killed:
            self.killed = True
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _launch(context: Context, target: Target, config: dict[str, Any]) -> tuple[BaseProcess, socket.socket]:
    """Start one worker (in the helper thread: the first start waits for the fork server to boot)."""
    mine, theirs = socket.socketpair()
    try:
        process = context.Process(target=target, args=(theirs, config), name="kontext-image", daemon=True)
        process.start()
    except BaseException:
        mine.close()
        raise
    finally:
        theirs.close()
    mine.setblocking(False)
    return process, mine


def _collect(worker: _Worker) -> int | None:
    """Its exit status, read once (in the helper thread, after its sentinel said it ended)."""
    if not worker.collected:
        worker.process.join(0)
        worker.code = worker.process.exitcode
        worker.process.close()
        worker.collected = True
    return worker.code


def _death(op: str, code: int | None, limits: SandboxLimits) -> ImageError:
    """What a worker's end without an answer means for the job."""
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code == signal.SIGXCPU:
            return ImageTooSlow(f"{op}: worker used its {limits.cpu_s} s of CPU time ({name})")
        if -code == signal.SIGKILL:
            return ImageTooHeavy(f"{op}: worker killed from outside ({name}: the kernel's OOM killer?)")
        return BrokenImage(f"{op}: the decoder crashed ({name})")
    return BrokenImage(f"{op}: worker ended without an answer (exit status {code})")


class ImageSandbox:
    """:class:`~kontext.services.ports.ImageProcessor` in killable worker processes (see the module)."""

    def __init__(
        self,
        limits: SandboxLimits,
        *,
        structure_limits: StructureLimits | None = None,
        metrics: Metrics | None = None,
        target: Target = child.serve,
    ) -> None:
        self.limits = limits
        self.structure = structure_limits or structure.DEFAULT_LIMITS
        self.metrics = metrics or Metrics()
        self._target = target
        self._context = _context()
        self._config = {
            "cpu_s": limits.cpu_s,
            "memory_bytes": limits.memory_bytes,
            "nice": limits.nice,
            "max_request": limits.max_request,
        }
        self.scheduler = FairScheduler(limits.workers, limits.per_owner)
        self._helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kontext-sandbox")
        self._spares: deque[_Worker] = deque()
        self._busy: set[_Worker] = set()
        self._launching = 0
        self._tasks = BackgroundTasks("image-sandbox", log)
        self._ids = itertools.count(1)
        self._closed = False
        self._final = False
        #: Whether the last attempt to start a worker worked (see :attr:`available`).
        self._starts_work = True
        self.metrics.watch_image_workers(
            busy=lambda: len(self._busy),
            ready=lambda: len(self._spares),
            waiting=lambda: self.scheduler.waiting_count,
        )

    # --- the port -------------------------------------------------------------------------------------

    async def normalise(
        self, data: bytes, limits: ImageLimits, *, owner: int | None = None, thumbnail: bool = True
    ) -> NormalisedImage:
        if not thumbnail and (clean := passthrough.clean_input(data, limits, self.structure)) is not None:
            self.metrics.image_passed("input")
            return clean
        params = {
            "limits": {
                "max_bytes": limits.max_bytes,
                "max_pixels": limits.max_pixels,
                "target_pixels": limits.target_pixels,
                "min_side": limits.min_side,
                "max_aspect": limits.max_aspect,
            },
            "structure": self.structure.to_wire(),
            "thumbnail": thumbnail,
        }
        header, parts = await self.run(
            "normalise", params, data, owner=owner, reply_cap=limits.target_pixels * 4
        )
        return _normalised(header, parts)

    async def fit_result(
        self,
        data: bytes,
        max_bytes: int,
        *,
        max_pixels: int,
        owner: int | None = None,
        thumbnail: bool = True,
    ) -> FittedResult:
        if not thumbnail:
            clean = passthrough.clean_result(data, max_bytes, max_pixels, self.structure)
            if clean is not None:
                self.metrics.image_passed("result")
                return clean
        params = {"max_bytes": max_bytes, "max_pixels": max_pixels, "structure": self.structure.to_wire()}
        try:
            header, parts = await self.run("fit", params, data, owner=owner, reply_cap=max_bytes)
        except ResultError:
            raise
        except ImageError as exc:
            reason = {ImageTooSlow: "too slow to read", ImageTooHeavy: "too large to read"}.get(
                type(exc), "unreadable image"
            )
            raise ResultError(f"result: {exc.detail}", reason=reason) from exc
        return _fitted(header, parts, data)

    # --- running one job ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the spare workers in the background (returns at once; the first start boots the
        fork server, ~0.3-0.6 s, in the helper thread)."""
        self._refill()

    async def run(
        self, op: str, params: dict[str, Any], payload: bytes, *, owner: int | None, reply_cap: int
    ) -> tuple[dict[str, Any], list[bytes]]:
        """Run ``op`` on ``payload`` in a fresh worker; its reply header and parts, or a typed error."""
        job = next(self._ids)
        async with self.scheduler.slot(f"image-{job}", owner if owner is not None else -job):
            header = {"op": op, **params}
            for attempt in (1, 2):
                try:
                    return await self._in_worker(op, header, payload, reply_cap + _REPLY_SLACK)
                except _DeadOnArrival as exc:  # it died while waiting (the OOM killer?): try another
                    self.metrics.image_worker_lost("dead_on_arrival")
                    if attempt == 2:
                        raise BrokenImage(f"{op}: {exc}, twice") from None
            raise AssertionError("unreachable")

    async def _in_worker(
        self, op: str, header: dict[str, Any], payload: bytes, reply_cap: int
    ) -> tuple[dict[str, Any], list[bytes]]:
        if self._closed:
            raise ShuttingDown("image sandbox is closed")
        worker = await self._take()
        self._busy.add(worker)
        try:
            return await self._exchange(worker, op, header, payload, reply_cap)
        finally:
            self._busy.discard(worker)
            self._retire(worker)

    async def _exchange(
        self, worker: _Worker, op: str, header: dict[str, Any], payload: bytes, reply_cap: int
    ) -> tuple[dict[str, Any], list[bytes]]:
        try:
            async with asyncio.timeout(self.limits.timeout_s):
                await self._send(worker, header, payload)
                reply, parts = await wire.receive(worker.sock, reply_cap)
        except TimeoutError:
            worker.kill()
            self.metrics.image_worker_lost("timeout")
            raise ImageTooSlow(
                f"{op}: no answer within {self.limits.timeout_s:g} s; worker {worker.pid} killed"
            ) from None
        except asyncio.CancelledError:
            worker.kill()  # the job was cancelled: its worker's work is wasted, stop it now
            raise
        except wire.Closed:
            raise await self._died(worker, op) from None
        except wire.Malformed as exc:
            worker.kill()
            raise BrokenImage(f"{op}: worker {worker.pid} sent a malformed reply ({exc})") from None
        cpu, rss = _number(reply.get("cpu_ms")), _number(reply.get("rss_mb"))
        self.metrics.image_worker_used(cpu / 1000)
        log.debug("%s in worker %d: %.0f ms of CPU, peak %.0f MB resident", op, worker.pid, cpu, rss)
        if not reply.get("ok"):
            raise wire.error_from(reply)
        return reply, parts

    async def _send(self, worker: _Worker, header: dict[str, Any], payload: bytes) -> None:
        try:
            await wire.send(worker.sock, header, [payload])
        except wire.Closed:
            if self._closed:
                raise ShuttingDown("image sandbox closed during the job") from None
            raise _DeadOnArrival(f"worker {worker.pid} was gone before the request") from None

    async def _died(self, worker: _Worker, op: str) -> Exception:
        """The error for a worker that closed its connection without answering."""
        try:
            await asyncio.wait_for(asyncio.shield(worker.exited), EXIT_WAIT_S)
        except TimeoutError:
            worker.kill()
            return BrokenImage(f"{op}: worker {worker.pid} closed its connection but did not exit")
        if self._closed:
            return ShuttingDown("image sandbox closed during the job")
        code = await self._in_helper(_collect, worker)
        error = _death(op, code, self.limits)
        # its CPU-time limit is the same limit as the wall clock's, whichever of the two struck first
        self.metrics.image_worker_lost("timeout" if isinstance(error, ImageTooSlow) else "died")
        log.debug("image worker %d ended with status %s during %s", worker.pid, code, op)
        return error

    # --- the pool of fresh workers --------------------------------------------------------------------

    async def _in_helper(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._helper, fn, *args)

    async def _new_worker(self) -> _Worker:
        try:
            process, sock = await self._in_helper(_launch, self._context, self._target, self._config)
        except Exception:
            self._starts_work = False
            raise
        self._starts_work = True
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()
        sentinel = process.sentinel

        def on_exit() -> None:
            loop.remove_reader(sentinel)
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(sentinel, on_exit)
        assert process.pid is not None
        worker = _Worker(process, sock, process.pid, exited)
        try:
            async with asyncio.timeout(self.limits.timeout_s):
                await wire.wait_ready(sock)  # after its rehearsal (:func:`.child.rehearse`)
        except (TimeoutError, wire.Closed, wire.Malformed) as exc:
            worker.kill()
            self._retire(worker)
            raise OSError(f"image worker {worker.pid} did not get ready: {exc!r}") from None
        return worker

    def _refill(self) -> None:
        if self._closed:
            return
        for _ in range(self.limits.workers - len(self._spares) - self._launching):
            self._launching += 1
            self._tasks.spawn(self._add_spare(), name="image-worker-start")

    async def _add_spare(self) -> None:
        try:
            worker = await self._new_worker()
        except Exception as exc:  # noqa: BLE001 - a job that finds no spare starts its own and reports it
            log.warning("could not start an image worker: %r", exc)
            return
        finally:
            self._launching -= 1
        if self._closed:
            self._retire(worker)
        else:
            self._spares.append(worker)

    async def _take(self) -> _Worker:
        """A fresh worker: a spare if one is ready, else one started now."""
        while self._spares:
            worker = self._spares.popleft()
            if worker.alive:
                self._refill()
                return worker
            self._retire(worker)
        worker = await self._new_worker()
        self._refill()
        return worker

    def _retire(self, worker: _Worker) -> None:
        """Close its connection (a spare then exits on its own) and reap it in the background."""
        worker.sock.close()
        if self._final:
            worker.kill()  # after close(): the fork server reaps it
            return
        self._tasks.spawn(self._reap(worker), name=f"image-worker-reap-{worker.pid}")

    async def _reap(self, worker: _Worker) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(worker.exited), EXIT_WAIT_S)
        except TimeoutError:
            worker.kill()
            await worker.exited
        await self._in_helper(_collect, worker)

    # --- lifecycle --------------------------------------------------------------------------------

    @property
    def running(self) -> int:
        """Jobs in a worker right now."""
        return len(self._busy)

    @property
    def ready(self) -> int:
        """Workers started and waiting for a job."""
        return len(self._spares)

    @property
    def available(self) -> bool:
        """Whether image work can run: not closed, and the last attempt to start a worker worked."""
        return not self._closed and self._starts_work

    def pids(self) -> set[int]:
        """Process ids of every worker, waiting or busy (tests and diagnostics)."""
        return {w.pid for w in (*self._spares, *self._busy)}

    async def close(self) -> None:
        """Refuse new work, kill every worker (a job in flight fails with ShuttingDown), reap them."""
        if self._closed:
            return
        self._closed = True
        spares = list(self._spares)
        self._spares.clear()
        for worker in [*spares, *self._busy]:
            worker.kill()
        for worker in spares:
            self._retire(worker)
        try:
            async with asyncio.timeout(EXIT_WAIT_S + 1):
                await self._tasks.drain()  # reaping, and starts in flight (they retire their worker)
        except TimeoutError:
            log.warning("image workers still being reaped at shutdown")
        self._final = True
        await self._tasks.close(timeout=1)
        self._helper.shutdown(wait=False)


# --- checking what a worker said ------------------------------------------------------------------------


def _field(
    header: dict[str, Any], name: str, kind: type, check: Callable[[Any], bool] = lambda _: True
) -> Any:
    value = header.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)) or not check(value):
        raise BrokenImage(f"sandbox reply has a bad {name!r}: {value!r}"[:300])
    return value


def _image_type(header: dict[str, Any], data: bytes) -> tuple[str, str]:
    content_type, extension = _field(header, "content_type", str), _field(header, "extension", str)
    magic = _IMAGE_TYPES.get((content_type, extension))
    if magic is None or not data.startswith(magic):
        raise BrokenImage(f"sandbox reply is not the {content_type}/{extension} it claims"[:300])
    return content_type, extension


def _number(value: Any) -> float:
    """A figure a worker reported, or 0 when it is not a plausible one."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1e9
    return float(value) if ok else 0.0


def _size(value: Any) -> bool:
    return bool(0 < value <= 1_000_000)


def _normalised(header: dict[str, Any], parts: list[bytes]) -> NormalisedImage:
    if len(parts) != 2:
        raise BrokenImage(f"sandbox reply has {len(parts)} parts, not 2")
    data, thumbnail = parts
    content_type, extension = _image_type(header, data)
    return NormalisedImage(
        data=data,
        content_type=content_type,
        extension=extension,
        width=_field(header, "width", int, _size),
        height=_field(header, "height", int, _size),
        source_format=_field(header, "source_format", str, lambda v: 0 < len(v) <= 16),
        letterboxed=_field(header, "letterboxed", bool),
        thumbnail=thumbnail,
        dct_eighths=_field(header, "dct_eighths", int, lambda v: v in (1, 2, 3, 4, 8)),
    )


def _fitted(header: dict[str, Any], parts: list[bytes], original: bytes) -> FittedResult:
    if len(parts) != 2:
        raise ResultError(f"sandbox reply has {len(parts)} parts, not 2", reason="unreadable image")
    unchanged = _field(header, "unchanged", bool)
    data = original if unchanged else parts[0]
    try:
        content_type, extension = _image_type(header, data)
        return FittedResult(
            data,
            content_type,
            extension,
            _field(header, "width", int, _size),
            _field(header, "height", int, _size),
            reencoded=_field(header, "reencoded", bool),
            thumbnail=parts[1],
            cleaned=_field(header, "cleaned", bool),
        )
    except BrokenImage as exc:
        raise ResultError(exc.detail, reason="unreadable image") from exc
