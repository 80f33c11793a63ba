"""`[p]recordingset` and who may do what, through Red's real bot, checks and Config."""

from __future__ import annotations

import pytest

from tests.support.red import ADMIN_ID, GUILD_ID, MEMBER_ID, OTHER_ADMIN_ID, OTHER_GUILD_ID, OTHER_TEXT_ID, OWNER_ID, RECORDER_ROLE_ID, RECORDER_ROLE_MEMBER_ID, RedWorld


async def stored(world: RedWorld, guild_id: int = GUILD_ID) -> dict:
    return await world.cog.config.guild_from_id(guild_id).all()


async def one_line(world: RedWorld, author: int, command: str, **kw) -> str:
    replies = await world.invoke(author, command, **kw)
    assert len(replies) == 1, [m.text for m in replies]
    text = replies[0].text
    assert "\n" not in text and "Traceback" not in text, text
    return text


async def test_settings_show_the_defaults(cog_world: RedWorld) -> None:
    (reply,) = await cog_world.invoke(ADMIN_ID, "!recordingset")
    for words in ("10 s per chunk", "per speaker + mixed", "64 kb/s", "mono", "keep until deleted",
                  "24 h", "240 min", "after 5 min empty", "autopromote  on", "announce     on",
                  "Manage Server", "3 attempts", "move         stop recording"):
        assert words in reply.text, words


@pytest.mark.parametrize(
    ("command", "key", "value", "shown"),
    [
        ("flush 2.5", "flush_interval", 2.5, "2.5 s per chunk"),
        ("strategy per_user", "strategy", "per_user", "per speaker"),
        ("strategy mixed", "strategy", "mixed", "mixed only"),
        ("bitrate 96", "bitrate", 96_000, "96 kb/s"),
        ("channels stereo", "channels", 2, "stereo"),
        ("retention 30", "retention_days", 30, "30 days"),
        ("maxlength 90", "max_length_minutes", 90, "90 min"),
        ("autostop 0", "autostop_minutes", 0, "autostop     off"),
        ("autopromote off", "auto_promote", False, "autopromote  off"),
        ("announce off", "announce", False, "announce     off"),
        ("reconnect 0", "reconnect_attempts", 0, "reconnect    off"),
        ("reconnect 1", "reconnect_attempts", 1, "reconnect    1 attempt\n"),
        ("retention 1", "retention_days", 1, "retention    1 day\n"),
        ("linkexpiry 1", "link_expiry_days", 1, "linkexpiry   1 day\n"),
        ("move follow", "move_action", "follow", "move         follow into the new channel"),
        ("move stop", "move_action", "stop", "move         stop recording"),
        ("role Recorders", "recorder_role", RECORDER_ROLE_ID, "@Recorders or Manage Server"),
    ],
)
async def test_each_setting_is_saved_and_shown(cog_world: RedWorld, command: str, key: str, value, shown: str) -> None:
    line = await one_line(cog_world, ADMIN_ID, f"!recordingset {command}")
    assert line.endswith("."), line
    assert (await stored(cog_world))[key] == value
    (reply,) = await cog_world.invoke(ADMIN_ID, "!recordingset")
    assert shown in reply.text


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("flush abc", "`abc` is not a number of seconds"),
        ("flush 0.5", "between 1 and 60 seconds, not 0.5"),
        ("flush 61", "between 1 and 60 seconds"),
        ("flush nan", "is not a number"),
        ("strategy loud", "`loud` is not a strategy"),
        ("bitrate 100", "100 kb/s is not offered"),
        ("bitrate fast", "`fast` is not a bitrate"),
        ("channels 5.1", "`5.1` is not a channel layout"),
        ("retention -1", "between 0 and 3650 days"),
        ("retention 1.5", "not a whole number of days"),
        ("maxlength 0", "between 1 and 1440 minutes"),
        ("autostop lots", "not a whole number of minutes"),
        ("autopromote maybe", "`maybe` is not on or off"),
        ("announce 2", "`2` is not on or off"),
        ("reconnect 11", "between 0 and 10 attempts"),
        ("move away", "`away` is not a choice: say `stop`"),
        ("role Nobody", "I can't find a role called `Nobody`"),
        ("role @everyone", "not @everyone"),
        ("flush", "Missing `seconds`. Usage: `!recordingset flush <seconds>`"),
        ("flush inf", "`inf` is not a number of seconds"),
        ("flush 6m", "between 1 and 60 seconds, not 360"),
        ("reconnect 1.5", "`1.5` is not a whole number of attempts"),
        ("maxlength 2d", "The maximum length must be between 1 and 1440 minutes, not 2880."),
        ("autostop 90s", "`seconds` is not a valid unit of time for this command"),
        ("retention 36h", "`hours` is not a valid unit of time for this command"),
        ("retention 2y", "`years` is not a valid unit of time for this command"),
        ("retention -2d", "between 0 and 3650 days, not -2"),
    ],
)
async def test_bad_values_get_one_line_and_change_nothing(cog_world: RedWorld, command: str, says: str) -> None:
    before = await stored(cog_world)
    line = await one_line(cog_world, ADMIN_ID, f"!recordingset {command}")
    assert says in line, line
    assert await stored(cog_world) == before


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("retention 1d", "Recordings older than 1 day will be deleted."),
        ("maxlength 1", "Recordings stop after 1 minute."),
        ("autostop 1m", "Recordings stop once the channel has been empty for 1 minute."),
        ("reconnect 1", "I'll try to reconnect once before finishing a recording."),
        ("reconnect 0", "I won't join again by myself once the voice connection is lost for good; Discord's "
                        "quick reconnects still continue the recording."),
        ("linkexpiry 1", "New download links work for 1 day."),
    ],
)
async def test_one_of_a_unit_reads_in_the_singular(cog_world: RedWorld, command: str, says: str) -> None:
    assert await one_line(cog_world, ADMIN_ID, f"!recordingset {command}") == says


@pytest.mark.parametrize(
    ("command", "key", "value", "says"),
    [
        ("retention 30d", "retention_days", 30, "Recordings older than 30 days will be deleted."),
        ("retention 2w", "retention_days", 14, "Recordings older than 14 days will be deleted."),
        ("maxlength 4h", "max_length_minutes", 240, "Recordings stop after 240 minutes."),
        ("maxlength 1h30m", "max_length_minutes", 90, "Recordings stop after 90 minutes."),
        ("autostop 5m", "autostop_minutes", 5, "Recordings stop once the channel has been empty for 5 minutes."),
        ("autostop 1h", "autostop_minutes", 60, "Recordings stop once the channel has been empty for 60 minutes."),
        ("flush 30s", "flush_interval", 30.0, "Chunks are now 30 seconds long."),
        ("flush 1m", "flush_interval", 60.0, "Chunks are now 60 seconds long."),
    ],
)
async def test_durations_read_as_in_every_red_command(cog_world: RedWorld, command: str, key: str, value,
                                                       says: str) -> None:
    """Red's timedelta syntax works, and a bare number keeps the setting's own unit."""
    assert await one_line(cog_world, ADMIN_ID, f"!recordingset {command}") == says
    assert (await stored(cog_world))[key] == value


async def test_the_flush_interval_is_capped_at_60_seconds(cog_world: RedWorld) -> None:
    """Issue 8: `flush 300` cost the whole bot ~111 MB per mono speaker. It is refused in one
    line, and a value an older version stored above the cap records at the cap, the
    guild's other settings untouched."""
    assert await one_line(cog_world, ADMIN_ID, "!recordingset flush 300") == \
        "The flush interval must be between 1 and 60 seconds, not 300."
    config = cog_world.cog.config.guild_from_id(GUILD_ID)
    await config.flush_interval.set(300.0)
    await config.bitrate.set(96_000)
    settings = await cog_world.cog.service.settings.guild(GUILD_ID)
    assert settings.flush_interval == 60.0 and settings.bitrate == 96_000
    assert settings.meeting_settings().flush_interval_s == 60.0
    (reply,) = await cog_world.invoke(ADMIN_ID, "!recordingset")
    assert "60 s per chunk" in reply.text and "96 kb/s" in reply.text


async def test_temp_ttl_takes_a_duration_too(cog_world: RedWorld) -> None:
    assert await one_line(cog_world, OWNER_ID, "!recordingset tempttl 2d") == \
        "Leftover temporary chunks are removed after 48 hours."
    assert await cog_world.cog.config.temp_ttl_hours() == 48
    assert "between 1 and 720 hours, not 744" in await one_line(cog_world, OWNER_ID, "!recordingset tempttl 31d")
    assert await cog_world.cog.config.temp_ttl_hours() == 48


async def test_only_admins_change_settings(cog_world: RedWorld) -> None:
    before = await stored(cog_world)
    line = await one_line(cog_world, MEMBER_ID, "!recordingset flush 5")
    assert line == "You need Manage Server (or the bot's admin role) to use that."
    line = await one_line(cog_world, RECORDER_ROLE_MEMBER_ID, "!recordingset")
    assert "Manage Server" in line
    assert await stored(cog_world) == before
    assert "now 5 seconds" in await one_line(cog_world, OWNER_ID, "!recordingset flush 5")


async def test_red_admin_role_counts_as_admin(cog_world: RedWorld) -> None:
    """Red's own `[p]set roles addadminrole` is honoured by Red's check."""
    await cog_world.bot._config.guild_from_id(GUILD_ID).admin_role.set([RECORDER_ROLE_ID])
    assert "now 7 seconds" in await one_line(cog_world, RECORDER_ROLE_MEMBER_ID, "!recordingset flush 7")


async def test_temp_ttl_is_bot_wide_and_owner_only(cog_world: RedWorld) -> None:
    assert await one_line(cog_world, ADMIN_ID, "!recordingset tempttl 2") == "Only the bot owner can change that."
    assert await cog_world.cog.config.temp_ttl_hours() == 24
    assert "after 2 hours" in await one_line(cog_world, OWNER_ID, "!recordingset tempttl 2")
    assert await cog_world.cog.config.temp_ttl_hours() == 2


async def test_settings_belong_to_one_guild(cog_world: RedWorld) -> None:
    await cog_world.invoke(ADMIN_ID, "!recordingset bitrate 128")
    (reply,) = await cog_world.invoke(OTHER_ADMIN_ID, "!recordingset", channel_id=OTHER_TEXT_ID, guild_id=OTHER_GUILD_ID)
    assert "64 kb/s" in reply.text
    assert (await stored(cog_world, OTHER_GUILD_ID))["bitrate"] == 64_000
    assert (await stored(cog_world))["bitrate"] == 128_000


async def test_recorder_role_lets_its_members_start_and_stop(cog_world: RedWorld) -> None:
    line = await one_line(cog_world, RECORDER_ROLE_MEMBER_ID, "!record start")
    assert line.startswith("Only members with Manage Server")
    await cog_world.invoke(ADMIN_ID, "!recordingset role Recorders")
    # Past the permission check: now it asks for a voice channel.
    assert (await one_line(cog_world, RECORDER_ROLE_MEMBER_ID, "!record start")).startswith("Join a voice channel first")
    line = await one_line(cog_world, MEMBER_ID, "!record stop")
    assert line == "Only members with the **Recorders** role or Manage Server (or the bot's admin role) can start or stop recordings here."
    await cog_world.invoke(ADMIN_ID, "!recordingset role")
    assert (await stored(cog_world))["recorder_role"] is None
    assert (await one_line(cog_world, RECORDER_ROLE_MEMBER_ID, "!record start")).startswith("Only members with Manage Server")


async def test_blocked_users_hear_nothing(cog_world: RedWorld) -> None:
    """Red's global checks (blocklist) fail silently, as in every Red cog."""
    await cog_world.bot.add_to_blacklist([MEMBER_ID])
    assert await cog_world.invoke(MEMBER_ID, "!recordings list") == []
    assert await cog_world.invoke(MEMBER_ID, "!record optout") == []


async def test_stored_garbage_falls_back_to_defaults(cog_world: RedWorld) -> None:
    """A hand-edited or old settings file must not break starting a recording."""
    from chunkrecorder.core.settings import GuildSettings

    await cog_world.cog.config.guild_from_id(GUILD_ID).bitrate.set(12345)
    settings = GuildSettings.from_config(await stored(cog_world))
    assert settings == GuildSettings()
    assert settings.meeting_settings().bitrate == 64_000


async def test_reds_help_shows_the_commands_with_examples(cog_world: RedWorld) -> None:
    replies = await cog_world.invoke(ADMIN_ID, "!help record")
    text = "\n".join(m.text for m in replies)
    for words in ("start", "stop", "status", "optout", "optin"):
        assert words in text, text
    replies = await cog_world.invoke(ADMIN_ID, "!help record start")
    text = "\n".join(m.text for m in replies)
    assert "!record start Standup" in text  # [p] becomes the prefix
    # Members do not see admin commands in help (Red's checks decide what is listed).
    replies = await cog_world.invoke(MEMBER_ID, "!help recordings")
    assert "delete" not in "\n".join(m.text for m in replies)
