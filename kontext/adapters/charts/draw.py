"""Draw a usage chart with matplotlib (Agg, no pyplot: no global figures) and encode it as a PNG.

Worker process only: importing this module imports matplotlib. matplotlib renders raw RGBA pixels
and Pillow writes the PNG: RGB (opaque), with no text chunks (no "Software" line) and no DPI.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence
from typing import Any, Final

from matplotlib import rc_context, rcParams
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.patheffects import withStroke
from matplotlib.textpath import TextToPath
from matplotlib.ticker import FixedLocator, FuncFormatter
from matplotlib.typing import RcKeyType
from PIL import Image

from kontext.adapters.charts import fonts, labels
from kontext.adapters.charts.model import UsageChart
from kontext.adapters.charts.style import (
    BACKGROUND,
    COST,
    DPI,
    GRID,
    HEIGHT,
    PALETTE,
    SECONDARY,
    TEXT,
    WIDTH,
)

__all__ = ["build", "drawing", "render_png"]

#: Fewer days than this are drawn as narrow bars in the middle, not as a few wide slabs.
_MIN_SLOTS: Final = 7
#: Narrowest the plot gets (the rest is axis labels), and the least room between two day labels (px).
_PLOT_WIDTH: Final = 0.85 * WIDTH
_LABEL_GAP: Final = 16
#: Measures text without drawing it.
_TEXT: Final = TextToPath()
_BAR_WIDTH: Final = 0.8
#: Bar hatches: a model past the palette's length repeats a colour with a hatch.
_HATCHES: Final = ("", "//", "xx")


def render_png(chart: UsageChart, families: Sequence[str] | None = None) -> bytes:
    """The chart as PNG bytes, ``WIDTH`` x ``HEIGHT``, text in ``families`` (default: the locale's)."""
    pixels = io.BytesIO()
    with drawing(chart, families) as figure:
        figure.savefig(pixels, format="rgba", dpi=DPI, facecolor=BACKGROUND)
    image = Image.frombytes("RGBA", (WIDTH, HEIGHT), pixels.getvalue()).convert("RGB")
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=6)  # level 9 or optimize: 2 % smaller, 5 times slower
    return out.getvalue()


@contextlib.contextmanager
def drawing(chart: UsageChart, families: Sequence[str] | None = None) -> Iterator[Figure]:
    """The chart's figure, to be drawn inside this context: it sets the fonts and colours (matplotlib
    creates tick labels while it draws, and they take their font from the settings then)."""
    with rc_context(_settings(families if families is not None else fonts.families(chart.locale))):
        figure = build(chart)
        FigureCanvasAgg(figure)
        yield figure


def _settings(families: Sequence[str]) -> dict[RcKeyType, Any]:
    return {
        "font.family": list(families),
        "font.size": 11,
        "text.color": TEXT,
        "axes.labelcolor": SECONDARY,
        "axes.edgecolor": GRID,
        "axes.facecolor": BACKGROUND,
        "figure.facecolor": BACKGROUND,
        "xtick.color": GRID,
        "ytick.color": GRID,
        "xtick.labelcolor": SECONDARY,
        "ytick.labelcolor": SECONDARY,
        "legend.labelcolor": TEXT,
    }


def build(chart: UsageChart) -> Figure:
    """The figure (use :func:`drawing`, which builds it with the right settings)."""
    figure = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI, facecolor=BACKGROUND, layout="constrained")
    jobs_axes = figure.add_subplot()
    handles, intervals = _jobs(jobs_axes, chart)
    cost_axes = jobs_axes.twinx()
    handles.append(_cost(cost_axes, chart, intervals))
    _days(jobs_axes, chart)
    for axes in (jobs_axes, cost_axes):
        for spine in ("top", "left", "right"):
            axes.spines[spine].set_visible(False)
        axes.tick_params(axis="y", length=0, pad=6)
    figure.suptitle(chart.title, x=0.01, ha="left", fontsize=17, color=TEXT)
    jobs_axes.legend(
        handles=handles,
        loc="lower left",
        bbox_to_anchor=(0, 1.01),
        borderaxespad=0,
        ncols=min(len(handles), 6),
        frameon=False,
        handlelength=1.4,
        columnspacing=1.6,
    )
    return figure


def _jobs(axes: Axes, chart: UsageChart) -> tuple[list[Any], int]:
    """Stacked bars, one colour per model; their legend handles and the axis' gridline intervals.

    Each model's bars are one collection of rectangles (one artist, not one per bar: ~10 times
    faster to build for 90 days).
    """
    bottom = [0] * len(chart.days)
    edge = 0.6 if len(chart.days) <= 45 else 0.3
    handles: list[Any] = []
    for index, (model, series) in enumerate(chart.jobs.items()):
        colour = PALETTE[index % len(PALETTE)]
        hatch = _HATCHES[index // len(PALETTE) % len(_HATCHES)]
        pairs = enumerate(zip(bottom, series, strict=True))
        bars = [_bar(day, below, value) for day, (below, value) in pairs]
        axes.add_collection(
            PolyCollection(
                [bar for bar in bars if bar],
                facecolors=colour,
                edgecolors=BACKGROUND,
                linewidths=edge,
                hatch=hatch or None,
                zorder=2,
            ),
            autolim=False,
        )
        bottom = [below + value for below, value in zip(bottom, series, strict=True)]
        handles.append(Patch(facecolor=colour, hatch=hatch, edgecolor=BACKGROUND, label=model))
    step, intervals = labels.job_scale(max(bottom))
    axes.set_ylim(0, step * intervals)
    axes.yaxis.set_major_locator(FixedLocator([step * i for i in range(intervals + 1)]))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: labels.jobs_text(value, chart.locale)))
    axes.yaxis.grid(True, color=GRID, linewidth=0.8)
    axes.set_axisbelow(True)
    axes.set_ylabel(chart.jobs_label)
    return handles, intervals


def _bar(day: int, below: int, value: int) -> list[tuple[float, float]]:
    """The corners of one bar (none for no jobs)."""
    if not value:
        return []
    left, right = day - _BAR_WIDTH / 2, day + _BAR_WIDTH / 2
    return [(left, below), (left, below + value), (right, below + value), (right, below)]


def _cost(axes: Axes, chart: UsageChart, intervals: int) -> Line2D:
    """The cost per day as a light line with dots, on the right-hand axis (its ticks on the jobs axis'
    gridlines); its legend handle."""
    days = len(chart.days)
    dot = 6.0 if days <= 14 else 4.0 if days <= 31 else 0.0
    style: dict[str, Any] = {"color": COST, "linewidth": 2, "marker": "o", "markersize": dot}
    axes.plot(
        range(days),
        chart.cost,
        **style,
        zorder=3,
        path_effects=[withStroke(linewidth=4.5, foreground=BACKGROUND)],
    )
    step = labels.cost_step(max(chart.cost), intervals, chart.currency)
    axes.set_ylim(0, step * intervals)
    axes.yaxis.set_major_locator(FixedLocator([step * i for i in range(intervals + 1)]))
    axes.yaxis.set_major_formatter(
        FuncFormatter(lambda value, _: labels.money(value, chart.currency, chart.locale))
    )
    axes.set_ylabel(chart.cost_label)
    return Line2D([], [], label=chart.cost_label, **style)


def _days(axes: Axes, chart: UsageChart) -> None:
    """Short dates under the bars, as many as fit; narrow bars when there are few days."""
    font = FontProperties(size=rcParams["font.size"])
    widest = max(
        _TEXT.get_text_width_height_descent(text, font, ismath=False)[0] * DPI / 72
        for text in {labels.day_label(day, chart.locale) for day in chart.days}
    )
    most = min(labels.MAX_DAY_LABELS, int(_PLOT_WIDTH // (widest + _LABEL_GAP)))
    ticks = labels.day_ticks(chart.days, chart.locale, max(most, 1))
    axes.set_xticks([index for index, _ in ticks], [label for _, label in ticks])
    axes.tick_params(axis="x", length=4, pad=6)
    pad = max(0.0, (_MIN_SLOTS - len(chart.days)) / 2)
    axes.set_xlim(-0.6 - pad, len(chart.days) - 0.4 + pad)
