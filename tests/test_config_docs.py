"""README.md's settings table and .env.example are generated from the settings table and must agree
with it; the table itself is consistent (unique names, defaults that its own kinds accept)."""

from __future__ import annotations

import dataclasses
import difflib
import io
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from kontext.config import Settings, load_settings
from kontext.config.docs import README_END, README_START, REGENERATE, env_example, markdown_table
from kontext.config.schema import specs

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "MTA1NjY3ODkwMTIzNDU2Nzg5.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"
KEY = "sk-test-1234567890abcdef"
SPECS = specs(Settings)


def _diff(expected: str, actual: str, name: str) -> str:
    lines = difflib.unified_diff(
        actual.splitlines(), expected.splitlines(), f"{name} (now)", f"{name} (from the table)", lineterm=""
    )
    return "\n".join(list(lines)[:60])


def test_readme_settings_table_matches_the_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert README_START in readme and README_END in readme, (
        f"README.md lost its {README_START} / {README_END} markers (put them back in '## Settings')"
    )
    actual = readme.split(README_START, 1)[1].split(README_END, 1)[0]
    expected = "\n" + markdown_table() + "\n"
    assert actual == expected, (
        f"README.md's settings table disagrees with kontext/config/settings.py; run: {REGENERATE}\n"
        + _diff(expected, actual, "README.md")
    )


def test_env_example_matches_the_table() -> None:
    path = ROOT / ".env.example"
    actual = path.read_text(encoding="utf-8") if path.exists() else ""
    expected = env_example()
    assert actual == expected, (
        f".env.example disagrees with kontext/config/settings.py; run: {REGENERATE}\n"
        + _diff(expected, actual, ".env.example")
    )


def test_env_example_is_two_values_away_from_a_working_env() -> None:
    text = env_example()
    assignments = [line for line in text.splitlines() if re.match(r"#?[A-Z][A-Z0-9_]*=", line)]
    assert assignments[:2] == ["DISCORD_TOKEN=", "APIMART_API_KEY="]
    assert all(line.startswith("#") for line in assignments[2:]), "only the required values are uncommented"
    assert {line.lstrip("#").split("=", 1)[0] for line in assignments} == {s.env for s in SPECS}

    filled = text.replace("DISCORD_TOKEN=\n", f"DISCORD_TOKEN={TOKEN}\n").replace(
        "APIMART_API_KEY=\n", f"APIMART_API_KEY={KEY}\n"
    )
    env = {k: v for k, v in dotenv_values(stream=io.StringIO(filled)).items() if v is not None}
    defaults = load_settings({"DISCORD_TOKEN": TOKEN, "APIMART_API_KEY": KEY})
    assert load_settings(env) == defaults

    # every commented line is a valid value: uncommenting all of them changes only the examples
    uncommented = re.sub(r"^#([A-Z][A-Z0-9_]*=)", r"\1", filled, flags=re.MULTILINE)
    env = {k: v for k, v in dotenv_values(stream=io.StringIO(uncommented)).items() if v is not None}
    # each row parses to its own field's type
    examples: dict[str, Any] = {
        s.attr: s.kind.parse(s.example) for s in SPECS if s.example and s.default is None
    }
    assert load_settings(env) == dataclasses.replace(defaults, **examples)


def test_the_table_is_consistent() -> None:
    names = [s.env for s in SPECS]
    assert len(names) == len(set(names)), "a variable is listed twice"
    assert len(SPECS) == len(dataclasses.fields(Settings)), "every Settings field is a setting() row"
    for spec in SPECS:
        assert spec.help.strip(), spec.env
        if spec.required is None and spec.default is not None:
            assert spec.kind.parse(spec.kind.render(spec.default)) == spec.default, spec.env
        field = next(f for f in dataclasses.fields(Settings) if f.name == spec.attr)
        assert field.repr is not spec.secret, spec.env
    required = [s for s in SPECS if s.required is not None]
    assert SPECS[: len(required)] == tuple(required), "required settings come first in the table"
    assert {s.env for s in SPECS if s.secret} >= {"DISCORD_TOKEN", "APIMART_API_KEY"}


def test_generator_command(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kontext.config", *args, "--root", str(tmp_path)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )

    assert run("--markdown").stdout == markdown_table()
    assert run("--env-example").stdout == env_example()
    readme = f"# x\n\n## Settings\n\n{README_START}\nold\n{README_END}\n\n## Next\n"
    (tmp_path / "README.md").write_text(readme)
    (tmp_path / ".env.example").write_text("OLD=1\n")
    stale = run("--check")
    assert stale.returncode == 1 and REGENERATE in stale.stderr
    assert run("--write").returncode == 0
    assert run("--check").returncode == 0
    written = (tmp_path / "README.md").read_text()
    assert written.startswith("# x\n\n## Settings\n\n") and written.endswith(f"{README_END}\n\n## Next\n")
    assert (tmp_path / ".env.example").read_text() == env_example()
