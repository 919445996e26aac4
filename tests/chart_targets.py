"""A chart worker for tests: the real one, except for charts whose title names a misbehaviour.

``ChartRenderer(worker_module="tests.chart_targets")``; a chart titled ``hang`` never gets an answer,
``exit`` ends the worker, ``fail`` gets an error reply, ``not-png`` an answer that is not a PNG,
``env`` a PNG with the worker's environment variable names as its note. Any other title is drawn.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
import time
from typing import Any

from PIL import Image

from kontext.adapters.charts import worker


def _tiny_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (2, 2)).save(out, "PNG")
    return out.getvalue()


def misbehave(request: bytes) -> tuple[dict[str, Any], bytes]:
    title = pickle.loads(request).title
    if title == "hang":
        time.sleep(3600)
    if title == "exit":
        os._exit(3)
    if title == "fail":
        return {"ok": False, "error": "told to fail"}, b""
    if title == "not-png":
        return {"ok": True, "notes": []}, b"GIF89a"
    if title == "env":
        return {"ok": True, "notes": [" ".join(sorted(os.environ))]}, _tiny_png()
    return worker.answer(request)


if __name__ == "__main__":
    sys.exit(worker.main(misbehave))
