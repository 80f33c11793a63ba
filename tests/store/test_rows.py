"""Rows ↔ dataclasses: every field of every row type comes back from a real database file
as it went in (value and type), through every statement that reads it, and a column the
row type has no field for is an error, never dropped."""

from __future__ import annotations

import dataclasses
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Optional

import pytest

from chunkrecorder.objects import (
    Meeting,
    MeetingPipeline,
    MeetingStatus,
    Recording,
    RecordingKind,
    StoreError,
    Strategy,
    TempRecording,
    TrackAssembly,
    TranscodeStatus,
)
from chunkrecorder.store import SqlRecordingService
from chunkrecorder.store.rows import columns, row_to

# One instance per row type, every field away from its default (checked below), so a
# field the store fails to read or fills from a default cannot compare equal.
MEETING = Meeting(
    id="0123456789abcdef",
    guild_id=1_111_111_111_111_111,
    channel_id=2_222_222_222_222_222,
    started_by=3_333_333_333_333_333,
    started_at=1_767_323_045.25,
    ended_at=1_767_326_645.5,
    status=MeetingStatus.FAILED,
    strategy=Strategy.PER_USER,
    flush_interval_s=7.5,
    sample_rate=44_100,
    channels=2,
    bitrate=128_000,
    length_samples=123_456_789,
    note="the voice server went away",
)
CHUNK = TempRecording(
    id="fedcba9876543210",
    meeting_id=MEETING.id,
    user_id=4_444_444_444_444_444,
    guild_id=MEETING.guild_id,
    seq=3,
    created_at=1_600_000_000.125,
    completed_at=1_600_000_004.75,
    pcm_path="/chunks/m/4_3.pcm",
    mp3_path="/chunks/m/4_3.mp3",
    transcode_status=TranscodeStatus.FAILED,
    sha256="ab" * 32,
    duration_ms=10_008,
    cleaned=True,
    start_sample=1_441_152,
    sample_count=480_384,
    prime_samples=1199,
    tail_samples=2304,
    attempts=4,
    last_error="lame said no",
    next_attempt_at=1_600_000_030.5,
)
RECORDING = Recording(
    id="1111222233334444",
    meeting_id=MEETING.id,
    created_at=1_700_000_100.5,
    duration_in_ms=3_600_096,
    sha256="cd" * 32,
    filename="recording_0123456789abcdef_4444444444444444.mp3",
    user_id=CHUNK.user_id,
    kind=RecordingKind.PER_USER,
    path="/recordings/recording_0123456789abcdef_4444444444444444.mp3",
    size_bytes=28_800_768,
    guild_id=MEETING.guild_id,
)
TRACK = TrackAssembly(
    meeting_id=MEETING.id, user_id=CHUNK.user_id, assembled_seq=5, assembled_bytes=98_765, assembled_frames=2085
)
PIPELINE = MeetingPipeline(quality=2, keep_temp=True, flushed_windows=9, archive="flac")

ALL = [MEETING, CHUNK, RECORDING, TRACK, PIPELINE]


@pytest.mark.parametrize("instance", ALL, ids=lambda i: type(i).__name__)
def test_every_sample_field_differs_from_its_default(instance: Any) -> None:
    for f in dataclasses.fields(instance):
        value = getattr(instance, f.name)
        assert value is not None, f.name
        if f.default is not dataclasses.MISSING:
            assert value != f.default, f"{type(instance).__name__}.{f.name} is its default"


def _stored(value: Any) -> Any:
    """What SQLite holds for a field value: enums as their value, bools as 0/1."""
    if isinstance(value, (MeetingStatus, Strategy, TranscodeStatus, RecordingKind)):
        return value.value
    if isinstance(value, bool):
        return int(value)
    return value


def _insert(con: sqlite3.Connection, table: str, values: dict[str, Any]) -> None:
    names = ", ".join(values)
    marks = ", ".join("?" * len(values))
    con.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", [_stored(v) for v in values.values()])


def _same(got: Any, expected: Any) -> None:
    """Equal, and every field of the same type (a str enum equals its text, True equals 1)."""
    assert got == expected
    for f in dataclasses.fields(expected):
        assert type(getattr(got, f.name)) is type(getattr(expected, f.name)), f.name


@pytest.fixture
async def filled(tmp_path: Path) -> AsyncIterator[SqlRecordingService]:
    """A migrated database file holding the sample rows, written with plain sqlite3."""
    path = tmp_path / "rows.sqlite3"
    async with SqlRecordingService(path):
        pass  # create and migrate
    con = sqlite3.connect(path)
    con.execute("PRAGMA foreign_keys = ON")
    _insert(con, "meetings", dataclasses.asdict(MEETING))
    con.execute(
        "UPDATE meetings SET quality = ?, keep_temp = ?, flushed_windows = ?, archive = ? WHERE id = ?",
        (PIPELINE.quality, int(PIPELINE.keep_temp), PIPELINE.flushed_windows, PIPELINE.archive, MEETING.id),
    )
    _insert(con, "temp_recordings", dataclasses.asdict(CHUNK))
    recording = dataclasses.asdict(RECORDING)
    del recording["guild_id"]  # not a column: the meeting's
    _insert(con, "recordings", recording)
    _insert(con, "tracks", dataclasses.asdict(TRACK))
    con.commit()
    con.close()
    async with SqlRecordingService(path) as store:
        yield store


async def test_a_meeting_survives_every_read(filled: SqlRecordingService) -> None:
    _same(await filled.get_meeting(MEETING.id), MEETING)
    _same(await filled.get_meeting(MEETING.id, guild_id=MEETING.guild_id), MEETING)
    page, total = await filled.list_meetings(MEETING.guild_id)
    assert total == 1
    _same(page[0], MEETING)
    (found,) = await filled.meetings_with_status(MeetingStatus.FAILED)
    _same(found, MEETING)


async def test_a_chunk_survives_every_read(filled: SqlRecordingService) -> None:
    from chunkrecorder.objects import NewGap

    _same(await filled.get_temp_recording(CHUNK.id), CHUNK)
    await filled.add_gaps(MEETING.id, [NewGap(CHUNK.user_id, CHUNK.seq, CHUNK.start_sample, 10, "x")])
    reads = [
        await filled.get_temp_recordings_for_meeting(MEETING.id),
        await filled.get_temp_recordings_for_meeting(
            MEETING.id, user_id=CHUNK.user_id, status=TranscodeStatus.FAILED
        ),
        await filled.temp_recordings_for_track(MEETING.id, CHUNK.user_id),
        await filled.failed_temp_recordings(max_attempts=5),
        await filled.gap_chunks(MEETING.id),  # the join with gaps
        (await filled.user_data(CHUNK.user_id))[1],
    ]
    for rows in reads:
        assert len(rows) == 1
        _same(rows[0], CHUNK)


async def test_a_recording_survives_every_read_with_its_meetings_guild(filled: SqlRecordingService) -> None:
    _same(await filled.get_recording(RECORDING.id), RECORDING)
    _same(await filled.get_recording(RECORDING.id, guild_id=MEETING.guild_id), RECORDING)
    page, total = await filled.list_recordings(MEETING.guild_id)
    assert total == 1
    reads = [
        page,
        await filled.recordings_for_meeting(MEETING.id),
        await filled.recordings_older_than(60.0),
        (await filled.user_data(RECORDING.user_id or 0))[0],
    ]
    for rows in reads:
        assert len(rows) == 1
        _same(rows[0], RECORDING)


async def test_a_track_and_the_pipeline_columns_survive(filled: SqlRecordingService) -> None:
    (track,) = await filled.tracks_for_meeting(MEETING.id)
    _same(track, TRACK)
    _same(await filled.meeting_pipeline(MEETING.id), PIPELINE)


# ---------------------------------------------------------------- the mapper on its own


def _row(select: str) -> sqlite3.Row:
    con = sqlite3.connect(":memory:")
    con.row_factory = sqlite3.Row
    row: sqlite3.Row | None = con.execute(select).fetchone()
    con.close()
    assert row is not None
    return row


def test_an_unknown_column_is_an_error_naming_it() -> None:
    row = _row("SELECT 7 AS quality, 1 AS keep_temp, 3 AS flushed_windows, 'red' AS colour")
    with pytest.raises(StoreError, match="`colour`"):
        row_to(MeetingPipeline, row)


def test_a_missing_column_is_an_error_not_a_default() -> None:
    with pytest.raises(StoreError, match="`flushed_windows`"):
        row_to(MeetingPipeline, _row("SELECT 7 AS quality, 1 AS keep_temp"))


def test_a_column_twice_is_an_error() -> None:
    row = _row("SELECT 7 AS quality, 1 AS keep_temp, 3 AS flushed_windows, 8 AS quality")
    with pytest.raises(StoreError, match="`quality` twice"):
        row_to(MeetingPipeline, row)


def test_columns_are_matched_by_name_not_position() -> None:
    got = row_to(MeetingPipeline, _row("SELECT 3 AS flushed_windows, 'flac' AS archive, 0 AS keep_temp, 7 AS quality"))
    assert got == MeetingPipeline(quality=7, keep_temp=False, flushed_windows=3, archive="flac")
    assert got.keep_temp is False


@dataclass(frozen=True)
class _Probe:
    status: Optional[MeetingStatus]
    flag: Optional[bool]
    kind: RecordingKind
    done: bool
    count: int
    label: Optional[str]


@pytest.mark.parametrize(
    "select, expected",
    [
        (
            "SELECT 'STOPPING' AS status, 1 AS flag, 'mixed' AS kind, 0 AS done, 5 AS count, 'x' AS label",
            _Probe(MeetingStatus.STOPPING, True, RecordingKind.MIXED, False, 5, "x"),
        ),
        (
            "SELECT NULL AS status, NULL AS flag, 'per_user' AS kind, 1 AS done, 0 AS count, NULL AS label",
            _Probe(None, None, RecordingKind.PER_USER, True, 0, None),
        ),
    ],
)
def test_conversions_follow_the_field_types(select: str, expected: _Probe) -> None:
    got = row_to(_Probe, _row(select))
    assert got == expected
    for f in dataclasses.fields(_Probe):
        assert type(getattr(got, f.name)) is type(getattr(expected, f.name)), f.name


def test_a_stored_value_outside_the_enum_is_refused() -> None:
    with pytest.raises(ValueError, match="SLEEPING"):
        row_to(
            _Probe,
            _row("SELECT 'SLEEPING' AS status, 0 AS flag, 'mixed' AS kind, 0 AS done, 1 AS count, '' AS label"),
        )


def test_column_lists_follow_the_fields_and_qualify_joined_ones() -> None:
    assert columns(MeetingPipeline) == "quality, keep_temp, flushed_windows, archive"
    assert columns(TrackAssembly, table="t", sources={"user_id": "u"}).split(", ")[:2] == [
        "t.meeting_id AS meeting_id",
        "u.user_id AS user_id",
    ]
    with pytest.raises(ValueError, match="colour"):
        columns(MeetingPipeline, sources={"colour": "m"})
