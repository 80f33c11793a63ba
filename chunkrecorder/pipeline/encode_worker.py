"""What runs inside an encoder process: one chunk file in, one MP3 chunk file out.

This module imports nothing of the cog but ``audio.mp3``, ``audio.flac``,
``audio.lame`` (LAME through ctypes; numpy and PyAV only if no LAME library loads)
and ``utils.atomic`` (how they write files), because a worker
process must be able to import it without the cog's package ``__init__`` (which
pulls in Red and discord.py): Red loads cogs through an import spec from a folder
that is not on ``sys.path``, so :func:`bootstrap_source` gives the worker a stand-in
package whose ``__path__`` points at the cog folder. An encoder process then holds
about 12 MiB.

Why processes at all, now that LAME runs through ctypes (which releases the GIL)?
PyAV, the fallback engine, holds the GIL while LAME encodes (a spinning thread ran at
30 % speed and the encode took 8x longer); a process runs at nice +10 so the voice
receive thread keeps its turns, which a thread cannot portably do; and a crash in
native code takes one encoder down, not the bot.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

from ..audio import flac, mp3

__all__ = ["EncodeJob", "encode", "bootstrap_source", "serve", "read_message", "write_message"]

#: Pipe messages (see encoder_pool): a little-endian length, then a pickle.
_HEADER = struct.Struct("<I")


def write_message(stream: IO[bytes], obj: object) -> None:
    """One length-prefixed pickle, flushed."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def read_message(stream: IO[bytes]) -> Any:
    """The next message, or raises EOFError when the other side has gone."""
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError
    size = _HEADER.unpack(head)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


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
    #: "flac": ``mp3_path`` is the chunk's ``.flac`` (``audio.flac``), numbered from ``first_sample``
    archive: str = "mp3"
    first_sample: int = 0


def encode(job: EncodeJob) -> "mp3.ChunkMp3 | flac.ChunkFlac":
    """Encode and verify one chunk (the MP3 is written atomically, or not at all).

    No chunk is encoded twice. An MP3 already under the chunk's name is its encode (an
    MP3 only ever appears whole and verified, by rename, and a chunk's name always
    holds the same audio), so it is checked and reused: that is how the mix of a
    one-speaker window gets its MP3, and how a job re-run after a crash between the
    write and the row update is finished. After an encode, every other name of the
    chunk's PCM file (the session hard-links a one-speaker window's mix to the
    speaker's chunk) gets the MP3 under its own name too.
    """
    if job.archive == "flac":
        return _encode_flac(job)
    reused = mp3.existing_chunk(job.mp3_path, body=job.body, sample_rate=job.sample_rate)
    if reused is not None:
        return reused
    result = mp3.encode_chunk_file(
        job.pcm_path,
        job.mp3_path,
        prime=job.prime,
        body=job.body,
        sample_rate=job.sample_rate,
        channels=job.channels,
        bitrate=job.bitrate,
        quality=job.quality,
    )
    share_with_other_names(job.pcm_path, job.mp3_path)
    return result


def _encode_flac(job: EncodeJob) -> flac.ChunkFlac:
    """The same steps for a FLAC chunk: reuse a whole one, else encode, verify, share."""
    reused = flac.existing_chunk(job.mp3_path, body=job.body, first_sample=job.first_sample,
                                 sample_rate=job.sample_rate)
    if reused is not None:
        return reused
    result = flac.encode_chunk_file(job.pcm_path, job.mp3_path, prime=job.prime, body=job.body,
                                    first_sample=job.first_sample, sample_rate=job.sample_rate,
                                    channels=job.channels)
    share_with_other_names(job.pcm_path, job.mp3_path)
    return result


def share_with_other_names(pcm_path: str, mp3_path: str) -> int:
    """Link ``mp3_path`` as the MP3 of every other chunk name of the same PCM file.

    Other names are hard links in the same folder with the same seq (``<user>_<seq>``).
    Returns how many names got it. Best effort: a name that cannot get it is encoded
    when its own job comes.
    """
    try:
        st = os.stat(pcm_path)
    except OSError:
        return 0
    if st.st_nlink < 2:
        return 0
    folder, own = os.path.split(pcm_path)
    suffix = "_" + own.split("_", 1)[-1]  # "_<seq>.pcm"
    shared = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        if name == own or not name.endswith(suffix) or not name.split("_", 1)[0].isdigit():
            continue
        other = os.path.join(folder, name)
        try:
            ost = os.stat(other)
            if (ost.st_ino, ost.st_dev) != (st.st_ino, st.st_dev):
                continue
            target = other[: -len(".pcm")] + os.path.splitext(mp3_path)[1]
            # Not utils.atomic: the temp is a hard link (os.link), not a file written here.
            tmp = target + ".tmp"
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            os.link(mp3_path, tmp)
            os.replace(tmp, target)
            shared += 1
        except OSError:
            continue
    return shared


def bootstrap_source() -> str:
    """Python source an encoder process runs (``python -c``): set up, then serve jobs.

    It appends the parent's ``sys.path`` (Red adds the Downloader's library folder,
    where lameenc, PyAV and numpy may live, at run time), then registers empty package
    modules for this cog's package and sub-packages, pointing at the cog's folders.
    Then ``<pkg>.pipeline.encode_worker`` imports without running any package
    ``__init__``, lowers its priority and serves jobs until its stdin closes.
    """
    here = Path(__file__).resolve()
    root = here.parent.parent
    package = __name__.split(".")[0]
    subpackages = {package: str(root), f"{package}.audio": str(root / "audio"),
                   f"{package}.pipeline": str(root / "pipeline"), f"{package}.utils": str(root / "utils")}
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
        f"sys.modules[{__name__!r}].lower_priority()\n"
        f"sys.modules[{__name__!r}].serve()\n"
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


def serve(stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None) -> None:
    """Answer ``(fn, args, kwargs)`` jobs from the parent until it closes the pipe.

    The protocol gets a private copy of stdout and fd 1 is pointed at stderr, so
    whatever a library prints cannot corrupt an answer. Returns (and the process
    ends) at end-of-file: when the parent closes the pool, or dies.
    """
    if stdin is None:
        stdin = sys.stdin.buffer
    if stdout is None:
        sys.stdout.flush()
        stdout = os.fdopen(os.dup(1), "wb")
        os.dup2(2, 1)
    while True:
        try:
            fn, args, kwargs = read_message(stdin)
        except EOFError:
            return
        try:
            reply: tuple[bool, Any] = (True, _call(fn, args, kwargs))
        except BaseException as exc:  # noqa: BLE001 - the parent decides what an error means
            reply = (False, exc)
        try:
            write_message(stdout, reply)
        except BrokenPipeError:
            return
        except Exception as exc:  # noqa: BLE001 - an unpicklable result or error
            write_message(stdout, (False, RuntimeError(f"{type(exc).__name__}: {exc}")))


def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return fn(*args, **kwargs)
