"""Issue 11's "done when": a one-hour meeting reaches everyone, through the bot's commands.

A 60-minute, 4-speaker hybrid meeting recorded by the cog from the harness's voice
channel (simulated time: the hour runs in well under a minute here, because the
members talk at the start, in the middle and at the end, and silence costs the
pipeline nothing; the files still hold the whole hour, 27.5 MiB each). Then, as a
member would:

* with download links on, every file is reached from the link the bot posted, with a
  real HTTP client against the real server on localhost: byte-identical (sha256), a
  resumed download (``Range: bytes=1000000-``) is exactly the tail, and a forged,
  expired or revoked link is refused with its status;
* with links off, ``[p]recordings get`` sends each file in parts under the upload limit
  that join back byte-identical.

This is the suite's one hour-long meeting; everything else uses seconds.
"""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path

import aiohttp
import pytest

from chunkrecorder.web import LinkSigner
from harness import sources
from harness.network import FakeVoiceNetwork
from harness.sources import Activity
from tests.support.red import (
    ADMIN_ID,
    BOT_ID,
    GUILD_ID,
    MEMBER_ID,
    OWNER_ID,
    RECORDER_ROLE_MEMBER_ID,
    SPEAKER_ID,
    TEXT_ID,
    VOICE_ID,
    RedWorld,
    VoiceWorld,
)

HOUR = 3600.0
LIMIT = 10 * 2**20
SPEAKERS = (SPEAKER_ID, MEMBER_ID, ADMIN_ID, RECORDER_ROLE_MEMBER_ID)


@pytest.fixture
async def hour_world(cog_world: RedWorld) -> VoiceWorld:
    net = FakeVoiceNetwork(guild_id=GUILD_ID, channel_id=VOICE_ID, bot_user_id=BOT_ID, seed=11,
                           channel_name="Standup")
    for i, user in enumerate(SPEAKERS):
        source = sources.synthetic_speaker(i, HOUR, seed=2, talk_spurts=False)
        source.activity = Activity.from_seconds([(0.5 + 2 * i, 8.0 + 2 * i), (HOUR / 2 + i, HOUR / 2 + 6 + i),
                                                 (HOUR - 10 + i, HOUR - 1)])
        net.add_speaker(user, source, name=f"speaker{i + 1}")
    cog = cog_world.cog
    cog.service.meetings.connector = net.connector
    cog.service.meetings.clock = net.clock
    cog.service.delivery.pace_s = 0.0
    cog.ticker.interval_s = 0.02
    voice = VoiceWorld(cog_world, net)
    voice.join(*SPEAKERS)
    return voice


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_hour_long_meeting_reaches_everyone_by_link_and_by_parts(hour_world: VoiceWorld) -> None:
    voice, world = hour_world, hour_world.world
    port = _free_port()
    await world.invoke(OWNER_ID, f"!recordingset web on 127.0.0.1:{port}")
    await world.invoke(ADMIN_ID, "!record start")
    assert voice.live is not None
    await voice.run(HOUR)
    replies = await world.invoke(ADMIN_ID, "!record stop")
    summary = next(m for m in replies if m.text.startswith("✅") and m.channel_id == TEXT_ID)
    assert summary.text.startswith("✅ **Standup**: 1:00:00 recorded, 5 files"), summary.text
    assert not any(m.files for m in replies)  # a link, not 137 MiB of attachments
    page = summary.text.rsplit(" ", 1)[1]
    assert page.startswith(f"http://127.0.0.1:{port}/m/") and page.endswith("/")
    meeting_id = page.split("/m/")[1].split("/")[0]
    recs = await world.cog.service.recorder.library.recordings_for_meeting(meeting_id)
    assert len(recs) == 5 and all(abs(r.duration_in_ms - HOUR * 1000) <= 24 for r in recs)
    assert all(r.size_bytes > 2 * LIMIT for r in recs)

    async with aiohttp.ClientSession() as http:
        async with http.get(page) as r:
            assert r.status == 200
            html = await r.text()
        for rec in recs:
            assert f'href="{rec.id}.mp3"' in html
            stored = Path(rec.path).read_bytes()
            async with http.get(page + f"{rec.id}.mp3") as r:
                assert r.status == 200 and hashlib.sha256(await r.read()).hexdigest() == rec.sha256
            async with http.get(page + f"{rec.id}.mp3", headers={"Range": "bytes=1000000-"}) as r:
                assert r.status == 206 and await r.read() == stored[1_000_000:]
        # Forged: the MAC changed. Expired: a link made eight days ago with the default
        # seven-day life, signed with the bot's own secret. Revoked: the owner rotates.
        head, mac = page.rstrip("/").rsplit(".", 1)
        async with http.get(head + "." + ("A" if mac[0] != "A" else "B") + mac[1:] + "/") as r:
            assert r.status == 403
        secret = bytes.fromhex((await world.cog.service.settings.web()).secret)
        old = LinkSigner(secret, clock=lambda: time.time() - 8 * 86_400).path("m", meeting_id, ttl_s=7 * 86_400)
        async with http.get(f"http://127.0.0.1:{port}{old}") as r:
            assert r.status == 410 and "expired" in await r.text()
        await world.invoke(OWNER_ID, "!recordingset web rotate")
        async with http.get(page) as r:
            assert r.status == 410 and "revoked" in await r.text()

    # Without links: parts under the limit, joined back byte-identical.
    await world.invoke(OWNER_ID, "!recordingset web off")
    for rec in recs:
        before = set(world.rest.messages)
        replies = await world.invoke(ADMIN_ID, f"!recordings get {rec.id}")
        parts = [(name, data) for m in replies for name, data in m.files]
        assert len(parts) == 3 and all(name.startswith(rec.filename[:-4] + ".part") for name, _ in parts)
        assert all(sum(len(d) for _, d in m.files) <= LIMIT for m in replies)
        assert hashlib.sha256(b"".join(d for _, d in parts)).hexdigest() == rec.sha256
        for i in set(world.rest.messages) - before:  # 27.5 MiB per file: let it go
            world.rest.messages[i].files = []
