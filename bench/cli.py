"""The command line shared by the benchmarks that repeat one measurement: ``--repeat``, ``--smoke``
(the quick run CI does) and ``--json FILE`` (the figures, with stable keys)."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

Run = Callable[[argparse.Namespace], Coroutine[Any, Any, None]]


def repeat_main(
    doc: str | None, run: Run, figures: dict[str, Any], *, repeat: int, smoke_repeat: int, smoke_help: str
) -> None:
    """Parse the command line, run the benchmark, print and optionally write ``figures``."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    parser.add_argument("--repeat", type=int, default=repeat, help="measurements of each figure")
    parser.add_argument("--smoke", action="store_true", help=smoke_help)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if args.smoke:
        args.repeat = min(args.repeat, smoke_repeat)
    asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")
        print(f"figures written to {args.json}")
