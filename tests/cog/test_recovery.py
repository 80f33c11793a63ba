"""A restart in the middle of a meeting: the cog unloaded cleanly, or the bot's process
killed outright. Nothing recorded before is lost, and the meeting is finished either
on its own (auto-promote) or by an admin's `[p]recordings promote`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

import chunkrecorder
from chunkrecorder.audio import mp3
from chunkrecorder.audio.opus import CODEC_DELAY_SAMPLES
from chunkrecorder.objects.records import MeetingStatus
from chunkrecorder.store import SqlRecordingService
from tests.support.red import ADMIN_ID, BOT_ID, GUILD_ID, MEMBER_ID, SPEAKER_ID, VOICE_ID, RedWorld, VoiceWorld, settle, wait_for_sent

ROOT = Path(__file__).resolve().parents[2]
RATE = 48_000


async def reload_cog(world: RedWorld) -> None:
    await chunkrecorder.setup(world.bot)
    world.cog = world.bot.get_cog("ChunkRecorder")
    await settle()


async def meeting_status(world: RedWorld, meeting_id: str) -> MeetingStatus:
    async with SqlRecordingService(world.cog.data_dir / "chunkrecorder.sqlite3") as store:
        return (await store.get_meeting(meeting_id)).status


async def test_unload_mid_meeting_keeps_everything_and_the_reload_finishes_it(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    await world.invoke(ADMIN_ID, "!record start")
    await voice.run(2.0)
    meeting_id = voice.live.meeting_id
    assert world.guild.me.nick == "[REC] Minutes"

    await world.bot.remove_cog("ChunkRecorder")
    paused = await wait_for_sent(world, lambda m: m.text.startswith("⏸️"))
    assert paused.text == (f"⏸️ Recording of **Standup** paused: the recorder was unloaded. Everything so far is "
                           f"kept; meeting `{meeting_id}` is finished when it loads again.")
    assert world.guild.me.nick == "Minutes"
    assert not voice.net.links[0].is_connected()
    assert await meeting_status(world, meeting_id) is MeetingStatus.INTERRUPTED

    await reload_cog(world)
    done = await wait_for_sent(world, lambda m: m.text.startswith("🛠️") and m.text.endswith("done."))
    assert f"`{meeting_id}`" in done.text
    summary = await wait_for_sent(world, lambda m: m.text.startswith("✅"))
    assert "0:02 recorded, 3 files" in summary.text
    files = await wait_for_sent(world, lambda m: bool(m.files))
    assert len(files.files) == 3
    assert await meeting_status(world, meeting_id) is MeetingStatus.PROMOTED
    assert await world.cog.config.guild_from_id(GUILD_ID).active() == {}


async def test_without_auto_promote_the_reload_says_how_to_finish(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    await world.invoke(ADMIN_ID, "!recordingset autopromote off")
    await world.invoke(ADMIN_ID, "!record start")
    await voice.run(1.5)
    meeting_id = voice.live.meeting_id
    await world.bot.remove_cog("ChunkRecorder")
    await reload_cog(world)
    note = await wait_for_sent(world, lambda m: "interrupted by a restart" in m.text)
    assert note.text == (f"The recording `{meeting_id}` was interrupted by a restart. Its audio is kept: "
                         f"`!recordings promote {meeting_id}` finishes it.")
    assert await meeting_status(world, meeting_id) is MeetingStatus.INTERRUPTED


_CRASHING_BOT = textwrap.dedent("""
    import asyncio, os, signal, sys
    from pathlib import Path
    from chunkrecorder.objects.frames import MeetingSettings
    from chunkrecorder.pipeline.recorder import Recorder
    from chunkrecorder.store import SqlRecordingService
    from harness import sources
    from harness.network import FakeVoiceNetwork

    async def main(data_dir, guild_id, channel_id, bot_id, speaker_id, started_by):
        data_dir = Path(data_dir)
        store = await SqlRecordingService(data_dir / "chunkrecorder.sqlite3").open()
        # Encoder threads rather than processes: a SIGKILLed parent would orphan pool workers.
        recorder = Recorder(store=store, data_dir=data_dir, executor="thread")
        await recorder.start()
        net = FakeVoiceNetwork(guild_id=guild_id, channel_id=channel_id, bot_user_id=bot_id, seed=5)
        net.add_speaker(speaker_id, sources.synthetic_speaker(0, 10.0, seed=1, talk_spurts=False))
        link = await net.connector(channel_id)
        session = await recorder.start_meeting(
            guild_id=guild_id, channel_id=channel_id, started_by=started_by,
            settings=MeetingSettings(flush_interval_s=1.0), clock=net.clock)
        link.receiver.set_sink(session.feed, channels=session.settings.channels)
        await net.run(3.2, on_tick=recorder.tick)
        await recorder.wait_idle(60)
        print(session.meeting.id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # killed: no flush, no close, no goodbye

    if __name__ == "__main__":
        asyncio.run(main(sys.argv[1], *map(int, sys.argv[2:])))
""")


async def test_a_killed_bot_loses_nothing_flushed_and_an_admin_promotes_it(cog_world: RedWorld, tmp_path: Path) -> None:
    world = cog_world
    await world.invoke(ADMIN_ID, "!recordingset autopromote off")
    data_dir = world.cog.data_dir
    await world.bot.remove_cog("ChunkRecorder")  # the bot is down; a process of its own records and dies
    script = tmp_path / "crashing_bot.py"
    script.write_text(_CRASHING_BOT)
    child = subprocess.Popen(
        [sys.executable, str(script), str(data_dir), str(GUILD_ID), str(VOICE_ID), str(BOT_ID),
         str(SPEAKER_ID), str(ADMIN_ID)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        out, err = await asyncio.to_thread(child.communicate, timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)  # anything it left behind
    assert child.returncode == -signal.SIGKILL, err
    meeting_id = out.strip()

    await reload_cog(world)
    (listing,) = await world.invoke(ADMIN_ID, "!recordings list")
    assert f"`{meeting_id}`" in listing.text and "(interrupted" in listing.text
    (info,) = await world.invoke(ADMIN_ID, f"!recordings info {meeting_id}")
    assert f"`!recordings promote {meeting_id}` finishes it." in info.text

    replies = await world.invoke(ADMIN_ID, f"!recordings promote {meeting_id}")
    summary = next(m for m in replies if m.text.startswith("✅"))
    assert "2 files" in summary.text, summary.text
    files = {n: d for m in replies for n, d in m.files}
    speaker = mp3.decode(files[f"recording_{meeting_id}_{SPEAKER_ID}.mp3"]).astype(np.float64).mean(axis=1)
    # Every window flushed before the kill is there and in time: after 3.2 s of a 1 s
    # grid with a 0.5 s jitter margin, windows 0 and 1 were on disk; the rest was in
    # memory and died with the process, which is the design's bound on a crash's loss.
    from harness import sources
    from chunkrecorder.pipeline.timeline import Grid
    source = sources.synthetic_speaker(0, 10.0, seed=1, talk_spurts=False)
    n = Grid.for_interval(1.0).start(2)
    assert len(speaker) == n
    expected = np.zeros(n)
    expected[CODEC_DELAY_SAMPLES:] = source.expected(n).astype(np.float64).mean(axis=1)[:n - CODEC_DELAY_SAMPLES]
    a, b = speaker[2400:n - 2400], expected[2400:n - 2400]
    assert float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))) > 0.95

    (again,) = await world.invoke(ADMIN_ID, f"!recordings promote {meeting_id}")
    assert again.text == f"Meeting `{meeting_id}` is already done; `!recordings info {meeting_id}` shows its files."
