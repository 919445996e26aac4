"""The sandbox's wire format: one request and one reply per worker process, over a socket pair.

A message is a fixed prefix ``!IQ`` (header length, payload length), a JSON header and the payload:
the image bytes, raw. The header's ``parts`` lists the lengths the payload is cut into (a normalised
image and its thumbnail travel as two parts of one payload).

JSON, never pickle, in both directions: the worker handles hostile bytes, and a worker that were taken
over by a decoder exploit must not be able to make the bot unpickle (that is, run) anything. The bot
reads a reply with a cap on every length, and the sandbox checks every field it uses.

The worker side is blocking (:func:`send_blocking`, :func:`receive_blocking`); the bot side is
asyncio over a non-blocking socket (:func:`send`, :func:`receive`), so the event loop never waits on
a worker. Payload bytes are sent from the caller's buffer (no copy) and received straight into one
buffer of the announced size.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Sequence
from typing import Any, Final

from kontext.domain import errors

__all__ = [
    "READY",
    "Closed",
    "Malformed",
    "error_from",
    "error_header",
    "receive",
    "receive_blocking",
    "send",
    "wait_ready",
]

PREFIX: Final = struct.Struct("!IQ")
#: The one byte a worker sends, before anything else, once it is ready for its request.
READY: Final = b"R"
#: A header is a few hundred bytes of JSON; anything longer is a broken or hostile worker.
MAX_HEADER: Final = 64 * 1024
#: Longest detail text accepted in an error reply.
MAX_DETAIL: Final = 2000

#: Errors a worker may report, by name (anything else is reported as a broken image).
_ERRORS: Final[dict[str, type[errors.KontextError]]] = {
    cls.__name__: cls
    for cls in (
        errors.ImageError,
        errors.ImageTooLarge,
        errors.NotAnImage,
        errors.BrokenImage,
        errors.ImageBomb,
        errors.ImageBadShape,
        errors.ImageStructure,
        errors.ImageTooSlow,
        errors.ImageTooHeavy,
        errors.ResultError,
        errors.ResultTooLarge,
    )
}


class Closed(Exception):
    """The other side closed the connection (a worker that exited or was killed)."""


class Malformed(Exception):
    """A message broke the format or one of its caps."""


# --- messages -----------------------------------------------------------------------------------------


def _frame(header: dict[str, Any], parts: Sequence[bytes]) -> bytes:
    head = json.dumps({**header, "parts": [len(p) for p in parts]}, separators=(",", ":")).encode()
    if len(head) > MAX_HEADER:
        raise Malformed(f"header of {len(head)} bytes")
    return PREFIX.pack(len(head), sum(len(p) for p in parts)) + head


def _parse_header(raw: bytes | bytearray, payload_size: int) -> dict[str, Any]:
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Malformed(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise Malformed("header is not an object")
    parts = header.get("parts")
    if (
        not isinstance(parts, list)
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in parts)
        or sum(parts) != payload_size
    ):
        raise Malformed("parts do not add up to the payload")
    return header


def _split(payload: bytes | bytearray, lengths: list[int]) -> list[bytes]:
    view = memoryview(payload)
    out, pos = [], 0
    for length in lengths:
        out.append(bytes(view[pos : pos + length]))
        pos += length
    return out


def error_header(error: errors.KontextError) -> dict[str, Any]:
    """The reply header for a typed failure (its detail clipped, its parameters made JSON-safe)."""
    params = {
        k: v if isinstance(v, (str, int, float, bool)) or v is None else str(v)
        for k, v in error.params.items()
    }
    return {"ok": False, "error": type(error).__name__, "detail": error.detail[:MAX_DETAIL], "params": params}


def error_from(header: dict[str, Any]) -> errors.KontextError:
    """The typed error a worker reported; only known image/result errors and plain parameters."""
    cls = _ERRORS.get(str(header.get("error")), errors.BrokenImage)
    detail = str(header.get("detail", ""))[:MAX_DETAIL]
    raw = header.get("params")
    params = {
        str(k)[:40]: v
        for k, v in (raw.items() if isinstance(raw, dict) else ())
        if (isinstance(v, (str, int, float, bool)) or v is None) and len(str(v)) <= 200
    }
    return cls(f"sandbox: {detail}", **params)


# --- the worker's side (blocking) ---------------------------------------------------------------------


def _recv_exact(sock: socket.socket, size: int) -> bytearray | None:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            return None
        got += n
    return buf


def receive_blocking(sock: socket.socket, max_payload: int) -> tuple[dict[str, Any], list[bytes]] | None:
    """The next message, or None when the bot closed the connection first."""
    prefix = _recv_exact(sock, PREFIX.size)
    if prefix is None:
        return None
    head_size, payload_size = PREFIX.unpack(prefix)
    if head_size > MAX_HEADER or payload_size > max_payload:
        raise Malformed(f"request of {head_size} + {payload_size} bytes")
    head = _recv_exact(sock, head_size)
    payload = _recv_exact(sock, payload_size)
    if head is None or payload is None:
        return None
    header = _parse_header(head, payload_size)
    return header, _split(payload, header["parts"])


def send_blocking(sock: socket.socket, header: dict[str, Any], parts: Sequence[bytes]) -> None:
    sock.sendall(_frame(header, parts))
    for part in parts:
        if part:  # an empty send to a peer that already hung up would fail for nothing
            sock.sendall(part)


# --- the bot's side (asyncio, non-blocking socket) ----------------------------------------------------


async def send(sock: socket.socket, header: dict[str, Any], parts: Sequence[bytes]) -> None:
    """Send one message; :class:`Closed` when the worker is gone."""
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_sendall(sock, _frame(header, parts))
        for part in parts:
            if part:  # the worker may answer and exit as soon as it has every byte it was promised
                await loop.sock_sendall(sock, part)
    except (BrokenPipeError, ConnectionResetError) as exc:
        raise Closed(f"worker gone while sending: {exc}") from None


async def _read_into(sock: socket.socket, buf: bytearray) -> None:
    loop = asyncio.get_running_loop()
    view = memoryview(buf)
    got = 0
    while got < len(buf):
        try:
            n = await loop.sock_recv_into(sock, view[got:])
        except ConnectionResetError:
            n = 0
        if n == 0:
            raise Closed(f"worker closed the connection after {got} of {len(buf)} bytes")
        got += n


async def wait_ready(sock: socket.socket) -> None:
    """Wait for the worker's :data:`READY` byte; :class:`Closed` or :class:`Malformed` otherwise."""
    got = bytearray(1)
    await _read_into(sock, got)
    if bytes(got) != READY:
        raise Malformed(f"worker sent {bytes(got)!r} instead of its ready byte")


async def receive(sock: socket.socket, max_payload: int) -> tuple[dict[str, Any], list[bytes]]:
    """The worker's reply, every length capped; :class:`Closed` or :class:`Malformed` otherwise."""
    prefix = bytearray(PREFIX.size)
    await _read_into(sock, prefix)
    head_size, payload_size = PREFIX.unpack(prefix)
    if head_size > MAX_HEADER or payload_size > max_payload:
        raise Malformed(
            f"reply announces {head_size} + {payload_size} bytes (caps {MAX_HEADER} + {max_payload})"
        )
    head = bytearray(head_size)
    await _read_into(sock, head)
    payload = bytearray(payload_size)
    await _read_into(sock, payload)
    header = _parse_header(head, payload_size)
    return header, _split(payload, header["parts"])
