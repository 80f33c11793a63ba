"""Every finished file carries its tags (issue 14), read back by FFmpeg and mutagen.

Real store, real encoder processes, real files. The names come from a name source as
the cog's (Discord's cache) would give them, including hostile ones: control
characters, a 5,000-character name, emoji, right-to-left text. Expected values are
written out here by hand, not computed by the code under test.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Optional

import imageio_ffmpeg
import mutagen.id3
import mutagen.oggopus
import pytest

from chunkrecorder.audio import id3, ogg, vorbis
from chunkrecorder.audio.tags import TrackTags, clean_name, clean_text
from chunkrecorder.objects import MeetingSettings, RecordingKind
from chunkrecorder.pipeline import Recorder
from chunkrecorder.pipeline import tagging
from chunkrecorder.store import SqlRecordingService, StoreError
from tests.support.pipeline import Clock, Speaker, kill, play
from tests.support.signals import RATE, decode_file, snr_db, speech_like

DB = "chunkrecorder.sqlite3"
SECONDS = 2.5

HOSTILE = "Zoë\x00\n\x1b[31m\x85 \u202eمرحبا 🎙️👩\u200d💻\ud800"
HOSTILE_CLEAN = "Zoë[31m \u202eمرحبا 🎙️👩\u200d💻"  # C0, C1 and the lone surrogate gone, the rest kept
LONG = "x" * 5000


class Names:
    """Names as Discord's cache gives them; ``None`` for what it does not hold."""

    def __init__(self, speakers: dict[int, Optional[str]], *, channel: Optional[str] = "general 🎧",
                 guild: Optional[str] = "Guild\r\nof «Tests»") -> None:
        self.speakers = speakers
        self.channel_name = channel
        self.guild_name = guild

    def speaker(self, guild_id: int, user_id: int) -> Optional[str]:
        if user_id == 666:
            raise RuntimeError("the cache blew up")
        return self.speakers.get(user_id)

    def channel(self, guild_id: int, channel_id: int) -> Optional[str]:
        return self.channel_name

    def guild(self, guild_id: int) -> Optional[str]:
        return self.guild_name


async def open_recorder(data: Path, names: Optional[tagging.NameSource] = None) -> Recorder:
    store = SqlRecordingService(data / DB)
    await store.open()
    rec = Recorder(store=store, data_dir=data, workers=2, names=names)
    await rec.start()
    return rec


async def close_recorder(rec: Recorder) -> None:
    await rec.close()
    await rec.store.close()


async def record(rec: Recorder, speakers: list[Speaker], *, notes: tuple[tuple[int, int, str], ...] = ()):
    clock = Clock()
    session = await rec.start_meeting(guild_id=1, channel_id=2, started_by=3,
                                      settings=MeetingSettings(flush_interval_s=1.0), clock=clock)
    await play(session, clock, speakers, until_s=SECONDS, tick=rec.tick)
    for author, at_ms, text in notes:
        await rec.add_note(session.meeting.id, author_id=author, text=text, at_ms=at_ms)
    return session


def ffmetadata(path: str | Path) -> tuple[dict[str, str], list[str]]:
    """FFmpeg's reading of a file's tags (keys lower-cased) and its chapter titles.

    FFmpeg keeps an Ogg stream's comments on the stream: for ``.opus`` they are mapped
    to the file's (``-map_metadata 0:s:a:0``).
    """
    stream = ["-map_metadata", "0:s:a:0"] if str(path).endswith(".opus") else []
    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), *stream,
                          "-f", "ffmetadata", "-"],
                         capture_output=True, check=True, timeout=30).stdout.decode("utf-8")
    tags: dict[str, str] = {}
    chapters: list[str] = []
    section = ""
    for line in _logical_lines(out):
        if line.startswith("["):
            section = line
            continue
        if not line or line.startswith(";") or "=" not in line:
            continue
        key, value = _split_escaped(line)
        if section == "[CHAPTER]" and key == "title":
            chapters.append(value)
        elif not section:
            tags[key.lower()] = value
    return tags, chapters


def _logical_lines(text: str) -> list[str]:
    """ffmetadata lines (a backslash before a newline continues the value)."""
    lines: list[str] = []
    buf = ""
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            buf += c + text[i + 1]
            i += 2
            continue
        if c == "\n":
            lines.append(buf)
            buf = ""
        else:
            buf += c
        i += 1
    if buf:
        lines.append(buf)
    return lines


def _split_escaped(line: str) -> tuple[str, str]:
    out = ["", ""]
    part = 0
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            out[part] += line[i + 1]
            i += 2
            continue
        if c == "=" and part == 0:
            part = 1
        else:
            out[part] += c
        i += 1
    return out[0], out[1]


def sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def frames_sha(path: str | Path) -> str:
    data = Path(path).read_bytes()
    return hashlib.sha256(data[id3.tag_length(data[: id3.HEADER_SIZE]) :]).hexdigest()


# --------------------------------------------------------------------------- names as data
async def test_every_file_is_tagged_with_names_as_discord_gave_them(tmp_path: Path) -> None:
    names = Names({1: HOSTILE, 2: LONG, 3: None})  # 666: the name source raises
    rec = await open_recorder(tmp_path, names)
    try:
        speakers = [Speaker(u, speech_like(SECONDS, seed=u)) for u in (1, 2, 3, 666)]
        session = await record(rec, speakers, notes=((1, 1000, "first point"), (2, 2000, "second\tpoint")))
        result = await rec.stop_meeting(session.meeting.id)
    finally:
        await close_recorder(rec)
    mid = session.meeting.id
    by_user = {r.user_id: r for r in result.recordings if r.kind is RecordingKind.PER_USER}
    (mix,) = [r for r in result.recordings if r.kind is RecordingKind.MIXED]
    assert len(by_user) == 4

    # the rows describe the tagged files
    for r in result.recordings:
        assert r.sha256 == sha(r.path) and r.size_bytes == Path(r.path).stat().st_size
        assert Path(r.path).read_bytes().startswith(b"ID3\x04")

    date = session.meeting.started_at
    import datetime as dt
    day = dt.datetime.fromtimestamp(date, dt.timezone.utc)
    iso = day.strftime("%Y-%m-%dT%H:%M:%S")
    album = f"Guildof «Tests» · general 🎧 · {day:%Y-%m-%d}"
    expected_artist = {1: HOSTILE_CLEAN, 2: "x" * 100, 3: "member 3", 666: "member 666"}
    # the mix is track 1 (user id 0), then the speakers in user-id order
    expected_track = {1: "2/5", 2: "3/5", 3: "4/5", 666: "5/5"}
    for uid, r in by_user.items():
        tags, chapters = ffmetadata(r.path)
        assert tags["artist"] == expected_artist[uid]
        assert tags["title"] == f"general 🎧 — {expected_artist[uid]}"
        assert tags["album"] == album
        assert tags["date"] == iso
        assert tags["track"] == expected_track[uid]
        assert mid in tags["comment"] and "speaker track" in tags["comment"] and "chunkrecorder" in tags["comment"]
        assert chapters == []  # the notes are the mix's chapters
        m = mutagen.id3.ID3(r.path)
        assert m.version == (2, 4, 0)
        assert str(m["TPE1"]) == expected_artist[uid] and str(m["TRCK"]) == expected_track[uid]
        assert str(m["TALB"]) == album and str(m["TDRC"]) == iso.replace("T", " ")  # mutagen prints a space
        assert mid in str(m.getall("COMM")[0])
    tags, chapters = ffmetadata(mix.path)
    assert tags["artist"] == "Guildof «Tests»" and tags["title"] == "general 🎧 — mix" and tags["track"] == "1/5"
    assert "mixed track" in tags["comment"]
    assert chapters == ["first point", "second point"]
    m = mutagen.id3.ID3(mix.path)
    assert [str(c.sub_frames["TIT2"]) for c in m.getall("CHAP")] == ["first point", "second point"]
    assert len(m.getall("ID3")) == 0 and len(m.getall("CTOC")) == 1  # one tag: metadata and chapters merged
    # the tag is before the frames, nothing re-encoded: the files still hold their speakers
    for sp in speakers:
        decoded = decode_file(by_user[sp.user_id].path)
        assert snr_db(decoded[: int(SECONDS * RATE)], sp.expected(int(SECONDS * RATE))) > 15


async def test_the_opus_copy_carries_the_same_tags(tmp_path: Path) -> None:
    rec = await open_recorder(tmp_path, Names({1: "Ada 🦄"}))
    try:
        session = await record(rec, [Speaker(1, speech_like(SECONDS, seed=1))], notes=((1, 500, "intro"),))
        result = await rec.stop_meeting(session.meeting.id)
        copies = {r.kind: (r, await rec.compact(r)) for r in result.recordings}
    finally:
        await close_recorder(rec)
    own, own_copy = copies[RecordingKind.PER_USER]
    mix, mix_copy = copies[RecordingKind.MIXED]
    mp3_tags, _ = ffmetadata(own.path)
    opus_tags, _ = ffmetadata(own_copy.path)
    assert opus_tags["artist"] == "Ada 🦄" == mp3_tags["artist"]
    assert opus_tags["title"] == mp3_tags["title"] and opus_tags["album"] == mp3_tags["album"]
    assert opus_tags["track"] == "2" and opus_tags["tracktotal"] == "2"  # FFmpeg's name for TRACKNUMBER
    assert opus_tags["date"] == mp3_tags["date"] + "Z"
    m = mutagen.oggopus.OggOpus(own_copy.path)
    assert m["artist"] == ["Ada 🦄"] and m["comment"] == [mp3_tags["comment"]]
    assert m["chunkrecorder_source_sha256"] == [own.sha256]  # the copy still names its MP3
    mix_opus = mutagen.oggopus.OggOpus(mix_copy.path)
    assert mix_opus["title"] == ["general 🎧 — mix"] and mix_opus["chapter001name"] == ["intro"]
    assert mix_opus["chapter001"] == ["00:00:00.500"]

    # tag_file rewrites an Ogg Opus file's OpusTags page alone: the audio pages are the same bytes
    audio_before = _after_second_page(own_copy.path)
    tagging.tag_file(Path(own_copy.path), TrackTags(
        title="t\n2", artist="Ünïcode ✓", album="al", date="2026-01-02T03:04:05Z", track=7, total_tracks=9,
        comment="c"))
    m = mutagen.oggopus.OggOpus(own_copy.path)
    assert (m["title"], m["artist"], m["tracknumber"], m["tracktotal"]) == (["t2"], ["Ünïcode ✓"], ["7"], ["9"])
    assert m["chunkrecorder_source_sha256"] == [own.sha256]  # what we do not write is kept
    assert _after_second_page(own_copy.path) == audio_before
    assert ffmetadata(own_copy.path)[0]["artist"] == "Ünïcode ✓"


def _after_second_page(path: str | Path) -> bytes:
    data = Path(path).read_bytes()
    with open(path, "rb") as fh:
        pages = ogg.read_pages(fh)
        next(pages)
        second = next(pages)
    return data[second.offset + second.size :]


# --------------------------------------------------------------------------- erasure
async def test_an_erased_members_name_and_notes_leave_the_kept_mix(tmp_path: Path) -> None:
    rec = await open_recorder(tmp_path, Names({1: "Alice Erased", 2: "Bob"}))
    try:
        speakers = [Speaker(u, speech_like(SECONDS, seed=u)) for u in (1, 2)]
        session = await record(rec, speakers, notes=((1, 800, "Alice Erased's secret plan"), (2, 1600, "bob's point")))
        result = await rec.stop_meeting(session.meeting.id)
        (mix,) = [r for r in result.recordings if r.kind is RecordingKind.MIXED]
        (alice,) = [r for r in result.recordings if r.user_id == 1]
        old_copy = await rec.compact(mix)
        before = Path(mix.path).read_bytes()
        assert "Alice Erased" in str(ffmetadata(alice.path)) and "Alice Erased" in str(ffmetadata(mix.path))

        await rec.erase_user(1)

        assert not Path(alice.path).exists()
        after = await rec.library.get_recording(mix.id)
        tags, chapters = ffmetadata(mix.path)
        assert "Alice" not in str((tags, chapters)) and "secret" not in Path(mix.path).read_bytes().decode("latin-1")
        assert chapters == ["bob's point"]
        assert tags["title"] == "general 🎧 — mix" and tags["artist"] == "Guildof «Tests»"  # the rest kept
        assert after.sha256 == sha(mix.path) and after.size_bytes == Path(mix.path).stat().st_size
        assert frames_sha(mix.path) == hashlib.sha256(before[id3.tag_length(before) :]).hexdigest()
        assert not Path(old_copy.path).exists()  # the old Opus copy named the note
        new_copy = await rec.compact(after)
        assert "Alice" not in str(ffmetadata(new_copy.path))
    finally:
        await close_recorder(rec)


@pytest.mark.parametrize("crash", ["row", "rename"])
async def test_a_crash_in_the_erasures_retag_leaves_file_and_row_agreeing(tmp_path: Path, crash: str) -> None:
    """A failure injected right before the mix's row is updated, or right before the
    staged file replaces the mix; then the process dies. After restart the mix, its row
    and the notes agree, and its audio is all there."""
    rec = await open_recorder(tmp_path, Names({1: "Alice", 2: "Bob"}))
    speakers = [Speaker(u, speech_like(SECONDS, seed=u)) for u in (1, 2)]
    session = await record(rec, speakers, notes=((1, 800, "alice's note"), (2, 1600, "bob's note")))
    result = await rec.stop_meeting(session.meeting.id)
    (mix,) = [r for r in result.recordings if r.kind is RecordingKind.MIXED]
    frames_before = frames_sha(mix.path)
    if crash == "row":
        async def lost(*a: object, **kw: object) -> None:
            raise StoreError("died before the row")
        rec.store.set_recording_file = lost  # type: ignore[method-assign]
    else:
        def died(path: Path) -> None:
            raise OSError("died before the rename")
        import chunkrecorder.pipeline.recorder as recorder_module
        original = recorder_module.tagging.commit_retag
        recorder_module.tagging.commit_retag = died  # type: ignore[assignment]
    try:
        with pytest.raises((StoreError, OSError)):
            await rec.erase_user(1)
    finally:
        if crash == "rename":
            recorder_module.tagging.commit_retag = original  # type: ignore[assignment]
    await kill(rec)
    assert tagging.staged_files(rec.layout)  # the re-tag was under way

    rec2 = await open_recorder(tmp_path)  # no names after a restart: the mix keeps its own tags
    try:
        assert tagging.staged_files(rec2.layout) == []
        row = await rec2.library.get_recording(mix.id)
        assert row.sha256 == sha(mix.path) and row.size_bytes == Path(mix.path).stat().st_size
        tags, chapters = ffmetadata(mix.path)
        assert chapters == ["bob's note"] and tags["title"] == "general 🎧 — mix"
        assert [n.text for n in await rec2.store.notes_for_meeting(session.meeting.id)] == ["bob's note"]
        assert frames_sha(mix.path) == frames_before
        assert len(decode_file(mix.path)) >= int(SECONDS * RATE)  # the whole meeting, still decodable
    finally:
        await close_recorder(rec2)


# --------------------------------------------------------------------------- promotion crash
async def test_a_crash_between_tagging_and_the_rows_loses_nothing(tmp_path: Path) -> None:
    """Tagged files on disk, rows never written, process gone; the restart knows no names
    (Discord's cache is empty at start-up): the promotion finishes with tags from ids, and
    every row matches its file."""
    rec = await open_recorder(tmp_path, Names({1: "Carol"}))
    speakers = [Speaker(1, speech_like(SECONDS, seed=1))]
    session = await record(rec, speakers)
    mid = session.meeting.id

    async def lost(*a: object, **kw: object) -> None:
        raise ConnectionError("died after tagging the files")
    rec.store.promote_temp_recordings_to_persistent = lost  # type: ignore[method-assign]
    with pytest.raises(StoreError):
        await rec.stop_meeting(mid)
    tagged = [p for p in rec.layout.recordings_dir.glob("*.mp3")]
    assert tagged and all("Carol" in str(ffmetadata(p)) or "mix" in str(ffmetadata(p)) for p in tagged)
    await kill(rec)

    rec2 = await open_recorder(tmp_path)  # names: none
    try:
        result = await rec2.promote(mid)
    finally:
        await close_recorder(rec2)
    assert len(result.recordings) == 2
    for r in result.recordings:
        assert r.sha256 == sha(r.path) and r.size_bytes == Path(r.path).stat().st_size
    (own,) = [r for r in result.recordings if r.user_id == 1]
    tags, _ = ffmetadata(own.path)
    assert tags["artist"] == "member 1" and tags["title"] == "channel 2 — member 1"
    assert snr_db(decode_file(own.path)[: int(SECONDS * RATE)], speakers[0].expected(int(SECONDS * RATE))) > 15


# --------------------------------------------------------------------------- the formats, byte by byte
def test_a_vorbis_comment_body_is_the_specifications_layout() -> None:
    body = vorbis.comment_packet_body("v1", [("TITLE", "é"), ("A", "")])
    assert body == (b"\x02\x00\x00\x00v1" + b"\x02\x00\x00\x00"
                    + b"\x08\x00\x00\x00TITLE=\xc3\xa9" + b"\x02\x00\x00\x00A=")
    assert vorbis.parse_comment_body(body) == ("v1", [("TITLE", "é"), ("A", "")])
    assert vorbis.chapter_comments([(3_723_004, "x")]) == [("CHAPTER001", "01:02:03.004"), ("CHAPTER001NAME", "x")]


def test_chapter_comments_read_back_as_written_and_bad_ones_are_left_out() -> None:
    written = [(0, "Intro"), (61_500, "Budget = €"), (3_723_004, "")]
    assert vorbis.read_chapter_comments(vorbis.chapter_comments(written)) == written
    # other players' spellings: lower case, a time without milliseconds; a broken time is skipped
    assert vorbis.read_chapter_comments([("chapter002", "00:00:05"), ("chapter002name", "b"), ("TITLE", "t"),
                                         ("CHAPTER001", "soon"), ("CHAPTER001NAME", "a")]) == [(5000, "b")]


def test_names_lose_control_characters_and_length_only() -> None:
    assert clean_text("a\x00b\nc\td\x7fe\x9ff\u2028g\u200fh") == "abcdef\u2028g\u200fh"
    assert clean_name("  \n\x00 ", "member 5") == "member 5"
    assert clean_name(None, "channel 9") == "channel 9"
    assert clean_name("y" * 5000, "-") == "y" * 100
    assert clean_name("שלום 👋🏽", "-") == "שלום 👋🏽"
    assert clean_text("z" * 300) == "z" * 250
