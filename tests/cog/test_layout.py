"""The cog's floors, read from its own imports: what may use what, and that nothing loops.

A layer rule broken is how a cog becomes a grab-bag again (commands reaching into the
store, the pipeline importing the cog), so each rule is checked on every run, from the
source, including imports made under ``TYPE_CHECKING`` or inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "chunkrecorder"

#: Each package and what it may import (besides itself). Anything not named is refused.
ALLOWED: dict[str, set[str]] = {
    "utils": set(),
    "objects": {"utils"},
    "audio": {"objects", "utils"},
    "store": {"objects", "utils"},
    "voice": {"objects", "audio", "utils"},
    "pipeline": {"objects", "audio", "store", "utils"},
    "web": {"objects", "audio", "pipeline", "utils", "i18n"},
    "i18n": set(),
    "core": {"objects", "audio", "pipeline", "voice", "utils", "i18n", "web"},
    "commands": {"core", "objects", "utils", "i18n"},
    "events": {"core", "objects", "utils", "i18n"},
    "tasks": {"core", "objects", "utils", "i18n"},
    "cog": {"commands", "events", "tasks", "core", "objects", "pipeline", "store", "voice", "utils", "i18n", "web"},
    "__init__": {"core", "audio", "cog", "i18n"},
}


def _package(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> set[str]:
    """The cog's own top-level packages a module imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    rel = path.relative_to(ROOT)
    here = list(rel.parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and node.module.split(".")[0] == "chunkrecorder":
                    parts = node.module.split(".")[1:]
                else:
                    continue
            else:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                parts = [*base, *(node.module.split(".") if node.module else [])]
            if parts:
                found.add(parts[0])
            else:  # ``from . import x`` at the top: x is a package of ours
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "chunkrecorder":
                    raise AssertionError(f"{path}: absolute import of the cog ({alias.name}); Red loads it by path")
    return found


MODULES = sorted(p for p in ROOT.rglob("*.py") if "locales" not in p.parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_each_module_imports_only_the_floors_below_it(path: Path) -> None:
    package = _package(path)
    assert package in ALLOWED, f"{package} is a new top-level part of the cog: give it a place in ALLOWED"
    wrong = {p for p in _imports(path) if p != package and p not in ALLOWED[package]}
    assert not wrong, f"{path.relative_to(ROOT)} ({package}) imports {sorted(wrong)}"


def test_the_commands_and_the_core_never_touch_the_store() -> None:
    for folder in ("commands", "core", "events", "tasks"):
        for path in (ROOT / folder).rglob("*.py"):
            assert "store" not in _imports(path), path


def test_no_package_imports_another_that_imports_it_back() -> None:
    graph: dict[str, set[str]] = {}
    for path in MODULES:
        graph.setdefault(_package(path), set()).update(p for p in _imports(path) if p != _package(path))

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    loops = [p for p in graph if reaches(p, p, {p})]
    assert not loops, f"import cycles through {loops}"


def test_the_cog_file_only_composes() -> None:
    lines = (ROOT / "cog.py").read_text().splitlines()
    assert len(lines) < 120, len(lines)
    tree = ast.parse("\n".join(lines))
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    methods = {n.name for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assert methods <= {"__init__", "cog_load", "cog_unload", "config", "format_help_for_context"}, methods
