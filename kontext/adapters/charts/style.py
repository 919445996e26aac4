"""Colours and sizes of the chart, and the contrast arithmetic that checks them (WCAG 2).

The picture brings its own opaque dark background (close to Discord's dark theme), so it reads the
same in the dark and the light theme. Text contrasts with it by more than 7:1, tick labels by more
than 4.5:1; gridlines are just visible. The models take the Okabe–Ito colours, chosen to stay
distinct with every common colour-vision deficiency; each has 3:1 or more against the background
(WCAG's minimum for graphical objects; Okabe–Ito's dark blue has less and is left out). The cost
is a light line with dots, told apart from the bars by lightness and shape as well as hue.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BACKGROUND",
    "COST",
    "DPI",
    "GRID",
    "HEIGHT",
    "PALETTE",
    "SECONDARY",
    "TEXT",
    "WIDTH",
    "contrast",
    "luminance",
]

#: The picture's size in pixels (Discord shows it scaled to the message's width).
WIDTH: Final = 1200
HEIGHT: Final = 600
DPI: Final = 100

BACKGROUND: Final = "#26282C"
#: Title, legend.
TEXT: Final = "#F2F3F5"
#: Tick labels and axis labels.
SECONDARY: Final = "#B5BAC1"
#: Gridlines, spines and tick marks.
GRID: Final = "#3C3F45"
#: The cost line.
COST: Final = "#F2F3F5"
#: Okabe–Ito, in the order models take them: sky blue, orange, bluish green, reddish purple,
#: yellow, vermilion.
PALETTE: Final = ("#56B4E9", "#E69F00", "#009E73", "#CC79A7", "#F0E442", "#D55E00")


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(colour: str | tuple[int, int, int]) -> float:
    """WCAG relative luminance of ``#RRGGBB`` or an ``(r, g, b)`` triple (0 black … 1 white)."""
    if isinstance(colour, str):
        colour = (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16))
    r, g, b = (_channel(v) for v in colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str | tuple[int, int, int], b: str | tuple[int, int, int]) -> float:
    """WCAG contrast ratio of two colours (1 … 21)."""
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)
