"""Tags on finished files: which tags a track gets, writing them, reading them back.

Every recording is tagged when it is promoted (``Promoter._finish``): after the
assembler has made the final file and before the ``recordings`` rows are written, so
the sha256 and size in a row are always those of the tagged file. A promotion that
crashes in between is run again: the finished file is found (tagged or not), tagged
again with the same bytes (or left alone when they are already there) and described.

:func:`tag_file` is the one writer, dispatching on the file's suffix: an MP3 gets an
ID3v2.4 tag before its first frame (the frames, and so the gapless stream, untouched;
nothing re-encoded); an Ogg Opus file gets its OpusTags packet rewritten; FLAC gets a
VORBIS_COMMENT block (``audio.flac``). Each write is atomic (temp file, fsync, rename).

Names are Discord's (the member's display name when the meeting is promoted, the voice
channel's and the server's names), asked of a :class:`NameSource` the owner gives the
``Recorder`` (the cog: the bot's cache; the harness: its speaker list). A promotion
after a restart may find none of them: a tag then says ``member <id>`` or
``channel <id>``, and a promotion never fails for a name (a failing source is logged).

Rewriting the tag of a file that already has a row (a member's data erased: the kept
mix loses their notes) is staged, so a crash never leaves a row that disagrees with its
file: :func:`stage_retag` writes the re-tagged file beside the old one (``….mp3.retag``,
complete and synced), then the notes go and the row gets the staged file's sha256 and
size, and :func:`commit_retag` renames it over the old file. A staged file is also the
record that a re-tag was under way: at start-up the ``Recorder`` re-tags each such file
again from what the database holds then (:func:`staged_files`), so file, row and notes
agree whichever step the crash interrupted. The audio frames are the same in every
version of the file, so nothing recorded is lost either way.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
from pathlib import Path
from typing import Callable, Optional, Protocol, Sequence

from ..audio import flac, id3, ogg, vorbis
from ..audio.tags import ALBUM_SEP, NAME_MAX, TITLE_SEP, TrackTags, clean_name, clean_text, iso_utc
from ..objects.records import MIX_USER_ID, Meeting
from ..utils.atomic import writing
from .paths import TMP_SUFFIX, Layout, fsync_dir

__all__ = [
    "NameSource",
    "STAGED_SUFFIX",
    "VENDOR",
    "commit_retag",
    "describe",
    "read_chapters",
    "read_tags",
    "final_path",
    "staged_files",
    "stage_retag",
    "tag_file",
    "track_tags",
]

log = logging.getLogger("red.chunkrecorder.pipeline.tagging")

#: The vendor string of the Vorbis comments we write.
VENDOR = "chunkrecorder"
#: A re-tagged file waiting for its row (see the module docstring).
STAGED_SUFFIX = ".retag"


class NameSource(Protocol):
    """Display names as the server shows them now; None when unknown (a member who left)."""

    def speaker(self, guild_id: int, user_id: int) -> Optional[str]: ...

    def channel(self, guild_id: int, channel_id: int) -> Optional[str]: ...

    def guild(self, guild_id: int) -> Optional[str]: ...


def _ask(lookup: Callable[..., Optional[str]], *args: int) -> Optional[str]:
    """One name, or None: a name is never worth a failed promotion."""
    try:
        return lookup(*args)
    except Exception:  # noqa: BLE001
        log.exception("looking a name up failed; the tag uses the id instead")
        return None


def track_tags(meeting: Meeting, user_id: int, *, track: int, total: int,
               names: Optional[NameSource]) -> TrackTags:
    """The tags of one track of ``meeting`` (``MIX_USER_ID`` for the mix); see issue 14.

    Title ``<channel> — <speaker>`` (``— mix``), artist the speaker (the server for the
    mix), album ``<server> · <channel> · <date>``, date the meeting's start (UTC),
    ``track`` of ``total`` and a comment naming the meeting and the kind of track.
    """
    g, c = meeting.guild_id, meeting.channel_id
    guild = clean_name(_ask(names.guild, g) if names else None, f"server {g}")
    channel = clean_name(_ask(names.channel, g, c) if names else None, f"channel {c}")
    is_mix = user_id == MIX_USER_ID
    if is_mix:
        speaker, artist = "mix", guild
    else:
        speaker = artist = clean_name(_ask(names.speaker, g, user_id) if names else None, f"member {user_id}")
    date = iso_utc(meeting.started_at)
    kind = "mixed track" if is_mix else "speaker track"
    return TrackTags(
        title=clean_text(f"{channel}{TITLE_SEP}{speaker}"),
        artist=clean_text(artist, NAME_MAX),
        album=clean_text(f"{guild}{ALBUM_SEP}{channel}{ALBUM_SEP}{date[:10]}"),
        date=date,
        track=track,
        total_tracks=total,
        comment=clean_text(f"Meeting {meeting.id}, {kind}, recorded with chunkrecorder"),
    )


# --------------------------------------------------------------------------- writing
def tag_file(path: Path, tags: TrackTags, chapters: Sequence[id3.Chapter] = ()) -> None:
    """Write ``tags`` (and ``chapters``) onto a finished file, replacing its old ones (blocking).

    Atomic, and a no-op when the file already carries exactly these tags.
    """
    _tag_as(path, path.suffix.lower(), tags, chapters)


def _tag_as(path: Path, kind: str, tags: TrackTags, chapters: Sequence[id3.Chapter]) -> None:
    if kind == ".mp3":
        _tag_mp3(path, tags.id3_tag(chapters))
    elif kind in (".opus", ".ogg"):
        _tag_ogg(path, [*tags.vorbis(), *_chapter_comments(chapters)])
    elif kind == ".flac":
        _flac_set_comments(path, [*tags.vorbis(), *_chapter_comments(chapters)])
    else:
        raise ValueError(f"{path.name}: no tags for a {kind or 'suffixless'} file")


def _flac_set_comments(path: Path, comments: Sequence[tuple[str, str]]) -> None:
    """A FLAC file's VORBIS_COMMENT block replaced (blocking, atomic): ``audio.flac``."""
    flac.set_comments(path, comments, vendor=VENDOR)


def _chapter_comments(chapters: Sequence[id3.Chapter]) -> list[tuple[str, str]]:
    return vorbis.chapter_comments([(c.start_ms, c.title) for c in chapters])


def _head_tag(path: Path) -> bytes:
    with open(path, "rb") as fh:
        head = fh.read(id3.HEADER_SIZE)
        length = id3.tag_length(head)
        return head + fh.read(length - len(head)) if length else b""


def _tag_mp3(path: Path, tag: bytes, *, dst: Optional[Path] = None) -> None:
    old = _head_tag(path)
    if old == tag and dst is None:
        return
    size = path.stat().st_size
    id3.write_with_tag(dst or path, tag, path, offset=len(old), length=size - len(old))
    fsync_dir(path.parent)


def _tag_ogg(path: Path, comments: Sequence[tuple[str, str]], *, dst: Optional[Path] = None) -> None:
    """Replace the OpusTags packet (the second page) with one holding ``comments``.

    Only that page changes: it keeps its sequence number, so the pages after it are
    copied as they are. Comments already there under keys we do not write (the source
    MP3's sha256 of a compact copy) are kept.
    """
    with open(path, "rb") as fh:
        pages = ogg.read_pages(fh)
        first = next(pages, None)
        second = next(pages, None)
    if first is None or second is None or len(second.packets) != 1 or second.open_ended \
            or not second.packets[0].startswith(b"OpusTags"):
        raise ogg.OggError(f"{path.name} has no OpusTags page to rewrite")
    vendor, old = vorbis.parse_comment_body(second.packets[0][8:])
    ours = {k for k, _v in comments}
    kept = [(k, v) for k, v in old if k not in ours and not k.startswith("CHAPTER")]
    packet = b"OpusTags" + vorbis.comment_packet_body(vendor or VENDOR, [*comments, *kept])
    if packet == second.packets[0] and dst is None:
        return
    page = ogg.page([packet], granule=second.granule, serial=second.serial, sequence=second.sequence,
                    flags=second.flags)
    target = dst or path
    with open(path, "rb") as fin, writing(target, tmp_suffix=TMP_SUFFIX, sync_dir=True) as fout:
        fout.write(fin.read(second.offset))
        fout.write(page)
        fin.seek(second.offset + second.size)
        for block in iter(lambda: fin.read(1 << 20), b""):
            fout.write(block)


def describe(path: Path) -> tuple[str, int]:
    """The sha256 and size of a file as it is on disk (blocking): what its row records."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def tag_and_describe(path: Path, tags: TrackTags, chapters: Sequence[id3.Chapter] = ()) -> tuple[str, int]:
    """:func:`tag_file` then :func:`describe` (blocking): a promotion's step per track."""
    tag_file(path, tags, chapters)
    return describe(path)


# --------------------------------------------------------------------------- reading
def read_tags(path: Path) -> dict[str, str]:
    """A file's tags under their Vorbis names (TITLE, ARTIST, ..., CHAPTERnnn for Vorbis
    formats); empty when it has none (blocking)."""
    kind = path.suffix.lower()
    if kind == ".mp3":
        return id3.read_text_tags(_head_tag(path))
    if kind in (".opus", ".ogg"):
        with open(path, "rb") as fh:
            pages = ogg.read_pages(fh)
            next(pages, None)
            second = next(pages, None)
        if second is None or not second.packets or not second.packets[0].startswith(b"OpusTags"):
            return {}
        return dict(vorbis.parse_comment_body(second.packets[0][8:])[1])
    if kind == ".flac":
        return _flac_comments(path)
    return {}


def read_chapters(path: Path) -> list[id3.Chapter]:
    """An MP3's chapters (a mix's notes); none for other files (blocking)."""
    if path.suffix.lower() != ".mp3":
        return []
    return id3.read_chapters(_head_tag(path))


def _flac_comments(path: Path) -> dict[str, str]:
    """The VORBIS_COMMENT block of a FLAC file (metadata blocks walked, frames not read)."""
    with open(path, "rb") as fh:
        if fh.read(4) != b"fLaC":
            return {}
        while True:
            head = fh.read(4)
            if len(head) < 4:
                return {}
            kind, size = head[0] & 0x7F, struct.unpack(">I", b"\x00" + head[1:])[0]
            if kind == 4:
                return dict(vorbis.parse_comment_body(fh.read(size))[1])
            if head[0] & 0x80:
                return {}
            fh.seek(size, os.SEEK_CUR)


# --------------------------------------------------------------------------- re-tagging a file with a row
def staged_path(path: Path) -> Path:
    return path.with_name(path.name + STAGED_SUFFIX)


def stage_retag(path: Path, chapters: Sequence[id3.Chapter]) -> tuple[str, int]:
    """Write ``path`` with new ``chapters`` (its other tags kept) to its staged path, synced
    (replacing an older staged file);
    returns the staged file's sha256 and size (blocking). Nothing else changes yet."""
    staged = staged_path(path)
    kind = path.suffix.lower()
    if kind == ".mp3":
        kept = [id3.frame(fid, body) for fid, body in id3.read_frames(_head_tag(path)) if fid not in ("CTOC", "CHAP")]
        _tag_mp3(path, id3.build_tag([*kept, *id3.chapter_frames(chapters, toc_title="Notes")]), dst=staged)
    elif kind in (".opus", ".ogg"):
        comments = [(k, v) for k, v in read_tags(path).items() if not k.startswith("CHAPTER")]
        _tag_ogg(path, [*comments, *_chapter_comments(chapters)], dst=staged)
    elif kind == ".flac":
        comments = [(k, v) for k, v in read_tags(path).items() if not k.startswith("CHAPTER")]
        _copy_synced(path, staged)
        _flac_set_comments(staged, [*comments, *_chapter_comments(chapters)])
    else:
        raise ValueError(f"{path.name}: no tags for a {kind or 'suffixless'} file")
    return describe(staged)


def _copy_synced(src: Path, dst: Path) -> None:
    """``src`` copied to ``dst`` through a temp file, synced, renamed (blocking)."""
    with open(src, "rb") as fin, writing(dst, tmp_suffix=TMP_SUFFIX, sync_dir=True) as fout:
        for block in iter(lambda: fin.read(1 << 20), b""):
            fout.write(block)


def commit_retag(path: Path) -> None:
    """The row holds the staged file's digest now: the staged file becomes the file (blocking)."""
    os.replace(staged_path(path), path)
    fsync_dir(path.parent)


def final_path(staged: Path) -> Path:
    """The file a staged re-tag is for."""
    return staged.with_name(staged.name[: -len(STAGED_SUFFIX)])


def staged_files(layout: Layout) -> list[Path]:
    try:
        return sorted(p for p in layout.recordings_dir.iterdir() if p.name.endswith(STAGED_SUFFIX))
    except FileNotFoundError:
        return []
