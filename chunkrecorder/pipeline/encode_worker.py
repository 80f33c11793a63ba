"""What runs inside an encoder process: one chunk file in, one MP3 chunk file out.

This module imports nothing of the cog but ``audio.mp3`` (PyAV and numpy), because a
worker process must be able to import it without the cog's package ``__init__``
(which pulls in Red and discord.py): Red loads cogs through an import spec from a
folder that is not on ``sys.path``, so :func:`bootstrap_source` gives the worker a
stand-in package whose ``__path__`` points at the cog folder. Measured: PyAV holds
the GIL while LAME encodes (a spinning thread ran at 30 % speed and the encode took
8x longer), so encoding in threads would starve the event loop and the voice
receive thread; processes do not.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..audio import mp3

__all__ = ["EncodeJob", "encode", "bootstrap_source"]


@dataclass(frozen=True, slots=True)
class EncodeJob:
    """Everything a worker needs; picklable, no database, no event loop."""

    pcm_path: str
    mp3_path: str
    prime: int
    body: int
    channels: int
    bitrate: int
    quality: int
    sample_rate: int = 48_000


def encode(job: EncodeJob) -> mp3.ChunkMp3:
    """Encode and verify one chunk (the MP3 is written atomically, or not at all)."""
    return mp3.encode_chunk_file(
        job.pcm_path,
        job.mp3_path,
        prime=job.prime,
        body=job.body,
        sample_rate=job.sample_rate,
        channels=job.channels,
        bitrate=job.bitrate,
        quality=job.quality,
    )


def bootstrap_source() -> str:
    """Python source a fresh worker process runs first (as its pool initializer).

    It appends the parent's ``sys.path`` (Red adds the Downloader's library folder,
    where PyAV and numpy may live, at run time), then registers empty package modules for this cog's package and sub-packages,
    pointing at the cog's folders (unless that process imported them already). Then
    ``<pkg>.pipeline.encode_worker`` imports without running any package ``__init__``.
    """
    here = Path(__file__).resolve()
    root = here.parent.parent
    package = __name__.split(".")[0]
    subpackages = {package: str(root), f"{package}.audio": str(root / "audio"),
                   f"{package}.pipeline": str(root / "pipeline")}
    paths = [p for p in sys.path if isinstance(p, str)]
    return (
        "import sys, types\n"
        f"for _p in {paths!r}:\n"
        "    if _p not in sys.path:\n"
        "        sys.path.append(_p)\n"
        f"for _name, _path in {subpackages!r}.items():\n"
        "    if _name not in sys.modules:\n"
        "        _m = types.ModuleType(_name)\n"
        "        _m.__path__ = [_path]\n"
        "        _m.__package__ = _name\n"
        "        sys.modules[_name] = _m\n"
        f"import {__name__}\n"
        f"sys.modules[{__name__!r}].watch_parent()\n"
        f"sys.modules[{__name__!r}].lower_priority()\n"
    )


def lower_priority(increment: int = 10) -> None:
    """Encoders yield the CPU to the voice receive thread.

    Encoding is backlog work that can wait a second; the receive thread must read
    every datagram within milliseconds. At equal priority the encoders took its turns:
    measured with bench/capacity.py, 88 concurrent speakers sustained at equal
    priority, 115 with encoders at +10.
    """
    if hasattr(os, "nice"):
        try:
            os.nice(increment)
        except OSError:  # not permitted here: run at the parent's priority
            pass


def watch_parent() -> None:
    """Exit this worker as soon as the process that started it is gone.

    A pool worker blocks reading its call queue, whose write end it holds itself, so
    it would outlive a bot killed with SIGKILL for ever (and keep the fork server and
    anything waiting on their pipes alive). The parent's sentinel becomes readable
    when the parent dies; a daemon thread waits on it and ends the process.
    """
    import multiprocessing
    import os
    import threading
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        wait([sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="chunkrecorder-parent-watch", daemon=True).start()
