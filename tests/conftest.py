"""Shared test set-up. Area fixtures live beside their tests (tests/*_fixtures.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

# tests/ is not a package: make its helper modules importable by name.
sys.path.insert(0, str(Path(__file__).parent))


def _ours(name: str) -> bool:
    return name == "chunkrecorder" or name.startswith("chunkrecorder.")


@pytest.fixture(autouse=True)
def _restore_cog_modules() -> Iterator[None]:
    """Put the test process's ``chunkrecorder`` modules back after every test.

    Red's ``[p]unload`` purges a cog's modules from ``sys.modules`` and ``[p]load``
    imports fresh ones; the test modules keep the objects they imported first, and a
    later test pickling one of them to a worker process would find a stranger of the
    same name. Each test starts from the modules the session imported.
    """
    saved = {k: v for k, v in sys.modules.items() if _ours(k)}
    yield
    for name in [k for k in sys.modules if _ours(k) and k not in saved]:
        del sys.modules[name]
    sys.modules.update(saved)
