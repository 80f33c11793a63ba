"""Issue 8's fault injection: random schedules of kill -9, full disks and lost databases,
then the invariant: every second of audio that reached disk is in a recording, or is a
reported gap whose chunk is still on disk awaiting a repair.

How the faults get in and what is checked: ``tests/support/faults.py``. Each schedule is
one test (seeded, reproducible: ``-k seed7``); CI runs 4 (about 8 s each here), and
``pytest tests/pipeline/test_fault_injection.py --schedules 200 --first-schedule 1``, or
``python -m tests.support.faults run --schedules 200``, runs many.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.faults import Schedule, run_schedule


def test_a_schedule_of_faults_loses_no_audio_that_reached_disk(schedule_seed: int, tmp_path: Path) -> None:
    outcome = run_schedule(schedule_seed, tmp_path / "data", timeout_s=60)
    assert len(outcome.runs) == len(Schedule.make(schedule_seed).runs)
