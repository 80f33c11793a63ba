"""Consent through the offline Red bot and the harness's voice channel: the indicator
cannot be switched off, every member is told once per meeting in the voice channel's
chat, and under ``optin`` only members who agreed (a button, or ``[p]record optin``)
are in the files; the buttons keep working after a reload."""

from __future__ import annotations

import discord

from chunkrecorder.audio import mp3
from chunkrecorder.core.consent_view import AGREE_ALWAYS_ID, AGREE_MEETING_ID
from tests.cog.test_record import best_lag, files_of, mono
from tests.cog.test_recovery import reload_cog
from tests.support.red import (
    ADMIN_ID,
    BOT_PERMS,
    GUILD_ID,
    MEMBER_ID,
    OWNER_ID,
    SPEAKER_ID,
    TEXT_ID,
    VOICE_ID,
    Sent,
    VoiceWorld,
    settle,
    wait_for_sent,
)


def in_channel(replies: list[Sent], channel_id: int) -> list[Sent]:
    return [m for m in replies if m.channel_id == channel_id]


async def test_optin_records_only_who_agreed_and_the_mix_leaves_the_others_out(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    await world.invoke(ADMIN_ID, "!recordingset consent optin")
    started = await world.invoke(ADMIN_ID, "!record start")
    (announce,) = in_channel(started, TEXT_ID)
    (notice,) = in_channel(started, VOICE_ID)
    assert announce.text.startswith("🔴 Recording **Standup** (per speaker and mixed), only members who agree")
    assert "only members who agree are recorded" in notice.text
    for message in (announce, notice):
        assert message.custom_ids() == [AGREE_MEETING_ID, AGREE_ALWAYS_ID]

    answer = await world.click(SPEAKER_ID, notice, AGREE_MEETING_ID)
    assert answer.ephemeral and answer.text == "Thanks: your voice in **Standup** is recorded from now on, for this meeting."
    await voice.run(2.5)
    live = voice.live
    chunk_dir = world.cog.data_dir / "chunks" / live.meeting_id
    assert list(chunk_dir.glob(f"{SPEAKER_ID}_*")), "the member who agreed is being written"
    assert not list(chunk_dir.glob(f"{MEMBER_ID}_*")), "nothing of a member who did not agree reaches disk"
    (status,) = await world.invoke(ADMIN_ID, "!record status")
    assert "Consent: only members who agreed are recorded (1 agreed for this meeting" in status.text

    files = files_of(await world.invoke(ADMIN_ID, "!record stop"))
    assert sorted(files) == sorted([f"recording_{live.meeting_id}_{SPEAKER_ID}.mp3",
                                    f"recording_{live.meeting_id}_mix.mp3"])
    mix = mono(mp3.decode(files[f"recording_{live.meeting_id}_mix.mp3"]))
    assert best_lag(mix, mono(voice.net.expected(SPEAKER_ID, len(mix))))[1] > 0.9  # the mix is the speaker alone
    assert best_lag(mix, mono(voice.net.expected(MEMBER_ID, len(mix))))[1] < 0.3


async def test_agreeing_always_lasts_and_the_buttons_survive_a_reload(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    await world.invoke(ADMIN_ID, "!recordingset consent optin")
    (reply,) = await world.invoke(MEMBER_ID, "!record optin")
    assert reply.text == "Nothing is being recorded right now. `!record optin always` agrees to every recording here."
    (reply,) = await world.invoke(MEMBER_ID, "!record optin always")
    assert reply.text.startswith("Thanks: you agreed to be recorded in every recording of this server.")
    assert await world.cog.config.member_from_ids(GUILD_ID, MEMBER_ID).consent_always() is True
    started = await world.invoke(ADMIN_ID, "!record start")
    (announce,) = in_channel(started, TEXT_ID)
    await voice.run(2.5)
    chunk_dir = world.cog.data_dir / "chunks" / voice.live.meeting_id
    assert list(chunk_dir.glob(f"{MEMBER_ID}_*")) and not list(chunk_dir.glob(f"{SPEAKER_ID}_*"))

    # After a reload, a click on a message from before it reaches the new cog (one view,
    # registered with add_view, answers every message with these custom ids).
    await world.bot.remove_cog("ChunkRecorder")
    await reload_cog(world)
    answer = await world.click(SPEAKER_ID, announce, AGREE_ALWAYS_ID)
    assert answer.text.startswith("Thanks: you agreed to be recorded in every recording of this server.")
    assert world.cog.settings.agreed_always(GUILD_ID, SPEAKER_ID)
    # Opting out takes the standing agreement back.
    await world.invoke(SPEAKER_ID, "!record optout")
    assert not world.cog.settings.agreed_always(GUILD_ID, SPEAKER_ID)
    assert await world.cog.config.member_from_ids(GUILD_ID, SPEAKER_ID).consent_always() is False


async def test_each_member_who_joins_is_told_once_per_meeting(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    await world.invoke(ADMIN_ID, "!record start")
    world.voice_state(OWNER_ID, VOICE_ID)
    notice = await wait_for_sent(world, lambda m: f"<@{OWNER_ID}>" in m.text, channel_id=VOICE_ID)
    assert notice.text == (f"🔴 **[REC]** <@{OWNER_ID}>, **Standup** is being recorded (started by Admin). "
                           "`!record optout` if you don't want your voice recorded.")
    world.voice_state(OWNER_ID, None)
    world.voice_state(OWNER_ID, VOICE_ID)
    world.voice_state(MEMBER_ID, None)
    world.voice_state(MEMBER_ID, VOICE_ID)  # told at the start already
    await settle()
    told = [m for m in world.sent(VOICE_ID) if "[REC]" in m.text]
    assert len(told) == 2  # the start notice (Admin, Speaker, Member) and Owner's
    # The next meeting tells everyone again.
    await world.invoke(ADMIN_ID, "!record stop")
    started = await world.invoke(ADMIN_ID, "!record start")
    (again,) = in_channel(started, VOICE_ID)
    assert all(f"<@{uid}>" in again.text for uid in (OWNER_ID, ADMIN_ID, SPEAKER_ID, MEMBER_ID))


async def test_without_change_nickname_the_indicator_is_a_message_in_the_voice_chat(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    world.set_bot_permissions(discord.Permissions(BOT_PERMS.value & ~discord.Permissions(change_nickname=True).value))
    await world.invoke(ADMIN_ID, "!recordingset announce off")
    started = await world.invoke(ADMIN_ID, "!record start")
    assert world.nick_changes == []
    (notice,) = in_channel(started, VOICE_ID)
    assert notice.text.startswith("🔴 **[REC]** This voice channel is being recorded")
    (status,) = await world.invoke(MEMBER_ID, "!record status")
    assert "Shown by a [REC] message in **Standup**'s chat (I can't change my nickname here)." in status.text
    await world.invoke(ADMIN_ID, "!record stop")
    world.set_bot_permissions(BOT_PERMS)
    await world.invoke(ADMIN_ID, "!record start")
    (status,) = await world.invoke(MEMBER_ID, "!record status")
    assert "Shown by my nickname's [REC] prefix." in status.text


async def test_a_start_with_no_way_to_show_the_indicator_is_refused(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    world.set_bot_permissions(discord.Permissions(BOT_PERMS.value & ~discord.Permissions(change_nickname=True).value))
    world.deny_bot(VOICE_ID, send_messages=True)
    (reply,) = await world.invoke(ADMIN_ID, "!record start")
    assert reply.text == ("I can't show that I'm recording **Standup**: I need Change Nickname, or Send Messages "
                          "in the voice channel's chat.")
    assert voice.live is None and voice.net.links == []
    assert (await world.cog.store.list_meetings(GUILD_ID))[1] == 0
