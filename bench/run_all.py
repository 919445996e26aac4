"""Run every benchmark and print its figures under a heading.

    python bench/run_all.py [--smoke] [names...]

Each benchmark runs as a subprocess with this interpreter (so peak-RSS figures are its own) from the
repository root; ``--smoke`` is passed through (the quick run CI does, well under a minute in all).
Prints, never asserts on figures: the exit status is non-zero only if a benchmark crashed or hung.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHES = {
    "poll": "bench/poll_bench.py",
    "image": "bench/image_bench.py",
    "job": "bench/job_bench.py",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="quick run (CI)")
    parser.add_argument("names", nargs="*", help=f"benchmarks to run: {', '.join(BENCHES)} (default: all)")
    parser.add_argument("--timeout", type=float, help="seconds per benchmark (default 120 smoke, 1200 full)")
    args = parser.parse_args()
    unknown = [name for name in args.names if name not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    timeout = args.timeout or (120.0 if args.smoke else 1200.0)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    failed: list[str] = []
    started_all = time.perf_counter()
    for name in args.names or list(BENCHES):
        script = BENCHES[name]
        command = [sys.executable, script, *(["--smoke"] if args.smoke else [])]
        print(f"\n=== {name}: {' '.join(['python', *command[1:]])}", flush=True)
        started = time.perf_counter()
        try:
            code = subprocess.run(command, cwd=ROOT, env=env, timeout=timeout, check=False).returncode
        except subprocess.TimeoutExpired:
            code = None
        elapsed = time.perf_counter() - started
        if code == 0:
            print(f"=== {name}: ok in {elapsed:.1f} s", flush=True)
        else:
            reason = f"exit status {code}" if code is not None else f"timed out after {timeout:g} s"
            print(f"=== {name}: FAILED ({reason})", flush=True)
            failed.append(name)
    total = time.perf_counter() - started_all
    summary = f"FAILED: {', '.join(failed)}" if failed else "all ok"
    print(f"\n=== {len(args.names or BENCHES)} benchmarks in {total:.1f} s: {summary}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
