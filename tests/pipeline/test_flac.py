"""The lossless archive: FLAC chunks joined into one file a decoder finds sample-identical.

Every check decodes with FFmpeg's command-line tool (``imageio_ffmpeg``), a decoder
independent of the encoding path, with CRC checking on (``-err_detect crccheck``)
and errors fatal (``-v error``); the STREAMINFO MD5 is compared with the MD5 of that
decoder's s16le output, and the audio with the chunk PCM the timeline placed (copied
by a spy before each encode) and with the speakers' own signals.
"""

from __future__ import annotations

import hashlib
import subprocess
import threading
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from chunkrecorder.audio import flac
from chunkrecorder.objects import MeetingSettings, RecordingKind
from chunkrecorder.pipeline import Recorder
from chunkrecorder.pipeline.encode_worker import EncodeJob, encode
from chunkrecorder.store import SqlRecordingService
from tests.support.pipeline import Clock, Speaker, play
from tests.support.signals import RATE, speech_like

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_decode(path: Path | str, channels: int = 1) -> np.ndarray:
    """The file decoded by the FFmpeg binary to int16 ``(samples, channels)``; any error fails the test."""
    out = subprocess.run(
        [FFMPEG, "-v", "error", "-err_detect", "crccheck", "-i", str(path), "-f", "s16le", "-ac", str(channels), "-"],
        capture_output=True, timeout=50,
    )
    assert out.returncode == 0 and not out.stderr, out.stderr.decode(errors="replace")
    return np.frombuffer(out.stdout, dtype="<i2").reshape(-1, channels)


def assert_streaminfo_true(path: Path | str, decoded: np.ndarray) -> None:
    info = flac.read_stream_info(Path(path).read_bytes())
    assert info.total_samples == len(decoded)
    assert info.md5 == hashlib.md5(decoded.astype("<i2").tobytes()).digest()
    assert info.channels == decoded.shape[1] and info.sample_rate == RATE and info.bits == 16


class Spy:
    """Encodes like the real worker (in threads), keeping each chunk's body PCM first."""

    def __init__(self) -> None:
        self.bodies: dict[tuple[str, int, int], np.ndarray] = {}
        self.lock = threading.Lock()

    def __call__(self, job: EncodeJob):  # noqa: ANN204 - the transcoder's encoder type
        name = Path(job.pcm_path)
        user, seq = (int(x) for x in name.stem.split("_"))
        raw = np.frombuffer(name.read_bytes(), dtype="<i2").reshape(-1, job.channels)
        body = raw[job.prime : job.prime + job.body].copy()
        with self.lock:
            self.bodies[(name.parent.name, user, seq)] = body
        return encode(job)

    def track(self, meeting_id: str, user: int, grid, length: int, channels: int) -> np.ndarray:
        """What the timeline placed for one track: each window's body PCM, zeros where no chunk was written."""
        out = np.zeros((length, channels), dtype=np.int16)
        for k in range(grid.windows_for(length)):
            body = self.bodies.get((meeting_id, user, k))
            if body is not None:
                start = grid.start(k)
                n = min(len(body), length - start)
                out[start : start + n] = body[:n]
        return out


@pytest.fixture
def spy() -> Spy:
    return Spy()


@pytest.fixture
async def recorder(tmp_path: Path, spy: Spy):
    async with SqlRecordingService(tmp_path / "chunkrecorder.sqlite3") as store:
        rec = Recorder(store=store, data_dir=tmp_path, workers=2, executor="thread", encoder=spy)
        await rec.start()
        try:
            yield rec
        finally:
            await rec.close()


async def record_flac(rec: Recorder, speakers, *, seconds: float, channels: int = 1):
    clock = Clock()
    session = await rec.start_meeting(
        guild_id=1, channel_id=2, started_by=3, clock=clock,
        settings=MeetingSettings(flush_interval_s=1.0, channels=channels, archive="flac"),
    )
    await play(session, clock, speakers, until_s=seconds, tick=rec.tick)
    return session, await rec.stop_meeting(session.meeting.id)


@pytest.mark.parametrize("channels", [1, 2])
async def test_flac_tracks_are_the_placed_pcm_to_the_sample(recorder: Recorder, spy: Spy, channels: int) -> None:
    alice = Speaker(101, speech_like(5.3, seed=1), channels=channels)
    bob = Speaker(202, speech_like(1.7, seed=2, peak=10_000), channels=channels)  # leaves at 1.7 s
    carol = Speaker(303, speech_like(2.1, seed=3, peak=8_000), start_s=2.5, channels=channels)  # a silent window first
    session, result = await record_flac(recorder, [alice, bob, carol], seconds=5.3, channels=channels)
    length = session.length_samples
    assert length is not None and abs(length - int(5.3 * RATE)) < 960
    assert result.failed_chunks == 0
    assert len(result.recordings) == 4
    for rec in result.recordings:
        assert rec.path.endswith(".flac") and rec.filename.endswith(".flac")
        data = Path(rec.path).read_bytes()
        assert rec.size_bytes == len(data) and rec.sha256 == hashlib.sha256(data).hexdigest()
        decoded = ffmpeg_decode(rec.path, channels)
        assert len(decoded) == length  # the meeting's length to the sample: no frame padding
        assert rec.duration_in_ms == round(length * 1000 / RATE)
        assert_streaminfo_true(rec.path, decoded)
        user = 0 if rec.kind is RecordingKind.MIXED else rec.user_id
        placed = spy.track(session.meeting.id, user, session.grid, length, channels)
        assert np.array_equal(decoded, placed)
    # and the per-speaker tracks are the speakers' own samples where they spoke (lossless)
    by_user = {r.user_id: r for r in result.recordings if r.kind is RecordingKind.PER_USER}
    for sp in (alice, bob, carol):
        decoded = ffmpeg_decode(by_user[sp.user_id].path, channels)[:, 0]
        assert np.array_equal(decoded, sp.expected(length))


def test_renumbered_frames_keep_valid_crcs_and_decode_identically(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    pcm = (rng.normal(0, 3000, (3 * flac.BLOCK + 100, 1))).astype(np.int16)
    for first in (0, 5, 127, 1 << 20, 480_384 * 500):  # one to five bytes of coded sample number
        frames = flac.encode_frames(pcm, first_sample=first, sample_rate=RATE, channels=1)
        for frame in frames:  # the CRC-16 updated in O(1) equals one computed over every byte
            assert flac.crc16(frame[:-2]) == int.from_bytes(frame[-2:], "big")
        info = flac.StreamInfo(16, flac.BLOCK, 0, 0, RATE, 1, 16, len(pcm), hashlib.md5(pcm.tobytes()).digest())
        path = tmp_path / f"{first}.flac"
        path.write_bytes(flac.build_header(info) + b"".join(frames))
        assert np.array_equal(ffmpeg_decode(path), pcm)


def test_silence_frames_decode_to_zeros(tmp_path: Path) -> None:
    for channels in (1, 2):
        data = flac.silence(480_384, 480_384 + 77, channels=channels)
        info = flac.StreamInfo(16, flac.BLOCK, 0, 0, RATE, channels, 16, 480_461, bytes(16))
        path = tmp_path / f"s{channels}.flac"
        path.write_bytes(flac.build_header(info) + data)
        decoded = ffmpeg_decode(path, channels)
        assert decoded.shape == (480_461, channels) and not decoded.any()


def test_set_comments_replaces_tags_and_leaves_streaminfo_and_frames(tmp_path: Path) -> None:
    pcm = speech_like(2.0, seed=4)[:, None]
    frames = b"".join(flac.encode_frames(pcm, first_sample=0, sample_rate=RATE, channels=1))
    part = tmp_path / "t.flac.part"
    part.write_bytes(frames)
    final = tmp_path / "t.flac"
    flac.finish_track(part, final, length=len(frames), sample_rate=RATE, channels=1)
    before = final.read_bytes()
    for tags in ([("TITLE", "General — Ada"), ("ARTIST", "Ada\u00e9")], [("TITLE", "second")]):
        flac.set_comments(final, tags)
        after = final.read_bytes()
        assert after[:42] == before[:42]  # fLaC + STREAMINFO, first and untouched
        assert after.endswith(frames)
        meta = subprocess.run([FFMPEG, "-v", "error", "-i", str(final), "-f", "ffmetadata", "-"],
                              capture_output=True, timeout=50).stdout.decode()
        for key, value in tags:
            assert f"{key}={value}" in meta
        assert flac.read_comments(final) == tags
    assert "ARTIST" not in meta  # replaced, not appended
    assert np.array_equal(ffmpeg_decode(final)[:, 0], pcm[:, 0])


def test_the_running_measurement_and_a_scan_in_pieces_agree_with_the_decoder(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    pcm = rng.normal(0, 6000, (48_000 * 25 + 77, 1)).astype(np.int16)  # noise: bytes that look like sync codes
    frames = []
    m = flac.Measure(RATE, 1)
    for start in range(0, len(pcm), 480_384):  # as the assembler feeds it: chunk by chunk
        chunk = b"".join(flac.encode_frames(np.ascontiguousarray(pcm[start : start + 480_384]), first_sample=start,
                                            sample_rate=RATE, channels=1))
        m.feed(chunk)
        frames.append(chunk)
    data = b"".join(frames)
    part = tmp_path / "t.part"
    part.write_bytes(data)
    whole = flac.scan(part, offset=0, length=len(data), sample_rate=RATE, channels=1)
    pieces = flac.scan(part, offset=0, length=len(data), sample_rate=RATE, channels=1, step=50_000)
    assert m.result() == whole == pieces
    assert whole.info.total_samples == len(pcm)
    assert whole.info.md5 == hashlib.md5(pcm.tobytes()).digest()
    assert [p[0] for p in whole.seekpoints] == [0, 480_384, 960_768]  # the first frame at or after each 10 s
    with pytest.raises(flac.FlacError):
        m.feed(data[: len(data) // 2])  # not whole frames: refused
