"""``python -m kontext.config``: print or regenerate the docs made from the settings table.

--markdown      print the README settings table
--env-example   print .env.example
--write         rewrite README.md's settings block and .env.example (in --root, default: .)
--check         exit 1, naming the files, if README.md or .env.example disagree with the table
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kontext.config.docs import REGENERATE, env_example, markdown_table, outdated, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kontext.config", description="Docs generated from the Kontext settings table."
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--markdown", action="store_true", help="print the README settings table")
    action.add_argument("--env-example", action="store_true", help="print .env.example")
    action.add_argument("--write", action="store_true", help="rewrite README.md's block and .env.example")
    action.add_argument("--check", action="store_true", help="exit 1 if README.md or .env.example is stale")
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root (default: .)")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown_table())
    elif args.env_example:
        sys.stdout.write(env_example())
    elif args.write:
        for name in write(args.root):
            print(f"updated {args.root / name}")
    else:
        stale = outdated(args.root)
        if stale:
            print(f"out of date: {', '.join(stale)}; run: {REGENERATE}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
