"""A meeting's notes as the files people open: an Audacity label track and MP3 chapters.

Notes are markers on the meeting's timeline (``Note.at_ms`` from t=0), and every file
of a meeting starts at t=0, so a note's time is its time in every file. This module
turns the notes into

* ``labels.txt`` (``recording_<meeting>_labels.txt`` beside the recordings): Audacity's
  label-track format, one ``start<TAB>end<TAB>text`` line per note, seconds with
  microsecond decimals; a note is a point label (start = end). Import it in Audacity
  with File → Import → Labels next to any of the meeting's tracks;
* ID3v2 chapters of the mixed MP3: a chapter per note, from the note to the next one
  (the last to the end of the meeting), which podcast players list and jump to.

:func:`track_chapters` is the one place that decides which chapters a track's file
carries; ``tagging.tag_file`` writes them with the track's other tags (``audio/id3.py``
for an MP3: before the frames, without touching them).
"""

from __future__ import annotations

from typing import Optional, Sequence

from ..audio import id3
from ..audio.tags import TrackTags
from ..objects.records import MIX_USER_ID, Meeting, Note

__all__ = ["chapters", "clean_text", "labels_text", "track_chapters", "track_tag"]


def clean_text(text: str) -> str:
    """One line of text: tabs, newlines and other control characters become spaces."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def _length_ms(meeting: Meeting) -> int:
    return round((meeting.length_samples or 0) * 1000 / meeting.sample_rate)


def chapters(notes: Sequence[Note], length_ms: int) -> list[id3.Chapter]:
    """A chapter per note (the first :data:`id3.MAX_CHAPTERS`), each to the next note's time."""
    return id3.chapters_from([(n.at_ms, clean_text(n.text)) for n in notes], length_ms)


def labels_text(notes: Sequence[Note]) -> str:
    """Audacity's label format: ``start<TAB>end<TAB>text`` per line, times in seconds."""
    lines = []
    for n in sorted(notes, key=lambda n: n.at_ms):
        t = f"{n.at_ms / 1000:.6f}"
        lines.append(f"{t}\t{t}\t{clean_text(n.text)}\n")
    return "".join(lines)


def track_chapters(meeting: Meeting, user_id: int, notes: Sequence[Note], *,
                   length_ms: Optional[int] = None) -> list[id3.Chapter]:
    """The chapters of one track's file: the notes, on the mix only."""
    if user_id != MIX_USER_ID or not notes:
        return []
    return chapters(notes, _length_ms(meeting) if length_ms is None else length_ms)


def track_tag(meeting: Meeting, user_id: int, notes: Sequence[Note], *, tags: TrackTags,
              length_ms: Optional[int] = None) -> bytes:
    """The ID3v2 tag of one track's MP3: its metadata (``tagging.track_tags``), and on the
    mix its chapters when the meeting has notes."""
    return tags.id3_tag(track_chapters(meeting, user_id, notes, length_ms=length_ms))
