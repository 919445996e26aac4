"""Usage charts: jobs per day stacked by model and the cost per day, as a PNG for Discord.

:class:`ChartRenderer` draws a :class:`UsageChart` with matplotlib in a worker process
(:mod:`.renderer`; the drawing itself is :mod:`.draw`, with :mod:`.style`, :mod:`.labels` and
:mod:`.fonts`). Importing this package does not import matplotlib: only the worker does.
"""

from kontext.adapters.charts.model import MAX_DAYS, UsageChart
from kontext.adapters.charts.renderer import ChartError, ChartRenderer

__all__ = ["MAX_DAYS", "ChartError", "ChartRenderer", "UsageChart"]
