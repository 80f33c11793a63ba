"""Opus for the cog without a system libopus: PyAV's wheel bundles one.

Red installs the cog with pip into its own folder and nothing puts a libopus on the
host, so ``discord.opus`` often finds none. PyAV (already a dependency for MP3) ships
``av.libs/libopus-*.so`` (``av/.dylibs`` on macOS, ``av.libs/opus*.dll`` on
Windows): :func:`ensure_opus` loads the system library if there is one, else that
bundled copy, and hands the same file to ``discord.opus.load_opus`` so discord.py's
own voice code works too.

The decoder and encoder below call libopus through ``ctypes`` directly rather than
through ``discord.opus``: the receive path decodes ~50 packets per speaker per second
on a socket thread, and discord.py's ``Decoder.decode`` allocates a fresh ctypes
array and three extra library calls per packet and raises a Discord exception type.
Ours reuse one output buffer per decoder, expose FEC and packet-loss concealment, and
raise :class:`OpusDecodeError`, which the receiver counts as a garbage packet.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("red.chunkrecorder.opus")

SAMPLE_RATE = 48_000
CHANNELS = 2
FRAME_SAMPLES = 960  # 20 ms
#: Longest Opus packet: 120 ms.
MAX_FRAME_SAMPLES = 5760
#: What Discord clients send when speech stops, and what DAVE never encrypts.
OPUS_SILENCE = b"\xf8\xff\xfe"

_OPUS_OK = 0
_APPLICATION = {"voip": 2048, "audio": 2049, "lowdelay": 2051}
_SET_BITRATE = 4002
_SET_INBAND_FEC = 4012
_SET_PACKET_LOSS_PERC = 4014
_SET_COMPLEXITY = 4010
_SET_SIGNAL = 4024
_SIGNAL_VOICE = 3001
_RESET_STATE = 4028
_GET_LOOKAHEAD = 4027

#: Decoded Opus lags the encoder's input by its look-ahead: 312 samples (6.5 ms) at
#: 48 kHz for the voip/audio applications, the same for every speaker. The receive
#: layer cannot see it (it is in the sender); comparisons with a source must allow it.
CODEC_DELAY_SAMPLES = 312

UNAVAILABLE_MESSAGE = (
    "No Opus codec could be loaded: install libopus (for example `apt install libopus0`) "
    "or reinstall the `av` package, which bundles one."
)


class OpusUnavailable(RuntimeError):
    """No libopus could be loaded; ``str(exc)`` is one sentence for the bot owner."""

    def __init__(self, message: str = UNAVAILABLE_MESSAGE) -> None:
        super().__init__(message)


class OpusDecodeError(ValueError):
    """libopus rejected a packet (corrupt or not Opus at all)."""


@dataclass(frozen=True, slots=True)
class OpusLibrary:
    """Which libopus is in use: ``source`` is "system" or "bundled"."""

    path: str
    source: str
    version: str


_lock = threading.Lock()
_loaded: tuple[OpusLibrary, Any] | None = None


def bundled_libopus_candidates() -> list[Path]:
    """Paths of the libopus files PyAV's wheel carries, if PyAV is installed."""
    spec = importlib.util.find_spec("av")
    if spec is None or not spec.submodule_search_locations:
        return []
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    site = package_dir.parent
    patterns = [
        str(site / "av.libs" / "libopus*.so*"),  # manylinux (auditwheel)
        str(package_dir / ".dylibs" / "libopus*.dylib"),  # macOS (delocate)
        str(site / "av.libs" / "*opus*.dll"),  # Windows (delvewheel)
        str(package_dir / "*opus*.dll"),
    ]
    found: list[Path] = []
    for pattern in patterns:
        found.extend(Path(p) for p in sorted(glob.glob(pattern)))
    return found


def _bind(lib: Any) -> Any:
    """Declare the signatures we call so ctypes passes pointers and ints correctly."""
    c_int, c_int32, c_char_p, c_void_p = ctypes.c_int, ctypes.c_int32, ctypes.c_char_p, ctypes.c_void_p
    i16p = ctypes.POINTER(ctypes.c_int16)
    lib.opus_get_version_string.restype = c_char_p
    lib.opus_get_version_string.argtypes = []
    lib.opus_strerror.restype = c_char_p
    lib.opus_strerror.argtypes = [c_int]
    lib.opus_decoder_create.restype = c_void_p
    lib.opus_decoder_create.argtypes = [c_int32, c_int, ctypes.POINTER(c_int)]
    lib.opus_decoder_destroy.restype = None
    lib.opus_decoder_destroy.argtypes = [c_void_p]
    lib.opus_decode.restype = c_int
    lib.opus_decode.argtypes = [c_void_p, c_char_p, c_int32, i16p, c_int, c_int]
    lib.opus_encoder_create.restype = c_void_p
    lib.opus_encoder_create.argtypes = [c_int32, c_int, c_int, ctypes.POINTER(c_int)]
    lib.opus_encoder_destroy.restype = None
    lib.opus_encoder_destroy.argtypes = [c_void_p]
    lib.opus_encode.restype = c_int32
    lib.opus_encode.argtypes = [c_void_p, i16p, c_int, c_char_p, c_int32]
    lib.opus_packet_get_nb_samples.restype = c_int
    lib.opus_packet_get_nb_samples.argtypes = [c_char_p, c_int32, c_int32]
    # opus_*_ctl are variadic: leave argtypes unset and pass c_int values.
    lib.opus_encoder_ctl.restype = c_int
    lib.opus_decoder_ctl.restype = c_int
    return lib


def _try_load(path: str, source: str) -> tuple[OpusLibrary, Any] | None:
    try:
        lib = _bind(ctypes.CDLL(path))
        version = lib.opus_get_version_string().decode("ascii", "replace")
    except (OSError, AttributeError) as exc:
        log.debug("Could not load %s libopus %s: %s", source, path, exc)
        return None
    return OpusLibrary(path=path, source=source, version=version), lib


def _find_and_load(*, allow_system: bool = True) -> tuple[OpusLibrary, Any]:
    candidates: list[tuple[str, str]] = []
    if allow_system:
        system = ctypes.util.find_library("opus")
        if system:
            candidates.append((system, "system"))
    candidates.extend((str(p), "bundled") for p in bundled_libopus_candidates())
    for path, source in candidates:
        loaded = _try_load(path, source)
        if loaded is not None:
            return loaded
    raise OpusUnavailable()


def ensure_opus(*, allow_system: bool = True, share: bool = True) -> OpusLibrary:
    """Load libopus once (system first, else PyAV's) and make discord.py use it too.

    Raises :class:`OpusUnavailable` (one-sentence message) when neither exists, which
    the cog's ``setup()`` shows instead of a traceback. ``share=False`` leaves
    discord.py alone: an encoder process must not import it (see ``encode_worker``).
    """
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = _find_and_load(allow_system=allow_system)
            info = _loaded[0]
            log.info("Using %s libopus %s (%s)", info.source, info.version, info.path)
            if share:
                _share_with_discord(info.path)
        return _loaded[0]


def _share_with_discord(path: str) -> None:
    """Give discord.py the same library, unless it already has one of its own."""
    try:
        import discord.opus
    except ImportError:  # the harness and benchmarks may run without discord.py's voice bits
        return
    if discord.opus.is_loaded():
        return
    try:
        discord.opus.load_opus(path)
    except OSError as exc:  # pragma: no cover - same file just loaded fine through ctypes
        log.warning("discord.py could not load %s: %s", path, exc)


def _lib() -> Any:
    if _loaded is None:
        ensure_opus()
    assert _loaded is not None
    return _loaded[1]


def _error_text(code: int) -> str:
    text: bytes = _lib().opus_strerror(code)
    return text.decode("ascii", "replace")


def packet_samples(packet: bytes) -> int:
    """Samples per channel a packet decodes to at 48 kHz, or -1 if it is malformed."""
    if not packet:
        return -1
    n = _lib().opus_packet_get_nb_samples(packet, len(packet), SAMPLE_RATE)
    return n if n > 0 else -1


class OpusDecoder:
    """One speaker's decoder state (Opus is stateful: one decoder per SSRC).

    ``channels`` is what the decoder outputs, whatever the packets carry: libopus
    decodes a stereo stream straight to mono (SILK decodes its mid channel only,
    CELT downmixes before its inverse transform), at 0.68x the CPU of a stereo decode
    (bench/codec_floor.py). A mono meeting therefore asks for mono here instead of
    decoding stereo and averaging it afterwards. FEC and PLC work at either count.

    Not thread-safe; the receiver uses each decoder from one thread at a time.
    """

    __slots__ = ("_lib", "_state", "_buf", "_last_samples", "channels")

    def __init__(self, channels: int = CHANNELS) -> None:
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, not {channels}")
        self.channels = channels
        self._lib = _lib()
        err = ctypes.c_int()
        # Kept as c_void_p: the variadic *_ctl calls have no argtypes, and a bare int
        # would be passed as a 32-bit C int, truncating the pointer.
        self._state = ctypes.c_void_p(
            self._lib.opus_decoder_create(SAMPLE_RATE, channels, ctypes.byref(err))
        )
        if err.value != _OPUS_OK or not self._state.value:
            raise OpusUnavailable(f"libopus could not create a decoder: {_error_text(err.value)}.")
        self._buf = (ctypes.c_int16 * (MAX_FRAME_SAMPLES * channels))()
        self._last_samples = FRAME_SAMPLES

    def __del__(self) -> None:
        state = getattr(self, "_state", None)
        if state is not None and state.value:
            self._lib.opus_decoder_destroy(state)
            self._state = ctypes.c_void_p()  # NULL: destroyed once

    def _run(self, data: bytes | None, frame_samples: int, fec: int) -> bytes:
        n = self._lib.opus_decode(
            self._state, data, len(data) if data else 0, self._buf, frame_samples, fec
        )
        if n < 0:
            raise OpusDecodeError(_error_text(n))
        return ctypes.string_at(self._buf, n * self.channels * 2)

    def decode(self, packet: bytes) -> bytes:
        """PCM (48 kHz s16le, ``channels`` interleaved) of one packet; :class:`OpusDecodeError` if corrupt."""
        samples = packet_samples(packet)
        if samples < 0 or samples > MAX_FRAME_SAMPLES:
            raise OpusDecodeError("invalid packet")
        pcm = self._run(packet, samples, 0)
        self._last_samples = samples
        return pcm

    def conceal(self, samples: int | None = None) -> bytes:
        """Packet-loss concealment for one missing packet (libopus PLC)."""
        return self._run(None, samples or self._last_samples, 0)

    def recover(self, next_packet: bytes, samples: int | None = None) -> bytes:
        """The packet *before* ``next_packet``, from its in-band FEC data (else PLC)."""
        return self._run(next_packet, samples or self._last_samples, 1)


class OpusEncoder:
    """20 ms, 48 kHz encoder, stereo and set up as Discord clients send voice by default.

    ``channels=1`` and ``fec=False`` make the encoder of the compact recordings
    (``audio.ogg_opus``): files, not a lossy network, so no redundancy is spent.
    """

    __slots__ = ("_lib", "_state", "_out", "_channels")

    def __init__(
        self,
        *,
        bitrate: int = 64_000,
        fec: bool = True,
        packet_loss_percent: int = 15,
        application: str = "voip",
        complexity: int = 10,
        channels: int = CHANNELS,
    ) -> None:
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, not {channels}")
        self._lib = _lib()
        self._channels = channels
        err = ctypes.c_int()
        self._state = ctypes.c_void_p(
            self._lib.opus_encoder_create(SAMPLE_RATE, channels, _APPLICATION[application], ctypes.byref(err))
        )
        if err.value != _OPUS_OK or not self._state.value:
            raise OpusUnavailable(f"libopus could not create an encoder: {_error_text(err.value)}.")
        ctl = self._lib.opus_encoder_ctl
        ctl(self._state, ctypes.c_int(_SET_BITRATE), ctypes.c_int(bitrate))
        ctl(self._state, ctypes.c_int(_SET_INBAND_FEC), ctypes.c_int(1 if fec else 0))
        ctl(self._state, ctypes.c_int(_SET_PACKET_LOSS_PERC), ctypes.c_int(packet_loss_percent))
        ctl(self._state, ctypes.c_int(_SET_COMPLEXITY), ctypes.c_int(complexity))
        if application == "voip":
            ctl(self._state, ctypes.c_int(_SET_SIGNAL), ctypes.c_int(_SIGNAL_VOICE))
        self._out = ctypes.create_string_buffer(4000)

    def __del__(self) -> None:
        state = getattr(self, "_state", None)
        if state is not None and state.value:
            self._lib.opus_encoder_destroy(state)
            self._state = ctypes.c_void_p()  # NULL: destroyed once

    def encode(self, pcm: bytes) -> bytes:
        """One Opus packet from 20 ms of 48 kHz s16le (3840 bytes in stereo, 1920 in mono)."""
        expected = FRAME_SAMPLES * self._channels * 2
        if len(pcm) != expected:
            raise ValueError(f"expected {expected} bytes of PCM, got {len(pcm)}")
        ptr = ctypes.cast(ctypes.c_char_p(pcm), ctypes.POINTER(ctypes.c_int16))
        n = self._lib.opus_encode(self._state, ptr, FRAME_SAMPLES, self._out, len(self._out))
        if n < 0:
            raise OpusDecodeError(_error_text(n))
        return self._out.raw[:n]

    def reset(self) -> None:
        self._lib.opus_encoder_ctl(self._state, ctypes.c_int(_RESET_STATE))

    @property
    def lookahead(self) -> int:
        """Samples by which decoded output lags this encoder's input (see CODEC_DELAY_SAMPLES)."""
        value = ctypes.c_int()
        self._lib.opus_encoder_ctl(self._state, ctypes.c_int(_GET_LOOKAHEAD), ctypes.byref(value))
        return value.value


def _reset_for_tests() -> None:
    """Forget the loaded library (tests of the loader only)."""
    global _loaded
    with _lock:
        _loaded = None


__all__ = [
    "CHANNELS",
    "CODEC_DELAY_SAMPLES",
    "FRAME_SAMPLES",
    "OPUS_SILENCE",
    "OpusDecodeError",
    "OpusDecoder",
    "OpusEncoder",
    "OpusLibrary",
    "OpusUnavailable",
    "SAMPLE_RATE",
    "UNAVAILABLE_MESSAGE",
    "bundled_libopus_candidates",
    "ensure_opus",
    "packet_samples",
]

