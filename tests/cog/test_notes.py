"""``[p]record note`` through the offline Red bot: the note is in ``[p]recordings info``,
in the posted label track and as a chapter of the posted mix, at the meeting time it
was taken; a data deletion takes the author's notes out of all three."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import mutagen.id3

from chunkrecorder.audio import id3, mp3
from chunkrecorder.objects.records import RecordingKind
from tests.cog.test_record import best_lag, files_of, mono
from tests.support.red import ADMIN_ID, GUILD_ID, MEMBER_ID, SPEAKER_ID, TEXT_ID, VoiceWorld


def chapters(data: bytes) -> list[tuple[int, int, str]]:
    tag = mutagen.id3.ID3(io.BytesIO(data))
    (toc,) = tag.getall("CTOC")
    by_id = {c.element_id: c for c in tag.getall("CHAP")}
    return [(by_id[e].start_time, by_id[e].end_time, str(by_id[e].sub_frames["TIT2"])) for e in toc.child_element_ids]


async def test_notes_become_labels_chapters_and_info_lines(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    (reply,) = await world.invoke(MEMBER_ID, "!record note too early")
    assert reply.text == "Nothing is being recorded in this server, so there is nothing to take a note in."
    await world.invoke(ADMIN_ID, "!record start")
    await voice.run(1.0)
    (reply,) = await world.invoke(MEMBER_ID, "!record note Intro @everyone")
    assert reply.text == "📝 Noted at 0:01: Intro @\u200beveryone"
    await voice.run(1.5)
    await world.invoke(SPEAKER_ID, "!record note Budget")
    await voice.run(0.5)
    (reply,) = await world.invoke(MEMBER_ID, "!record note " + "x" * 301)
    assert reply.text == "A note is 1 to 300 characters, not 301."
    meeting_id = voice.live.meeting_id
    replies = await world.invoke(ADMIN_ID, "!record stop")
    files = files_of(replies)
    labels = files[f"recording_{meeting_id}_labels.txt"].decode()
    assert labels == "1.000000\t1.000000\tIntro @everyone\n2.500000\t2.500000\tBudget\n"
    assert any(m.text.startswith("📝 2 notes: the label track for Audacity") for m in replies)
    mix = files[f"recording_{meeting_id}_mix.mp3"]
    assert chapters(mix) == [(1000, 2500, "Intro @everyone"), (2500, 3000, "Budget")]
    # The chapters sit before the first frame: what a player decodes is the meeting, in sync.
    decoded = mono(mp3.decode(mix[id3.tag_length(mix):]))
    assert abs(len(decoded) - 3 * 48_000) <= 1152
    assert best_lag(decoded, mono(voice.net.expected(SPEAKER_ID, len(decoded))))[1] > 0.5
    # Every file carries its tags (issue 14) with the names Discord's cache gives the cog;
    # the chapters are the mix's only.
    guild = world.bot.get_guild(GUILD_ID)
    speaker_name = guild.get_member(SPEAKER_ID).display_name
    for name, data in files.items():
        if name.endswith(f"_{SPEAKER_ID}.mp3"):
            tag = mutagen.id3.ID3(io.BytesIO(data))
            assert str(tag["TPE1"]) == speaker_name and not tag.getall("CHAP")
            assert str(tag["TIT2"]).endswith(f" — {speaker_name}")
            assert str(tag["TALB"]).startswith(f"{guild.name} · ")
    mix_tag = mutagen.id3.ID3(io.BytesIO(mix))
    assert str(mix_tag["TPE1"]) == guild.name and str(mix_tag["TIT2"]).endswith(" — mix")
    assert meeting_id in str(mix_tag.getall("COMM")[0])

    info = "\n".join(m.text for m in await world.invoke(ADMIN_ID, f"!recordings info {meeting_id}"))
    assert "Notes (2, chapters of the mixed file):" in info
    assert "`0:01` Intro @\u200beveryone · Member" in info and "`0:02` Budget · Speaker" in info, info

    # The member asks for their data to be deleted: their note leaves the label track and
    # the mix's chapters (the mix itself stays), and the database describes the new file.
    await world.cog.red_delete_data_for_user(requester="user_strict", user_id=MEMBER_ID)
    labels_path = world.cog.data_dir / "recordings" / f"recording_{meeting_id}_labels.txt"
    assert labels_path.read_text() == "2.500000\t2.500000\tBudget\n"
    (rec,) = [r for r in await world.cog.store.recordings_for_meeting(meeting_id) if r.kind is RecordingKind.MIXED]
    data = Path(rec.path).read_bytes()
    assert chapters(data) == [(2500, 3000, "Budget")]
    assert str(mutagen.id3.ID3(io.BytesIO(data))["TPE1"]) == guild.name  # its other tags kept
    assert rec.size_bytes == len(data) and rec.sha256 == hashlib.sha256(data).hexdigest()
    assert data[id3.tag_length(data):] == mix[id3.tag_length(mix):]  # the frames untouched
    assert [n.text for n in await world.cog.store.notes_for_meeting(meeting_id)] == ["Budget"]

    # Deleting the meeting takes its notes and its label track along.
    await world.invoke_and_answer(ADMIN_ID, f"!recordings delete {meeting_id}", "yes")
    assert not labels_path.exists()
    assert await world.cog.store.notes_for_meeting(meeting_id) == []
    assert (await world.cog.store.list_meetings(GUILD_ID))[1] == 0


async def test_a_meeting_without_notes_has_no_label_track_and_a_mix_without_chapters(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    await world.invoke(ADMIN_ID, "!record start")
    await voice.run(1.5)
    files = files_of(await world.invoke(ADMIN_ID, "!record stop"))
    assert len(files) == 3 and not any(n.endswith(".txt") for n in files)
    for data in files.values():  # tagged (issue 14), but no chapters
        assert data.startswith(b"ID3") and not mutagen.id3.ID3(io.BytesIO(data)).getall("CHAP")
    assert not [m for m in world.sent(TEXT_ID) if m.text.startswith("📝")]
