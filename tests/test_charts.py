"""kontext.adapters.charts: the usage chart, drawn with matplotlib in a worker process.

In this process (matplotlib is imported here): the picture in every language and at every length,
its colours, layout, PNG and fonts, with matplotlib's missing-glyph warnings turned into errors.
Through :class:`ChartRenderer`: the worker's life (reused, killed, too slow, cancelled, idle,
closed); misbehaving workers come from tests/chart_targets.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import io
import itertools
import logging
import os
import random
import signal
import struct
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from babel.numbers import format_currency
from matplotlib import font_manager
from matplotlib.figure import Figure
from PIL import Image

from kontext.adapters.charts import (
    MAX_DAYS,
    ChartError,
    ChartRenderer,
    UsageChart,
    draw,
    fonts,
    labels,
    style,
    wire,
    worker,
)
from tests.waiting import eventually

#: Title (with the number of days), jobs label, cost label, as the caller would translate them.
WORDS = {
    "en": ("Kontext usage, last {n} days", "Jobs", "Cost"),
    "zh_CN": ("Kontext 用量 — 最近 {n} 天", "任务", "费用"),
    "zh_TW": ("Kontext 用量 — 最近 {n} 天", "任務", "費用"),
    "ja": ("Kontext の使用状況 — 過去 {n} 日間", "ジョブ", "費用"),
    "ko": ("Kontext 사용량 — 최근 {n}일", "작업", "비용"),
    "es": ("Uso de Kontext: últimos {n} días", "Trabajos", "Coste"),
    "pt_BR": ("Uso do Kontext — últimos {n} dias", "Tarefas", "Custo"),
    "de": ("Kontext-Nutzung der letzten {n} Tage", "Aufträge", "Kosten"),
    "fr": ("Utilisation de Kontext — {n} derniers jours", "Tâches", "Coût"),
    "ru": ("Использование Kontext за {n} дн.", "Задания", "Стоимость"),
}
MODELS = ("flux-kontext-pro", "flux-kontext-max")
#: The newest day of the test charts: ranges cross a new year.
LAST_DAY = datetime.date(2026, 1, 10)
TARGETS = "tests.chart_targets"


def make_chart(
    days: int = 7,
    locale: str = "en",
    *,
    models: tuple[str, ...] = MODELS,
    zero: bool = False,
    currency: str = "USD",
    title: str | None = None,
) -> UsageChart:
    rng = random.Random(days * 1000 + len(models))
    jobs = {
        model: tuple(0 if zero else rng.randint(0, 40 // (rank + 1)) for _ in range(days))
        for rank, model in enumerate(models)
    }
    cost = tuple(
        sum(series[day] * 0.04 * (rank + 1) for rank, series in enumerate(jobs.values()))
        for day in range(days)
    )
    words = WORDS.get(locale, WORDS["en"])
    return UsageChart(
        days=tuple(LAST_DAY - datetime.timedelta(days=days - 1 - i) for i in range(days)),
        jobs=jobs,
        cost=cost,
        currency=currency,
        locale=locale,
        title=words[0].format(n=days) if title is None else title,
        jobs_label=words[1],
        cost_label=words[2],
    )


def rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def png_chunks(data: bytes) -> list[str]:
    """The chunk types of a PNG, in order."""
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        chunks.append(data[offset + 4 : offset + 8].decode("ascii"))
        offset += 12 + length
    return chunks


def check_png(data: bytes) -> Image.Image:
    """A chart as it should reach Discord: a small, opaque 1200 x 600 PNG with a picture on it."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) < 200 * 1024
    assert set(png_chunks(data)) == {"IHDR", "IDAT", "IEND"}  # no text (Software), no pHYs
    image = Image.open(io.BytesIO(data))
    image.load()
    assert (image.format, image.size, image.mode) == ("PNG", (style.WIDTH, style.HEIGHT), "RGB")
    assert not image.info  # nothing beyond the pixels
    colours = image.getcolors(maxcolors=style.WIDTH * style.HEIGHT)
    assert colours is not None and len(colours) > 50  # not blank
    counts = {colour: n for n, colour in colours}
    assert max(counts, key=counts.__getitem__) == rgb(style.BACKGROUND)
    assert counts.get(rgb(style.TEXT), 0) > 20  # title and legend in the text colour
    assert counts.get(rgb(style.SECONDARY), 0) > 20  # tick labels
    for corner in ((0, 0), (style.WIDTH - 1, 0), (0, style.HEIGHT - 1), (style.WIDTH - 1, style.HEIGHT - 1)):
        assert image.getpixel(corner) == rgb(style.BACKGROUND)
    return image


@pytest.fixture(scope="module")
def cjk() -> None:
    """The CJK collection known to matplotlib in this process (as the worker does at start)."""
    assert fonts.register()


def render_strict(chart: UsageChart, families: list[str] | None = None) -> bytes:
    """draw.render_png with every warning an error (a missing glyph would be one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return draw.render_png(chart, families)


@pytest.fixture
def drawn() -> Iterator[Callable[[UsageChart], Figure]]:
    """A chart's figure, laid out and drawn (warnings are errors), to measure what is on it."""
    with warnings.catch_warnings(), contextlib.ExitStack() as stack:
        warnings.simplefilter("error")

        def draw_it(chart: UsageChart) -> Figure:
            figure = stack.enter_context(draw.drawing(chart))
            figure.draw_without_rendering()
            return figure

        yield draw_it


# --- the picture, in this process ---------------------------------------------------------------------


@pytest.mark.parametrize("locale", sorted(WORDS))
def test_every_language_is_drawn_with_every_glyph(cjk: None, locale: str) -> None:
    check_png(render_strict(make_chart(7, locale)))


@pytest.mark.parametrize(
    ("days", "locale"),
    [(1, "zh_CN"), (1, "ru"), (7, "ko"), (7, "zh_TW"), (90, "ja"), (90, "zh_TW"), (90, "en"), (30, "de")],
)
def test_one_day_a_week_and_ninety_days(cjk: None, days: int, locale: str) -> None:
    check_png(render_strict(make_chart(days, locale)))


def test_all_zero_data_still_makes_a_readable_chart(cjk: None, drawn: Callable[[UsageChart], Figure]) -> None:
    chart = make_chart(14, "ja", zero=True)
    check_png(render_strict(chart))
    jobs_axes, cost_axes = drawn(chart).axes
    assert [t.get_text() for t in jobs_axes.get_yticklabels()] == ["0", "1", "2"]
    assert [t.get_text() for t in cost_axes.get_yticklabels()] == ["$0.00", "$0.01", "$0.02"]


def test_the_largest_chart_stays_small(cjk: None) -> None:
    """90 days, more models than colours (hatched), CJK text: still far below Discord's 10 MiB."""
    chart = make_chart(90, "zh_CN", models=tuple(f"model-{i}" for i in range(9)))
    assert len(render_strict(chart)) < 200 * 1024


def test_colours_contrast_in_both_discord_themes() -> None:
    """The picture brings its own background; text on it passes WCAG AA, gridlines stay faint."""
    assert style.contrast(style.TEXT, style.BACKGROUND) >= 7
    assert style.contrast(style.SECONDARY, style.BACKGROUND) >= 4.5
    assert 1.1 < style.contrast(style.GRID, style.BACKGROUND) < 1.6
    assert all(style.contrast(colour, style.BACKGROUND) >= 3 for colour in style.PALETTE)
    assert len(set(style.PALETTE)) == len(style.PALETTE)
    # the card is opaque, so its own contrast decides; it still stands apart from the light theme
    assert style.contrast(style.BACKGROUND, "#FFFFFF") > 10
    assert style.contrast("#000000", "#FFFFFF") == pytest.approx(21)


@pytest.mark.parametrize(
    ("days", "locale"),
    [
        (1, "ja"),
        (12, "pt_BR"),
        (13, "pt_BR"),
        (24, "pt_BR"),
        (31, "ru"),
        (84, "pt_BR"),
        (90, "zh_TW"),
        (90, "fr"),
    ],
)
def test_labels_stay_apart_and_inside_the_picture(
    cjk: None, drawn: Callable[[UsageChart], Figure], days: int, locale: str
) -> None:
    figure = drawn(make_chart(days, locale))
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    jobs_axes, cost_axes = figure.axes
    days_shown = [t for t in jobs_axes.get_xticklabels() if t.get_text()]
    assert 1 <= len(days_shown) <= labels.MAX_DAY_LABELS
    assert days_shown[-1].get_text() == labels.day_ticks([LAST_DAY], locale)[0][1]  # the newest day
    boxes = [t.get_window_extent(renderer) for t in days_shown]
    assert all(left.x1 + 8 < right.x0 for left, right in itertools.pairwise(boxes))
    legend = jobs_axes.get_legend()
    assert legend is not None
    title, legend_box = figure.texts[0].get_window_extent(renderer), legend.get_window_extent(renderer)
    plot = jobs_axes.get_window_extent(renderer)
    assert title.y0 >= legend_box.y1 and legend_box.y0 >= plot.y1  # title, then legend, then the plot
    inside = [title, legend_box, *boxes]
    inside += [
        t.get_window_extent(renderer) for t in (*jobs_axes.get_yticklabels(), *cost_axes.get_yticklabels())
    ]
    assert all(b.x0 >= 0 and b.y0 >= 0 and b.x1 <= style.WIDTH and b.y1 <= style.HEIGHT for b in inside)


@pytest.mark.parametrize(
    ("peak_jobs", "currency", "locale"), [(3, "USD", "en"), (57, "EUR", "de"), (1234, "JPY", "ja")]
)
def test_jobs_ticks_are_whole_numbers_and_money_is_the_locales(
    cjk: None, drawn: Callable[[UsageChart], Figure], peak_jobs: int, currency: str, locale: str
) -> None:
    days = tuple(LAST_DAY - datetime.timedelta(days=2 - i) for i in range(3))
    chart = UsageChart(
        days, {"a": (0, peak_jobs, 1)}, (0.0, peak_jobs * 0.07, 0.07), currency, locale, "t", "j", "c"
    )
    jobs_axes, cost_axes = drawn(chart).axes
    jobs_ticks = jobs_axes.get_yticks()
    assert all(float(v).is_integer() for v in jobs_ticks) and max(jobs_ticks) >= peak_jobs
    money = [t.get_text() for t in cost_axes.get_yticklabels()]
    assert len(set(money)) == len(money)  # no two ticks round to the same amount
    assert money[0] == format_currency(0, currency, locale=locale)
    # the cost ticks sit on the jobs gridlines
    assert len(cost_axes.get_yticks()) == len(jobs_ticks)


def test_one_day_is_a_narrow_bar_not_a_slab(cjk: None, drawn: Callable[[UsageChart], Figure]) -> None:
    figure = drawn(make_chart(1, "en"))
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    jobs_axes = figure.axes[0]
    bar = jobs_axes.collections[0].get_window_extent(renderer)
    assert bar.width < jobs_axes.get_window_extent(renderer).width / 5


@pytest.mark.parametrize(
    ("locale", "face"),
    [
        ("zh_CN", "Noto Sans CJK SC"),
        ("zh_TW", "Noto Sans CJK TC"),
        ("zh_Hant", "Noto Sans CJK TC"),
        ("zh_HK", "Noto Sans CJK HK"),
        ("ja", "Noto Sans CJK JP"),
        ("ko", "Noto Sans CJK KR"),
        ("ru", "DejaVu Sans"),
        ("en", "DejaVu Sans"),
    ],
)
def test_each_language_gets_its_own_letterforms(
    cjk: None, drawn: Callable[[UsageChart], Figure], locale: str, face: str
) -> None:
    """Chinese, Japanese and Korean each take their region's face of the collection."""
    assert fonts.families(locale)[0] == face
    title = drawn(make_chart(3, locale)).texts[0]
    found = font_manager.findfont(title.get_fontproperties(), fallback_to_default=False)
    assert font_manager.get_font(found).family_name == face


def test_the_cjk_font_is_the_noto_collection(cjk: None) -> None:
    path = fonts.cjk_font()
    assert path is not None and path.name == "NotoSansCJK-Regular.ttc"
    faces = {font_manager.get_font(font_manager.FontPath(str(path), i)).family_name for i in range(5)}
    assert faces == {
        "Noto Sans CJK JP",
        "Noto Sans CJK KR",
        "Noto Sans CJK SC",
        "Noto Sans CJK TC",
        "Noto Sans CJK HK",
    }


def test_without_the_cjk_font_text_is_drawn_in_english(cjk: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """No font for the translation: the chart is drawn from the English fields, with a note."""
    chart = make_chart(7, "zh_CN")
    png, notes = worker.render(chart, families=["DejaVu Sans"])  # what a machine without Noto has
    assert len(notes) == 1 and "drawn in English" in notes[0] and "missing from font" in notes[0]
    assert png == render_strict(chart.in_english(), ["DejaVu Sans"])
    check_png(png)
    # and the families offered leave out what matplotlib does not know
    known = [e for e in font_manager.fontManager.ttflist if "CJK" not in e.name]
    monkeypatch.setattr(font_manager.fontManager, "ttflist", known)
    assert fonts.families("zh_CN") == ["DejaVu Sans"]


def test_a_chart_in_every_language_needs_no_fallback(cjk: None) -> None:
    png, notes = worker.render(make_chart(7, "ko"))
    assert notes == []
    check_png(png)


# --- the data and its words -----------------------------------------------------------------------------


def test_chart_data_is_normalised() -> None:
    days = [LAST_DAY - datetime.timedelta(days=1), LAST_DAY]
    chart = UsageChart(days, {"m": [1, 2]}, [0, 0.5], "USD", "zh-TW", "t", "j", "c")  # type: ignore[arg-type, dict-item]
    assert chart.days == tuple(days) and chart.jobs == {"m": (1, 2)} and chart.cost == (0, 0.5)
    assert chart.locale == "zh_TW" and chart.total_jobs == (1, 2)
    english = chart.in_english()
    assert (english.locale, english.title, english.jobs_label, english.cost_label) == (
        "en",
        "Usage",
        "Jobs",
        "Cost",
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"days": ()}, "1 to 90 days"),
        (
            {"days": tuple(LAST_DAY - datetime.timedelta(days=i) for i in range(MAX_DAYS + 1))[::-1]},
            "1 to 90",
        ),
        ({"days": (LAST_DAY, LAST_DAY - datetime.timedelta(days=1))}, "consecutive"),
        ({"days": (LAST_DAY - datetime.timedelta(days=2), LAST_DAY)}, "consecutive"),
        ({"days": (datetime.datetime(2026, 1, 9), datetime.datetime(2026, 1, 10))}, "datetime.date"),
        ({"jobs": {"m": (1,)}}, "1 values for 2 days"),
        ({"jobs": {"m": (1, -1)}}, "whole numbers"),
        ({"jobs": {"m": (1, 1.5)}}, "whole numbers"),
        ({"jobs": {"m": (True, 1)}}, "whole numbers"),
        ({"jobs": {" ": (1, 1)}}, "empty"),
        ({"cost": (1.0,)}, "cost has 1 values"),
        ({"cost": (1.0, float("nan"))}, "finite"),
        ({"cost": (1.0, -0.01)}, "finite"),
        ({"currency": "usd"}, "ISO 4217"),
        ({"locale": "xx_YY"}, "unknown locale"),
    ],
)
def test_chart_data_is_checked(change: dict[str, Any], problem: str) -> None:
    fields: dict[str, Any] = {
        "days": (LAST_DAY - datetime.timedelta(days=1), LAST_DAY),
        "jobs": {"m": (1, 2)},
        "cost": (0.1, 0.2),
        "currency": "USD",
        "locale": "en",
        "title": "t",
        "jobs_label": "j",
        "cost_label": "c",
    }
    with pytest.raises(ValueError, match=problem):
        UsageChart(**{**fields, **change})


def test_day_labels_are_thinned_and_end_on_the_newest_day() -> None:
    for count in range(1, MAX_DAYS + 1):
        days = [LAST_DAY - datetime.timedelta(days=count - 1 - i) for i in range(count)]
        ticks = labels.day_ticks(days, "en")
        indexes = [index for index, _ in ticks]
        assert len(ticks) <= labels.MAX_DAY_LABELS and indexes[-1] == count - 1
        assert len({b - a for a, b in itertools.pairwise(indexes)}) <= 1  # evenly spaced
    assert labels.day_ticks([LAST_DAY], "ko") == [(0, "1월 10일")]
    assert labels.day_ticks([LAST_DAY], "zh_CN") == [(0, "1月10日")]
    assert labels.day_ticks([LAST_DAY], "ru") == [(0, "10 янв.")]


def test_axis_scales_are_round_and_hold_the_peak() -> None:
    for peak in itertools.chain(range(0, 120), (999, 1000, 12_345, 10**6)):
        step, intervals = labels.job_scale(peak)
        assert step >= 1 and 1 <= intervals <= labels.MAX_INTERVALS and step * intervals >= peak
        assert str(step).lstrip("0")[0] in "125"
    for currency, locale in (("USD", "en"), ("JPY", "ja"), ("EUR", "fr")):
        for spent in (0.0, 0.004, 0.05, 0.5, 3.2, 49.99, 12_000.0):
            for intervals in (1, 2, 5, 7):
                amount = labels.cost_step(spent, intervals, currency)
                assert amount * intervals >= spent and amount >= labels.minor_unit(currency)
                ticks = [labels.money(amount * i, currency, locale) for i in range(intervals + 1)]
                assert len(set(ticks)) == len(ticks)


async def test_wire_refuses_malformed_replies() -> None:
    def reader(data: bytes) -> asyncio.StreamReader:
        stream = asyncio.StreamReader()
        stream.feed_data(data)
        stream.feed_eof()
        return stream

    with pytest.raises(wire.Malformed, match="over the cap"):
        await wire.receive_reply(reader(struct.pack("!I", wire.MAX_HEADER + 1)))
    with pytest.raises(wire.Malformed, match="not JSON"):
        await wire.receive_reply(reader(struct.pack("!I", 3) + b"{{{"))
    with pytest.raises(wire.Malformed, match="not a JSON object"):
        await wire.receive_reply(reader(struct.pack("!I", 2) + b"[]"))
    with pytest.raises(asyncio.IncompleteReadError):
        await wire.receive_reply(reader(struct.pack("!I", 2) + b"{}" + struct.pack("!I", 10) + b"short"))
    with pytest.raises(EOFError):
        wire.read_frame(io.BytesIO(b""), 10)
    with pytest.raises(wire.Malformed, match="inside a frame"):
        wire.read_frame(io.BytesIO(struct.pack("!I", 5) + b"abc"), 10)


# --- the worker process -------------------------------------------------------------------------------

MakeRenderer = Callable[..., ChartRenderer]


@pytest.fixture
async def make_renderer() -> AsyncIterator[MakeRenderer]:
    made: list[ChartRenderer] = []

    def make(**kwargs: Any) -> ChartRenderer:
        made.append(ChartRenderer(**kwargs))
        return made[-1]

    try:
        yield make
    finally:
        for renderer in made:
            await renderer.close()


def gone(pid: int) -> bool:
    """The process has ended and been reaped (a zombie would still answer signal 0)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def chart_workers() -> set[int]:
    """Live child processes of this one that run a chart worker."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and (b"charts.worker" in command or b"chart_targets" in command):
            found.add(int(entry.name))
    return found


async def test_charts_are_drawn_in_one_reused_worker_process(make_renderer: MakeRenderer) -> None:
    renderer = make_renderer()
    assert renderer.pid is None  # started on first use
    pids: set[int | None] = set()
    for days, locale in ((1, "zh_CN"), (7, "zh_TW"), (90, "ja"), (7, "ko"), (30, "ru"), (7, "en")):
        check_png(await renderer.render(make_chart(days, locale)))
        pids.add(renderer.pid)
    check_png(await renderer.render(make_chart(7, "en", zero=True)))
    assert len(pids) == 1 and None not in pids and os.getpid() not in pids
    assert chart_workers() == pids


async def test_a_killed_worker_is_replaced(make_renderer: MakeRenderer) -> None:
    renderer = make_renderer()
    check_png(await renderer.render(make_chart(7, "ko")))
    first = renderer.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)  # while idle: the next chart may find it dead or dying
    check_png(await renderer.render(make_chart(7, "ko")))
    assert renderer.pid not in (None, first) and gone(first)
    # and once it is known dead
    second = renderer.pid
    assert second is not None
    os.kill(second, signal.SIGKILL)
    await eventually(lambda: renderer.pid is None)
    check_png(await renderer.render(make_chart(1, "ru")))
    assert gone(second)


async def test_a_chart_that_takes_too_long_kills_the_worker(make_renderer: MakeRenderer) -> None:
    renderer = make_renderer(worker_module=TARGETS)
    check_png(await renderer.render(make_chart()))
    pid = renderer.pid
    assert pid is not None
    renderer.timeout_s = 0.2
    with pytest.raises(ChartError, match=r"no chart within 0\.2 s") as raised:
        await renderer.render(make_chart(title="hang"))
    assert raised.value.reason == "timeout"
    assert gone(pid) and renderer.pid is None and not chart_workers()
    renderer.timeout_s = 20
    check_png(await renderer.render(make_chart()))  # a new worker


async def test_a_worker_that_dies_on_a_chart_raises(
    make_renderer: MakeRenderer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "kontext.adapters.charts")
    renderer = make_renderer(worker_module=TARGETS)
    with pytest.raises(ChartError, match=r"ended without an answer \(exit status 3\)") as raised:
        await renderer.render(make_chart(title="exit"))  # a fresh worker: not tried again
    assert raised.value.reason == "died"
    assert "new worker" not in caplog.text
    check_png(await renderer.render(make_chart()))
    with pytest.raises(ChartError, match="exit status 3"):
        await renderer.render(make_chart(title="exit"))  # a reused worker: tried once more, then raised
    assert caplog.text.count("drawing the chart in a new worker") == 1
    assert not chart_workers()


async def test_worker_errors_and_bad_answers_raise(make_renderer: MakeRenderer) -> None:
    renderer = make_renderer(worker_module=TARGETS)
    with pytest.raises(ChartError, match="told to fail") as raised:
        await renderer.render(make_chart(title="fail"))
    assert raised.value.reason == "failed"
    pid = renderer.pid
    with pytest.raises(ChartError, match="not a PNG"):
        await renderer.render(make_chart(title="not-png"))
    assert renderer.pid == pid is not None  # the worker goes on
    with pytest.raises(TypeError):
        await renderer.render("not a chart")  # type: ignore[arg-type]


async def test_the_worker_inherits_no_bot_settings(
    make_renderer: MakeRenderer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "token-value")
    monkeypatch.setenv("APIMART_API_KEY", "key-value")
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:password@db/kontext")
    caplog.set_level(logging.WARNING, "kontext.adapters.charts")
    await make_renderer(worker_module=TARGETS).render(make_chart(title="env"))
    names = set(caplog.records[0].getMessage().split())
    assert {"PATH", "MPLBACKEND", "PYTHONPATH"} <= names
    assert not names & {"DISCORD_TOKEN", "APIMART_API_KEY", "DATABASE_URL"}


async def test_text_no_font_can_draw_is_logged_once(
    make_renderer: MakeRenderer, caplog: pytest.LogCaptureFixture
) -> None:
    """Thai has no font here: the chart comes in English, with one warning for the operator."""
    caplog.set_level(logging.DEBUG, "kontext.adapters.charts")
    renderer = make_renderer()
    thai = make_chart(7, "th", title="การใช้งาน")
    for _ in range(2):
        check_png(await renderer.render(thai))
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "drawn in English" in warned[0].getMessage()


async def test_a_cancelled_chart_kills_its_worker(make_renderer: MakeRenderer) -> None:
    renderer = make_renderer(worker_module=TARGETS)
    waiting = asyncio.create_task(renderer.render(make_chart(title="hang")))
    await eventually(lambda: renderer.pid is not None)
    pid = renderer.pid
    assert pid is not None
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await eventually(lambda: gone(pid))
    check_png(await renderer.render(make_chart()))  # its late answer cannot reach this chart


async def test_an_idle_worker_is_stopped_and_started_again(make_renderer: MakeRenderer) -> None:
    renderer = make_renderer(idle_s=0.05)
    check_png(await renderer.render(make_chart()))
    pid = renderer.pid
    assert pid is not None
    await eventually(lambda: renderer.pid is None and gone(pid))
    check_png(await renderer.render(make_chart()))


async def test_close_ends_the_worker_and_refuses_new_charts(make_renderer: MakeRenderer) -> None:
    renderer = make_renderer()
    check_png(await renderer.render(make_chart()))
    pid = renderer.pid
    assert pid is not None
    await renderer.close()
    assert gone(pid) and renderer.pid is None and not chart_workers()
    with pytest.raises(ChartError, match="closed") as raised:
        await renderer.render(make_chart())
    assert raised.value.reason == "closed"
    await renderer.close()  # twice is fine


async def test_close_during_a_chart_fails_that_chart(make_renderer: MakeRenderer) -> None:
    renderer = make_renderer(worker_module=TARGETS)
    waiting = asyncio.create_task(renderer.render(make_chart(title="hang")))
    await eventually(lambda: renderer.pid is not None)
    pid = renderer.pid
    assert pid is not None
    await renderer.close()
    with pytest.raises(ChartError, match="closed"):
        await waiting
    assert gone(pid) and not chart_workers()


def test_the_bot_process_never_imports_matplotlib() -> None:
    code = "import sys, kontext.adapters.charts; print(sorted(m for m in sys.modules if 'matplotlib' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
