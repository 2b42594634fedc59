"""Every pointer to a docs page or to a section of the README or a docs page resolves: in the package's code and help
texts, the notebooks, the benchmarks, the Makefile and the pages themselves."""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from vae_utils.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGE = re.compile(r"\bdocs/([\w-]+)\.md\b")
# README "Data", README, "Data", docs/data.md, "Caching" (straight or curly quotes)
SECTION = re.compile(r"\b(README|docs/[\w-]+\.md)(?:\]\([^)]*\))?,?\s+[\"“]([^\"”\n]{2,80})[\"”]")
# README, Evaluation: a section named without quotes cannot be checked, so it is not allowed
UNQUOTED = re.compile(r"\bREADME,\s+([A-Z][a-z]+)\b")


def sections(page: Path) -> list[str]:
    """The headings and bold paragraph leads of a page, lower case, without markup."""
    text = page.read_text()
    found = re.findall(r"^#+\s+(.+)$", text, re.M) + re.findall(r"^\*\*([^*]+)\*\*", text, re.M)
    return [re.sub(r"[`*]", "", s).strip().lower() for s in found]


def _help_texts() -> str:
    """Every `--help` of the command line, as a user sees it."""
    parser = build_parser()
    texts = [parser.format_help()]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            texts += [sub.format_help() for sub in action.choices.values()]
    return "\n".join(texts)


def _notebook_text(path: Path) -> str:
    return "\n".join("".join(cell["source"]) for cell in json.loads(path.read_text())["cells"])


def sources() -> dict[str, str]:
    """Where pointers live: name -> text."""
    files = [*ROOT.glob("vae_utils/**/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("notebooks/*.py"),
             ROOT / "Makefile", ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob(".ci/*")]
    texts = {str(p.relative_to(ROOT)): p.read_text() for p in files if p.is_file()}
    texts.update({str(p.relative_to(ROOT)): _notebook_text(p) for p in ROOT.glob("notebooks/*.ipynb")})
    texts["python -m vae_utils ... --help"] = _help_texts()
    return texts


SOURCES = sources()


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_docs_page_named_exists(name):
    missing = {m for m in PAGE.findall(SOURCES[name]) if not (ROOT / "docs" / f"{m}.md").exists()}
    assert not missing, f"{name} points at docs pages that do not exist: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_section_named_exists(name):
    text = re.sub(r"\s+", " ", SOURCES[name])  # a pointer may be split over two lines
    broken = []
    for page, section in SECTION.findall(text):
        path = ROOT / ("README.md" if page == "README" else page)
        wanted = re.sub(r"[`*]", "", section).strip().lower()
        if not path.exists() or not any(s.startswith(wanted) for s in sections(path)):
            broken.append(f"{page}, {section!r}")
    broken += [f"README, {s} (name a section in quotes)" for s in UNQUOTED.findall(text)]
    assert not broken, f"{name} points at sections that do not exist: {broken}"


def test_the_checker_finds_a_stale_pointer(tmp_path):
    text = 'see README "Data" and docs/nowhere.md, and docs/speed.md, "Round three" and README, Evaluation'
    assert SECTION.findall(text) == [("README", "Data"), ("docs/speed.md", "Round three")]
    assert PAGE.findall(text) == ["nowhere", "speed"]
    assert UNQUOTED.findall(text) == ["Evaluation"]
    assert "round three: where the step's time goes (issue #22)" in sections(ROOT / "docs" / "speed.md")
