"""A member's data on request (Red's `red_delete_data_for_user`), and the admin
commands that read and delete recordings, which never cross from one guild to another."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from chunkrecorder.core.formatting import human_size

from chunkrecorder.commands import recordings as recordings_commands
from chunkrecorder.objects.records import RecordingKind
from tests.support.red import ADMIN_ID, GUILD_ID, MEMBER_ID, OTHER_ADMIN_ID, OTHER_GUILD_ID, OTHER_TEXT_ID, OWNER_ID, SPEAKER_ID, VOICE_ID, RedWorld, VoiceWorld, settle


async def meeting_with_two_speakers(voice: VoiceWorld, seconds: float = 2.0) -> str:
    world = voice.world
    await world.invoke(ADMIN_ID, "!record start")
    meeting_id = voice.live.meeting_id
    await voice.run(seconds)
    await world.invoke(ADMIN_ID, "!record stop")
    return meeting_id


async def files_by_owner(world: RedWorld, meeting_id: str) -> dict:
    return {r.user_id: r for r in await world.cog.store.recordings_for_meeting(meeting_id)}


@pytest.mark.parametrize("requester", ["discord_deleted_user", "owner", "user", "user_strict"])
async def test_deleting_a_members_data(voice_world: VoiceWorld, requester: str) -> None:
    voice, world = voice_world, voice_world.world
    meeting_id = await meeting_with_two_speakers(voice)
    before = await files_by_owner(world, meeting_id)
    assert set(before) == {SPEAKER_ID, MEMBER_ID, None}
    await world.invoke(SPEAKER_ID, "!record optout")

    await world.cog.red_delete_data_for_user(requester=requester, user_id=SPEAKER_ID)

    after = await files_by_owner(world, meeting_id)
    assert set(after) == {MEMBER_ID, None}, "their own file is gone, the others' and the mix stay"
    assert not Path(before[SPEAKER_ID].path).exists()
    assert Path(before[MEMBER_ID].path).exists() and Path(before[None].path).exists()
    recs, temps = await world.cog.store.user_data(SPEAKER_ID)
    assert recs == [] and temps == []
    opted_out = await world.cog.config.member_from_ids(GUILD_ID, SPEAKER_ID).opted_out()
    # A member's own non-strict request keeps the opt-out: erasing it would start
    # recording them again. Every other kind erases it with the rest.
    assert opted_out is (requester == "user")
    assert world.cog.settings.accepts(GUILD_ID, SPEAKER_ID) is (requester != "user")


async def test_deleting_during_a_meeting_drops_the_rest_and_the_file(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    await world.invoke(ADMIN_ID, "!record start")
    await voice.run(1.5)
    meeting_id = voice.live.meeting_id
    await world.cog.red_delete_data_for_user(requester="user_strict", user_id=MEMBER_ID)
    assert MEMBER_ID not in voice.live.session.snapshot().speakers  # buffered audio dropped
    assert not list((world.cog.data_dir / "recordings").glob(f"recording_{meeting_id}_{MEMBER_ID}*"))
    refused = voice.live.session.snapshot().frames_refused
    await voice.run(1.5)
    assert voice.live.session.snapshot().frames_refused > refused
    replies = await world.invoke(ADMIN_ID, "!record stop")
    summary = next(m for m in replies if m.text.startswith("✅"))
    assert "**Member**" not in summary.text and "2 files" in summary.text
    assert not any(str(MEMBER_ID) in name for m in replies for name, _ in m.files)
    recs, temps = await world.cog.store.user_data(MEMBER_ID)
    assert recs == [] and temps == []


async def test_unfinished_chunks_of_a_member_are_deleted(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    await world.invoke(ADMIN_ID, "!record start")
    await voice.run(2.5)
    live = voice.live
    await world.cog.service.recorder.wait_idle(30)
    _, temps = await world.cog.store.user_data(MEMBER_ID)
    assert temps, "chunks of the live meeting exist"
    await world.cog.red_delete_data_for_user(requester="owner", user_id=MEMBER_ID)
    _, temps_after = await world.cog.store.user_data(MEMBER_ID)
    assert temps_after == []
    assert not any(Path(t.pcm_path).exists() or (t.mp3_path and Path(t.mp3_path).exists()) for t in temps)
    chunk_dir = world.cog.data_dir / "chunks" / live.meeting_id
    assert not list(chunk_dir.glob(f"{MEMBER_ID}_*"))


# --------------------------------------------------------------------------- [p]recordings
async def test_info_tells_what_a_file_is_and_why_a_mix_stays(voice_world: VoiceWorld) -> None:
    world = voice_world.world
    meeting_id = await meeting_with_two_speakers(voice_world)
    files = await files_by_owner(world, meeting_id)
    (info,) = await world.invoke(ADMIN_ID, f"!recordings info {files[SPEAKER_ID].id}")
    assert "Speaker: Speaker" in info.text and "Length: 0:02" in info.text
    assert "Path (owner only)" not in info.text
    (info,) = await world.invoke(OWNER_ID, f"!recordings info {files[None].id}")
    assert "Speaker: Mixed (everyone)" in info.text
    assert "cannot be split per member" in info.text and "does not remove it" in info.text
    assert f"Path (owner only): `{files[None].path}`" in info.text
    (info,) = await world.invoke(ADMIN_ID, f"!recordings info {meeting_id}")
    assert f"**Meeting `{meeting_id}`** in **Standup** (done)" in info.text
    assert "hybrid, 1 s chunks, 64 kb/s, mono" in info.text


async def test_delete_asks_first(voice_world: VoiceWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    world = voice_world.world
    meeting_id = await meeting_with_two_speakers(voice_world)
    files = await files_by_owner(world, meeting_id)
    target = files[MEMBER_ID]

    replies = await world.invoke_and_answer(ADMIN_ID, f"!recordings delete {target.id}", "no")
    assert replies[0].text.startswith(f"Delete the recording `{target.id}` (Member, 0:02")
    assert replies[-1].text == "Kept: nothing was deleted."
    monkeypatch.setattr(recordings_commands, "CONFIRM_TIMEOUT_S", 0.05)
    replies = await world.invoke(ADMIN_ID, f"!recordings delete {target.id}")
    assert replies[-1].text == "No answer, so nothing was deleted."
    # Someone else saying "yes" is not a confirmation.
    task = asyncio.create_task(world.invoke(ADMIN_ID, f"!recordings delete {target.id}"))
    await asyncio.sleep(0.01)
    await world.say(MEMBER_ID, "yes")
    await task
    assert Path(target.path).exists() and MEMBER_ID in await files_by_owner(world, meeting_id)
    monkeypatch.setattr(recordings_commands, "CONFIRM_TIMEOUT_S", 10)

    size = Path(target.path).stat().st_size
    replies = await world.invoke_and_answer(ADMIN_ID, f"!recordings delete {target.id}", "yes")
    assert replies[-1].text == f"Deleted the recording `{target.id}` ({human_size(size)} freed)."
    assert not Path(target.path).exists() and MEMBER_ID not in await files_by_owner(world, meeting_id)

    size = sum(Path(r.path).stat().st_size for r in files.values() if Path(r.path).exists())
    replies = await world.invoke_and_answer(ADMIN_ID, f"!recordings delete {meeting_id}", "yes")
    assert replies[0].text.startswith(f"Delete the meeting `{meeting_id}` and its 2 files?")
    assert replies[-1].text == f"Deleted the meeting `{meeting_id}` (2 files, {human_size(size)} freed)."
    assert not any(Path(r.path).exists() for r in files.values())
    (listing,) = await world.invoke(ADMIN_ID, "!recordings list")
    assert listing.text == "No recordings in this server yet."


async def test_another_guild_cannot_see_fetch_or_delete(voice_world: VoiceWorld) -> None:
    world = voice_world.world
    meeting_id = await meeting_with_two_speakers(voice_world)
    files = await files_by_owner(world, meeting_id)
    rec = files[SPEAKER_ID]
    other = dict(channel_id=OTHER_TEXT_ID, guild_id=OTHER_GUILD_ID)
    for command in (f"!recordings info {rec.id}", f"!recordings info {meeting_id}",
                    f"!recordings delete {rec.id}", f"!recordings promote {meeting_id}"):
        (reply,) = await world.invoke(OTHER_ADMIN_ID, command, **other)
        assert reply.text.startswith("No recording or meeting `"), (command, reply.text)
    (reply,) = await world.invoke(OTHER_ADMIN_ID, f"!recordings get {rec.id}", **other)
    assert reply.text == f"No recording `{rec.id}` in this server." and not reply.files
    (reply,) = await world.invoke(OTHER_ADMIN_ID, "!recordings list", **other)
    assert reply.text == "No recordings in this server yet."
    assert Path(rec.path).exists()


async def test_list_pages_with_reds_menu(cog_world: RedWorld) -> None:
    world = cog_world
    first = await world.cog.store.create_meeting(guild_id=GUILD_ID, channel_id=VOICE_ID, started_by=ADMIN_ID)
    (reply,) = await world.invoke(ADMIN_ID, "!recordings list")
    assert f"`{first.id}`" in reply.text and "Page 1/1 · 1 meeting · " in reply.text
    ids = [first.id] + [
        (await world.cog.store.create_meeting(guild_id=GUILD_ID, channel_id=VOICE_ID, started_by=ADMIN_ID)).id
        for _ in range(6)]
    (reply,) = await world.invoke(ADMIN_ID, "!recordings list")
    assert "Page 1/2 · 7 meetings" in reply.text
    assert sum(f"`{i}`" in reply.text for i in ids) == 5
    (reply,) = await world.invoke(ADMIN_ID, "!recordings list 2")
    assert "Page 2/2" in reply.text and sum(f"`{i}`" in reply.text for i in ids) == 2
    (reply,) = await world.invoke(ADMIN_ID, "!recordings list 3")
    assert reply.text == "Page 3 does not exist: there are 2 pages."
    (reply,) = await world.invoke(ADMIN_ID, "!recordings list two")
    assert reply.text == "`two` is not a whole number. Usage: `!recordings list [page=1]`"
    (reply,) = await world.invoke(MEMBER_ID, "!recordings list")
    assert reply.text == "You need Manage Server (or the bot's admin role) to use that."
    (reply,) = await world.invoke(ADMIN_ID, "!recordings info nothing")
    assert reply.text.startswith("No recording or meeting `nothing` in this server")
    (reply,) = await world.invoke(ADMIN_ID, "!recordings promote")
    assert reply.text == "Missing `meeting_id`. Usage: `!recordings promote <meeting_id>`"


async def test_a_meeting_of_many_speakers_is_shown_whole_in_several_messages(cog_world: RedWorld) -> None:
    """60 speakers' files do not fit one message (Discord refuses over 2,000 characters):
    the info is cut between lines and every file is listed."""
    from chunkrecorder.store import NewRecording

    world = cog_world
    store = world.cog.store
    meeting = await store.create_meeting(guild_id=GUILD_ID, channel_id=VOICE_ID, started_by=ADMIN_ID)
    folder = world.cog.data_dir / "recordings"
    folder.mkdir(parents=True, exist_ok=True)
    ids = []
    for n in range(60):
        path = folder / f"recording_{meeting.id}_{n + 1}.mp3"
        path.write_bytes(b"\xff" * 10)
        rec = await store.insert_persistent_recording(meeting.id, NewRecording(
            kind=RecordingKind.PER_USER, user_id=n + 1, filename=path.name, path=str(path),
            duration_in_ms=60_000, sha256="0" * 64, size_bytes=10))
        ids.append(rec.id)
    replies = await world.invoke(ADMIN_ID, f"!recordings info {meeting.id}")
    assert len(replies) > 1
    text = "\n".join(m.text for m in replies)
    assert text.startswith(f"**Meeting `{meeting.id}`**")
    assert all(f"(`{i}`)" in text for i in ids)
    (listing,) = await world.invoke(ADMIN_ID, "!recordings list")  # a menu of pages, first one shown
    assert f"`{meeting.id}`" in listing.text and len(listing.text) <= 2000


async def test_retention_deletes_old_recordings_of_that_guild_only(cog_world: RedWorld) -> None:
    from freezegun import freeze_time

    from chunkrecorder.store import NewRecording

    world = cog_world
    store = world.cog.store
    folder = world.cog.data_dir / "recordings"
    folder.mkdir(parents=True, exist_ok=True)

    async def recording(guild_id: int, age_days: float):
        meeting = await store.create_meeting(guild_id=guild_id, channel_id=VOICE_ID, started_by=ADMIN_ID)
        path = folder / f"recording_{meeting.id}_mix.mp3"
        path.write_bytes(b"\xff" * 100)
        with freeze_time(datetime.now(timezone.utc) - timedelta(days=age_days)):  # made that long ago
            return await store.insert_persistent_recording(meeting.id, NewRecording(
                kind=RecordingKind.MIXED, user_id=None, filename=path.name, path=str(path),
                duration_in_ms=1000, sha256="0" * 64, size_bytes=100))

    old_here, fresh_here = await recording(GUILD_ID, 31), await recording(GUILD_ID, 29)
    old_there = await recording(OTHER_GUILD_ID, 400)
    (reply,) = await world.invoke(ADMIN_ID, "!recordingset retention 30")
    assert reply.text == "Recordings older than 30 days will be deleted."

    from .test_events import Listener

    listener = Listener()  # another cog, told of each file retention removes
    await world.bot.add_cog(listener)
    assert (await world.cog.service.cleanup()).recordings_deleted == 1
    await settle()
    ((kind, event),) = listener.seen
    assert (kind, event.reason, event.guild_id, event.recording.id) == ("deleted", "retention", GUILD_ID, old_here.id)
    remaining = {r.id for r in (await store.list_recordings(GUILD_ID))[0]}
    assert remaining == {fresh_here.id}
    assert not Path(old_here.path).exists() and Path(fresh_here.path).exists()
    assert Path(old_there.path).exists()  # the other guild keeps everything (retention 0)
    assert (await store.list_recordings(OTHER_GUILD_ID))[1] == 1


async def test_deleting_an_interrupted_meeting_removes_its_unfinished_audio_and_says_how_much(
    voice_world: VoiceWorld,
) -> None:
    """Issue 8: deleting a meeting a restart interrupted used to answer "(0 files)" and leave
    its half-built tracks on disk for days. Every file of it goes, and the reply says how
    much that freed; while it is being finished, the delete is refused in one sentence."""
    import chunkrecorder

    voice, world = voice_world, voice_world.world
    await world.invoke(ADMIN_ID, "!recordingset autopromote off")
    await world.invoke(ADMIN_ID, "!record start")
    await voice.run(2.5)
    meeting_id = voice.live.meeting_id
    await world.bot.remove_cog("ChunkRecorder")  # shut down mid-meeting: INTERRUPTED
    await chunkrecorder.setup(world.bot)
    world.cog = world.bot.get_cog("ChunkRecorder")
    await settle()
    await world.cog.service.recorder.wait_idle()  # its chunks encoded and appended to the .part files
    data = world.cog.data_dir

    def audio() -> dict[Path, int]:
        return {p: p.stat().st_size for p in data.rglob("*")
                if p.is_file() and (meeting_id in p.name or p.parent.name == meeting_id) and p.suffix != ".json"}

    before = audio()
    assert any(p.name.endswith(".mp3.part") for p in before), sorted(p.name for p in before)

    async with world.cog.service.recorder.promoter.exclusive(meeting_id):  # a promotion holds it
        (refused,) = await world.invoke(ADMIN_ID, f"!recordings delete {meeting_id}")
    assert refused.text == "That meeting is being finished right now; try again when it is done."
    assert audio() == before

    replies = await world.invoke_and_answer(ADMIN_ID, f"!recordings delete {meeting_id}", "yes")
    assert replies[0].text.startswith(f"Delete the meeting `{meeting_id}`, its 0 file(s) and "
                                      f"{human_size(sum(before.values()))} of unfinished audio?"), replies[0].text
    assert replies[-1].text == (f"Deleted the meeting `{meeting_id}` ({len(before)} files, "
                                f"{human_size(sum(before.values()))} freed).")
    assert audio() == {}
