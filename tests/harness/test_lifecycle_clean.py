"""A clean meeting start to finish, through the CLI's entry point: the files are right.

Runs ``python -m harness simulate --json`` in-process (``harness.cli.run``), then
decodes the promoted MP3s and compares them with what each fake speaker said.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from chunkrecorder.objects import Strategy
from harness import cli
from harness.simulate import SimulateOptions, simulate

from tests.support.lifecycle import best_corr, check_meeting
from tests.support.signals import decode_file

FLUSH = 2.0
SECONDS = 6.0


async def _cli(*argv: str) -> tuple[int, dict, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await cli.run(cli.parse_args(list(argv)), stdout=out, stderr=err)
    text = out.getvalue()
    return code, (json.loads(text) if text.strip().startswith("{") else {}), err.getvalue()


async def test_clean_meeting_via_the_cli_json_contract(tmp_path: Path) -> None:
    code, data, err = await _cli(
        "simulate", "--speakers", "3", "--seconds", str(SECONDS), "--flush-interval", str(FLUSH),
        "--seed", "7", "--data-dir", str(tmp_path), "--json",
    )
    assert code == 0, err
    assert set(data) >= {"meeting_id", "status", "recordings", "chunks", "packets", "wall_s", "cpu_s"}
    assert data["status"] == "PROMOTED"
    assert set(data["packets"]) >= {"sent", "lost", "dropped_corrupt", "duplicates"}
    assert data["packets"]["lost"] == data["packets"]["dropped_corrupt"] == data["packets"]["duplicates"] == 0
    assert data["chunks"]["FAILED"] == 0 and data["chunks"]["DONE"] > 0
    assert data["chunks"]["QUEUED"] == data["chunks"]["IN_PROGRESS"] == 0
    recs = data["recordings"]
    assert sorted((r["kind"], r["speaker"]) for r in recs if r["kind"] == "per_user") == [
        ("per_user", "speaker1"), ("per_user", "speaker2"), ("per_user", "speaker3")]
    mixed = [r for r in recs if r["kind"] == "mixed"]
    assert len(mixed) == 1 and mixed[0]["user_id"] is None and mixed[0]["speaker"] is None
    for r in recs:
        path = Path(r["path"])
        assert path.is_absolute() and path.is_file() and path.parent == tmp_path / "recordings"
        assert path.stat().st_size == r["size_bytes"] and len(r["sha256"]) == 64
        assert abs(r["duration_ms"] - SECONDS * 1000) < 25
    assert data["wall_s"] > 0 and data["cpu_s"] > 0
    # --json: stdout is the one object; the progress bar stayed off stderr too.
    assert "streaming" not in err


async def test_clean_meeting_files_line_up_with_their_sources(tmp_path: Path) -> None:
    # The CLI's default speakers (chirps in separate bands, talking in seeded spurts):
    # the same function the CLI calls, so the harness's log of what was sent is at hand.
    result = await simulate(SimulateOptions(speakers=3, seconds=SECONDS, flush_interval=FLUSH,
                                            seed=7, data_dir=tmp_path))
    verdict = check_meeting(result, FLUSH)
    # t=0 and every chunk boundary (windows of 83 MP3 frames: 1.992 s) were measured.
    assert verdict.points == [0, 95_616, 191_232, 286_848]
    assert {p for (_, p) in verdict.lags} == set(verdict.points)
    assert result.receive["delivered"] == result.packets["sent"]


async def test_the_check_catches_a_swapped_or_shifted_file(tmp_path: Path) -> None:
    # The comparison itself must be able to fail: a file checked against the wrong
    # speaker, or shifted by 10 ms, is rejected.
    result = await simulate(SimulateOptions(speakers=2, seconds=3.0, flush_interval=1.0, seed=1,
                                            talk_spurts=False, data_dir=tmp_path))
    import numpy as np

    from tests.support.lifecycle import TOLERANCE, Track, reference, track

    a, b = (track(result, p.user_id) for p in result.plans)
    assert best_corr(a) > 0.9 and abs(best_corr(a, b.reference)) < 0.05
    shifted = Track(a.user_id, np.concatenate([np.zeros(480), a.recording[:-480]]), a.reference, a.mask)
    assert abs(shifted.lag_at(48_000) or 0) > TOLERANCE
    ref_b, _ = reference(result, b.user_id, len(a.recording))
    assert abs(best_corr(Track(a.user_id, a.recording, ref_b, a.mask))) < 0.05


@pytest.mark.parametrize("strategy", [Strategy.PER_USER, Strategy.MIXED])
async def test_strategy_decides_which_files_exist(tmp_path: Path, strategy: Strategy) -> None:
    result = await simulate(SimulateOptions(speakers=2, seconds=3.0, flush_interval=1.0, seed=2,
                                            strategy=strategy, talk_spurts=False, data_dir=tmp_path))
    assert result.status == "PROMOTED"
    kinds = sorted(r.kind for r in result.recordings)
    if strategy is Strategy.PER_USER:
        assert kinds == ["per_user", "per_user"]
    else:
        assert kinds == ["mixed"]
        mixed = decode_file(result.recording_for(None).path)
        plans = result.plans
        import numpy as np

        from tests.support.lifecycle import reference

        total = sum(reference(result, p.user_id, len(mixed))[0] for p in plans)
        corr = float(np.dot(mixed, total) / np.sqrt(np.dot(mixed, mixed) * np.dot(total, total)))
        assert corr > 0.9
