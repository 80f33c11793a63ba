"""What must be importable before the cog may load, checked without a traceback.

Red's Downloader installs ``requirements`` from info.json with pip into its own
``lib`` folder, and installs discord.py without its voice extra. A failed or partial
pip run (or a bot started from a venv without the extras) would otherwise surface as
an ``ImportError`` traceback in ``[p]load``; ``setup()`` shows one sentence instead.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Optional

__all__ = ["Requirement", "REQUIREMENTS", "missing_requirement"]


@dataclass(frozen=True, slots=True)
class Requirement:
    module: str
    pip_spec: str
    why: str
    #: Extra check on the imported module; returns a problem sentence or None.
    check: Optional[Callable[[object], Optional[str]]] = None


def _pynacl_below_16(module: object) -> Optional[str]:
    version = getattr(module, "__version__", "0")
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        return None
    if (major, minor) >= (1, 6):
        return (
            f"PyNaCl {version} is installed but discord.py 2.7 needs PyNaCl below 1.6; "
            'run `pip install "PyNaCl>=1.5,<1.6"` in the bot\'s environment.'
        )
    return None


def _av_has_mp3(module: object) -> Optional[str]:
    try:
        importlib.import_module("av.codec").Codec("libmp3lame", "w")
    except Exception:
        return (
            "the installed PyAV has no MP3 encoder (libmp3lame); reinstall the `av` "
            "package from its official wheels."
        )
    return None


#: Import name, what to ask pip for (as in info.json), and why the cog needs it.
REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("nacl", "PyNaCl>=1.5,<1.6", "voice transport decryption", _pynacl_below_16),
    Requirement("davey", "davey>=0.1.7", "Discord's end-to-end voice encryption (DAVE)"),
    Requirement("aiosqlite", "aiosqlite>=0.20", "the recordings database"),
    Requirement("numpy", "numpy>=1.26", "mixing speakers"),
    Requirement("av", "av>=14,<19", "MP3 encoding and the bundled Opus codec", _av_has_mp3),
)


def missing_requirement(*, opus: Optional[Callable[[], object]] = None) -> Optional[str]:
    """One sentence naming the first thing that is missing, or None when all is there.

    ``opus`` loads the Opus codec (``audio.opus.ensure_opus``) and raises with a
    one-sentence message when there is none.
    """
    for req in REQUIREMENTS:
        try:
            module = importlib.import_module(req.module)
        except Exception:  # ImportError, or a broken binary wheel raising OSError
            return (
                f"chunkrecorder cannot load: the Python package `{req.pip_spec}` (needed for "
                f"{req.why}) is missing; run `[p]cog reinstallreqs` or "
                f'`pip install "{req.pip_spec}"`, then load it again.'
            )
        if req.check is not None:
            problem = req.check(module)
            if problem:
                return f"chunkrecorder cannot load: {problem}"
    if opus is not None:
        try:
            opus()
        except Exception as exc:
            return f"chunkrecorder cannot load: {exc}"
    return None
