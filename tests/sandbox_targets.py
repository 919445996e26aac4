"""A sandbox worker for tests: the real one (:func:`kontext.adapters.images.child.serve`) plus
operations that misbehave on purpose, to show what the bot does when a worker does.

``ImageSandbox(limits, target=tests.sandbox_targets.serve)``; the extra operations are run with
``sandbox.run(op, params, payload, owner=..., reply_cap=...)``.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import time
from typing import Any

from kontext.adapters.images import child, wire


def _target(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


def _facts(header: dict[str, Any], payload: bytes) -> child.Reply:
    """What the worker process looks like from inside."""
    return {
        "ok": True,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "nice": os.nice(0),
        "cpu": resource.getrlimit(resource.RLIMIT_CPU),
        "as": resource.getrlimit(resource.RLIMIT_AS),
        "core": resource.getrlimit(resource.RLIMIT_CORE),
        "oom_score_adj": open("/proc/self/oom_score_adj", encoding="ascii").read().strip(),
        "fds": {fd: _target(fd) for fd in os.listdir("/proc/self/fd")},
        "environ": sorted(os.environ),
        "rehearsal_images": len(child.REHEARSAL),
    }, []


def _burn(header: dict[str, Any], payload: bytes) -> child.Reply:
    """Spin on the CPU forever (RLIMIT_CPU or the wall-clock timeout ends it)."""
    while True:
        pass


def _allocate(header: dict[str, Any], payload: bytes) -> child.Reply:
    """Keep allocating until the address-space limit says no (MemoryError -> ImageTooHeavy)."""
    hoard = []
    while True:
        hoard.append(bytearray(16 * 1024 * 1024))


def _signal(number: int) -> Any:
    def op(header: dict[str, Any], payload: bytes) -> child.Reply:
        os.kill(os.getpid(), number)
        raise AssertionError("unreachable")

    return op


def _hold(sock: socket.socket) -> Any:
    def op(header: dict[str, Any], payload: bytes) -> child.Reply:
        """Hold the worker until the bot closes the connection (or kills it): a job that never ends."""
        sock.recv(1)
        return {"ok": True}, []

    return op


def _raw(data: bytes, sock: socket.socket) -> Any:
    def op(header: dict[str, Any], payload: bytes) -> child.Reply:
        sock.sendall(data)
        sock.close()
        os._exit(0)

    return op


def _claims(header: dict[str, Any], payload: bytes) -> child.Reply:
    """A normalise reply that lies: it says PNG but carries other bytes, or injects an error."""
    return dict(header["reply"]), [bytes.fromhex(p) for p in header["parts_hex"]]


def serve(sock: socket.socket, config: dict[str, Any]) -> None:
    extra = {
        "facts": _facts,
        "burn": _burn,
        "allocate": _allocate,
        "segfault": _signal(signal.SIGSEGV),
        "abort": _signal(signal.SIGABRT),
        "sigkill": _signal(signal.SIGKILL),
        "hold": _hold(sock),
        "garbage": _raw(b"\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\x00notjs", sock),
        "huge": _raw(wire.PREFIX.pack(10, 2**40) + b"{}", sock),
        "claims": _claims,
    }
    original = dict(child.OPERATIONS)
    child.OPERATIONS.update(extra)
    try:
        child.serve(sock, config)
    finally:
        child.OPERATIONS.clear()
        child.OPERATIONS.update(original)


def never_ready(sock: socket.socket, config: dict[str, Any]) -> None:
    """A worker stuck before it says it is ready (a rehearsal that hangs, say)."""
    child.limit_resources(config)
    time.sleep(60)
