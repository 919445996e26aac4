"""Render usage charts off the event loop, in one long-lived worker process.

matplotlib is CPU-heavy pure Python: in a thread it would still hold the GIL against the event loop,
so charts are drawn in a separate process, started on first use and reused: the interpreter and
matplotlib start once (about a second); later charts take 0.2-0.4 s of the worker's CPU and about a
millisecond of the bot's (``bench/chart_bench.py``).

The worker is ``python -m kontext.adapters.charts.worker``, started with
:func:`asyncio.create_subprocess_exec`: a fresh interpreter that loads only the chart modules, not
the bot's main script (which multiprocessing's ``spawn`` would run again in it), and nothing to do
with the image sandbox's fork server (whose preloaded state and preload list stay the sandbox's
own). It inherits only what Python and matplotlib need from the environment, none of the bot's
settings (tokens, keys, database URLs). Requests and replies travel over its stdin and stdout
(:mod:`.wire`); the event loop never blocks on them.

* A chart that takes longer than ``timeout_s`` (the worker's start included) kills the worker and
  raises :class:`ChartError` (``reason="timeout"``); the next chart starts a new worker.
* A worker that ends without answering is replaced. If it had drawn charts before (it may have died
  while idle, before this request reached it) the chart is tried once more in a new worker;
  otherwise, or if that one dies too, :class:`ChartError` (``reason="died"``).
* A worker idle for ``idle_s`` seconds is stopped (it holds 100-140 MB), and started again when needed.
* One chart at a time: charts wait for the worker in turn (the timeout starts when a chart's turn
  comes). :meth:`ChartRenderer.close` ends the worker and refuses new charts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import sys
from pathlib import Path
from typing import Any, Final

from kontext.adapters.charts import wire
from kontext.adapters.charts.model import UsageChart
from kontext.support.background import BackgroundTasks

__all__ = ["WORKER_MODULE", "ChartError", "ChartRenderer"]

log = logging.getLogger("kontext.adapters.charts")

WORKER_MODULE: Final = "kontext.adapters.charts.worker"
#: Seconds a worker gets to exit after its stdin closed, before it is killed.
EXIT_WAIT_S: Final = 2.0
_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
#: The environment a worker inherits: names, and name prefixes.
_ENV_NAMES: Final = frozenset(
    {"PATH", "HOME", "USER", "LANG", "TZ", "TMPDIR", "MPLCONFIGDIR", "VIRTUAL_ENV", "LD_LIBRARY_PATH"}
)
_ENV_PREFIXES: Final = ("LC_", "PYTHON", "XDG_", "OPENBLAS_", "OMP_", "MKL_")
#: The directory that holds the ``kontext`` package: first on the worker's import path.
_ROOT: Final = str(Path(__file__).resolve().parents[3])


class ChartError(Exception):
    """A chart could not be rendered; ``reason`` is ``timeout``, ``died``, ``failed`` or ``closed``."""

    def __init__(self, detail: str, *, reason: str) -> None:
        super().__init__(detail)
        self.reason = reason


class _Ended(Exception):
    """The worker ended without answering (``reused``: it had drawn charts before this one)."""

    def __init__(self, detail: str, *, reused: bool) -> None:
        super().__init__(detail)
        self.reused = reused


def _environment() -> dict[str, str]:
    """The worker's environment: what Python and matplotlib need, none of the bot's settings."""
    env = {k: v for k, v in os.environ.items() if k in _ENV_NAMES or k.startswith(_ENV_PREFIXES)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
    env["MPLBACKEND"] = "Agg"
    return env


def _kill(process: asyncio.subprocess.Process) -> None:
    """SIGKILL, unless it is known to have ended. Not ``process.kill()``: that polls (waits for) an
    exited child itself, and asyncio's child watcher then finds no status to report."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)


class ChartRenderer:
    """Usage charts as PNG bytes, drawn in a worker process (see the module)."""

    def __init__(
        self, *, timeout_s: float = 20.0, idle_s: float | None = 600.0, worker_module: str = WORKER_MODULE
    ) -> None:
        if timeout_s <= 0 or (idle_s is not None and idle_s <= 0):
            raise ValueError("timeout_s and idle_s must be positive")
        self.timeout_s = timeout_s
        self.idle_s = idle_s
        self._module = worker_module
        self._process: asyncio.subprocess.Process | None = None
        self._served = 0  #: charts the current worker has drawn
        self._lock = asyncio.Lock()
        self._closed = False
        self._warned = False
        self._idle_timer: asyncio.TimerHandle | None = None
        self._tasks = BackgroundTasks("chart-renderer", log)

    @property
    def pid(self) -> int | None:
        """The worker's process id while it runs (tests and diagnostics)."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    async def render(self, chart: UsageChart) -> bytes:
        """The chart as PNG bytes; :class:`ChartError` if the worker fails, dies or overruns."""
        if not isinstance(chart, UsageChart):
            raise TypeError(f"render() takes a UsageChart, not a {type(chart).__name__}")
        request = pickle.dumps(chart, protocol=pickle.HIGHEST_PROTOCOL)
        async with self._lock:
            self._check_open()
            self._cancel_idle()
            try:
                header, png = await self._render(request)
            finally:
                self._arm_idle()
        return self._accept(header, png)

    async def close(self) -> None:
        """Refuse new charts and end the worker (a chart in flight fails with ``reason="closed"``)."""
        if self._closed:
            return
        self._closed = True
        self._cancel_idle()
        await self._stop(kill=self._lock.locked())  # a chart in flight loses its worker and fails
        try:
            async with asyncio.timeout(EXIT_WAIT_S + 1):
                async with self._lock:  # that chart has cleaned up (charts waiting their turn are refused)
                    pass
                await self._tasks.drain()  # the workers of cancelled charts are reaped
        except TimeoutError:
            log.warning("a chart worker was still being stopped at shutdown")
        await self._tasks.close(timeout=1)

    # --- one chart ----------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ChartError("the chart renderer is closed", reason="closed")

    async def _render(self, request: bytes) -> tuple[dict[str, Any], bytes]:
        try:
            return await self._exchange(request)
        except _Ended as ended:
            self._check_open()
            if not ended.reused:
                raise ChartError(str(ended), reason="died") from None
            log.info("%s; drawing the chart in a new worker", ended)
        try:
            return await self._exchange(request)
        except _Ended as ended:
            self._check_open()
            raise ChartError(str(ended), reason="died") from None

    async def _exchange(self, request: bytes) -> tuple[dict[str, Any], bytes]:
        """Send one request to the worker (started if need be) and read its reply."""
        reused = self.pid is not None and self._served > 0
        try:
            async with asyncio.timeout(self.timeout_s):
                process = await self._worker()
                assert process.stdin is not None and process.stdout is not None
                await wire.send_frame(process.stdin, request)
                reply = await wire.receive_reply(process.stdout)
        except TimeoutError:
            await self._stop(kill=True)
            raise ChartError(
                f"no chart within {self.timeout_s:g} s; the worker was killed", reason="timeout"
            ) from None
        except (asyncio.IncompleteReadError, ConnectionError):
            code = await self._stop(kill=True)
            raise _Ended(
                f"the chart worker ended without an answer (exit status {code})", reused=reused
            ) from None
        except wire.Malformed as exc:
            await self._stop(kill=True)
            raise ChartError(f"the chart worker sent a malformed reply ({exc})", reason="failed") from None
        except BaseException:  # cancelled: the worker's late answer must not reach the next chart
            self._abandon()
            raise
        self._served += 1
        return reply

    def _accept(self, header: dict[str, Any], png: bytes) -> bytes:
        """The PNG of a reply, or the worker's error as a ChartError; its notes logged."""
        if header.get("ok") is not True:
            error = str(header.get("error"))[:500]
            raise ChartError(f"the chart worker could not draw: {error}", reason="failed")
        notes = header.get("notes")
        for note in notes if isinstance(notes, list) else []:
            log.log(logging.DEBUG if self._warned else logging.WARNING, "usage chart: %s", str(note)[:500])
            self._warned = True
        if not png.startswith(_PNG_SIGNATURE):
            raise ChartError("the chart worker's answer is not a PNG", reason="failed")
        log.debug("usage chart: %d bytes, %s ms of the worker's CPU", len(png), header.get("cpu_ms"))
        return png

    # --- the worker ---------------------------------------------------------------------------------

    async def _worker(self) -> asyncio.subprocess.Process:
        """The running worker, or a new one."""
        if self._process is not None and self._process.returncode is None:
            return self._process
        await self._stop(kill=True)  # one that ended on its own: reap it
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                self._module,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=_environment(),
            )
        except OSError as exc:
            raise ChartError(f"could not start the chart worker: {exc}", reason="died") from exc
        self._process, self._served = process, 0
        if self._closed:  # close() ran while it started
            await self._stop(kill=True)
            raise ChartError("the chart renderer is closed", reason="closed")
        log.debug("chart worker %d started", process.pid)
        return process

    async def _stop(self, *, kill: bool) -> int | None:
        """End the worker (SIGKILL, or end of its stdin and a moment to exit) and reap it."""
        process, self._process, self._served = self._process, None, 0
        if process is None:
            return None
        if kill:
            _kill(process)
        if process.stdin is not None:
            process.stdin.close()
        try:
            return await asyncio.wait_for(process.wait(), EXIT_WAIT_S)
        except TimeoutError:
            _kill(process)
            return await process.wait()

    def _abandon(self) -> None:
        """Kill the worker now and reap it in the background (the caller is being cancelled)."""
        process, self._process, self._served = self._process, None, 0
        if process is not None:
            _kill(process)
            if process.stdin is not None:
                process.stdin.close()
            with contextlib.suppress(RuntimeError):  # closed: close() reaps nothing more
                self._tasks.spawn(process.wait(), name=f"chart-worker-reap-{process.pid}")

    # --- idle workers -------------------------------------------------------------------------------

    def _arm_idle(self) -> None:
        if self.idle_s is not None and self._process is not None and not self._closed:
            self._idle_timer = asyncio.get_running_loop().call_later(self.idle_s, self._on_idle)

    def _cancel_idle(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _on_idle(self) -> None:
        self._idle_timer = None
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            self._tasks.spawn(self._retire_idle(), name="chart-worker-idle")

    async def _retire_idle(self) -> None:
        async with self._lock:
            if self._idle_timer is None and not self._closed:  # no chart since the timer fired
                log.debug("chart worker idle for %g s: stopping it", self.idle_s)
                await self._stop(kill=False)
