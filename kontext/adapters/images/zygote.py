"""Imported once, by the sandbox's fork server only: prepare the state every worker is forked from.

* Pillow imports its format plugins, codecs and colour management lazily, on first use. Doing that
  here, once, instead of in every worker saves each worker tens of milliseconds: a tiny image of each
  format is encoded and decoded (with ICC conversion) so every lazy import and table is in place.
* ``gc.freeze()`` moves every object the server holds into the permanent generation: a forked
  worker's garbage collector then never walks (and so never copies, page by page) the server's
  memory, which is what made workers slow to start.

Never imported by the bot itself (see ``set_forkserver_preload`` in :mod:`.sandbox`).
"""

from __future__ import annotations

import gc
import io
import logging

from PIL import Image

from kontext.adapters.images import child, processing
from kontext.domain.images import ImageLimits

log = logging.getLogger("kontext.adapters.images.zygote")

#: What each worker runs (imported here so it is in the frozen state too).
_SERVE = child.serve

__all__: list[str] = []


def _warm_up() -> None:
    Image.init()
    picture = Image.linear_gradient("L").resize((96, 64)).convert("RGB")
    for fmt in ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"):
        buf = io.BytesIO()
        try:
            picture.save(buf, fmt)
            processing.normalise_image(buf.getvalue(), ImageLimits())
            if fmt in ("JPEG", "PNG"):
                processing.fit_result(buf.getvalue(), 10**7, max_pixels=10**7)
        except Exception as exc:  # noqa: BLE001 - a Pillow without this codec: warming up is optional,
            # and anything but ImportError raised here would take the fork server down
            log.debug("fork server warm-up skipped %s: %r", fmt, exc)


def _rehearsal() -> bytes:
    buf = io.BytesIO()
    Image.radial_gradient("L").resize((320, 240)).convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


_warm_up()
child.REHEARSAL.append(_rehearsal())
gc.collect()
gc.freeze()
