"""What happens to a recording when Discord moves things: the bot kicked, moved or
dropped, discord.py reconnecting, the channel emptied or deleted, the maximum length
reached. Each ends in a clean stop with the files posted, or goes on as the same
meeting (a reconnect, a move the guild follows), announced in the channel where
recording was started. The same through discord.py's real voice client:
``test_reconnects_real_client.py``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from chunkrecorder.voice.link import DisconnectReason
from harness.impairments import Fate
from tests.support.lifecycle import source_reference
from tests.support.red import ADMIN_ID, BOT_ID, GUILD_ID, MEMBER_ID, SPEAKER_ID, VOICE2_ID, VOICE_ID, Sent, VoiceWorld, settle, wait_for_sent
from tests.support.signals import decode_file, lag_at

RATE = 48_000


async def started(voice: VoiceWorld, seconds: float = 1.5) -> None:
    await voice.world.invoke(ADMIN_ID, "!record start")
    assert voice.live is not None
    await voice.run(seconds)


async def ended(voice: VoiceWorld, reason: str) -> tuple[Sent, Sent, Sent]:
    """The three messages of a stop: progress (with the reason), summary, files."""
    world = voice.world
    done = await wait_for_sent(world, lambda m: m.text.startswith("⏹️") and m.text.endswith("done."))
    assert f"ended ({reason})" in done.text, done.text
    summary = await wait_for_sent(world, lambda m: m.text.startswith("✅"))
    files = await wait_for_sent(world, lambda m: bool(m.files))
    assert voice.live is None
    assert world.guild.me.nick == "Minutes"
    return done, summary, files


async def test_kicked_from_voice_stops_and_posts(voice_world: VoiceWorld) -> None:
    await started(voice_world)
    voice_world.world.voice_state(BOT_ID, None)  # a moderator disconnected the bot
    _, summary, files = await ended(voice_world, "I was disconnected from the voice channel")
    assert "3 files" in summary.text and len(files.files) == 3
    assert len(voice_world.net.links) == 1  # no reconnect after a kick


async def test_a_kick_the_link_reports_first_stops_once(voice_world: VoiceWorld) -> None:
    voice = voice_world
    await started(voice)
    await voice.net.kick_bot()  # the link's on_disconnect(KICKED), then the gateway's update
    voice.world.voice_state(BOT_ID, None)
    _, summary, _ = await ended(voice, "I was disconnected from the voice channel")
    assert "3 files" in summary.text and len(voice.net.links) == 1
    assert sum(1 for m in voice.world.sent() if m.text.startswith("✅")) == 1


async def test_moved_to_another_channel_stops_and_posts(voice_world: VoiceWorld) -> None:
    await started(voice_world)
    voice_world.world.voice_state(BOT_ID, VOICE2_ID)
    await ended(voice_world, "I was moved to another voice channel")


async def test_a_move_is_followed_as_the_same_meeting_when_the_guild_says_so(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    await world.invoke(ADMIN_ID, "!recordingset move follow")
    await started(voice)
    live = voice.live
    await voice.net.move_bot(VOICE2_ID, gateway=lambda ch: world.voice_state(BOT_ID, ch))
    await settle()
    notice = await wait_for_sent(world, lambda m: "moved to **Lounge**" in m.text)
    assert "keep recording there" in notice.text and live.meeting_id in notice.text
    assert voice.live is live and not live.ending and live.channel_id == VOICE2_ID
    await voice.run(1.5)
    (status,) = await world.invoke(ADMIN_ID, "!record status")
    assert status.text.startswith("🔴 Recording **Lounge**") and "moved to **Lounge**" in status.text
    replies = await world.invoke(ADMIN_ID, "!record stop")
    summary = next(m for m in replies if m.text.startswith("✅"))
    assert "0:03 recorded" in summary.text and live.meeting_id in summary.text
    meetings, total = await world.cog.service.meetings_page(GUILD_ID, limit=10)
    assert total == 1  # one meeting across both channels


def _speaker_file_against_source(voice: VoiceWorld, live: Any, recordings: list[Any], user_id: int
                                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(decoded file, what the member said as the bot could hear it, mask) on the meeting's timeline.

    The reference comes from the fake network's log (what it delivered), never from the
    cog: network frame k left its client (k+1) * 20 ms after the network's t=0 and is
    recorded ending at its arrival, so network sample s is meeting sample s + shift.
    """
    rec = next(r for r in recordings if r.user_id == user_id)
    recording = decode_file(rec.path)
    net = voice.net
    shift = int(round((net._t0 - live.session.t0) * RATE))
    fates = net.fates(user_id)
    plan = next(p for p in net.plans if p.user_id == user_id)
    src = source_reference(plan.source, len(recording) - shift + 960, sent=fates == Fate.DELIVERED)
    reference = np.zeros(len(recording))
    lo = max(0, shift)
    reference[lo:] = src[lo - shift: lo - shift + len(recording) - lo]
    mask = np.ones(len(recording), dtype=bool)
    mask[: int(0.3 * RATE)] = False  # the stream's first frames settle its anchor
    return recording, reference, mask


async def test_the_files_end_at_the_stop_however_long_leaving_voice_takes(voice_world: VoiceWorld) -> None:
    """A member types ``[p]record stop`` at 3 s; leaving voice takes 4 s more (discord.py
    is in the middle of its own reconnect and ``disconnect`` waits for it), while
    everyone keeps talking. The files are the 3 s the member asked for, not 7."""
    voice, world = voice_world, voice_world.world
    await started(voice, 3.0)
    live = voice.live
    asked_at = voice.cog.service.meetings.meeting_time(live)
    voice.net.slow_leave(4.0, on_tick=voice.cog.service.recorder.tick)
    replies = await world.invoke(ADMIN_ID, "!record stop")
    summary = next(m for m in replies if m.text.startswith("✅"))
    assert "0:03 recorded, 3 files" in summary.text, summary.text
    assert voice.net.clock() - voice.net._t0 > asked_at + 3.9  # leaving did take the 4 s
    meeting = await world.cog.service.meeting(GUILD_ID, live.meeting_id)
    assert abs(meeting.length_samples / RATE - asked_at) < 0.05, (meeting.length_samples / RATE, asked_at)
    recordings = await world.cog.service.recordings_of(meeting)
    for uid in (SPEAKER_ID, MEMBER_ID):
        recording, reference, mask = _speaker_file_against_source(voice, live, recordings, uid)
        assert abs(len(recording) - meeting.length_samples) < 1152
        lag = lag_at(recording, reference, int(2.0 * RATE), mask=mask)
        assert lag is not None and abs(lag.samples) < 0.02 * RATE  # the last second is the member's, in place


async def test_a_stop_during_a_reconnect_says_the_end_of_the_files_is_silent(voice_world: VoiceWorld) -> None:
    """discord.py is still reconnecting when a member types ``[p]record stop``: the
    outage never ended, so no "came back" line; the result says the files are silent
    from where it began to their end, and the files are exactly that."""
    voice, world = voice_world, voice_world.world
    await started(voice, 2.0)
    live = voice.live
    at = voice.cog.service.meetings.meeting_time(live)
    await voice.net.reconnect_bot(30.0, gateway=lambda ch: world.voice_state(BOT_ID, ch))
    await settle()
    await voice.run(2.0)
    replies = await world.invoke(ADMIN_ID, "!record stop")
    summary = next(m for m in replies if m.text.startswith("✅"))
    assert "0:04 recorded, 3 files" in summary.text, summary.text
    assert "came back" not in summary.text
    assert ("⚠️ The voice connection was still down when the recording stopped; the files are silent "
            "for the last 2.0 s (from 0:02).") in summary.text, summary.text
    meeting = await world.cog.service.meeting(GUILD_ID, live.meeting_id)
    recordings = await world.cog.service.recordings_of(meeting)
    for uid in (SPEAKER_ID, MEMBER_ID):
        recording, reference, mask = _speaker_file_against_source(voice, live, recordings, uid)
        assert abs(len(recording) - meeting.length_samples) < 1152
        cut = int((at + 0.1) * RATE)
        assert np.abs(recording[cut:]).max() < 200  # silent from the outage to the end
        assert np.abs(recording[int(0.5 * RATE): int((at - 0.1) * RATE)]).max() > 2000  # and heard before it


async def test_discordpys_own_reconnect_continues_one_meeting_silent_only_for_the_outage(
        voice_world: VoiceWorld) -> None:
    """discord.py leaves and rejoins (a 4006, a 1006, a read timeout): the gateway shows the
    bot in no channel for a moment. That is not a kick: the meeting goes on, silent for the
    outage, the audio after it in place; status and the result say what it cost."""
    voice, world = voice_world, voice_world.world
    await started(voice, 2.0)
    live = voice.live
    at = voice.cog.service.meetings.meeting_time(live)
    await voice.net.reconnect_bot(1.0, gateway=lambda ch: world.voice_state(BOT_ID, ch))
    await settle()
    assert voice.live is live and not live.ending and live.end_reason is None
    (during,) = await world.invoke(ADMIN_ID, "!record status")
    assert "Reconnecting to voice now (the voice websocket closed (4006))" in during.text
    await voice.run(3.0)
    (status,) = await world.invoke(ADMIN_ID, "!record status")
    assert "Reconnects: 1, 1.0 s without audio (at 0:02)." in status.text, status.text
    assert "reconnected after 1.0 s" in status.text
    assert len(voice.net.links) == 1 and live.link.reconnects == 1
    replies = await world.invoke(ADMIN_ID, "!record stop")
    summary = next(m for m in replies if m.text.startswith("✅"))
    assert "0:05 recorded, 3 files" in summary.text
    assert "The voice connection dropped once and came back; the files are silent there (1.0 s at 0:02)." \
        in summary.text, summary.text
    (gap,) = live.connection.gaps
    assert abs(gap.start_s - at) < 0.15 and gap.seconds == 1.0
    meeting = await world.cog.service.meeting(GUILD_ID, live.meeting_id)
    recordings = await world.cog.service.recordings_of(meeting)
    for uid in (SPEAKER_ID, MEMBER_ID):
        recording, reference, mask = _speaker_file_against_source(voice, live, recordings, uid)
        assert abs(len(recording) - meeting.length_samples) < 1152
        # Silent where the bot could not hear (the outage), nothing missing elsewhere.
        a, b = int((gap.start_s + 0.1) * RATE), int((gap.end_s - 0.1) * RATE)
        assert np.abs(recording[a:b]).max() < 50 and np.abs(reference[a:b]).max() == 0
        for second in (1.0, 1.8, gap.end_s + 0.3, gap.end_s + 1.0, 4.5):
            lag = lag_at(recording, reference, int(second * RATE), mask=mask)
            assert lag is not None and abs(lag.samples) <= int(0.001 * RATE) and lag.corr > 0.9, (uid, second, lag)


async def test_voice_channel_deleted_stops_and_posts(voice_world: VoiceWorld) -> None:
    await started(voice_world)
    channel = voice_world.world.guild.get_channel(VOICE_ID)
    voice_world.world.bot._connection.parse_channel_delete(
        {"id": str(VOICE_ID), "guild_id": str(GUILD_ID), "type": 2, "name": channel.name})
    world = voice_world.world
    done = await wait_for_sent(world, lambda m: m.text.startswith("⏹️") and m.text.endswith("done."))
    assert "ended (the voice channel was deleted)" in done.text, done.text
    summary = await wait_for_sent(world, lambda m: m.text.startswith("✅"))
    # Nobody can tell any more who could see the channel: the files go to whoever
    # started the meeting, privately, and the channel is told so.
    head, said = summary.text.split("\n")
    assert head.startswith(f"✅ **channel {VOICE_ID}**:") and "3 files" in head
    assert said == ("The voice channel is gone, so nobody can tell who could hear the meeting: the files went to "
                    "Admin by direct message.")
    assert not any(m.files for m in world.sent())
    await voice_world.wait_until(lambda: any(m.files for m in world.dms(ADMIN_ID)))
    assert sum(len(m.files) for m in world.dms(ADMIN_ID)) == 3


async def test_a_dropped_connection_reconnects_and_keeps_recording(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    await started(voice)
    await voice.net.disconnect_bot("voice server restarted")
    assert len(voice.net.links) == 2 and voice.live.link is voice.net.links[1]
    await voice.run(1.5)
    (status,) = await world.invoke(ADMIN_ID, "!record status")
    assert "voice connection lost (voice server restarted); reconnected (attempt 1)" in status.text
    replies = await world.invoke(ADMIN_ID, "!record stop")
    summary = next(m for m in replies if m.text.startswith("✅"))
    assert "0:03 recorded, 3 files" in summary.text  # both halves, one meeting
    assert "The voice connection dropped once and came back" in summary.text


async def test_when_discordpy_gives_up_the_cogs_own_reconnect_takes_over(voice_world: VoiceWorld) -> None:
    """discord.py tried to reconnect for a while, then stopped (GAVE_UP, not a kick): the
    cog joins again into the same meeting; the silence runs from the first trouble."""
    voice, world = voice_world, voice_world.world
    await started(voice, 2.0)
    live = voice.live
    await voice.net.reconnect_bot(60.0, gateway=lambda ch: world.voice_state(BOT_ID, ch))
    await voice.run(2.0)
    assert voice.live is live and live.link is voice.net.links[0]  # still discord.py's to fix
    first = voice.net.links[0]
    await voice.net.disconnect_bot()
    assert first.disconnect_reason is DisconnectReason.GAVE_UP
    assert len(voice.net.links) == 2 and live.link is voice.net.links[1] and voice.live is live
    await voice.run(1.0)
    (status,) = await world.invoke(ADMIN_ID, "!record status")
    assert "Reconnects: 1, 2.0 s without audio (at 0:02)." in status.text, status.text
    assert "voice connection lost (the voice websocket closed (4006)); reconnected (attempt 1)" in status.text
    replies = await world.invoke(ADMIN_ID, "!record stop")
    summary = next(m for m in replies if m.text.startswith("✅"))
    assert "0:05 recorded, 3 files" in summary.text
    assert "silent there (2.0 s at 0:02)" in summary.text, summary.text


async def test_a_drop_noticed_late_is_silent_from_where_the_audio_stopped(voice_world: VoiceWorld) -> None:
    """The server stopped reaching the bot at 0:02 and discord.py reported it 1.5 s later
    (it leaves voice before it says it gave up; a dead socket is noticed late): the gap
    members read begins where the files fall silent, not where the cog heard of it."""
    voice, world = voice_world, voice_world.world
    await started(voice, 2.0)
    voice.net.go_quiet()
    await voice.run(1.5)
    await voice.net.disconnect_bot()
    await voice.run(1.0)
    (status,) = await world.invoke(ADMIN_ID, "!record status")
    assert "Reconnects: 1, 1.5 s without audio (at 0:02)." in status.text, status.text
    replies = await world.invoke(ADMIN_ID, "!record stop")
    summary = next(m for m in replies if m.text.startswith("✅"))
    assert "silent there (1.5 s at 0:02)" in summary.text, summary.text


@pytest.mark.parametrize(("attempts", "failures", "reason"), [
    (0, 0, "the voice connection was lost and reconnecting is off"),
    (2, 2, "the voice connection was lost and 2 reconnect attempts failed"),
])
async def test_a_connection_that_stays_down_ends_cleanly(voice_world: VoiceWorld, attempts: int, failures: int,
                                                         reason: str) -> None:
    voice = voice_world
    await voice.world.invoke(ADMIN_ID, f"!recordingset reconnect {attempts}")
    await started(voice)
    for _ in range(failures):
        voice.net.fail_next_connect(OSError("no route to the voice server"))
    await voice.net.disconnect_bot("voice server gone")
    _, summary, files = await ended(voice, reason)
    assert "3 files" in summary.text and len(files.files) == 3


async def test_an_empty_channel_stops_after_the_wait(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    await world.invoke(ADMIN_ID, "!recordingset autostop 1")
    await world.cog.config.guild_from_id(GUILD_ID).flush_interval.set(10.0)
    await started(voice)
    for uid in (ADMIN_ID, SPEAKER_ID, MEMBER_ID):
        world.voice_state(uid, None)
    voice.net.clock.advance(30)
    await voice.wait_until(lambda: voice.live is not None and voice.live.empty_since is not None)
    await settle()
    assert voice.live is not None  # 30 s empty: still recording
    world.voice_state(MEMBER_ID, VOICE_ID)  # someone came back: the wait starts over
    await voice.wait_until(lambda: voice.live.empty_since is None)
    world.voice_state(MEMBER_ID, None)
    voice.net.clock.advance(45)
    await voice.wait_until(lambda: voice.live.empty_since is not None)
    voice.net.clock.advance(59)
    await settle()
    assert voice.live is not None and not voice.live.ending
    voice.net.clock.advance(2)
    await ended(voice, "the voice channel was empty for 1 minute")


async def test_the_maximum_length_ends_the_meeting_at_that_length(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    await world.invoke(ADMIN_ID, "!recordingset maxlength 1")
    await world.cog.config.guild_from_id(GUILD_ID).flush_interval.set(10.0)
    await started(voice)
    voice.net.clock.advance(70)
    _, summary, _ = await ended(voice, "it reached the maximum length of 1 minute")
    assert "1:00 recorded" in summary.text
