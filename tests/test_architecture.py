"""The architecture holds: import contracts, docs/ARCHITECTURE.md matching the tree, no outside citations."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kontext"


def test_import_contracts_are_kept() -> None:
    """Layers, adapter independence, discord only at the edge, a port-only runner, no cycles.

    Run as its own process: import-linter reconfigures logging, which would disturb other tests.
    """
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    done = subprocess.run([command, "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def _tree_block() -> str:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    match = re.search(r"## The tree\s+```\n(.*?)```", text, re.S)
    assert match, "docs/ARCHITECTURE.md has a '## The tree' code block"
    return match.group(1)


def _documented() -> set[str]:
    """Paths under kontext/ named in the tree block, rebuilt from its indentation."""
    found: set[str] = set()
    stack: list[tuple[int, str]] = []
    for line in _tree_block().splitlines():
        match = re.match(r"^( *)(\S+)", line)
        if not match or len(match.group(1)) > 12 or not re.fullmatch(r"[\w.]+/?", match.group(2)):
            continue
        indent, name = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = "/".join([part for _, part in stack] + [name.rstrip("/")])
        if path.startswith("kontext/") or path == "kontext":
            found.add(path)
        if name.endswith("/"):
            stack.append((indent, name.rstrip("/")))
    return found


def _actual() -> set[str]:
    """Every subpackage of kontext/, and every module of kontext/ itself and of domain/ and services/."""
    paths = {"kontext"}
    for path in PACKAGE.rglob("*"):
        if "__pycache__" in path.parts or path.name == "__init__.py":
            continue
        relative = path.relative_to(ROOT).as_posix()
        if path.is_dir() and (path / "__init__.py").exists():
            paths.add(relative)
        elif path.suffix == ".py" and path.parent.name in ("kontext", "domain", "services"):
            paths.add(relative)
    return paths


def test_architecture_map_matches_the_tree() -> None:
    documented, actual = _documented(), _actual()
    assert not actual - documented, f"missing from docs/ARCHITECTURE.md: {sorted(actual - documented)}"
    assert not documented - actual, f"docs/ARCHITECTURE.md names what is gone: {sorted(documented - actual)}"


def test_no_file_cites_documents_users_do_not_have() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "*.py", "*.md", "*.toml", "*.yml", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    offenders = [
        name
        for name in tracked
        if re.search(
            r"DESIGN\.md|\.\./shared|/work/shared|apimart-contract\.md", (ROOT / name).read_text("utf-8")
        )
        and name != "tests/test_architecture.py"
    ]
    assert offenders == []
