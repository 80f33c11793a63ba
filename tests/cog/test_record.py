"""`[p]record` end to end: Red's bot and checks, the cog, the real receive path and
pipeline, and the harness's fake voice channel as the only stand-in (for Discord's
voice servers). What is asserted is what members see: messages, the bot's nickname,
and the attached MP3s decoded and compared with what each member said."""

from __future__ import annotations

import asyncio
from pathlib import Path

import discord
import numpy as np

from chunkrecorder.audio import mp3
from chunkrecorder.audio.opus import CODEC_DELAY_SAMPLES
from chunkrecorder.objects.records import MeetingStatus
from chunkrecorder.store import NewRecording
from chunkrecorder.objects.records import RecordingKind
from tests.support.red import ADMIN_ID, BOT_PERMS, GUILD_ID, MEMBER_ID, OWNER_ID, SPEAKER_ID, TEXT_ID, VOICE2_ID, VOICE_ID, RedWorld, Sent, VoiceWorld, wait_for_sent

RATE = 48_000
#: The issue's alignment tolerance: 5 ms.
TOLERANCE = int(0.005 * RATE)
#: Decoded Opus trails what the member said by the sender's encoder look-ahead, the
#: same for everyone (docs/architecture.md); a faithful recording trails by exactly that.
DELAY = CODEC_DELAY_SAMPLES


def mono(pcm: np.ndarray) -> np.ndarray:
    return pcm.astype(np.float64).mean(axis=1) if pcm.ndim == 2 else pcm.astype(np.float64)


def best_lag(decoded: np.ndarray, reference: np.ndarray, search: int = int(0.03 * RATE)) -> tuple[int, float]:
    """Lag (samples) where ``decoded`` best matches ``reference``, and that correlation."""
    n = min(len(decoded), len(reference)) - 2 * search
    ref = reference[search:search + n]
    best = (0, -2.0)
    for lag in range(-search, search + 1, 8):
        seg = decoded[search + lag:search + lag + n]
        c = float(np.dot(seg, ref) / (np.linalg.norm(seg) * np.linalg.norm(ref) + 1e-9))
        best = max(best, (lag, c), key=lambda x: x[1])
    lag0, _ = best
    for lag in range(lag0 - 8, lag0 + 9):  # refine to the sample
        seg = decoded[search + lag:search + lag + n]
        c = float(np.dot(seg, ref) / (np.linalg.norm(seg) * np.linalg.norm(ref) + 1e-9))
        best = max(best, (lag, c), key=lambda x: x[1])
    return best


def files_of(replies: list[Sent]) -> dict[str, bytes]:
    return {name: data for m in replies for name, data in m.files}


async def record(voice: VoiceWorld, seconds: float, *, by: int = ADMIN_ID) -> list[Sent]:
    """Start, let ``seconds`` of meeting pass, stop; returns everything the bot said."""
    world = voice.world
    started = await world.invoke(by, "!record start")
    assert voice.live is not None, [m.text for m in started]
    await voice.run(seconds)
    return started + await world.invoke(by, "!record stop")


# --------------------------------------------------------------------------- the whole path
async def test_start_speak_stop_posts_files_that_line_up_with_the_speakers(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    started = await world.invoke(ADMIN_ID, "!record start")
    (announce,) = [m for m in started if m.channel_id == TEXT_ID]
    assert announce.text == ("🔴 Recording **Standup** (per speaker and mixed). Stop with `!record stop`; "
                             "anyone can opt out with `!record optout`.")
    assert world.guild.me.nick == "[REC] Minutes"
    # Everyone in the voice channel is told in its own chat, by name.
    (notice,) = [m for m in started if m.channel_id == VOICE_ID]
    assert notice.text.startswith("🔴 **[REC]** This voice channel is being recorded, started by Admin.")
    for uid in (ADMIN_ID, SPEAKER_ID, MEMBER_ID):
        assert f"<@{uid}>" in notice.text
    await voice.run(3.0)
    (status,) = await world.invoke(MEMBER_ID, "!record status")
    assert "Recording **Standup** for 3 seconds" in status.text
    assert "Speakers heard: Member and Speaker." in status.text

    replies = await world.invoke(ADMIN_ID, "!record stop")
    progress, result, uploads = replies
    assert progress.text.startswith("⏹️ Recording of **Standup** ended (stopped by Admin)")
    assert progress.text.endswith("done.") and len(progress.history) > 2  # it showed progress
    meeting_id = voice.net.links[0] and (await world.cog.store.list_meetings(GUILD_ID))[0][0].id
    assert result.text.startswith(f"✅ **Standup**: 0:03 recorded, 3 files")
    for line in ("• **Member**: 0:03", "• **Speaker**: 0:03", "• **Mixed**: 0:03"):
        assert line in result.text
    files = files_of([uploads])
    assert set(files) == {f"recording_{meeting_id}_{SPEAKER_ID}.mp3", f"recording_{meeting_id}_{MEMBER_ID}.mp3",
                          f"recording_{meeting_id}_mix.mp3"}
    assert world.guild.me.nick == "Minutes"  # restored

    # What a member hears when they open the files: their own voice, in time.
    n = 3 * RATE
    expected = {uid: mono(voice.net.expected(uid, n)) for uid in (SPEAKER_ID, MEMBER_ID)}
    lags = {}
    for uid in (SPEAKER_ID, MEMBER_ID):
        decoded = mono(mp3.decode(files[f"recording_{meeting_id}_{uid}.mp3"]))
        assert abs(len(decoded) - n) <= 1152
        lags[uid], corr = best_lag(decoded, expected[uid])
        assert corr > 0.9 and abs(lags[uid] - DELAY) <= TOLERANCE, (uid, lags[uid], corr)
        other = expected[MEMBER_ID if uid == SPEAKER_ID else SPEAKER_ID]
        assert best_lag(decoded, other)[1] < 0.3  # not the other speaker
    assert abs(lags[SPEAKER_ID] - lags[MEMBER_ID]) <= 2, lags  # the tracks are in sync
    mix = mono(mp3.decode(files[f"recording_{meeting_id}_mix.mp3"]))
    for uid in (SPEAKER_ID, MEMBER_ID):
        lag, corr = best_lag(mix, expected[uid])
        assert corr > 0.5 and abs(lag - DELAY) <= TOLERANCE, (uid, lag, corr)

    assert (await world.invoke(ADMIN_ID, "!record status"))[0].text == "Nothing is being recorded in this server."
    (listing,) = await world.invoke(ADMIN_ID, "!recordings list")
    assert f"`{meeting_id}`" in listing.text and "(done, 0:03)" in listing.text


async def test_a_second_start_names_the_channel_already_recorded(voice_world: VoiceWorld) -> None:
    world = voice_world.world
    await world.invoke(ADMIN_ID, "!record start")
    world.voice_state(OWNER_ID, VOICE2_ID)
    (reply,) = await world.invoke(OWNER_ID, "!record start")
    assert reply.text == "I'm already recording **Standup** in this server; `!record stop` ends it first."
    assert len(voice_world.net.links) == 1
    _, total = await world.cog.store.list_meetings(GUILD_ID)
    assert total == 1


async def test_stop_with_nothing_recording(cog_world: RedWorld) -> None:
    (reply,) = await cog_world.invoke(ADMIN_ID, "!record stop")
    assert reply.text == "Nothing is being recorded in this server."


async def test_start_refusals_are_one_line_and_leave_nothing_behind(voice_world: VoiceWorld) -> None:
    world = voice_world.world

    async def says(author: int, command: str) -> str:
        (reply,) = await world.invoke(author, command)
        return reply.text

    assert await says(OWNER_ID, "!record start") == \
        "Join a voice channel first, or name one: `!record start <channel>`."
    assert await says(OWNER_ID, "!record start Atrium") == \
        "I can't find a voice channel called `Atrium`. Usage: `!record start [channel]`"
    world.deny_bot(VOICE2_ID, connect=True)
    assert await says(OWNER_ID, "!record start Lounge") == "I need the Connect permission in **Lounge** to record it."
    voice_world.net.fail_next_connect(asyncio.TimeoutError())
    assert await says(ADMIN_ID, "!record start") == \
        "I couldn't join **Standup**: Discord did not answer in time. Try again."
    voice_world.net.fail_next_connect(discord.ClientException("Already connected to a voice channel."))
    assert await says(ADMIN_ID, "!record start") == \
        "I couldn't join **Standup**: Already connected to a voice channel."
    assert voice_world.live is None
    assert (await world.cog.store.list_meetings(GUILD_ID))[1] == 0
    assert world.nick_changes == [] and world.guild.me.nick == "Minutes"


async def test_named_channel_is_recorded(voice_world: VoiceWorld) -> None:
    world = voice_world.world
    (reply,) = [m for m in await world.invoke(OWNER_ID, "!record start Standup") if m.channel_id == TEXT_ID]
    assert "Recording **Standup**" in reply.text
    assert voice_world.live.channel_id == VOICE_ID and voice_world.live.started_by == OWNER_ID


# --------------------------------------------------------------------------- opting out
async def test_an_opted_out_member_never_reaches_disk(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    (reply,) = await world.invoke(MEMBER_ID, "!record optout")
    assert reply.text.startswith("Done: I won't record your voice in this server.")
    assert await world.cog.config.member_from_ids(GUILD_ID, MEMBER_ID).opted_out() is True

    await world.invoke(ADMIN_ID, "!record start")
    await voice.run(2.5)
    live = voice.live
    chunk_dir = world.cog.data_dir / "chunks" / live.meeting_id
    assert any(chunk_dir.iterdir()), "the speaker's chunks are being written"
    assert not list(chunk_dir.glob(f"{MEMBER_ID}_*")), "nothing of the opted-out member on disk"
    assert live.session.snapshot().frames_refused > 0
    rows = await world.cog.store.get_temp_recordings_for_meeting(live.meeting_id, user_id=MEMBER_ID)
    assert rows == []

    replies = await world.invoke(ADMIN_ID, "!record stop")
    files = files_of(replies)
    assert len(files) == 2 and not any(str(MEMBER_ID) in name for name in files)
    mix = mono(mp3.decode(next(d for n, d in files.items() if n.endswith("_mix.mp3"))))
    speaker = mono(voice.net.expected(SPEAKER_ID, len(mix)))
    member = mono(voice.net.expected(MEMBER_ID, len(mix)))
    assert best_lag(mix, speaker)[1] > 0.9  # the mix is the speaker alone
    assert best_lag(mix, member)[1] < 0.3

    (reply,) = await world.invoke(MEMBER_ID, "!record optin")
    assert "recorded again" in reply.text
    assert await world.cog.config.member_from_ids(GUILD_ID, MEMBER_ID).opted_out() is False
    assert world.cog.settings.accepts(GUILD_ID, MEMBER_ID)


async def test_opting_out_mid_meeting_drops_the_rest(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    await world.invoke(ADMIN_ID, "!record start")
    await voice.run(1.5)
    (reply,) = await world.invoke(MEMBER_ID, "!record optout")
    assert "dropped from the current recording too" in reply.text
    refused = voice.live.session.snapshot().frames_refused
    await voice.run(1.5)
    assert voice.live.session.snapshot().frames_refused >= refused + 60  # ~75 frames of 20 ms


# --------------------------------------------------------------------------- posting files
async def test_without_attach_files_or_change_nickname_recording_still_works(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    world.set_bot_permissions(discord.Permissions(BOT_PERMS.value & ~discord.Permissions(change_nickname=True).value))
    world.deny_bot(TEXT_ID, attach_files=True)
    replies = await record(voice, 2.0)
    assert world.nick_changes == []
    assert not files_of(replies)
    assert any("3 files" in m.text for m in replies)
    assert replies[-1].text == "I can't attach files in this channel (I need Attach Files); " \
                               "`!recordings get <id>` works where I can."


async def test_announce_off_drops_the_announcement_but_never_the_indicator_or_the_notice(voice_world: VoiceWorld) -> None:
    world = voice_world.world
    await world.invoke(ADMIN_ID, "!recordingset announce off")
    replies = await world.invoke(ADMIN_ID, "!record start")
    (reply,) = [m for m in replies if m.channel_id == TEXT_ID]
    assert reply.text.startswith("Recording **Standup** (meeting `")
    assert world.nick_changes == ["[REC] Minutes"]  # the indicator is not optional
    assert [m.text[:12] for m in replies if m.channel_id == VOICE_ID] == ["🔴 **[REC]** "]


async def test_files_over_the_upload_limit_are_not_attached_and_say_how_to_get_them(cog_world: RedWorld) -> None:
    world = cog_world
    store = world.cog.store
    meeting = await store.create_meeting(guild_id=GUILD_ID, channel_id=VOICE_ID, started_by=ADMIN_ID)
    folder = world.cog.data_dir / "recordings"
    folder.mkdir(parents=True, exist_ok=True)
    recs = []
    for user, size in ((SPEAKER_ID, 11 * 2**20), (MEMBER_ID, 4096)):
        path = folder / f"recording_{meeting.id}_{user}.mp3"
        path.write_bytes(b"\xff" * size)
        recs.append(await store.insert_persistent_recording(meeting.id, NewRecording(
            kind=RecordingKind.PER_USER, user_id=user, filename=path.name, path=str(path),
            duration_in_ms=60_000, sha256="0" * 64, size_bytes=size)))
    big, small = recs
    (reply,) = await world.invoke(ADMIN_ID, f"!recordings get {big.id}")
    assert not reply.files
    assert reply.text == (f"`{big.filename}` (11.0 MiB) is over this server's 10.0 MiB upload limit: the bot owner "
                          f"can copy it from `recordings/{big.filename}` in the cog's data folder.")
    (reply,) = await world.invoke(ADMIN_ID, f"!recordings get {small.id}")
    assert reply.files == [(small.filename, b"\xff" * 4096)]
    # Members may fetch their own per-speaker file, not someone else's.
    (reply,) = await world.invoke(MEMBER_ID, f"!recordings get {small.id}")
    assert reply.files and reply.files[0][0] == small.filename
    (reply,) = await world.invoke(MEMBER_ID, f"!recordings get {big.id}")
    assert reply.text.startswith("You can fetch your own recordings")
    assert not reply.files


async def test_a_stop_that_cannot_write_keeps_the_audio_and_can_be_repeated(voice_world: VoiceWorld) -> None:
    """The chunk folder becomes unwritable mid-meeting (here: a file where the folder
    was, which even root cannot write into). Stop says so in one line and keeps the
    meeting; once the folder is back, stopping again posts everything."""
    voice, world = voice_world, voice_world.world
    await world.invoke(ADMIN_ID, "!record start")
    await voice.run(2.0)
    folder = world.cog.data_dir / "chunks" / voice.live.meeting_id
    aside = folder.with_name(folder.name + ".aside")
    folder.rename(aside)
    folder.write_bytes(b"")
    await voice.run(1.0)

    replies = await world.invoke(ADMIN_ID, "!record stop")
    assert replies[0].text.endswith("not finished, see below.")
    failure = replies[-1].text
    assert failure.startswith("Could not write the last part of the recording"), failure
    assert "stop again" in failure and "\n" not in failure and "Traceback" not in failure
    assert voice.live is not None and not voice.live.ending  # still there to be stopped again

    folder.unlink()
    aside.rename(folder)
    replies = await world.invoke(ADMIN_ID, "!record stop")
    summary = next(m for m in replies if m.text.startswith("✅"))
    assert "0:03 recorded, 3 files" in summary.text, summary.text
    files = files_of(replies)
    n = 3 * RATE
    decoded = mono(mp3.decode(next(d for name, d in files.items() if name.endswith(f"_{SPEAKER_ID}.mp3"))))
    lag, corr = best_lag(decoded, mono(voice.net.expected(SPEAKER_ID, n)))
    assert corr > 0.9 and abs(lag - DELAY) <= TOLERANCE, (lag, corr)
    assert world.guild.me.nick == "Minutes"


async def test_a_speaker_over_the_bots_audio_budget_is_named_in_status_and_gets_no_file(
    voice_world: VoiceWorld,
) -> None:
    """Issue 8: live audio has a bot-wide memory budget. A speaker who does not fit is not
    recorded, `[p]record status` says who, and everyone else's file is made as usual."""
    from chunkrecorder.pipeline.budget import speaker_cost

    voice, world = voice_world, voice_world.world
    voice.cog.service.recorder.budget.limit = speaker_cost(1.0, 1)  # room for one speaker
    await world.invoke(ADMIN_ID, "!record start")
    await voice.run(2.0)
    snap = voice.live.session.snapshot()
    assert len(snap.speakers) == 1 and len(snap.speakers_over_budget) == 1
    (refused,) = snap.speakers_over_budget
    name = world.member(refused).display_name
    replies = await world.invoke(ADMIN_ID, "!record status")
    text = "\n".join(m.text for m in replies)
    assert f"⚠️ Not recorded, the bot's memory for live audio being full: {name}." in text, text
    replies = await world.invoke(ADMIN_ID, "!record stop")
    done = await wait_for_sent(world, lambda m: m.text.startswith("✅"))
    assert f"({refused})" not in done.text and "2 files" in done.text, done.text  # one speaker + the mix
