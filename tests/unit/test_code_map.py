"""The README's code map is made from the package's module docstrings, so it cannot drift:
this test fails when a module is added, moved or described anew without the map following.
``python -m tests.unit.test_code_map`` writes the map into README.md."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "voting_service"
README = ROOT / "README.md"
BEGIN = ("<!-- code map: made from the module docstrings by tests/unit/test_code_map.py; "
         "python -m tests.unit.test_code_map writes it -->")
END = "<!-- end of the code map -->"


def summary(path: Path) -> str:
    """A module's docstring, its first sentence (the first paragraph's, lines joined)."""
    doc = ast.get_docstring(ast.parse(path.read_text("utf-8")))
    assert doc, f"{path.relative_to(ROOT)} has no docstring"
    paragraph = " ".join(doc.split("\n\n")[0].split())
    first = re.split(r"(?<=\.)\s+(?=[A-Z`(])", paragraph, maxsplit=1)[0]
    return first.replace("|", "\\|")


def render() -> str:
    rows = [BEGIN, "", "| module | what it holds |", "|---|---|"]
    folders = sorted({p.parent for p in PACKAGE.rglob("*.py")},
                     key=lambda d: d.relative_to(PACKAGE).parts)
    for folder in folders:
        rel = folder.relative_to(ROOT).as_posix()
        init = folder / "__init__.py"
        if init.exists():
            rows.append(f"| **`{rel}/`** | **{summary(init)}** |")
        for module in sorted(folder.glob("*.py")):
            if module.name == "__init__.py":
                continue
            rows.append(f"| `{module.relative_to(PACKAGE).as_posix()}` | "
                        f"{summary(module)} |")
    rows += ["", END]
    return "\n".join(rows)


def current() -> str:
    text = README.read_text("utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[start:end]


def test_the_readme_code_map_is_the_module_docstrings() -> None:
    assert current() == render(), (
        "README.md's code map is out of date: run python -m tests.unit.test_code_map")


def test_every_module_is_on_the_map() -> None:
    mapped = set(re.findall(r"^\| `([^`]+\.py)` \|", current(), re.MULTILINE))
    modules = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
               if p.name != "__init__.py"}
    assert mapped == modules


if __name__ == "__main__":
    text = README.read_text("utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    README.write_text(text[:start] + render() + text[end:], "utf-8")
    sys.exit(0)
