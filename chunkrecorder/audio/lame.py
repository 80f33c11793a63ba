"""LAME called directly through ctypes: the fastest MP3 encoder that installs from wheels.

Measured with bench/engines.py, same PCM, same settings (64 kb/s CBR mono, 48 kHz,
-q 7, bit reservoir off), decoded to the same SNR: the libmp3lame compiled into the
``lameenc`` wheel takes about a quarter of the CPU of the one PyAV's wheel bundles
(which FFmpeg's ``libmp3lame`` encoder calls), and about 0.6x of the imageio-ffmpeg
binary's even when that binary runs as a long-lived process fed through a pipe.

``lameenc``'s own Python API cannot turn the bit reservoir off, and the gapless chunk
join needs it off (``audio.mp3``); but its extension module exports LAME's whole C
API, so it is loaded here as a plain library. PyAV's bundled ``libmp3lame`` exports the
same API and is the second candidate: same code, same settings as FFmpeg's wrapper
(its output is byte-identical to what PyAV's codec gives), only slower.

ctypes releases the GIL for the duration of the call, so an encode never holds up
the voice receive thread or the event loop, whichever thread or process runs it.
Nothing here imports numpy or PyAV: an encoder process that only runs
:func:`encode` stays small.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

__all__ = ["LameLibrary", "LameError", "load", "encode", "encoder_delay", "DECODER_DELAY"]

log = logging.getLogger("red.chunkrecorder.audio.lame")

#: Samples by which an MP3 decoder's output lags the stream (528 + 1, as FFmpeg counts it).
DECODER_DELAY = 529

_MONO, _JOINT_STEREO = 3, 1

#: Anything with the buffer protocol holding s16le samples (bytes, bytearray, a numpy array).
Buffer = Union[bytes, bytearray, memoryview, Any]


class LameError(RuntimeError):
    """LAME refused the settings or the input."""


@dataclass(frozen=True, slots=True)
class LameLibrary:
    """Which libmp3lame is in use: ``source`` is "lameenc" or "av" (PyAV's wheel)."""

    path: str
    source: str
    version: str


def _bind(lib: Any) -> Any:
    c_int, c_void_p, c_char_p = ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
    lib.lame_init.restype = c_void_p
    lib.lame_init.argtypes = []
    for name in ("lame_set_num_channels", "lame_set_in_samplerate", "lame_set_out_samplerate",
                 "lame_set_brate", "lame_set_mode", "lame_set_quality", "lame_set_bWriteVbrTag",
                 "lame_set_disable_reservoir"):
        fn = getattr(lib, name)
        fn.restype = c_int
        fn.argtypes = [c_void_p, c_int]
    lib.lame_init_params.restype = c_int
    lib.lame_init_params.argtypes = [c_void_p]
    lib.lame_get_encoder_delay.restype = c_int
    lib.lame_get_encoder_delay.argtypes = [c_void_p]
    lib.lame_encode_buffer.restype = c_int
    lib.lame_encode_buffer.argtypes = [c_void_p, c_void_p, c_void_p, c_int, c_void_p, c_int]
    lib.lame_encode_buffer_interleaved.restype = c_int
    lib.lame_encode_buffer_interleaved.argtypes = [c_void_p, c_void_p, c_int, c_void_p, c_int]
    lib.lame_encode_flush.restype = c_int
    lib.lame_encode_flush.argtypes = [c_void_p, c_void_p, c_int]
    lib.lame_close.restype = c_int
    lib.lame_close.argtypes = [c_void_p]
    lib.get_lame_version.restype = c_char_p
    lib.get_lame_version.argtypes = []
    return lib


def candidates() -> list[tuple[str, str]]:
    """``(path, source)`` of the libraries to try, fastest first."""
    found: list[tuple[str, str]] = []
    spec = importlib.util.find_spec("lameenc")
    if spec is not None and spec.origin:
        found.append((spec.origin, "lameenc"))
    spec = importlib.util.find_spec("av")
    if spec is not None and spec.submodule_search_locations:
        package = Path(next(iter(spec.submodule_search_locations)))
        for pattern in (str(package.parent / "av.libs" / "libmp3lame*.so*"),  # manylinux
                        str(package / ".dylibs" / "libmp3lame*.dylib")):  # macOS
            found.extend((p, "av") for p in sorted(glob.glob(pattern)))
    return found


_lock = threading.Lock()
_loaded: Optional[tuple[LameLibrary, Any]] = None
_tried = False


def _try(path: str, source: str) -> Optional[tuple[LameLibrary, Any]]:
    try:
        lib = _bind(ctypes.CDLL(path))
        version = lib.get_lame_version().decode("ascii", "replace")
    except (OSError, AttributeError) as exc:  # not loadable, or LAME's symbols not exported
        log.debug("no usable LAME in %s (%s): %s", path, source, exc)
        return None
    return LameLibrary(path=path, source=source, version=version), lib


def load(*, sources: Optional[tuple[str, ...]] = None) -> Optional[LameLibrary]:
    """The LAME this process encodes with (loaded once), or None: then PyAV's codec does.

    ``sources`` restricts the candidates (benchmarks and tests compare them); a
    restricted load is not remembered.
    """
    global _loaded, _tried
    if sources is not None:
        for path, source in candidates():
            if source in sources:
                got = _try(path, source)
                if got is not None:
                    return got[0]
        return None
    with _lock:
        if not _tried:
            _tried = True
            for path, source in candidates():
                _loaded = _try(path, source)
                if _loaded is not None:
                    break
        return _loaded[0] if _loaded else None


_libs: dict[str, Any] = {}


def _lib(library: Optional[LameLibrary]) -> Any:
    if library is None:
        library = load()
        if library is None:
            raise LameError("no LAME library could be loaded")
    if _loaded is not None and _loaded[0] == library:
        return _loaded[1]
    lib = _libs.get(library.path)
    if lib is None:
        got = _try(library.path, library.source)
        if got is None:
            raise LameError(f"cannot load {library.path}")
        lib = _libs[library.path] = got[1]
    return lib


def _open(lib: Any, sample_rate: int, channels: int, bitrate: int, quality: int) -> int:
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, not {channels}")
    gfp = lib.lame_init()
    if not gfp:
        raise LameError("lame_init failed")
    # The settings FFmpeg's libmp3lame wrapper applies (checked byte for byte in the tests).
    lib.lame_set_num_channels(gfp, channels)
    lib.lame_set_mode(gfp, _MONO if channels == 1 else _JOINT_STEREO)
    lib.lame_set_in_samplerate(gfp, sample_rate)
    lib.lame_set_out_samplerate(gfp, sample_rate)
    lib.lame_set_quality(gfp, quality)
    lib.lame_set_brate(gfp, bitrate // 1000)
    lib.lame_set_bWriteVbrTag(gfp, 0)  # no Xing/Info frame: nothing but audio frames
    lib.lame_set_disable_reservoir(gfp, 1)  # every frame stands alone (the gapless join)
    if lib.lame_init_params(gfp) < 0:
        lib.lame_close(gfp)
        raise LameError(f"LAME refused {channels} channel(s) at {sample_rate} Hz, {bitrate} b/s, -q {quality}")
    return int(gfp)


def encoder_delay(*, sample_rate: int = 48_000, channels: int = 1, bitrate: int = 64_000,
                  quality: int = 7, library: Optional[LameLibrary] = None) -> int:
    """Decoded-output delay of this LAME's stream: its encoder delay plus the decoder's."""
    lib = _lib(library)
    gfp = _open(lib, sample_rate, channels, bitrate, quality)
    try:
        return int(lib.lame_get_encoder_delay(gfp)) + DECODER_DELAY
    finally:
        lib.lame_close(gfp)


def encode(pcm: Buffer, *, offset: int = 0, samples: int, sample_rate: int = 48_000, channels: int = 1,
           bitrate: int = 64_000, quality: int = 7, library: Optional[LameLibrary] = None) -> bytes:
    """MP3 frames of ``samples`` s16le interleaved samples of ``pcm`` from byte ``offset``, flushed.

    One fresh encoder per call: a chunk's encode depends on nothing but its PCM.
    ``pcm`` is read in place (a writable buffer is not copied).
    """
    lib = _lib(library)
    view = memoryview(pcm)
    need = offset + samples * channels * 2
    if samples <= 0 or view.nbytes < need:
        raise LameError(f"{view.nbytes} bytes hold fewer than {samples} samples from byte {offset}")
    keep: Any
    if view.readonly:
        keep = pcm if isinstance(pcm, bytes) else view.tobytes()
        address = ctypes.cast(ctypes.c_char_p(keep), ctypes.c_void_p).value or 0
    else:
        keep = (ctypes.c_char * view.nbytes).from_buffer(view)
        address = ctypes.addressof(keep)
    address += offset
    size = samples * 5 // 4 + 7200  # LAME's documented worst case
    out = ctypes.create_string_buffer(size + 7200)
    gfp = _open(lib, sample_rate, channels, bitrate, quality)
    try:
        if channels == 1:
            n = lib.lame_encode_buffer(gfp, address, address, samples, out, size)
        else:
            n = lib.lame_encode_buffer_interleaved(gfp, address, samples, out, size)
        if n < 0:
            raise LameError(f"lame_encode_buffer failed ({n})")
        m = lib.lame_encode_flush(gfp, ctypes.byref(out, n), size + 7200 - n)
        if m < 0:
            raise LameError(f"lame_encode_flush failed ({m})")
    finally:
        lib.lame_close(gfp)
    return ctypes.string_at(out, n + m)
