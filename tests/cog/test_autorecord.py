"""Auto-record through the offline Red bot and the harness's voice channel: a rule starts a
meeting once enough members (who have not opted out) have been in the channel for the
debounce wait, the usual auto-stop ends it, an admin's stop pauses the rule until the
channel empties, and all of it holds across a cog reload.

The job is driven one round at a time (``AutoRecordJob.tick``) on the meeting's
simulated clock, so the waits are exact and nothing sleeps."""

from __future__ import annotations

from chunkrecorder.tasks.autorecord import DEBOUNCE_S
from tests.cog.test_recovery import reload_cog
from tests.support.red import (
    ADMIN_ID,
    BOT_ID,
    GUILD_ID,
    MEMBER_ID,
    SPEAKER_ID,
    TEXT_ID,
    VOICE_ID,
    VoiceWorld,
    settle,
    wait_for_sent,
)


def rewire(voice: VoiceWorld) -> None:
    """After a reload: the new cog's voice goes to the harness too, on its clock."""
    cog = voice.world.cog
    cog.service.meetings.connector = voice.net.connector
    cog.service.meetings.clock = voice.net.clock
    cog.service.meetings.reconnect_delay_s = 0.01
    cog.ticker.interval_s = 0.02


async def tick(voice: VoiceWorld, advance: float = 0.0) -> None:
    voice.net.clock.advance(advance)
    await voice.world.cog.autorecord.tick()
    await settle()


async def test_a_rule_starts_after_the_debounce_and_the_auto_stop_ends_it(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    (reply,) = await world.invoke(ADMIN_ID, "!recordingset autorecord Standup 3")
    assert reply.text.startswith("I'll record **Standup** by myself whenever 3 members who have not opted out")
    await world.invoke(ADMIN_ID, "!recordingset autostop 1")
    await world.cog.config.guild_from_id(GUILD_ID).flush_interval.set(10.0)
    await tick(voice)  # three members are in: the wait starts
    await tick(voice, DEBOUNCE_S - 1)
    assert voice.live is None
    world.voice_state(MEMBER_ID, None)  # someone flickers out and back: the wait starts over
    await tick(voice, 0.5)
    world.voice_state(MEMBER_ID, VOICE_ID)
    await tick(voice, 0.5)
    await tick(voice, DEBOUNCE_S - 1)
    assert voice.live is None
    await tick(voice, 1.5)
    live = voice.live
    assert live is not None and live.auto_rule == 3 and live.started_by == BOT_ID
    voice.net.rebase()  # the fake members' clients start sending now, the meeting's t=0
    # As if an admin had typed `[p]record start` in the voice channel's chat: the notice
    # there names the rule; nothing is said in the other text channels.
    (notice,) = [m for m in world.sent(VOICE_ID) if "[REC]" in m.text]
    assert notice.text.startswith("🔴 **[REC]** This voice channel is being recorded, started by the auto-record "
                                  "rule of this channel (3 members).")
    await voice.run(1.5)
    for uid in (ADMIN_ID, SPEAKER_ID, MEMBER_ID):
        world.voice_state(uid, None)
    await voice.wait_until(lambda: voice.live is not None and voice.live.empty_since is not None)
    voice.net.clock.advance(61)
    done = await wait_for_sent(world, lambda m: m.text.startswith("✅"), channel_id=VOICE_ID)
    assert "3 files" in done.text  # posted where it was "typed": the voice channel's chat
    assert voice.live is None
    await tick(voice, DEBOUNCE_S + 1)  # an empty channel starts nothing
    assert voice.live is None


async def test_opted_out_members_do_not_count(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    await world.invoke(ADMIN_ID, "!recordingset autorecord Standup 3")
    await world.invoke(MEMBER_ID, "!record optout")
    await tick(voice)
    await tick(voice, DEBOUNCE_S + 1)
    assert voice.live is None
    await world.invoke(ADMIN_ID, "!recordingset autorecord Standup 2")
    await tick(voice)
    await tick(voice, DEBOUNCE_S + 1)
    assert voice.live is not None


async def test_a_manual_stop_pauses_the_rule_until_the_channel_empties_also_across_a_reload(
        voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    await world.invoke(ADMIN_ID, "!recordingset autorecord Standup")
    await tick(voice)
    await tick(voice, DEBOUNCE_S + 1)
    assert voice.live is not None
    await voice.run(1.0)
    await world.invoke(ADMIN_ID, "!record stop")
    assert voice.live is None
    assert await world.cog.config.guild_from_id(GUILD_ID).autorecord_paused() == [VOICE_ID]
    await tick(voice)
    await tick(voice, DEBOUNCE_S + 1)
    assert voice.live is None  # the admin's stop stands while the meeting goes on

    await world.bot.remove_cog("ChunkRecorder")
    await reload_cog(world)
    rewire(voice)
    await tick(voice)
    await tick(voice, DEBOUNCE_S + 1)
    assert voice.live is None  # ... and across a reload

    for uid in (ADMIN_ID, SPEAKER_ID, MEMBER_ID):
        world.voice_state(uid, None)
    await tick(voice, 1)  # the channel emptied: the rule is armed again
    assert await world.cog.config.guild_from_id(GUILD_ID).autorecord_paused() == []
    world.voice_state(SPEAKER_ID, VOICE_ID)
    await tick(voice)
    await tick(voice, DEBOUNCE_S + 1)
    assert voice.live is not None and voice.live.auto_rule == 1


async def test_a_reload_mid_meeting_finishes_it_and_the_rule_records_again(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    await world.invoke(ADMIN_ID, "!recordingset autorecord Standup 2")
    await tick(voice)
    await tick(voice, DEBOUNCE_S + 1)
    first = voice.live.meeting_id
    await voice.run(1.5)
    await world.bot.remove_cog("ChunkRecorder")
    await reload_cog(world)
    rewire(voice)
    # The interrupted meeting is finished and posted where it ran (the voice chat) ...
    await wait_for_sent(world, lambda m: m.text.startswith("✅") and first in m.text, channel_id=VOICE_ID)
    # ... and the rule, kept in Config, records the members still there as a new meeting.
    assert await world.cog.service.settings.autorecord_rules(GUILD_ID)
    await tick(voice)
    await tick(voice, DEBOUNCE_S + 1)
    assert voice.live is not None and voice.live.meeting_id != first
    (reply,) = await world.invoke(ADMIN_ID, "!recordingset autorecord Standup 0")
    assert reply.text == "**Standup** is no longer recorded automatically."
