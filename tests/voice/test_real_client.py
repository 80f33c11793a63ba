"""discord.py 2.7.1's real voice client, through the link, into real recordings.

Every scenario is a short meeting against :mod:`harness.discord_voice` (the fake voice
server and the voice half of the main gateway), recorded by a real ``Recorder``; the
promoted files are decoded and compared with what each member said
(:mod:`real_voice_fixtures`). Scenarios of a test run at once, at wall-clock pace.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chunkrecorder.voice.link import DisconnectReason, VoiceStateVerdict
from harness.discord_voice import voice_read_timeout
from harness.impairments import Fate

from real_voice_fixtures import (
    SOURCES,
    SPURTS,
    Bench,
    Run,
    Scenario,
    Speaker,
    assert_faithful,
    silent_in,
)

pytestmark = pytest.mark.timeout(55)

A, B, C, D, E = 1001, 1002, 1003, 1004, 1005


def _speakers(*uids: int) -> list[Speaker]:
    return [Speaker(uid, SOURCES[i]) for i, uid in enumerate(uids)]


def _no_reconnects(run: Run) -> None:
    names = [n for _, n, _ in run.all_events()]
    assert "reconnecting" not in names and "disconnect" not in names, (run.scenario.name, run.all_events())
    assert run.link.reconnects == 0


def _dave_failures(run: Run) -> int:
    return sum(l.receiver.stats.dave_failed for l in run.links)


# --------------------------------------------------------------------------- encryption
async def test_transport_only_dave_rekeys_and_a_downgrade_and_back(tmp_path: Path) -> None:
    async def rekey(run: Run) -> None:
        pass  # the membership plan does it: D joins at 4 s, B leaves at 8 s

    async def downgrade(run: Run) -> None:
        await run.server.downgrade()

    async def upgrade(run: Run) -> None:
        await run.server.upgrade()

    async with Bench(tmp_path) as bench:
        plain, dave, rekeyed, transitions = await bench.play(
            Scenario("transport encryption only", _speakers(A, B, C), dave=False),
            Scenario("DAVE v1 from the start", _speakers(A, B, C)),
            Scenario("DAVE: a member joins, one leaves (re-key)", [
                Speaker(A, SOURCES[0]),
                Speaker(B, SOURCES[1], plan={"leave_at": 8.6}),
                Speaker(D, SOURCES[3], plan={"join_at": 4.6}),
            ]),
            Scenario("DAVE: downgrade to protocol 0 and back", _speakers(A, B),
                     actions=[(4.0, downgrade), (8.0, upgrade)]),
        )
    for run in (plain, dave, rekeyed, transitions):
        _no_reconnects(run)
    assert_faithful(plain, [A, B, C])
    assert plain.link.receiver.stats.dave_failed == 0
    assert_faithful(dave, [A, B, C])
    assert [what for what, _ in dave.calls[0].dave.transitions] == ["welcome"]

    # The group re-keyed twice with the bot in it (op 27/29/23/22), and nothing the bot
    # could decrypt was lost: every DAVE failure is a frame sent before the bot's welcome.
    call = rekeyed.calls[0]
    assert [what for what, _ in call.dave.transitions] == ["welcome", "commit", "commit"]
    assert_faithful(rekeyed, [A, B, D])
    lost = sum(int((call.fates(u) == Fate.LOST).sum()) for u in (A, B, D))
    assert _dave_failures(rekeyed) <= lost

    assert [what for what, _ in transitions.calls[0].dave.transitions] == ["welcome", "downgrade", "upgrade", "welcome"]
    assert_faithful(transitions, [A, B])
