"""The README and docs/ stay true: the README is short and keeps the two set-up commands, every
relative link resolves, and docs/deploy.md's settings table is `service.core.settings.Settings`:
every field with its default, and no row that is not a field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.core import Settings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
DEPLOY = ROOT / "docs" / "deploy.md"
MAX_README_LINES = 200
LINK = re.compile(r"\]\(([^)\s]+)\)")
ENV_NAME = re.compile(r"`DYNALAY_([A-Z0-9_]+)`")
CODE = re.compile(r"`([^`]*)`")


def test_the_readme_is_short_and_keeps_the_two_setup_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_README_LINES
    assert re.search(r"^make serve\s", text, re.M) and re.search(r"^make test\s", text, re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^serve:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    targets = [t.split("#")[0] for t in LINK.findall(page.read_text())]
    local = [t for t in targets if t and not re.match(r"[a-z]+:", t)]
    assert [t for t in local if not (page.parent / t).exists()] == []


def settings_rows(text: str) -> dict[str, str]:
    """DYNALAY_* name (lower case, prefix off) → its documented default, from the first table
    under '## Configuration'. A row may name several variables ("`A` / `B`"), their defaults
    then "`a` / `b`"; after a ';' the cell says what the image or compose sets instead."""
    section = text.split("## Configuration", 1)[1]
    table = section.split("\n\n| Variable |", 1)[1].split("\n\n", 1)[0]
    rows: dict[str, str] = {}
    for line in table.splitlines()[2:]:
        names_cell, default_cell = (c.strip() for c in line.strip("|").split("|")[:2])
        names = [n.lower() for n in ENV_NAME.findall(names_cell)]
        defaults = default_cell.split(";")[0].split(" / ")
        assert len(names) == len(defaults) or len(defaults) == 1, line
        for i, name in enumerate(names):
            assert name not in rows, f"{name} documented twice"
            rows[name] = defaults[min(i, len(defaults) - 1)].strip()
    return rows


def documented_value(cell: str) -> str | None:
    """'unset…' → None; otherwise the first `code` of the cell."""
    if cell.startswith("unset"):
        return None
    found = CODE.search(cell)
    assert found, f"no default in {cell!r}"
    return found.group(1)


def same(documented: str | None, default: object) -> bool:
    if default is None or documented is None:
        return default is documented
    if isinstance(default, bool):
        return documented == str(default).lower()
    if isinstance(default, int | float):
        return float(documented) == float(default)
    if isinstance(default, Path):
        return Path(documented).expanduser() == default
    return documented == str(default)


def test_the_settings_table_is_the_settings(monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)  # the documented cache default
    rows = settings_rows(DEPLOY.read_text())
    fields = Settings.model_fields
    assert sorted(rows) == sorted(fields)  # every field, and nothing else
    wrong = {
        name: (rows[name], fields[name].get_default(call_default_factory=True))
        for name in fields
        if not same(
            documented_value(rows[name]), fields[name].get_default(call_default_factory=True)
        )
    }
    assert wrong == {}
