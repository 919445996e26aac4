"""The chart worker's wire format over its stdin and stdout: length-prefixed frames.

A frame is a 4-byte big-endian length and that many bytes. A request is one frame: the pickled
:class:`~kontext.adapters.charts.model.UsageChart` (the bot's own data, unpickled by the worker the
bot started). A reply is two frames: a JSON header (``ok``, ``error``, ``notes``, ``cpu_ms``) and
the PNG (empty after an error). The bot never unpickles what a worker sends, and caps every length.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import IO, Any, Final

__all__ = [
    "MAX_HEADER",
    "MAX_PNG",
    "MAX_REQUEST",
    "Malformed",
    "read_frame",
    "receive_reply",
    "send_frame",
    "write_frame",
]

_LENGTH: Final = struct.Struct("!I")
#: A pickled chart of 90 days is a few kilobytes.
MAX_REQUEST: Final = 1024 * 1024
MAX_HEADER: Final = 64 * 1024
#: Discord takes 10 MiB per file (25 MiB for some servers); a chart is ~0.1 MiB.
MAX_PNG: Final = 10 * 1024 * 1024


class Malformed(Exception):
    """A frame broke the format or its cap."""


# --- the worker's side (blocking) -------------------------------------------------------------------


def read_frame(stream: IO[bytes], cap: int) -> bytes:
    """One frame; EOFError when the stream ends between frames (the bot closed it)."""
    prefix = stream.read(_LENGTH.size)
    if not prefix:
        raise EOFError
    if len(prefix) < _LENGTH.size:
        raise Malformed("the stream ended inside a frame's length")
    (length,) = _LENGTH.unpack(prefix)
    if length > cap:
        raise Malformed(f"a frame of {length} bytes is over the cap of {cap}")
    data = stream.read(length)
    if len(data) < length:
        raise Malformed("the stream ended inside a frame")
    return data


def write_frame(stream: IO[bytes], data: bytes) -> None:
    stream.write(_LENGTH.pack(len(data)))
    stream.write(data)


# --- the bot's side (asyncio) -----------------------------------------------------------------------


async def send_frame(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(_LENGTH.pack(len(data)))
    writer.write(data)
    await writer.drain()


async def _receive(reader: asyncio.StreamReader, cap: int) -> bytes:
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if length > cap:
        raise Malformed(f"a frame of {length} bytes is over the cap of {cap}")
    return await reader.readexactly(length)


async def receive_reply(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes]:
    """A worker's reply: its header and its PNG (IncompleteReadError if the worker ended)."""
    raw = await _receive(reader, MAX_HEADER)
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise Malformed(f"the reply header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise Malformed("the reply header is not a JSON object")
    return header, await _receive(reader, MAX_PNG)
