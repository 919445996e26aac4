"""The README settings table and ``.env.example``, generated from the settings table.

``python -m kontext.config --write`` rewrites both (only the part of README.md between the
``settings-table`` markers); ``--check`` exits 1 if either is out of date.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from kontext.config.schema import Group, Spec, specs
from kontext.config.settings import Settings

README_START = "<!-- settings-table:start -->"
README_END = "<!-- settings-table:end -->"
REGENERATE = "python -m kontext.config --write"
_SOURCE = "kontext/config/settings.py"


def _grouped(rows: tuple[Spec, ...]) -> list[tuple[Group, list[Spec]]]:
    """Rows by group, groups in order of first appearance, rows in table order."""
    groups: dict[Group, list[Spec]] = {}
    for row in rows:
        groups.setdefault(row.group, []).append(row)
    return list(groups.items())


def _default(spec: Spec) -> str | None:
    """The default as written in ``.env``; None when there is none (required or optional)."""
    if spec.required is not None or spec.default is None or spec.secret:
        return None
    return spec.kind.render(spec.default)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(cls: type[Any] = Settings) -> str:
    """The README's settings tables (one per group)."""
    lines = [f"<!-- generated from {_SOURCE} by `{REGENERATE}`: edit the table there, not here -->"]
    for group, rows in _grouped(specs(cls)):
        caption = f"**{group.title}**" + (f" ({group.note})" if group.note else "")
        lines += ["", caption, "", "| Variable | Default | Accepts | Meaning |", "| --- | --- | --- | --- |"]
        for spec in rows:
            default = _default(spec)
            shown = "required" if spec.required is not None else "—" if default is None else f"`{default}`"
            lines.append(f"| `{spec.env}` | {shown} | {_cell(spec.kind.describe())} | {_cell(spec.help)} |")
    return "\n".join(lines) + "\n"


def _comment(text: str) -> list[str]:
    return ["# " + line for line in textwrap.wrap(text.replace("`", ""), width=98)]


def env_example(cls: type[Any] = Settings) -> str:
    """``.env.example``: every variable with its help; required ones first, uncommented and empty."""
    rows = specs(cls)
    required = [spec.env for spec in rows if spec.required is not None]
    names = " and ".join(filter(None, [", ".join(required[:-1]), required[-1] if required else ""]))
    intro = "Kontext configuration." + (f" Copy to .env and fill in {names}." if required else "")
    lines = _comment(
        f"{intro} Every other setting has a working default; uncomment a line to change it. Values are "
        "validated at start: a bad value stops the bot with one line naming the variable (exit code 2)."
    )
    lines += _comment(f"Generated from {_SOURCE} by '{REGENERATE}': edit the table there, not here.")
    for group, group_rows in _grouped(rows):
        title = f"# --- {group.title}" + (f": {group.note} " if group.note else " ")
        lines += ["", title.ljust(100, "-")]
        for spec in group_rows:
            lines += _comment(f"{spec.help} Accepts: {spec.kind.describe()}.")
            if spec.required is not None:
                lines.append(f"{spec.env}=")
            else:
                lines.append(f"#{spec.env}={_default(spec) or spec.example or ''}")
    return "\n".join(lines) + "\n"


def with_readme_table(readme: str, table: str | None = None) -> str:
    """``readme`` with the text between the settings-table markers replaced by ``table``."""
    start, end = readme.find(README_START), readme.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"README.md has no {README_START} ... {README_END} block")
    block = f"{README_START}\n{markdown_table() if table is None else table}\n{README_END}"
    return readme[:start] + block + readme[end + len(README_END) :]


def outdated(root: Path) -> list[str]:
    """Files under ``root`` (README.md, .env.example) that disagree with the table."""
    stale = []
    readme = root / "README.md"
    text = readme.read_text(encoding="utf-8")
    if with_readme_table(text) != text:
        stale.append("README.md")
    example = root / ".env.example"
    if not example.exists() or example.read_text(encoding="utf-8") != env_example():
        stale.append(".env.example")
    return stale


def write(root: Path) -> list[str]:
    """Bring README.md's settings block and .env.example under ``root`` up to date; the files changed."""
    changed = outdated(root)
    if "README.md" in changed:
        readme = root / "README.md"
        readme.write_text(with_readme_table(readme.read_text(encoding="utf-8")), encoding="utf-8")
    if ".env.example" in changed:
        (root / ".env.example").write_text(env_example(), encoding="utf-8")
    return changed
