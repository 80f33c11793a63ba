"""The store's refusals are one sentence each, naming what they are about.

The cog shows ``str(exc)`` of a store error as it is (``core/errors.py``), so each one
must read as a single sentence for a server admin: capitalised, one full stop at the
end, no second sentence, no line break, and the id, status or number concerned in it.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Awaitable, Callable

import pytest

from chunkrecorder.objects import (
    IllegalTransition,
    MeetingPipeline,
    MeetingStatus,
    NotFound,
    RecordingKind,
    StoreError,
)
from chunkrecorder.store import NewRecording, SqlRecordingService
from chunkrecorder.store.rows import row_to
from chunkrecorder.store.schema import LATEST_VERSION

MISSING = "0000000000000000"


def assert_one_sentence(text: str) -> None:
    assert text and "\n" not in text, text
    assert text[0].isupper(), text
    assert text.endswith(".") and not text.endswith(".."), text
    # A sentence end inside: a full stop, ! or ? followed by a space and a capital.
    assert not re.search(r"[.!?]\s+[A-Z]", text[:-1]), text


@pytest.mark.parametrize(
    "text",
    ["The database is not open.", "Meeting `a.b` is ACTIVE; it cannot become PROMOTED."],
)
def test_the_check_accepts_one_sentence(text: str) -> None:
    assert_one_sentence(text)


@pytest.mark.parametrize(
    "text", ["Version 4 is newer. Update the cog.", "no capital.", "No full stop", "Two\nlines."]
)
def test_the_check_refuses_anything_else(text: str) -> None:
    with pytest.raises(AssertionError):
        assert_one_sentence(text)


async def test_a_newer_database_is_refused_in_one_sentence_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    with sqlite3.connect(path) as con:
        con.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    with pytest.raises(StoreError) as caught:
        await SqlRecordingService(path).open()
    text = str(caught.value)
    assert_one_sentence(text)
    assert f"version {LATEST_VERSION + 1}" in text and f"({LATEST_VERSION})" in text
    assert "update the cog" in text.lower()
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION + 1
        assert con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100, b"SQLite format 3\0" + b"\xff" * 4000])
async def test_a_damaged_database_is_refused_in_one_sentence_and_left_alone(tmp_path: Path, content: bytes) -> None:
    """What an operator meets after a disk error: one sentence saying what to do, not
    a raw ``DatabaseError``, and the file as it was (it may still be rescued)."""
    path = tmp_path / "chunkrecorder.sqlite3"
    path.write_bytes(content)
    with pytest.raises(StoreError) as caught:
        await SqlRecordingService(path).open()
    text = str(caught.value)
    assert_one_sentence(text)
    assert "chunkrecorder.sqlite3 is damaged" in text and "move it aside" in text, text
    assert path.read_bytes() == content


async def test_a_closed_store_says_so_in_one_sentence(tmp_path: Path) -> None:
    store = SqlRecordingService(tmp_path / "closed.sqlite3")
    with pytest.raises(StoreError) as caught:
        await store.list_meetings(1)
    assert_one_sentence(str(caught.value))
    assert "not open" in str(caught.value)


def _file(user: int) -> NewRecording:
    return NewRecording(
        kind=RecordingKind.PER_USER, user_id=user, filename="f.mp3", path="/f.mp3",
        duration_in_ms=10, sha256="0" * 64, size_bytes=1,
    )


Scenario = Callable[[SqlRecordingService], Awaitable[object]]


async def _meeting_id(store: SqlRecordingService) -> str:
    return (await store.create_meeting(guild_id=1, channel_id=2, started_by=3)).id


async def _chunk_id(store: SqlRecordingService, meeting_id: str, seq: int = 0) -> str:
    chunk = await store.insert_temp_recording(
        meeting_id=meeting_id, user_id=42, guild_id=1, pcm_path=f"/{seq}.pcm", seq=seq,
        start_sample=0, sample_count=960,
    )
    return chunk.id


async def _unknown_meeting(store: SqlRecordingService) -> object:
    return await store.get_meeting(MISSING)


async def _meeting_of_another_guild(store: SqlRecordingService) -> object:
    return await store.get_meeting(await _meeting_id(store), guild_id=999)


async def _unknown_chunk(store: SqlRecordingService) -> object:
    return await store.get_temp_recording(MISSING)


async def _unknown_recording(store: SqlRecordingService) -> object:
    return await store.get_recording(MISSING)


async def _unknown_pipeline(store: SqlRecordingService) -> object:
    return await store.meeting_pipeline(MISSING)


async def _meeting_backwards(store: SqlRecordingService) -> object:
    meeting_id = await _meeting_id(store)
    await store.set_meeting_status(meeting_id, MeetingStatus.STOPPING)
    return await store.set_meeting_status(meeting_id, MeetingStatus.ACTIVE)


async def _chunk_out_of_order(store: SqlRecordingService) -> object:
    return await store.mark_temp_recording_cleaned(await _chunk_id(store, await _meeting_id(store)))


async def _retry_of_a_queued_chunk(store: SqlRecordingService) -> object:
    chunk_id = await _chunk_id(store, await _meeting_id(store))
    return await store.requeue_failed_attempt(chunk_id, error="x", not_before=None)


async def _promotion_while_encoding(store: SqlRecordingService) -> object:
    meeting_id = await _meeting_id(store)
    await _chunk_id(store, meeting_id, 0)
    await _chunk_id(store, meeting_id, 1)
    await store.set_meeting_status(meeting_id, MeetingStatus.STOPPING)
    return await store.promote_temp_recordings_to_persistent(meeting_id, [_file(42)])


async def _promotion_of_an_active_meeting(store: SqlRecordingService) -> object:
    return await store.promote_temp_recordings_to_persistent(await _meeting_id(store), [_file(42)])


async def _track_moved_meanwhile(store: SqlRecordingService) -> object:
    meeting_id = await _meeting_id(store)
    await store.ensure_tracks(meeting_id, [42])
    await store.advance_track(meeting_id, 42, from_seq=0, to_seq=1, bytes_=10, frames=1)
    await store.advance_track(meeting_id, 42, from_seq=0, to_seq=1, bytes_=10, frames=1)
    return None


# (scenario, the error it must raise, what the sentence must name)
SCENARIOS: list[tuple[Scenario, type[Exception], list[str]]] = [
    (_unknown_meeting, NotFound, [MISSING]),
    (_meeting_of_another_guild, NotFound, ["meeting"]),
    (_unknown_chunk, NotFound, [MISSING]),
    (_unknown_recording, NotFound, [MISSING]),
    (_unknown_pipeline, NotFound, [MISSING]),
    (_meeting_backwards, IllegalTransition, ["STOPPING", "ACTIVE"]),
    (_chunk_out_of_order, IllegalTransition, ["QUEUED", "cleaned"]),
    (_retry_of_a_queued_chunk, IllegalTransition, ["QUEUED", "retried"]),
    (_promotion_while_encoding, StoreError, ["2 chunk"]),
    (_promotion_of_an_active_meeting, IllegalTransition, ["ACTIVE", "promoted"]),
    (_track_moved_meanwhile, IllegalTransition, ["Track 42", "chunk 0"]),
]


@pytest.mark.parametrize("scenario, error, names", SCENARIOS, ids=[s[0].__name__.strip("_") for s in SCENARIOS])
async def test_each_refusal_is_one_sentence(
    tmp_path: Path, scenario: Scenario, error: type[Exception], names: list[str]
) -> None:
    async with SqlRecordingService(tmp_path / "store.sqlite3") as store:
        with pytest.raises(error) as caught:
            await scenario(store)
    text = str(caught.value)
    assert_one_sentence(text)
    for name in names:
        assert name in text, (name, text)


def test_a_row_that_does_not_fit_its_type_is_refused_in_one_sentence() -> None:
    con = sqlite3.connect(":memory:")
    con.row_factory = sqlite3.Row
    extra = con.execute("SELECT 7 AS quality, 1 AS keep_temp, 3 AS flushed_windows, 'red' AS colour").fetchone()
    short = con.execute("SELECT 7 AS quality, 1 AS keep_temp").fetchone()
    con.close()
    for row in (extra, short):
        with pytest.raises(StoreError) as caught:
            row_to(MeetingPipeline, row)
        assert_one_sentence(str(caught.value))
        assert "MeetingPipeline" in str(caught.value)
