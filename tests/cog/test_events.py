"""Events for other cogs, received by a real listener cog loaded in the same offline Red bot:
a meeting started, a meeting's files are ready (with what a transcriber needs), a file
is gone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redbot.core import commands

from chunkrecorder.audio import mp3
from tests.support.red import ADMIN_ID, BOT_ID, GUILD_ID, MEMBER_ID, SPEAKER_ID, VOICE_ID, VoiceWorld, settle


class Listener(commands.Cog):
    """What another cog writes: no import of chunkrecorder, only the events."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, Any]] = []

    @commands.Cog.listener()
    async def on_chunkrecorder_meeting_started(self, event: Any) -> None:
        self.seen.append(("started", event))

    @commands.Cog.listener()
    async def on_chunkrecorder_meeting_promoted(self, event: Any) -> None:
        self.seen.append(("promoted", event))

    @commands.Cog.listener()
    async def on_chunkrecorder_recording_deleted(self, event: Any) -> None:
        self.seen.append(("deleted", event))


async def test_a_listener_cog_receives_started_promoted_and_deleted(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    listener = Listener()
    await world.bot.add_cog(listener)
    await world.invoke(ADMIN_ID, "!record start")
    await settle()
    ((kind, started),) = listener.seen
    assert kind == "started"
    assert (started.guild.id, started.channel_id, started.started_by, started.consent, started.auto_rule) == (
        GUILD_ID, VOICE_ID, ADMIN_ID, "notice", None)
    meeting_id = started.meeting_id
    await voice.run(2.0)
    await world.invoke(MEMBER_ID, "!record note Decision")
    await voice.run(0.5)
    await world.invoke(ADMIN_ID, "!record stop")
    await settle()
    (promoted,) = [e for k, e in listener.seen if k == "promoted"]
    assert promoted.meeting_id == meeting_id and promoted.guild.id == GUILD_ID and promoted.channel_id == VOICE_ID
    assert promoted.length_ms == 2500 and promoted.failed_chunks == 0
    by_user = {r.user_id: r for r in promoted.recordings}
    assert set(by_user) == {SPEAKER_ID, MEMBER_ID, None}
    assert by_user[None].kind == "mixed" and by_user[SPEAKER_ID].kind == "per_user"
    for rec in promoted.recordings:
        data = Path(rec.path).read_bytes()  # the file is there to transcribe, as described
        assert len(data) == rec.size_bytes and abs(rec.duration_ms - 2500) < 25
    assert mp3.count_frames(Path(by_user[SPEAKER_ID].path).read_bytes()) * 1152 >= 2.5 * 48_000
    assert [(n.at_ms, n.author_id, n.text) for n in promoted.notes] == [(2000, MEMBER_ID, "Decision")]
    assert Path(promoted.labels_path).read_text() == "2.000000\t2.000000\tDecision\n"

    speaker_file = by_user[SPEAKER_ID]
    await world.invoke_and_answer(ADMIN_ID, f"!recordings delete {speaker_file.id}", "yes")
    await settle()
    (deleted,) = [e for k, e in listener.seen if k == "deleted"]
    assert (deleted.guild_id, deleted.reason, deleted.recording.id, deleted.recording.user_id) == (
        GUILD_ID, "deleted", speaker_file.id, SPEAKER_ID)
    await world.invoke_and_answer(ADMIN_ID, f"!recordings delete {meeting_id}", "yes")
    await settle()
    rest = [e for k, e in listener.seen if k == "deleted"][1:]
    assert {(e.reason, e.recording.user_id) for e in rest} == {("meeting_deleted", MEMBER_ID),
                                                               ("meeting_deleted", None)}

    # A data deletion removes a member's own files: listeners hear of each.
    listener.seen.clear()
    await world.invoke(ADMIN_ID, "!record start")
    await voice.run(1.5)
    await world.invoke(ADMIN_ID, "!record stop")
    await world.cog.red_delete_data_for_user(requester="owner", user_id=SPEAKER_ID)
    await settle()
    (erased,) = [e for k, e in listener.seen if k == "deleted"]
    assert erased.reason == "data_request" and erased.recording.user_id == SPEAKER_ID
    assert BOT_ID not in {e.started_by for k, e in listener.seen if k == "started"}
