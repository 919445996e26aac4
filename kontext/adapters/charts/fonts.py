"""Fonts for every language the bot speaks: DejaVu Sans (matplotlib's own) and Noto Sans CJK.

Noto Sans CJK comes from PyPI as the ``noto-cjk-sans-otc`` wheel (a dependency; SIL Open Font License
1.1): the official ``NotoSansCJK-Regular.ttc`` collection, byte for byte the file Debian ships in
``fonts-noto-cjk``. One 19 MB file holds every glyph of Chinese (Simplified and Traditional),
Japanese and Korean, with a face per region, so each language gets its own letterforms (matplotlib
3.11 reads every face of a collection). Cyrillic, Greek and Latin are in both fonts.

Each chart names a list of families: the reader's own first, the rest as fallbacks that matplotlib
uses glyph by glyph. Only the worker process imports this module (it imports matplotlib).
"""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path
from typing import Final

from babel import Locale
from matplotlib import font_manager

__all__ = ["CJK_DISTRIBUTION", "LATIN", "cjk_font", "families", "register"]

log = logging.getLogger("kontext.adapters.charts.fonts")

#: The wheel that carries the CJK collection, and the file in it.
CJK_DISTRIBUTION: Final = "noto-cjk-sans-otc"
_CJK_FILE: Final = "NotoSansCJK-Regular.ttc"
LATIN: Final = "DejaVu Sans"
#: The collection's face for a language's region.
_CJK_FACES: Final = {
    "SC": "Noto Sans CJK SC",
    "TC": "Noto Sans CJK TC",
    "HK": "Noto Sans CJK HK",
    "JP": "Noto Sans CJK JP",
    "KR": "Noto Sans CJK KR",
}


def cjk_font() -> Path | None:
    """Where the CJK collection is installed, or None (the wheel is missing)."""
    try:
        files = importlib.metadata.files(CJK_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == _CJK_FILE:
            path = Path(str(file.locate()))
            return path if path.is_file() else None
    return None


def register() -> bool:
    """Make the CJK faces known to matplotlib (once per process); False when the font is missing."""
    path = cjk_font()
    if path is None:
        log.warning("the %s package is not installed: charts cannot draw CJK text", CJK_DISTRIBUTION)
        return False
    if not any(entry.fname == str(path) for entry in font_manager.fontManager.ttflist):
        font_manager.fontManager.addfont(path)
    return True


def _region(locale: Locale) -> str | None:
    """The CJK face a language is written in, or None for languages that are not."""
    if locale.language == "zh":
        if locale.script == "Hant" or locale.territory in ("TW", "HK", "MO"):
            return "HK" if locale.territory in ("HK", "MO") else "TC"
        return "SC"
    return {"ja": "JP", "ko": "KR"}.get(locale.language)


def families(locale: str) -> list[str]:
    """Font families for text in ``locale``, best first.

    CJK languages are set in their region's Noto face (its Latin letters and digits too, so a label
    reads as one typeface); other languages in DejaVu Sans, with Noto as the fallback for any CJK
    text (a model name, say). Families matplotlib does not know (the CJK wheel is missing, or
    :func:`register` was not called) are left out.
    """
    region = _region(Locale.parse(locale))
    wanted = [LATIN, _CJK_FACES["JP"]] if region is None else [_CJK_FACES[region], LATIN]
    known = {entry.name for entry in font_manager.fontManager.ttflist}
    return [family for family in wanted if family in known] or [LATIN]
