"""The harness's JSON report lists each recording's tags, read back from the file (issue 14)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from pathlib import Path

import imageio_ffmpeg

from harness import cli


def _ffmetadata(path: str) -> dict[str, str]:
    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", path, "-f", "ffmetadata", "-"],
                         capture_output=True, check=True, timeout=30).stdout.decode("utf-8")
    return dict(line.split("=", 1) for line in out.splitlines()[1:] if "=" in line and not line.startswith("["))


async def test_the_reports_recordings_carry_their_tags_as_ffmpeg_reads_them(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = await cli.run(cli.parse_args(["simulate", "--speakers", "2", "--seconds", "3", "--flush-interval", "1",
                                         "--data-dir", str(tmp_path), "--json"]), stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    data = json.loads(out.getvalue())
    recordings = data["recordings"]
    assert len(recordings) == 3
    for r in recordings:
        raw = Path(r["path"]).read_bytes()
        assert r["sha256"] == hashlib.sha256(raw).hexdigest() and r["size_bytes"] == len(raw)
        seen = _ffmetadata(r["path"])
        tags = r["tags"]
        assert (seen["title"], seen["artist"], seen["album"]) == (tags["TITLE"], tags["ARTIST"], tags["ALBUM"])
        assert seen["track"] == f"{tags['TRACKNUMBER']}/{tags['TRACKTOTAL']}" and tags["TRACKTOTAL"] == "3"
        assert data["meeting_id"] in seen["comment"]
        assert tags["ALBUM"].startswith("Harness guild · Harness voice · ")
        if r["kind"] == "per_user":
            assert tags["ARTIST"] == r["speaker"] and tags["TITLE"] == f"Harness voice — {r['speaker']}"
        else:
            assert tags["ARTIST"] == "Harness guild" and tags["TITLE"] == "Harness voice — mix"
