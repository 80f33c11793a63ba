"""People coming and going: late joins, early leaves, a client reconnecting with a new SSRC."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from harness import cli, sources
from harness.scenario import SpeakerPlan
from harness.simulate import SimulateOptions, simulate

from tests.support.lifecycle import TOLERANCE, check_meeting

FLUSH = 1.5
SECONDS = 5.0
RATE = 48_000


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if len(x) else 0.0


async def test_late_join_and_early_leave(tmp_path: Path) -> None:
    plans = [
        SpeakerPlan(3001, sources.synthetic_speaker(0, SECONDS, talk_spurts=False), name="host"),
        SpeakerPlan(3002, sources.synthetic_speaker(1, SECONDS, talk_spurts=False), name="late",
                    join_at=1.2),
        SpeakerPlan(3003, sources.synthetic_speaker(2, SECONDS, talk_spurts=False), name="early",
                    leave_at=3.4),
    ]
    result = await simulate(SimulateOptions(seconds=SECONDS, flush_interval=FLUSH, plans=plans,
                                            data_dir=tmp_path))
    verdict = check_meeting(result, FLUSH)
    late, early = verdict.tracks[1], verdict.tracks[2]
    # Silence before joining and after leaving; audio (in place) right after joining.
    assert _rms(late.recording[: int(1.15 * RATE)]) < 5
    assert _rms(early.recording[int(3.45 * RATE) :]) < 5
    assert _rms(late.recording[int(1.3 * RATE) : int(1.5 * RATE)]) > 1000
    assert abs(late.lag_at(int(1.2 * RATE)) or 10**6) <= TOLERANCE
    assert abs(early.lag_at(int(3.3 * RATE)) or 10**6) <= TOLERANCE
    # Every file is the meeting's length (to the MP3 frame), whoever was there.
    assert {len(t.recording) for t in verdict.tracks} == {-(-int(SECONDS * RATE) // 1152) * 1152}


async def test_reconnect_with_a_new_ssrc_continues_the_same_file_in_place(tmp_path: Path) -> None:
    plans = [
        SpeakerPlan(3101, sources.synthetic_speaker(0, SECONDS, talk_spurts=False), name="roamer",
                    reconnects=(2.0,), reconnect_gap_s=0.3),
        SpeakerPlan(3102, sources.synthetic_speaker(1, SECONDS, talk_spurts=False), name="steady"),
    ]
    result = await simulate(SimulateOptions(seconds=SECONDS, flush_interval=FLUSH, plans=plans,
                                            data_dir=tmp_path))
    net = result.network
    assert net is not None
    (_, ssrc0), (frame1, ssrc1) = net.ssrcs(3101)
    assert ssrc0 != ssrc1 and frame1 == 115
    assert result.packets["unknown_ssrc"] == 0
    verdict = check_meeting(result, FLUSH)
    roamer = verdict.tracks[0]
    # One file for the user across both SSRCs: silent in the gap, in place after it.
    assert len([r for r in result.recordings if r.user_id == 3101]) == 1
    assert _rms(roamer.recording[int(2.05 * RATE) : int(2.28 * RATE)]) < 5
    assert abs(roamer.lag_at(int(2.5 * RATE)) or 10**6) <= TOLERANCE
    assert abs(roamer.lag_at(int(4.0 * RATE)) or 10**6) <= TOLERANCE


async def test_cli_join_leave_and_reconnect_flags(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    args = cli.parse_args(["simulate", "--speakers", "3", "--seconds", "4", "--flush-interval", "1",
                           "--join-leave", "--reconnect", "--data-dir", str(tmp_path), "--json"])
    assert await cli.run(args, stdout=out, stderr=err) == 0, err.getvalue()
    data = json.loads(out.getvalue())
    assert data["status"] == "PROMOTED"
    assert data["packets"]["unknown_ssrc"] == 0
    assert sorted(r["speaker"] for r in data["recordings"] if r["kind"] == "per_user") == [
        "speaker1", "speaker2", "speaker3"]
