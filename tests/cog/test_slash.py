"""The slash forms of `record start/stop/status` and `recordings list/get`.

The owner enables and syncs them with Red's own `[p]slash enable` and `[p]slash sync`;
the fake REST edge checks the synced commands as Discord does and answers the
interaction callback and its follow-ups as Discord does. A member then uses them as
Discord's client would (an INTERACTION_CREATE built from what was synced, dispatched by
discord.py's real CommandTree), and sees the same replies as with the prefix form, as
the answer to their command.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.red import ADMIN_ID, MEMBER_ID, OWNER_ID, VOICE_ID, RedWorld, Sent


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
    assert {o["name"] for o in record["options"]} == {"start", "stop", "status"}
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


async def test_slash_start_names_a_channel_that_is_not_voice_only_through_the_list(cog_world: RedWorld) -> None:
    """Discord's client offers only voice channels for `channel` (the synced type)."""
    world = cog_world
    await enable_slash(world)
    from tests.support.red import TEXT_ID

    with pytest.raises(AssertionError, match="channel types"):
        await world.slash(ADMIN_ID, "record start", channel=TEXT_ID)
    assert VOICE_ID  # the voice channel is what the list offers (used in the voice tests)
