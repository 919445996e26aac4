"""The chart worker process: ``python -m kontext.adapters.charts.worker`` (started by the renderer).

It reads charts from stdin and answers on stdout (:mod:`.wire`) until stdin ends, then exits. It runs
at a lower CPU priority than the bot, ignores Ctrl+C (the bot ends it) and keeps stdout for replies
only: anything printed goes to stderr. A chart whose words have glyphs no installed font has is
drawn again in English (the chart's ``*_en`` fields), with a note the bot logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Final

from kontext.adapters.charts import draw, fonts, wire
from kontext.adapters.charts.model import UsageChart

__all__ = ["Answer", "answer", "main", "render"]

#: Added to the worker's nice value: the bot's event loop always comes first.
NICE: Final = 5
_MAX_DETAIL: Final = 500


def render(chart: UsageChart, families: Sequence[str] | None = None) -> tuple[bytes, list[str]]:
    """The chart's PNG and notes for the bot's log (text drawn in English, glyphs missing).

    ``families``: the fonts to use (default: the locale's, see :func:`.fonts.families`).
    """
    png, missing = _drawn(chart, families)
    if not missing:
        return png, []
    english = chart.in_english()
    if english == chart:
        return png, [f"glyphs missing from every font: {missing}"]
    png, still = _drawn(english, families)
    notes = [f"no installed font has every glyph of the {chart.locale} labels, drawn in English: {missing}"]
    return png, notes + ([f"glyphs missing from every font: {still}"] if still else [])


def _drawn(chart: UsageChart, families: Sequence[str] | None) -> tuple[bytes, str]:
    """The PNG and matplotlib's missing-glyph warnings (joined; empty when every glyph was found)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        png = draw.render_png(chart, families)
    missing = sorted({str(w.message) for w in caught if "missing from font" in str(w.message)})
    return png, "; ".join(missing)[:_MAX_DETAIL]


def answer(request: bytes) -> tuple[dict[str, Any], bytes]:
    """The reply header and PNG for one request."""
    started = time.process_time()
    try:
        chart = pickle.loads(request)  # the bot's own data, sent by the process that started this one
        if not isinstance(chart, UsageChart):
            raise TypeError(f"a request holds a {type(chart).__name__}, not a UsageChart")
        png, notes = render(chart)
    except Exception as exc:  # noqa: BLE001 - a chart that cannot be drawn must not end the worker;
        # the bot gets the error and raises it as a ChartError
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:_MAX_DETAIL]}, b""
    cpu_ms = (time.process_time() - started) * 1000
    return {"ok": True, "notes": notes, "cpu_ms": round(cpu_ms, 1)}, png


Answer = Callable[[bytes], tuple[dict[str, Any], bytes]]


def main(answer: Answer = answer) -> int:
    """Serve requests until stdin ends (``answer``: how one is answered; tests swap it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(NICE)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    fonts.register()
    with replies:
        while True:
            try:
                request = wire.read_frame(sys.stdin.buffer, wire.MAX_REQUEST)
            except EOFError:
                return 0
            header, png = answer(request)
            wire.write_frame(replies, json.dumps(header).encode())
            wire.write_frame(replies, png)
            replies.flush()


if __name__ == "__main__":
    sys.exit(main())
