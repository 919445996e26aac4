"""Event-loop lag of the bot, measured from outside: how long a trivial request waits for an answer.

    python bench/lag_probe.py URL --out FILE [--interval 0.02]

Every ``interval`` seconds (on a fixed grid; a late answer moves the next request to right after it)
this process sends ``GET URL`` (the bot's ``/healthz``) on one keep-alive connection and appends
``<time.monotonic() when sent> <seconds until the whole answer was read> <HTTP status>`` to ``FILE``,
until SIGTERM. ``/healthz`` is answered on the bot's event loop by a handler that only reads a few
counters (and at most every 10 s starts a database check it does not wait for), so the time is the
loop's lag for an event arriving at that moment (whatever callback is running must end first; the
worst case is the longest stretch the loop is busy) plus a floor of about half a millisecond
(loopback, HTTP parsing, this process waking up). It also includes time the bot waits for a CPU when
the machine is busy, which users would feel just the same.

It runs in its own small process so that neither the bot's nor the fakes' event loop (nor their
GIL) is in the way of the measurement. Failed requests are written with status 0.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import signal
import sys
import time
from types import FrameType
from urllib.parse import urlsplit


class Stop(Exception):
    pass


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Stop


def probe(url: str, out_path: str, interval: float) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path or "/"
    conn: http.client.HTTPConnection | None = None
    with open(out_path, "w", buffering=1, encoding="ascii") as out:
        tick = time.monotonic()
        while True:
            tick = max(tick + interval, time.monotonic())
            time.sleep(max(0.0, tick - time.monotonic()))  # the sampling grid: nothing to wait for
            sent = time.monotonic()
            status = 0
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, port, timeout=30)
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            out.write(f"{sent:.6f} {time.monotonic() - sent:.6f} {status}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("url")
    parser.add_argument("--out", required=True)
    parser.add_argument("--interval", type=float, default=0.02)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    with contextlib.suppress(Stop, KeyboardInterrupt):
        probe(args.url, args.out, args.interval)
    return 0


def read_samples(path: str) -> list[tuple[float, float, int]]:
    """The samples a probe wrote: (sent at, seconds, status)."""
    samples = []
    with contextlib.suppress(OSError), open(path, encoding="ascii") as lines:
        for line in lines:
            fields = line.split()
            if len(fields) == 3:
                with contextlib.suppress(ValueError):
                    samples.append((float(fields[0]), float(fields[1]), int(fields[2])))
    return samples


if __name__ == "__main__":
    sys.exit(main())
