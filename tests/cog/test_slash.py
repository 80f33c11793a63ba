"""The slash forms of `record start/stop/status` and `recordings list/get`.

The owner enables and syncs them with Red's own `[p]slash enable` and `[p]slash sync`;
the fake REST edge checks the synced commands as Discord does and answers the
interaction callback and its follow-ups as Discord does. A member then uses them as
Discord's client would (an INTERACTION_CREATE built from what was synced, dispatched by
discord.py's real CommandTree), and sees the same replies as with the prefix form, as
the answer to their command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chunkrecorder.audio import mp3
from tests.cog.test_record import DELAY, TOLERANCE, best_lag, files_of, mono
from tests.support.red import (
    ADMIN_ID,
    GUILD_ID,
    MEMBER_ID,
    OWNER_ID,
    SPEAKER_ID,
    VOICE_ID,
    RedWorld,
    Sent,
    VoiceWorld,
)


async def enable_slash(world: RedWorld) -> None:
    """What the README tells the owner to run."""
    for name in ("record", "recordings"):
        (reply,) = await world.invoke(OWNER_ID, f"!slash enable {name}")
        assert "enabled" in reply.text.lower(), reply.text
    # `[p]slash sync` has a 60 s cooldown whose bucket outlives a bot (discord.py shares
    # it between copies of the command): each test's bot is a fresh one, so reset it.
    ctx = await world.bot.get_context(world.message(OWNER_ID, "!slash sync"))
    world.bot.get_command("slash sync").reset_cooldown(ctx)
    (reply,) = await world.invoke(OWNER_ID, "!slash sync")
    assert reply.text == "Synced 2 commands.", reply.text


def synced(world: RedWorld, name: str) -> dict[str, Any]:
    return next(c for c in world.rest.synced if c["name"] == name)


def sub(command: dict[str, Any], name: str) -> dict[str, Any]:
    return next(o for o in command.get("options", []) if o["name"] == name)


def answer(world: RedWorld, replies: list[Sent], command: str) -> Sent:
    """The one message that answers ``/command``: the member saw a reply, not "The
    application did not respond"."""
    record = world.interaction(command)
    assert record.response_type in (4, 5), f"/{command} was never answered"
    (reply,) = [m for m in replies if m.id == record.original_id]
    assert not reply.loading, f"/{command} still shows 'thinking…'"
    return reply


async def test_sync_offers_the_hybrid_commands_with_what_discord_needs(cog_world: RedWorld) -> None:
    world = cog_world
    await enable_slash(world)
    assert {c["name"] for c in world.rest.synced} == {"record", "recordings"}
    record, recordings = synced(world, "record"), synced(world, "recordings")
    # Only the hybrid subcommands; opting out and in, and the admin tools, stay prefix-only.
    assert {o["name"] for o in record["options"]} == {"start", "stop", "status", "note"}
    assert {o["name"] for o in recordings["options"]} == {"list", "get"}
    channel = sub(sub(record, "start"), "channel")
    assert channel["type"] == 7 and channel["channel_types"] == [2]  # a voice channel, chosen from a list
    assert not channel.get("required")
    page = sub(sub(recordings, "list"), "page")
    assert page["type"] == 4 and not page.get("required")  # an integer
    ident = sub(sub(recordings, "get"), "recording_id")
    assert ident["type"] == 3 and ident["required"] is True
    for option in (channel, page, ident):
        assert option["description"] and option["description"] != "…"

    def descriptions(node: dict[str, Any]) -> list[str]:
        return [node["description"]] + [d for o in node.get("options") or [] for d in descriptions(o)]

    for command in (record, recordings):
        assert command["dm_permission"] is False  # offered in servers only, as the prefix form works
        for text in descriptions(command):
            assert "[p]" not in text, text  # Discord shows it as it is
    assert sub(record, "start")["description"] == "Join your voice channel (or the one named) and start recording."


async def test_a_description_discord_refuses_fails_the_sync(cog_world: RedWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """The edge checks what it is sent, so the sync above passing means something."""
    world = cog_world
    start = world.bot.get_command("record start").app_command
    monkeypatch.setattr(start, "description", "x" * 101)
    for name in ("record", "recordings"):
        await world.invoke(OWNER_ID, f"!slash enable {name}")
    replies = await world.invoke(OWNER_ID, "!slash sync")
    assert world.rest.synced == [] and not any(m.text.startswith("Synced") for m in replies)


@pytest.mark.parametrize(("author", "prefix_form", "slash_form", "options"), [
    (ADMIN_ID, "record status", "record status", {}),
    (ADMIN_ID, "record stop", "record stop", {}),
    (ADMIN_ID, "record start", "record start", {}),
    (MEMBER_ID, "record start", "record start", {}),
    (MEMBER_ID, "record stop", "record stop", {}),
])
async def test_slash_answers_are_the_prefix_replies(cog_world: RedWorld, author: int, prefix_form: str,
                                                   slash_form: str, options: dict[str, Any]) -> None:
    world = cog_world
    await enable_slash(world)
    (typed,) = await world.invoke(author, f"!{prefix_form}")
    replies = await world.slash(author, slash_form, **options)
    reply = answer(world, replies, slash_form)
    assert reply.text == typed.text.replace("`!", "`/")
    assert not reply.ephemeral and reply.interaction_id == world.interaction(slash_form).id
    assert replies == [reply]  # nothing else appeared anywhere


# --------------------------------------------------------------------------- with voice
async def test_a_meeting_run_with_slash_commands(voice_world: VoiceWorld) -> None:
    """Start, status and stop as slash commands: each is answered, the announcement and
    the files are what the prefix form gives, and the files hold the speakers' voices."""
    voice, world = voice_world, voice_world.world
    await enable_slash(world)
    replies = await world.slash(ADMIN_ID, "record start", channel=VOICE_ID)
    start = answer(world, replies, "record start")
    # Cited with the text prefix: `record optout` has no slash form.
    assert start.text == ("🔴 Recording **Standup** (per speaker and mixed). Stop with `!record stop`; "
                          "anyone can opt out with `!record optout`.")
    assert voice.live is not None and voice.live.channel_id == VOICE_ID
    assert world.guild.me.nick == "[REC] Minutes"
    await voice.run(2.0)

    status = answer(world, await world.slash(MEMBER_ID, "record status"), "record status")
    assert "Recording **Standup** for 2 seconds" in status.text
    assert "Speakers heard: Member and Speaker." in status.text
    note = answer(world, await world.slash(MEMBER_ID, "record note", text="Decision @everyone"), "record note")
    assert note.text == "📝 Noted at 0:02: Decision @\u200beveryone"  # the mention cannot ping
    too_long = answer(world, await world.slash(MEMBER_ID, "record note", text="x" * 301), "record note")
    assert too_long.text == "A note is 1 to 300 characters, not 301."

    replies = await world.slash(ADMIN_ID, "record stop")
    ack = answer(world, replies, "record stop")
    assert ack.text == "⏹️ Stopping the recording of **Standup**; the files follow here."
    progress, result, uploads, *after = [m for m in replies if m.interaction_id is None]
    assert after and after[0].text.startswith("📝 1 note: the label track for Audacity"), [m.text for m in after]
    assert progress.text.startswith("⏹️ Recording of **Standup** ended (stopped by Admin)")
    assert progress.text.endswith("done.")
    assert result.text.startswith("✅ **Standup**: 0:02 recorded, 3 files")
    assert world.guild.me.nick == "Minutes"
    files = files_of([uploads, *after])
    labels = next(d for n, d in files.items() if n.endswith("_labels.txt"))
    assert labels.decode() == "2.000000\t2.000000\tDecision @everyone\n"  # the slash note, where it was taken
    speaker = next(d for n, d in files.items() if n.endswith(f"_{SPEAKER_ID}.mp3"))
    decoded = mono(mp3.decode(speaker))
    lag, corr = best_lag(decoded, mono(voice.net.expected(SPEAKER_ID, len(decoded))))
    assert corr > 0.9 and abs(lag - DELAY) <= TOLERANCE, (lag, corr)


async def test_recordings_list_and_get_as_slash_commands(voice_world: VoiceWorld) -> None:
    voice, world = voice_world, voice_world.world
    await world.invoke(ADMIN_ID, "!record start")
    meeting_id = voice.live.meeting_id
    await voice.run(2.0)
    await world.invoke(ADMIN_ID, "!record stop")
    await enable_slash(world)

    (typed,) = await world.invoke(ADMIN_ID, "!recordings list")
    listing = answer(world, await world.slash(ADMIN_ID, "recordings list"), "recordings list")
    assert listing.text == typed.text and f"`{meeting_id}`" in listing.text
    assert "`!recordings info <id>` for details" in listing.text  # a prefix-only command, cited as one
    refused = answer(world, await world.slash(ADMIN_ID, "recordings list", page=3), "recordings list")
    assert refused.text == "Page 3 does not exist: there is 1 page."
    denied = answer(world, await world.slash(MEMBER_ID, "recordings list"), "recordings list")
    assert denied.text == "You need Manage Server (or the bot's admin role) to use that."

    recs = {r.user_id: r for r in await world.cog.service.recordings_of(await world.cog.service.meeting(GUILD_ID, meeting_id))}
    own = recs[SPEAKER_ID]
    replies = await world.slash(SPEAKER_ID, "recordings get", recording_id=own.id)
    got = answer(world, replies, "recordings get")
    assert got.files == [(own.filename, Path(own.path).read_bytes())]  # the file is the answer
    assert replies == [got]
    other = answer(world, await world.slash(MEMBER_ID, "recordings get", recording_id=own.id), "recordings get")
    assert other.text.startswith("You can fetch your own recordings") and not other.files
    missing = answer(world, await world.slash(ADMIN_ID, "recordings get", recording_id="0123abcd"), "recordings get")
    assert missing.text == "No recording `0123abcd` in this server."
