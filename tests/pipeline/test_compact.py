"""The compact format and the parts: Ogg framing, sample-exact Opus, cuts that play alone.

The Opus file is checked the way the MP3 is (``tests/support/signals``): decoded by
FFmpeg, as a player would, and lined up with the source at t=0 and at the end; its
length is the MP3's. The parts are checked as a member would use them: every part
decodes on its own, the MP3 parts ``cat`` back to the file byte for byte, and the Opus
parts add up to the recording's length.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import av
import numpy as np
import pytest

from chunkrecorder.audio import mp3, ogg
from chunkrecorder.audio.ogg_opus import mp3_to_ogg_opus
from chunkrecorder.audio.parts import PartError, plan_parts, read_part, write_parts

from tests.support.signals import RATE, TOLERANCE, lag_at, speech_like


def _table_crc(data: bytes) -> int:
    """Ogg's CRC the textbook way (RFC 3533's reference), to check the zlib shortcut."""
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    c = 0
    for b in data:
        c = ((c << 8) & 0xFFFFFFFF) ^ table[((c >> 24) & 0xFF) ^ b]
    return c


@pytest.mark.parametrize("size", [0, 1, 27, 255, 4099])
def test_the_page_checksum_is_oggs(size: int) -> None:
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert ogg.crc(data) == _table_crc(data)


def test_pages_written_by_ffmpeg_read_back_and_ours_read_in_ffmpeg(tmp_path: Path) -> None:
    # FFmpeg's own Ogg muxer: our reader accepts its pages (checksums included).
    buf = io.BytesIO()
    with av.open(buf, "w", format="ogg") as c:
        s = c.add_stream("libopus", rate=48_000)
        s.layout = "mono"
        for i in range(10):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="mono")
            f.sample_rate, f.pts = 48_000, i * 960
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    pages = list(ogg.read_pages(io.BytesIO(buf.getvalue())))
    assert pages[0].flags & ogg.BOS and pages[-1].flags & ogg.EOS
    assert ogg.parse_opus_head(pages[0].packets[0]).channels == 1
    # A flipped byte fails the checksum.
    broken = bytearray(buf.getvalue())
    broken[pages[2].offset + pages[2].size - 1] ^= 1
    with pytest.raises(ogg.OggError, match="checksum"):
        list(ogg.read_pages(io.BytesIO(bytes(broken))))


def _mp3_of(x: np.ndarray, path: Path) -> Path:
    """A recording as the pipeline writes it: ``x`` from t=0, gapless, on the frame grid."""
    body = len(x)
    pcm = np.zeros((mp3.PRIME_SAMPLES + body + mp3.TAIL_SAMPLES, 1), np.int16)
    pcm[mp3.PRIME_SAMPLES : mp3.PRIME_SAMPLES + body, 0] = x
    raw = path.with_suffix(".pcm")
    raw.write_bytes(pcm.tobytes())
    mp3.encode_chunk_file(raw, path, prime=mp3.PRIME_SAMPLES, body=body)
    raw.unlink()
    return path


def _ffmpeg_decode(path: Path) -> np.ndarray:
    """Decoded by FFmpeg's demuxer and libopus, pre-skip and end trimming applied (a player)."""
    with av.open(str(path)) as f:
        frames = [fr.to_ndarray() for fr in f.decode(audio=0)]
    if not frames:
        return np.zeros(0)
    out = np.concatenate(frames, axis=1)[0]
    return (out * 32768.0) if out.dtype.kind == "f" else out.astype(np.float64)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, Path, Path]:
    folder = tmp_path_factory.mktemp("compact")
    # 30.5 s: not a whole number of MP3 frames or Opus frames.
    x = speech_like(30.5, seed=11)
    src = _mp3_of(x, folder / "recording.mp3")
    made = mp3_to_ogg_opus(src, folder / "recording.opus", comments=["TITLE=Standup"])
    assert made.path == str(folder / "recording.opus")
    return x, src, Path(made.path)


def test_the_opus_file_lines_up_with_the_source_and_lasts_as_long_as_the_mp3(speech: tuple[np.ndarray, Path, Path]) -> None:
    x, src, opus = speech
    mp3_pcm = mp3.decode(src.read_bytes(), channels=1)[:, 0].astype(np.float64)
    decoded = _ffmpeg_decode(opus)
    # The same length as the MP3 (which is the source rounded up to whole MP3 frames),
    # so to one frame of the source.
    assert len(decoded) == len(mp3_pcm)
    assert abs(len(decoded) - len(x)) < mp3.FRAME
    ref = x.astype(np.float64)
    for at in (0, len(x) // 2, len(x) - int(0.25 * RATE)):  # t=0, the middle, the end
        lag = lag_at(decoded, ref, at)
        assert lag is not None and abs(lag.samples) <= TOLERANCE and lag.corr > 0.9, (at, lag)
    # Checked against the MP3 too: the two files a member may download agree.
    end = lag_at(decoded, mp3_pcm, len(mp3_pcm) - int(0.25 * RATE))
    assert end is not None and abs(end.samples) <= TOLERANCE


def test_the_opus_headers_and_granules_follow_rfc_7845(speech: tuple[np.ndarray, Path, Path]) -> None:
    x, src, opus = speech
    with open(opus, "rb") as fh:
        pages = list(ogg.read_pages(fh))
    head = ogg.parse_opus_head(pages[0].packets[0])
    assert head.channels == 1 and head.input_rate == 48_000
    assert head.pre_skip == 312  # libopus's look-ahead at 48 kHz: what the decoder must drop
    assert ogg.parse_opus_tags(pages[1].packets[0]) == {"TITLE": "Standup"}
    assert pages[0].flags == ogg.BOS and pages[-1].flags == ogg.EOS
    assert [p.sequence for p in pages] == list(range(len(pages)))
    granules = [p.granule for p in pages[2:]]
    assert granules == sorted(granules)
    # Each page's granule counts the samples of the packets it completes (20 ms each) ...
    assert all(g % 960 == 0 for g in granules[:-1])
    # ... and the last one is trimmed to pre-skip + the MP3's samples.
    mp3_samples = mp3.decoded_samples(src.read_bytes())
    assert granules[-1] == head.pre_skip + mp3_samples
    assert sum(len(p.packets) for p in pages[2:]) * 960 - granules[-1] < 960


def test_a_file_without_mp3_frames_makes_an_empty_valid_opus_file(tmp_path: Path) -> None:
    bad = tmp_path / "recording.mp3"
    bad.write_bytes(b"\x00" * 5000)
    target = tmp_path / "recording.opus"
    made = mp3_to_ogg_opus(bad, target)
    assert made.samples == 0 and target.stat().st_size == made.size_bytes
    with open(target, "rb") as fh:
        pages = list(ogg.read_pages(fh))
    assert pages[-1].flags == ogg.EOS and pages[-1].granule == made.pre_skip
    assert len(_ffmpeg_decode(target)) == 0
    assert not list(tmp_path.glob("*.tmp"))


# --------------------------------------------------------------------------- parts
def test_mp3_parts_fit_play_alone_and_cat_back_byte_identical(speech: tuple[np.ndarray, Path, Path],
                                                              tmp_path: Path) -> None:
    _, src, _ = speech
    limit = 100_000
    paths = write_parts(src, limit, tmp_path / "parts", "Standup 2026-01-01 alice.mp3")
    assert len(paths) == -(-src.stat().st_size // (limit - limit % 192))
    assert [p.name for p in paths] == [f"Standup 2026-01-01 alice.part{i}of{len(paths)}.mp3"
                                       for i in range(1, len(paths) + 1)]
    assert b"".join(p.read_bytes() for p in paths) == src.read_bytes()
    total = 0
    for p in paths:
        assert p.stat().st_size <= limit
        n = mp3.decoded_samples(p.read_bytes())
        assert n == mp3.count_frames(p.read_bytes()) * mp3.FRAME  # every frame decodes
        total += n
    assert total == mp3.decoded_samples(src.read_bytes())


def test_opus_parts_are_each_a_valid_file_and_add_up_to_the_recording(speech: tuple[np.ndarray, Path, Path],
                                                                      tmp_path: Path) -> None:
    x, _, opus = speech
    parts = plan_parts(opus, 40_000)
    assert len(parts) > 2
    lengths = []
    joined = []
    for part in parts:
        data = read_part(part)
        assert len(data) == part.size <= 40_000
        pages = list(ogg.read_pages(io.BytesIO(data)))
        assert pages[0].flags == ogg.BOS and pages[-1].flags == ogg.EOS
        assert [p.sequence for p in pages] == list(range(len(pages)))
        path = tmp_path / part.filename
        path.write_bytes(data)
        decoded = _ffmpeg_decode(path)
        lengths.append(len(decoded))
        joined.append(decoded)
    assert sum(lengths) == len(_ffmpeg_decode(opus))
    # Played one after another, the parts are the recording: a join lines up with the source.
    whole = np.concatenate(joined)
    join = lengths[0]
    lag = lag_at(whole, x.astype(np.float64), join)
    assert lag is not None and abs(lag.samples) <= TOLERANCE, lag


def test_a_file_that_fits_is_one_part_and_a_tiny_limit_is_refused(speech: tuple[np.ndarray, Path, Path]) -> None:
    _, src, opus = speech
    (only,) = plan_parts(src, src.stat().st_size)
    assert only.filename == src.name and read_part(only) == src.read_bytes()
    (whole,) = plan_parts(opus, opus.stat().st_size)
    assert read_part(whole) == opus.read_bytes()
    with pytest.raises(PartError, match="smaller than one MP3 frame"):
        plan_parts(src, 100)
    with pytest.raises(PartError, match="smaller than one Ogg page"):
        plan_parts(opus, 500)
    assert not os.path.exists(str(src) + ".tmp")


def test_a_tagged_mp3_keeps_its_tag_in_the_first_part_and_converts_the_same(
        speech: tuple[np.ndarray, Path, Path], tmp_path: Path) -> None:
    """Recordings may start with an ID3v2 tag (the mix's chapters): it is not audio."""
    from chunkrecorder.audio import id3

    _, src, opus = speech
    tagged = tmp_path / "tagged.mp3"
    tag = id3.build_tag([id3.text_frame("TIT2", "Standup \u00ff\u00fb"), *id3.chapter_frames(
        [id3.Chapter(0, 10_000, "intro"), id3.Chapter(10_000, 30_000, "rest")], toc_title="Notes")])
    id3.write_with_tag(tagged, tag, src, offset=0, length=src.stat().st_size)
    parts = plan_parts(tagged, 100_000)
    data = [read_part(p) for p in parts]
    assert b"".join(data) == tagged.read_bytes() and data[0].startswith(b"ID3")
    assert all(len(d) <= 100_000 for d in data)
    # Every part's frames decode (the raw decoder is given the frames; a player skips the tag itself).
    assert sum(mp3.decoded_samples(d[id3.tag_length(d[:10]):]) for d in data) == \
        mp3.decoded_samples(src.read_bytes())
    made = mp3_to_ogg_opus(tagged, tmp_path / "tagged.opus")
    assert len(_ffmpeg_decode(Path(made.path))) == len(_ffmpeg_decode(opus))
