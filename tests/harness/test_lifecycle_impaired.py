"""Meetings over a bad network: lost, reordered, duplicated, jittered and damaged packets.

Each runs the whole lifecycle (real receive path, pipeline, store, transcoder) on
seeded impairments and checks the promoted files as a user would: every speaker's
file holds their voice and nobody else's, in place to 5 ms at t=0 and at every chunk
boundary, as long as the meeting, and the mix is their sum. What the network
destroyed is masked out of the comparison (see lifecycle_fixtures).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness import sources
from harness.impairments import Fate, Impairments
from harness.scenario import SpeakerPlan
from harness.simulate import SimulateOptions, SimulationResult, simulate

from tests.support.lifecycle import check_meeting

FLUSH = 1.5
SECONDS = 5.0


def _plans() -> list[SpeakerPlan]:
    return [SpeakerPlan(2001 + i, sources.synthetic_speaker(i, SECONDS, talk_spurts=False)) for i in range(3)]


async def _run(tmp_path: Path, imp: Impairments) -> SimulationResult:
    return await simulate(SimulateOptions(seconds=SECONDS, flush_interval=FLUSH, plans=_plans(),
                                          impairments=imp, seed=imp.seed, data_dir=tmp_path))


async def test_five_percent_loss(tmp_path: Path) -> None:
    result = await _run(tmp_path, Impairments(loss=0.05, seed=21))
    lost = result.packets["lost"]
    assert 0.03 * result.packets["sent"] < lost < 0.07 * result.packets["sent"]
    check_meeting(result, FLUSH)
    # Short gaps were concealed rather than left as holes.
    assert result.receive["concealed"] > 0


async def test_reordered_packets_land_in_place(tmp_path: Path) -> None:
    result = await _run(tmp_path, Impairments(reorder=0.1, seed=22))
    assert result.packets["reordered"] > 50
    assert result.receive["late"] == 0 and result.receive["lost"] == 0
    check_meeting(result, FLUSH)


async def test_duplicated_packets_are_recorded_once(tmp_path: Path) -> None:
    result = await _run(tmp_path, Impairments(duplicate=0.1, seed=23))
    assert result.packets["duplicates"] > 50
    assert result.receive["duplicates"] == result.packets["duplicates"]
    check_meeting(result, FLUSH)


async def test_corrupt_packets_are_counted_dropped_and_harmless(tmp_path: Path) -> None:
    imp = Impairments(bad_mac=0.02, truncated=0.02, garbage_opus=0.02, seed=24)
    result = await _run(tmp_path, imp)
    rec = result.receive
    made = result.network.path.stats.corrupted  # type: ignore[union-attr]
    assert min(made.values()) > 3
    assert (rec["bad_mac"], rec["truncated"], rec["garbage_opus"]) == (
        made["bad_mac"], made["truncated"], made["garbage_opus"])
    assert result.packets["dropped_corrupt"] == sum(made.values())
    check_meeting(result, FLUSH)


async def test_jittery_network_keeps_every_frame_and_every_speaker_apart(tmp_path: Path) -> None:
    result = await _run(tmp_path, Impairments(jitter_ms=20, seed=25))
    assert result.receive["late"] == 0 and result.receive["lost"] == 0
    net = result.network
    assert net is not None
    for p in result.plans:
        assert (net.fates(p.user_id) == Fate.DELIVERED).all()
    # Content and separation, allowing for the offset checked in the next test.
    from tests.support.lifecycle import TOLERANCE, best_corr, track

    tracks = [track(result, p.user_id) for p in result.plans]
    for t in tracks:
        assert best_corr(t, search=int(0.025 * 48_000)) > 0.9
        for o in tracks:
            if o is not t:
                assert abs(best_corr(t, o.reference, search=int(0.025 * 48_000))) < 0.05
    assert TOLERANCE == 240


async def test_jittery_network_alignment_within_5ms(tmp_path: Path) -> None:
    result = await _run(tmp_path, Impairments(jitter_ms=20, seed=25))
    check_meeting(result, FLUSH)


async def test_everything_at_once_with_talk_spurts(tmp_path: Path) -> None:
    # Loss, reordering, duplicates and corruption together, speakers pausing between
    # spurts (no packets then): still no crosstalk, still aligned, still complete.
    plans = [SpeakerPlan(2101 + i, sources.synthetic_speaker(i, SECONDS, seed=3)) for i in range(3)]
    imp = Impairments(loss=0.03, reorder=0.05, duplicate=0.05, bad_mac=0.01, garbage_opus=0.01, seed=26)
    result = await simulate(SimulateOptions(seconds=SECONDS, flush_interval=FLUSH, plans=plans,
                                            impairments=imp, data_dir=tmp_path))
    verdict = check_meeting(result, FLUSH)
    # Pauses are silence in the files, not noise (away from the edges of spurts, where
    # the codecs ring out for a frame or two).
    edge = 2 * 1152
    for t in verdict.tracks:
        loud = (np.abs(t.reference) > 0) | ~t.mask
        near_loud = np.convolve(loud.astype(float), np.ones(2 * edge + 1), mode="same") > 0
        quiet = ~near_loud
        assert quiet.mean() > 0.1  # there are pauses to check
        assert np.sqrt(np.mean(t.recording[quiet] ** 2)) < 10
