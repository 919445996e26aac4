"""Process-wide counters and gauges, rendered in Prometheus' text format for ``/metrics``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable


class Metrics:
    """Counters (monotonic) and gauges (read at render time through callables)."""

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.gauges: dict[str, Callable[[], float]] = {}

    def inc(self, name: str, amount: int = 1) -> None:
        self.counters[name] += amount

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        self.gauges[name] = read

    def render(self) -> str:
        lines: list[str] = []
        for name in sorted(self.counters):
            lines += [f"# TYPE kontext_{name} counter", f"kontext_{name} {self.counters[name]}"]
        for name in sorted(self.gauges):
            try:
                value = float(self.gauges[name]())
            except Exception:  # noqa: BLE001 - one broken gauge must not take /metrics down
                continue
            lines += [f"# TYPE kontext_{name} gauge", f"kontext_{name} {value:g}"]
        return "\n".join(lines) + "\n"
