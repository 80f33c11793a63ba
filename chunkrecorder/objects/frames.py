"""What the receive layer hands the pipeline, and the settings a meeting records with."""

from __future__ import annotations

from dataclasses import dataclass

from .records import Strategy

#: Discord voice: 48 kHz, stereo, 20 ms Opus frames.
SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960
DISCORD_CHANNELS = 2


#: The formats a meeting can be archived in (``MeetingSettings.archive``).
ARCHIVE_FORMATS = ("mp3", "flac")


@dataclass(frozen=True, slots=True)
class VoiceFrame:
    """One decoded 20 ms frame of one speaker.

    ``timestamp`` is the RTP timestamp (48 kHz units, 32-bit, wraps) and places the
    frame on the speaker's own clock; ``arrival`` (seconds on the session's clock)
    anchors that clock to the meeting's and catches drift. ``pcm`` is 48 kHz s16le
    with ``channels`` interleaved channels, normally 960 samples (3840 bytes stereo,
    1920 mono). The receiver decodes straight to the meeting's channel count (a mono
    decode costs 0.68x a stereo one), so the pipeline places frames without
    converting them; a frame of the other count is converted when placed.
    """

    user_id: int
    ssrc: int
    sequence: int
    timestamp: int
    arrival: float
    pcm: bytes
    channels: int = DISCORD_CHANNELS

    @property
    def samples(self) -> int:
        """Samples per channel in ``pcm``."""
        return len(self.pcm) // (2 * self.channels)


#: The longest flush interval: a speaker's buffered audio grows with it (about 5.8 MB per
#: mono speaker at 60 s, three windows held), and a crash loses up to one interval.
MAX_FLUSH_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class MeetingSettings:
    """Per-meeting encoding and cutting choices, copied from the guild's settings at start."""

    strategy: Strategy = Strategy.HYBRID
    flush_interval_s: float = 10.0
    channels: int = 1
    bitrate: int = 64_000
    quality: int = 7
    keep_temp_rows: bool = False
    max_length_s: float = 4 * 3600.0
    #: "mp3" (64 kb/s, gapless) or "flac" (lossless): the format of every file of the meeting
    archive: str = "mp3"

    def __post_init__(self) -> None:
        if not 1.0 <= self.flush_interval_s <= MAX_FLUSH_INTERVAL_S:
            raise ValueError(f"The flush interval must be between 1 and {MAX_FLUSH_INTERVAL_S:g} seconds.")
        if self.channels not in (1, 2):
            raise ValueError("Channels must be 1 (mono) or 2 (stereo).")
        if self.bitrate not in (32_000, 48_000, 64_000, 96_000, 128_000, 160_000, 192_000):
            raise ValueError("Bitrate must be one of 32, 48, 64, 96, 128, 160 or 192 kb/s.")
        if self.archive not in ARCHIVE_FORMATS:
            raise ValueError("The archive format must be mp3 or flac.")
