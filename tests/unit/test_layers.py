"""Imports run one way: the edges (``web``) → the domain (``fraud``, ``accounts``,
``ledger``, ``vote``) → the store (``redis``) → the shapes and settings everything shares.
A module that imports against that order fails here, so a cycle cannot creep in."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "voting_service"
ORDER = {"web": 0, "fraud": 1, "accounts": 1, "ledger": 2, "vote": 3, "redis": 4,
         "models": 5, "settings": 5, "digits": 5, "errors": 6}
"""Rooms by layer: a room imports only rooms of a larger number (the top-level modules not
listed — app, cli, services, worker, … — put the rooms together and are not checked)."""


def _room(dotted: list[str]) -> str:
    return dotted[1] if len(dotted) > 1 else ""


def imports() -> list[tuple[str, str, str]]:
    """(importing file, its room, imported room) for every import inside the package."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        parts = ["voting_service", *path.relative_to(PACKAGE).with_suffix("").parts]
        package = parts[:-1]  # a module's package; for an __init__, the package itself
        if parts[-1] == "__init__":
            parts = parts[:-1]
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - (node.level - 1)]
                    target = [*base, *(node.module.split(".") if node.module else [])]
                else:
                    target = (node.module or "").split(".")
                if target[0] != "voting_service":
                    continue
                targets = [[*target, a.name] if len(target) == 1 else target
                           for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".") for a in node.names
                           if a.name.startswith("voting_service.")]
            else:
                continue
            for t in targets:
                found.append((path.relative_to(PACKAGE).as_posix(), _room(parts), _room(t)))
    return found


def test_imports_run_one_way() -> None:
    against = [(f, a, b) for f, a, b in imports()
               if a in ORDER and b in ORDER and a != b and ORDER[a] >= ORDER[b]]
    assert against == []


def test_the_rooms_are_all_known() -> None:
    rooms = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert rooms - {"templates", "static", "lua"} <= set(ORDER), "give the new room a layer"
