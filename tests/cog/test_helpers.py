"""The cog's plain helpers, driven directly: upload batching, settings, nickname, the
meeting manager's refusal paths (no bot needed)."""

from __future__ import annotations

import asyncio

import pytest

from chunkrecorder.core.errors import UserError
from chunkrecorder.core.formatting import batches, clock_duration, human_size
from chunkrecorder.core.meetings import MeetingManager
from chunkrecorder.core.nickname import PREFIX, RecNickname
from chunkrecorder.core.progress import describe
from chunkrecorder.core.settings import GuildSettings
from chunkrecorder.pipeline.promoter import Progress

MIB = 2**20


def test_uploads_are_grouped_under_the_limit_and_oversized_files_left_out() -> None:
    sizes = [4 * MIB, 4 * MIB, 4 * MIB, 11 * MIB, 1 * MIB, 10 * MIB]
    groups = batches(sizes, 10 * MIB)
    assert groups == [[0, 1], [2, 4], [5]]
    assert all(sum(sizes[i] for i in g) <= 10 * MIB for g in groups)
    assert 3 not in [i for g in groups for i in g]
    assert batches([1] * 23, 10 * MIB) == [list(range(10)), list(range(10, 20)), [20, 21, 22]]


def test_sizes_and_lengths_read_like_a_player_shows_them() -> None:
    assert human_size(512) == "512 B" and human_size(10 * MIB) == "10.0 MiB"
    assert clock_duration(3_000) == "0:03" and clock_duration(3_723_000) == "1:02:03"
    assert clock_duration(None) == "?"
    assert describe(Progress("transcoding", 3, 12)).startswith("encoding chunks ▰▰▰▱")


def test_settings_refuse_values_a_meeting_cannot_record_with() -> None:
    s = GuildSettings()
    with pytest.raises(UserError, match="between 1 and 60"):
        s.with_value(flush_interval=0.5)
    assert s.with_value(flush_interval=2.0).meeting_settings().flush_interval_s == 2.0
    assert GuildSettings.from_config({"channels": 6, "flush_interval": 5}) == GuildSettings()
    assert GuildSettings.from_config({"flush_interval": 5}).flush_interval == 5


def test_rec_nickname_fits_discords_32_characters_and_never_doubles() -> None:
    assert RecNickname.recording_nick(None, "recbot") == "[REC] recbot"
    long = RecNickname.recording_nick("x" * 40, "recbot")
    assert len(long) == 32 and long.startswith(PREFIX)
    assert RecNickname.recording_nick("[REC] Minutes", "recbot") == "[REC] Minutes"


class _Channel:
    id = 42
    name = "Standup"
    members: list = []


async def test_a_voice_server_that_never_answers_is_one_line_and_no_meeting() -> None:
    never = asyncio.get_running_loop().create_future()

    async def connector(channel: object) -> object:
        return await never  # Discord's voice server never answers

    manager = MeetingManager(recorder=None, connector=connector, connect_timeout_s=0.05)
    with pytest.raises(UserError, match=r"^I couldn't join \*\*Standup\*\*: Discord did not answer in time"):
        await manager.start(guild_id=1, channel=_Channel(), text_channel_id=2, started_by=3,
                            settings=GuildSettings())
    assert manager.get(1) is None  # the recorder was never asked for a meeting


async def test_stop_and_start_refusals_of_the_manager() -> None:
    manager = MeetingManager(recorder=None, connector=None)
    with pytest.raises(UserError, match="Nothing is being recorded"):
        await manager.stop(1)
    await manager.close()
    with pytest.raises(UserError, match="shutting down"):
        await manager.start(guild_id=1, channel=_Channel(), text_channel_id=2, started_by=3,
                            settings=GuildSettings())
