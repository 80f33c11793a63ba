"""What happens to a recording when Discord moves things: the bot kicked, moved or
dropped, the channel emptied or deleted, the maximum length reached. Each ends in a
clean stop with the files posted (or a reconnect that keeps recording), announced
in the channel where recording was started."""

from __future__ import annotations

import pytest

from tests.support.red import ADMIN_ID, BOT_ID, GUILD_ID, MEMBER_ID, SPEAKER_ID, VOICE2_ID, VOICE_ID, Sent, VoiceWorld, settle, wait_for_sent


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


async def test_moved_to_another_channel_stops_and_posts(voice_world: VoiceWorld) -> None:
    await started(voice_world)
    voice_world.world.voice_state(BOT_ID, VOICE2_ID)
    await ended(voice_world, "I was moved to another voice channel")


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
