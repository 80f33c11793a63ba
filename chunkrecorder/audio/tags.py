"""What a finished file says about itself: title, speaker, server, date, track number.

A folder of meetings should read as meetings in a music player or a podcast editor,
not as ``recording_343f49b69e8f4eb8_1001.mp3``. :class:`TrackTags` is one track's
metadata, independent of the container: :meth:`TrackTags.vorbis` gives the Vorbis
comments (Ogg Opus, FLAC), :meth:`TrackTags.id3_frames` the ID3v2.4 frames (MP3).

Names come from Discord (display names, channel and server names): they are data, so
nothing is escaped away, but every control character (C0 and C1: newlines, tabs, NUL,
escape sequences) is removed, and so are lone surrogates (not text, and not encodable),
and lengths are capped (:data:`NAME_MAX` for a name, :data:`TEXT_MAX` for a composed
field), so a hostile name can neither break a reader nor bloat every file.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

from . import id3

__all__ = [
    "NAME_MAX",
    "TEXT_MAX",
    "TrackTags",
    "clean_name",
    "clean_text",
    "iso_utc",
]

#: Characters kept of one name (a member, a channel, a server).
NAME_MAX = 100
#: Characters kept of a composed field (title, album, comment).
TEXT_MAX = 250
#: The separator of a title's channel and speaker.
TITLE_SEP = " — "
#: The separator of an album's server, channel and date.
ALBUM_SEP = " · "

#: The title of the table of contents that lists a mix's chapters (its meeting's notes).
CHAPTERS_TITLE = "Notes"

_DROPPED = frozenset(("Cc", "Cs"))


def clean_text(text: str, limit: int = TEXT_MAX) -> str:
    """``text`` without control characters or lone surrogates, at most ``limit`` characters."""
    kept = "".join(c for c in text if unicodedata.category(c) not in _DROPPED)
    return kept[:limit]


def clean_name(name: object, fallback: str) -> str:
    """A display name as a tag holds it; ``fallback`` when it is unknown or nothing is left."""
    text = clean_text(name, NAME_MAX).strip() if isinstance(name, str) else ""
    return text or fallback


def iso_utc(timestamp: float) -> str:
    """``2026-12-01T15:38:29Z``: a Unix time as ISO 8601 in UTC, to the second."""
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class TrackTags:
    """One track's metadata; every text field is cleaned again when written (idempotent)."""

    title: str
    artist: str
    album: str
    date: str  # ISO 8601 UTC, e.g. 2026-12-01T15:38:29Z
    track: int
    total_tracks: int
    comment: str

    def vorbis(self) -> list[tuple[str, str]]:
        """The Vorbis comments: TITLE, ARTIST, ALBUM, DATE, TRACKNUMBER, TRACKTOTAL, COMMENT."""
        return [
            ("TITLE", clean_text(self.title)),
            ("ARTIST", clean_text(self.artist)),
            ("ALBUM", clean_text(self.album)),
            ("DATE", clean_text(self.date)),
            ("TRACKNUMBER", str(int(self.track))),
            ("TRACKTOTAL", str(int(self.total_tracks))),
            ("COMMENT", clean_text(self.comment)),
        ]

    def id3_frames(self) -> list[bytes]:
        """The ID3v2.4 frames: TIT2, TPE1, TALB, TDRC, TRCK ``n/total`` and COMM.

        ID3v2.4's timestamps have no zone (they are UTC by definition), so the date loses
        its ``Z`` there.
        """
        return [
            id3.text_frame("TIT2", clean_text(self.title)),
            id3.text_frame("TPE1", clean_text(self.artist)),
            id3.text_frame("TALB", clean_text(self.album)),
            id3.text_frame("TDRC", clean_text(self.date).removesuffix("Z")),
            id3.text_frame("TRCK", f"{int(self.track)}/{int(self.total_tracks)}"),
            id3.comment_frame(clean_text(self.comment)),
        ]

    def id3_tag(self, chapters: Sequence[id3.Chapter] = ()) -> bytes:
        """The whole ID3v2.4 tag of an MP3: these frames, then ``chapters`` (a mix's notes)."""
        return id3.build_tag([*self.id3_frames(), *id3.chapter_frames(chapters, toc_title=CHAPTERS_TITLE)])

    @classmethod
    def from_vorbis(cls, comments: dict[str, str]) -> "TrackTags | None":
        """Tags read back from Vorbis comments (or :func:`id3.read_text_tags`); None if absent."""
        if "TITLE" not in comments:
            return None

        def number(key: str) -> int:
            try:
                return int(comments.get(key, "0").split("/")[0])
            except ValueError:
                return 0

        return cls(
            title=comments.get("TITLE", ""), artist=comments.get("ARTIST", ""), album=comments.get("ALBUM", ""),
            date=comments.get("DATE", ""), track=number("TRACKNUMBER"), total_tracks=number("TRACKTOTAL"),
            comment=comments.get("COMMENT", ""),
        )
