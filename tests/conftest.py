"""Shared test set-up: the support modules are pytest plugins, so every area sees their fixtures.

``tests`` is a package (module names ``tests.<area>.test_*``), so helpers are imported
as ``tests.support.<module>`` and no test edits ``sys.path``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Iterator

import pytest

import chunkrecorder

pytest_plugins = ["tests.support.red"]

# Every module of the cog is imported once, up front: the fixture below treats a cog
# module that appears during a test as one Red's ``[p]load`` imported, and a module
# first imported lazily inside a test must not be mistaken for that.
for _info in pkgutil.walk_packages(chunkrecorder.__path__, "chunkrecorder."):
    importlib.import_module(_info.name)


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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--schedules", type=int, default=4,
                     help="fault-injection schedules to run (tests/pipeline/test_fault_injection.py; CI runs 4)")
    parser.addoption("--first-schedule", type=int, default=1, help="seed of the first fault-injection schedule")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "schedule_seed" in metafunc.fixturenames:
        first = metafunc.config.getoption("--first-schedule")
        seeds = range(first, first + metafunc.config.getoption("--schedules"))
        metafunc.parametrize("schedule_seed", seeds, ids=[f"seed{s}" for s in seeds])
