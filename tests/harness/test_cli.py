"""``python -m harness``: the command-line contract (arguments, output, exit codes)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from harness import cli

from tests.support.lifecycle import Track, best_corr, source_reference
from tests.support.signals import decode_file

ROOT = Path(__file__).resolve().parents[2]


async def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await cli.run(cli.parse_args(list(argv)), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _wav(path: Path, freq: float, seconds: float, rate: int = 16_000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    # A chirp around freq, so the recording can be checked against the file.
    pcm = (np.sin(2 * np.pi * (freq * t + 150 * t * t)) * 6000).astype(np.int16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--flush-interval", "0.5"], "error: The flush interval must be between 1 and 60 seconds."),
        (["--source", "bob=/nonexistent/bob.wav"], "error: bob: no such file: /nonexistent/bob.wav"),
        (["--speakers", "0"], "error: --speakers must be between 1 and 1000, not 0"),
        (["--source", "a=x.wav", "--source", "a=y.wav"], "error: each --source NAME must be different"),
    ],
)
async def test_bad_input_is_one_line_and_changes_nothing(tmp_path: Path, argv: list[str], message: str) -> None:
    data = tmp_path / "never-made"
    code, out, err = await _run("simulate", "--seconds", "2", "--data-dir", str(data), *argv)
    assert code == 1
    assert out == ""
    assert err == message + "\n"
    assert not data.exists()


def test_argument_errors_exit_2_with_usage() -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "simulate", "--loss", "1.5"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "--loss: 1.5 is not a probability between 0 and 1" in proc.stderr
    assert "Traceback" not in proc.stderr


async def test_sources_from_files_are_the_speakers(tmp_path: Path) -> None:
    alice, bob = tmp_path / "alice.wav", tmp_path / "bob.wav"
    _wav(alice, 300, 1.5)
    _wav(bob, 1500, 1.0)
    code, out, err = await _run("simulate", "--source", f"alice={alice}", "--source", f"bob={bob}",
                                "--seconds", "5", "--flush-interval", "1", "--data-dir",
                                str(tmp_path / "d"), "--json")
    assert code == 0, err
    data = json.loads(out)
    per_user = {r["speaker"]: r for r in data["recordings"] if r["kind"] == "per_user"}
    assert set(per_user) == {"alice", "bob"}
    # The meeting is as long as the longest file (shorter than --seconds).
    assert abs(per_user["alice"]["duration_ms"] - 1500) < 30
    assert abs(per_user["bob"]["duration_ms"] - 1500) < 30
    from harness.sources import from_file

    for name, path in (("alice", alice), ("bob", bob)):
        rec = decode_file(per_user[name]["path"])
        ref = source_reference(from_file(path), len(rec))
        t = Track(0, rec, ref, np.ones(len(rec), dtype=bool))
        assert best_corr(t) > 0.9
    # Bob's file ended at 1 s: the rest of his recording is silence.
    bob_rec = decode_file(per_user["bob"]["path"])
    assert np.abs(bob_rec[int(1.05 * 48_000) :]).max() < 50


async def test_human_output_says_where_the_mp3s_are_and_shows_progress(tmp_path: Path) -> None:
    code, out, err = await _run("simulate", "--speakers", "2", "--seconds", "3", "--flush-interval", "1",
                                "--data-dir", str(tmp_path))
    assert code == 0, err
    assert f"MP3s in {tmp_path / 'recordings'}:" in out
    paths = [line.split()[-1] for line in out.splitlines() if line.strip().endswith(".mp3")]
    assert len(paths) == 3 and all(Path(p).is_file() for p in paths)
    assert "PROMOTED" in out and str(tmp_path / "chunkrecorder.sqlite3") in out
    assert "streaming: 3/3 s (100%)" in err and "transcoding:" in err


async def test_recover_with_nothing_to_do_and_with_no_database(tmp_path: Path) -> None:
    code, _, err = await _run("simulate", "--speakers", "1", "--seconds", "2", "--flush-interval", "1",
                              "--data-dir", str(tmp_path))
    assert code == 0, err
    code, out, err = await _run("recover", "--db", str(tmp_path / "chunkrecorder.sqlite3"),
                                "--data-dir", str(tmp_path), "--json")
    assert code == 0 and json.loads(out)["meetings"] == []
    code, out, err = await _run("recover", "--db", str(tmp_path / "nope.sqlite3"), "--data-dir", str(tmp_path))
    assert code == 1 and out == "" and err == f"error: no database at {tmp_path / 'nope.sqlite3'}\n"


def test_demo_defaults_in_a_subprocess_print_where_the_mp3s_are(tmp_path: Path) -> None:
    # What `make demo` runs, shortened: defaults otherwise (3 speakers, hybrid, temp dirs).
    proc = subprocess.run([sys.executable, "-m", "harness", "simulate", "--seconds", "4"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "TMPDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "MP3s in " in proc.stdout
    folder = Path(proc.stdout.split("MP3s in ")[1].split(":")[0])
    assert folder.parent.parent == tmp_path
    assert len(list(folder.glob("*.mp3"))) == 4
