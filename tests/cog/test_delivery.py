"""Every recording reaches the people allowed to have it, and nobody else: through Red's
real bot, the cog's commands, the real pipeline and (for links) the real web server on
localhost with a real HTTP client; Discord's REST edge is the only fake.

What members notice is asserted: where the files and links appear (the channel, or a
direct message), what each message says, that parts fit the limit and join back into
the file byte for byte, and that a link downloads the stored file.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path
from typing import Any

import aiohttp
import discord
import numpy as np
import pytest

from chunkrecorder.audio import mp3
from chunkrecorder.objects.records import RecordingKind
from chunkrecorder.store import NewRecording
from tests.support.red import (
    ADMIN_ID,
    BOT_ROLE_ID,
    GUILD_ID,
    MANAGER_ROLE_ID,
    MEMBER_ID,
    OWNER_ID,
    RECORDER_ROLE_MEMBER_ID,
    SPEAKER_ID,
    TEXT_ID,
    VOICE_ID,
    RedWorld,
    Sent,
    VoiceWorld,
)
from tests.support.signals import speech_like

NONE = discord.Permissions.none()
SEE_AND_JOIN = discord.Permissions(view_channel=True, connect=True)
LIMIT = 10 * 2**20  # the test guild's upload limit (no boosts)


def hide_standup(world: RedWorld, *, visible_to: list[tuple[int, int]]) -> None:
    """Standup hidden from @everyone; seen by the bot and by ``visible_to`` (id, 0 role | 1 member)."""
    world.set_overwrites(VOICE_ID, [
        (GUILD_ID, 0, NONE, SEE_AND_JOIN),
        (BOT_ROLE_ID, 0, SEE_AND_JOIN, NONE),
        *((target, kind, SEE_AND_JOIN, NONE) for target, kind in visible_to),
    ])


def files_in(messages: list[Sent], channel_id: int = TEXT_ID) -> dict[str, bytes]:
    """Files attached to the messages in one channel (the text channel by default)."""
    return {name: data for m in messages if m.channel_id == channel_id for name, data in m.files}


async def record(voice: VoiceWorld, seconds: float = 1.5, *, by: int = ADMIN_ID) -> list[Sent]:
    world = voice.world
    started = await world.invoke(by, "!record start")
    assert voice.live is not None, [m.text for m in started]
    await voice.run(seconds)
    return started + await world.invoke(by, "!record stop")


# --------------------------------------------------------------------------- who may record
async def test_the_recorder_role_cannot_record_a_channel_its_member_cannot_hear(voice_world: VoiceWorld) -> None:
    world = voice_world.world
    await world.invoke(ADMIN_ID, "!recordingset role Recorders")
    hide_standup(world, visible_to=[(MANAGER_ROLE_ID, 0)])
    (reply,) = await world.invoke(RECORDER_ROLE_MEMBER_ID, "!record start Standup")
    assert reply.text == ("You can only record a voice channel you can see and join yourself, and **Standup** "
                          "is not one of them.")
    assert voice_world.live is None and not voice_world.net.links  # never even joined


async def test_manage_server_does_not_grant_hearing_a_private_channel(voice_world: VoiceWorld) -> None:
    world = voice_world.world
    hide_standup(world, visible_to=[(SPEAKER_ID, 1)])
    (reply,) = await world.invoke(ADMIN_ID, "!record start Standup")
    assert reply.text.startswith("You can only record a voice channel you can see and join yourself")
    assert voice_world.live is None
    # The server's owner sees every channel.
    await world.invoke(OWNER_ID, "!record start Standup")
    assert voice_world.live is not None


# --------------------------------------------------------------------------- where files go
async def test_files_of_a_private_channel_go_to_the_starter_not_into_a_public_channel(voice_world: VoiceWorld) -> None:
    """The issue's case: #general is readable by everyone, Standup only by the managers."""
    world = voice_world.world
    hide_standup(world, visible_to=[(MANAGER_ROLE_ID, 0)])
    replies = await record(voice_world)
    assert not files_in(replies) and not files_in(world.sent())
    summary = next(m for m in replies if m.text.startswith("✅") and m.channel_id == TEXT_ID)
    head, said = summary.text.split("\n")
    assert "3 files" in head and "•" not in summary.text  # no per-speaker lines in public
    assert said == ("Not everyone who can read this channel can see **Standup**, so the files went to Admin by "
                    "direct message.")
    dms = world.dms(ADMIN_ID)
    assert dms[0].text.startswith("✅ **Standup**") and "•" in dms[0].text
    assert len(files_in(dms, dms[0].channel_id)) == 3
    assert world.dms(MEMBER_ID) == [] and world.dms(SPEAKER_ID) == []


async def test_files_stay_in_the_channel_when_everyone_reading_it_could_hear(voice_world: VoiceWorld) -> None:
    world = voice_world.world
    # Only managers see Standup, but #general is for managers only too.
    hide_standup(world, visible_to=[(MANAGER_ROLE_ID, 0)])
    world.set_overwrites(TEXT_ID, [(GUILD_ID, 0, NONE, discord.Permissions(view_channel=True)),
                                   (MANAGER_ROLE_ID, 0, discord.Permissions(view_channel=True), NONE),
                                   (BOT_ROLE_ID, 0, discord.Permissions(view_channel=True), NONE)])
    replies = await record(voice_world)
    assert len(files_in(replies)) == 3 and world.dms(ADMIN_ID) == []


async def test_delivery_dm_gives_the_starter_everything_and_each_speaker_their_own(voice_world: VoiceWorld) -> None:
    world = voice_world.world
    (reply,) = await world.invoke(ADMIN_ID, "!recordingset delivery dm")
    assert reply.text.startswith("Files now go by direct message")
    world.dms_closed.add(MEMBER_ID)
    replies = await record(voice_world)
    assert not files_in(replies)
    summary = next(m for m in replies if m.text.startswith("✅") and m.channel_id == TEXT_ID)
    assert summary.text.split("\n")[1:] == [
        "The files went by direct message: the whole meeting to Admin, and each speaker their own file.",
        "I could not send a direct message to Member (their direct messages are closed); "
        "`!recordings get <id>` fetches a file.",
    ]
    admin = files_in(world.dms(ADMIN_ID), world.rest.dm_channels[ADMIN_ID])
    speaker = files_in(world.dms(SPEAKER_ID), world.rest.dm_channels[SPEAKER_ID])
    assert len(admin) == 3
    (name, data), = speaker.items()
    assert name.endswith(f"_{SPEAKER_ID}.mp3") and admin[name] == data  # their own, and only that
    assert world.dms(SPEAKER_ID)[0].text.startswith("🎙️ Your recording of **Standup**")
    assert world.dms(MEMBER_ID) == []


# --------------------------------------------------------------------------- messages
@pytest.mark.parametrize("command", [
    "!recordings get {arg}", "!recordings info {arg}", "!recordings delete {arg}", "!recordings promote {arg}",
    "!record start {arg}", "!recordingset strategy {arg}", "!recordingset bitrate {arg}",
    "!recordingset flush {arg}", "!recordingset delivery {arg}", "!recordingset format {arg}",
    "!recordings get 0123456789abcdef {arg}",
])
async def test_replies_that_echo_input_are_short_and_keep_their_code_spans(cog_world: RedWorld, command: str) -> None:
    world = cog_world
    long_arg = "x" * (1996 - len(command.format(arg="")))
    for arg in (long_arg, "a`@everyone`b", "a\n`b` **c** <@3000000000000003>"):
        replies = await world.invoke(ADMIN_ID, command.format(arg=arg))
        assert replies, command
        for reply in replies:
            text = reply.text
            assert len(text) < 400, (command, len(text))
            # Every code span is closed where it was opened: the echo cannot leave it.
            assert text.count("`") % 2 == 0, text
            outside = "".join(text.split("`")[0::2])
            assert "@everyone" not in outside and "<@" not in outside, text
            assert "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" not in text


# --------------------------------------------------------------------------- parts
def _mp3_bytes(size: int, seed: int) -> bytes:
    """A valid MP3 of about ``size`` bytes: a 20 s encode repeated (each frame stands alone)."""
    x = speech_like(20.0, seed=seed)
    body = len(x) // mp3.FRAME * mp3.FRAME
    pcm = np.zeros((mp3.PRIME_SAMPLES + body + mp3.TAIL_SAMPLES, 1), np.int16)
    pcm[mp3.PRIME_SAMPLES:mp3.PRIME_SAMPLES + body, 0] = x[:body]
    one = b"".join(mp3.encode_frames(pcm, prime=mp3.PRIME_SAMPLES, body=body))
    return (one * (size // len(one) + 1))[: size // 192 * 192]


async def _meeting_with(world: RedWorld, sizes: list[int]) -> tuple[Any, list[Any]]:
    """A finished meeting whose recordings are real MP3s of the given sizes."""
    store = world.cog.store
    meeting = await store.create_meeting(guild_id=GUILD_ID, channel_id=VOICE_ID, started_by=ADMIN_ID)
    folder = world.cog.data_dir / "recordings"
    folder.mkdir(parents=True, exist_ok=True)
    recs = []
    users = [SPEAKER_ID, MEMBER_ID, OWNER_ID, ADMIN_ID] + list(range(1, 50))
    for n, size in enumerate(sizes):
        data = _mp3_bytes(size, seed=n)
        path = folder / f"recording_{meeting.id}_{users[n]}.mp3"
        path.write_bytes(data)
        recs.append(await store.insert_persistent_recording(meeting.id, NewRecording(
            kind=RecordingKind.PER_USER, user_id=users[n], filename=path.name, path=str(path),
            duration_in_ms=len(data) // 192 * 24, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))))
    return meeting, recs


async def test_a_file_over_the_limit_comes_in_parts_that_join_back_byte_identical(cog_world: RedWorld) -> None:
    world = cog_world
    world.cog.service.delivery.pace_s = 0.0
    _meeting, (big,) = await _meeting_with(world, [23 * 2**20])
    replies = await world.invoke(SPEAKER_ID, f"!recordings get {big.id}")  # their own file
    parts = [(name, data) for m in replies for name, data in m.files]
    stem = big.filename[: -len(".mp3")]
    assert [n for n, _ in parts] == [f"{stem}.part{i}of3.mp3" for i in (1, 2, 3)]
    assert replies[0].text == (f"`{big.filename}` is over the 10.0 MiB upload limit, so it comes in 3 parts that each "
                               f"play on their own; `cat {stem}.part*.mp3 > {big.filename}` joins them back into the "
                               "original file, byte for byte.")
    joined = b"".join(data for _, data in parts)
    assert hashlib.sha256(joined).hexdigest() == big.sha256
    for m in replies:
        assert sum(len(d) for _, d in m.files) <= LIMIT and len(m.files) <= 10
    for _name, data in parts:  # each part plays alone: every frame decodes
        assert mp3.decoded_samples(data) == mp3.count_frames(data) * mp3.FRAME


async def test_a_long_meeting_is_posted_in_paced_messages_with_progress(cog_world: RedWorld) -> None:
    world = cog_world
    delivery = world.cog.service.delivery
    delivery.pace_s = 0.0
    # Twelve small files and two large ones: 10 attachments at most per message, parts
    # for the large ones, and a progress message while it posts.
    meeting, recs = await _meeting_with(world, [200_000] * 12 + [12 * 2**20, 12 * 2**20])
    channel = world.guild.get_channel(TEXT_ID)
    before = set(world.rest.messages)
    await delivery.post_meeting(world.guild, channel, meeting, None, recs, prefix="!")
    posted = [m for i, m in world.rest.messages.items() if i not in before]
    uploads = [m for m in posted if m.files]
    assert all(len(m.files) <= 10 and sum(len(d) for _, d in m.files) <= LIMIT for m in uploads)
    got = files_in(posted)
    for rec in recs:
        if rec.size_bytes <= LIMIT:
            assert got[rec.filename] == Path(rec.path).read_bytes()
        else:
            stem = rec.filename[: -len(".mp3")]
            joined = b"".join(got[f"{stem}.part{i}of2.mp3"] for i in (1, 2))
            assert hashlib.sha256(joined).hexdigest() == rec.sha256
    progress = next(m for m in posted if m.text.startswith("📤 Uploading 16 files"))
    assert progress.text.endswith(f"{len(uploads)}/{len(uploads)} messages") and len(progress.history) > 2


# --------------------------------------------------------------------------- links
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_links_through_the_commands_download_the_file_and_can_be_revoked(cog_world: RedWorld) -> None:
    world = cog_world
    port = _free_port()
    (refused,) = await world.invoke(ADMIN_ID, f"!recordingset web on 127.0.0.1:{port}")
    assert refused.text == "Only the bot owner can change that."
    (reply,) = await world.invoke(OWNER_ID, f"!recordingset web on 127.0.0.1:{port}")
    assert reply.text == f"Download links are on: listening on 127.0.0.1:{port}, links start with http://127.0.0.1:{port}."
    _meeting, (big, small) = await _meeting_with(world, [12 * 2**20, 100_000])
    # Over the limit: a link instead of parts. Under it: the file, as before.
    (answer,) = await world.invoke(SPEAKER_ID, f"!recordings get {big.id}")
    assert not answer.files
    link = answer.text.rsplit(" ", 1)[1]
    assert answer.text.startswith(f"`{big.filename}` (12.0 MiB) is over this server's 10.0 MiB upload limit: "
                                  "download it here.\n🔗 Download (works for 7 days): http://127.0.0.1:")
    (fits,) = await world.invoke(MEMBER_ID, f"!recordings get {small.id}")
    assert fits.files == [(small.filename, Path(small.path).read_bytes())]
    async with aiohttp.ClientSession() as http:
        async with http.get(link) as r:
            assert r.status == 200 and hashlib.sha256(await r.read()).hexdigest() == big.sha256
        (done,) = await world.invoke(OWNER_ID, "!recordingset web rotate")
        assert done.text == "Every download link given so far is revoked; new links work as before."
        async with http.get(link) as r:
            assert r.status == 410 and "revoked" in await r.text()
        await world.invoke(OWNER_ID, "!recordingset web off")
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.get(link):
                pass
    (status,) = await world.invoke(OWNER_ID, "!recordingset web")
    assert status.text.startswith("Download links are off.")


async def test_a_port_in_use_is_one_sentence_and_the_cog_keeps_recording(voice_world: VoiceWorld) -> None:
    world = voice_world.world
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (reply,) = await world.invoke(OWNER_ID, f"!recordingset web on 127.0.0.1:{port}")
        assert reply.text == (f"Port {port} on 127.0.0.1 is already in use: pick another port, or stop what uses it.")
        assert not world.cog.service.links.running
        replies = await record(voice_world)
        assert len(files_in(replies)) == 3  # still recording, still posting files


async def test_the_server_starts_with_the_cog_and_stops_with_it(cog_world: RedWorld) -> None:
    world = cog_world
    port = _free_port()
    await world.invoke(OWNER_ID, f"!recordingset web on 127.0.0.1:{port}")
    await world.bot.remove_cog("ChunkRecorder")
    with socket.socket() as probe:  # the port is free again: the server stopped with the cog
        probe.bind(("127.0.0.1", port))
    import chunkrecorder

    await chunkrecorder.setup(world.bot)
    world.cog = world.bot.get_cog("ChunkRecorder")
    assert world.cog.service.links.running  # and came back on its own
    _meeting, (rec,) = await _meeting_with(world, [50_000])
    link = world.cog.service.links.recording_link(rec.id, days=1)
    async with aiohttp.ClientSession() as http, http.get(link) as r:
        assert r.status == 200 and await r.read() == Path(rec.path).read_bytes()


# --------------------------------------------------------------------------- Opus
def _ogg_samples(data: bytes) -> int:
    import io

    import av

    with av.open(io.BytesIO(data)) as f:
        return sum(frame.samples for frame in f.decode(audio=0))


async def test_format_opus_posts_compact_copies_of_the_same_length(voice_world: VoiceWorld) -> None:
    world = voice_world.world
    (reply,) = await world.invoke(ADMIN_ID, "!recordingset format opus")
    assert reply.text == "Recordings are now posted as Opus (about 14 MiB per hour and speaker)."
    replies = await record(voice_world, 2.0)
    got = files_in(replies)
    assert len(got) == 3 and all(name.endswith(".opus") for name in got)
    making = next(m for m in replies if m.text.startswith("🗜️ Making the Opus files"))
    assert making.text.endswith("3/3 files")
    (meeting,), _total = await world.cog.store.list_meetings(GUILD_ID)
    recs = await world.cog.service.recorder.library.recordings_for_meeting(meeting.id)
    for rec in recs:
        data = got[rec.filename[: -len(".mp3")] + ".opus"]
        assert _ogg_samples(data) == mp3.decoded_samples(Path(rec.path).read_bytes())
        assert len(data) < 0.7 * rec.size_bytes
    # Asked for by id: the MP3 by name, the cached copy by the same bytes.
    rec = recs[0]
    (mp3_reply,) = await world.invoke(ADMIN_ID, f"!recordings get {rec.id} mp3")
    assert mp3_reply.files == [(rec.filename, Path(rec.path).read_bytes())]
    (opus_reply,) = await world.invoke(ADMIN_ID, f"!recordings get {rec.id} opus")
    assert opus_reply.files == [(rec.filename[:-4] + ".opus", Path(rec.path).with_suffix(".opus").read_bytes())]
    (bad,) = await world.invoke(ADMIN_ID, f"!recordings get {rec.id} flac")
    assert bad.text == "`flac` is not a format: say `mp3` or `opus`."
