"""`[p]recordingset archive flac` through the real cog: the setting, a meeting keeping the
format it started with, the posted FLAC files, `get <id> mp3` (made once and cached
beside the FLAC, gone with it) and parts of a FLAC that `cat` back into the file."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from chunkrecorder.audio import flac, mp3
from chunkrecorder.audio.flac_mp3 import source_of
from chunkrecorder.audio.parts import plan_parts, read_part
from chunkrecorder.pipeline.paths import Layout
from chunkrecorder.pipeline.tagging import read_chapters, read_tags
from tests.support.red import ADMIN_ID, GUILD_ID, RedWorld, VoiceWorld
from tests.support.signals import ffmpeg_decode_flac

from .test_delivery import files_in, record


async def test_the_archive_setting_is_saved_shown_and_checked(cog_world: RedWorld) -> None:
    (reply,) = await cog_world.invoke(ADMIN_ID, "!recordingset")
    assert "archive      MP3" in reply.text
    (reply,) = await cog_world.invoke(ADMIN_ID, "!recordingset archive FLAC")
    assert reply.text == "Recordings will be kept as lossless FLAC."
    assert (await cog_world.cog.config.guild_from_id(GUILD_ID).all())["archive"] == "flac"
    (reply,) = await cog_world.invoke(ADMIN_ID, "!recordingset")
    assert "archive      FLAC (lossless)" in reply.text
    (reply,) = await cog_world.invoke(ADMIN_ID, "!recordingset archive wav")
    assert reply.text == "`wav` is not an archive format: say `mp3` or `flac`."
    assert (await cog_world.cog.config.guild_from_id(GUILD_ID).all())["archive"] == "flac"


async def test_a_flac_meeting_posts_flac_and_get_mp3_makes_and_caches_an_mp3(voice_world: VoiceWorld) -> None:
    world = voice_world.world
    await world.invoke(ADMIN_ID, "!recordingset archive flac")
    started = await world.invoke(ADMIN_ID, "!record start")
    assert voice_world.live is not None, [m.text for m in started]
    # a meeting keeps the format it started with
    (changed,) = await world.invoke(ADMIN_ID, "!recordingset archive mp3")
    assert "keeps its settings" in changed.text
    await voice_world.run(1.0)
    await world.invoke(ADMIN_ID, "!record note Budget")
    await voice_world.run(1.0)
    replies = started + await world.invoke(ADMIN_ID, "!record stop")
    got = files_in(replies)
    labels = next(n for n in got if n.endswith("_labels.txt"))
    assert got.pop(labels) == b"1.000000\t1.000000\tBudget\n"  # the note, as an Audacity label track
    assert len(got) == 3 and all(name.endswith(".flac") for name in got), sorted(got)
    (meeting,), _total = await world.cog.store.list_meetings(GUILD_ID)
    recs = await world.cog.service.recorder.library.recordings_for_meeting(meeting.id)
    for rec in recs:
        assert rec.path.endswith(".flac") and got[rec.filename] == Path(rec.path).read_bytes()
        decoded = ffmpeg_decode_flac(rec.path)
        assert len(decoded) == meeting.length_samples
        assert flac.read_stream_info(got[rec.filename]).md5 == hashlib.md5(decoded.tobytes()).digest()

    rec = next(r for r in recs if r.user_id is not None)
    (reply,) = await world.invoke(ADMIN_ID, f"!recordings get {rec.id} mp3")
    ((name, data),) = reply.files
    listen = Layout.listen_path(rec.path)
    assert name == rec.filename[: -len(".flac")] + ".mp3" and data == listen.read_bytes()
    # the MP3 is the FLAC's audio, aligned from t=0, the length rounded up to whole frames
    heard = mp3.decode(data[data.index(b"\xff\xfb"):]).astype(np.float64)[:, 0]
    source = ffmpeg_decode_flac(rec.path)[:, 0].astype(np.float64)
    assert len(heard) == mp3.frames_for(len(source)) * mp3.FRAME
    n = len(source)
    err = heard[:n] - source
    assert 10 * np.log10((source**2).sum() / (err**2).sum()) > 15  # the same audio, in place (no lag)
    mtime = listen.stat().st_mtime_ns
    (again,) = await world.invoke(ADMIN_ID, f"!recordings get {rec.id} mp3")
    assert again.files == [(name, data)] and listen.stat().st_mtime_ns == mtime  # made once
    (original,) = await world.invoke(ADMIN_ID, f"!recordings get {rec.id}")
    assert original.files == [(rec.filename, Path(rec.path).read_bytes())]
    (opus,) = await world.invoke(ADMIN_ID, f"!recordings get {rec.id} opus")
    ((opus_name, opus_data),) = opus.files
    assert opus_name.endswith(".opus") and opus_data[:4] == b"OggS"

    # The MP3 says what the FLAC says: the same title, artist, album..., and the mix's notes
    # as an ID3 chapter table a phone's player shows.
    mix = next(r for r in recs if r.user_id is None)
    (reply,) = await world.invoke(ADMIN_ID, f"!recordings get {mix.id} mp3")
    mix_listen = Layout.listen_path(mix.path)
    for source, copy in ((Path(rec.path), listen), (Path(mix.path), mix_listen)):
        from_flac = {k.upper(): v for k, v in flac.read_comments(source) if not k.upper().startswith("CHAPTER")}
        assert from_flac["TITLE"] and from_flac["ARTIST"]
        assert {k: v for k, v in read_tags(copy).items() if k in from_flac} == from_flac
    (chapter,) = read_chapters(mix_listen)
    assert chapter.title == "Budget" and 900 <= chapter.start_ms <= 1200
    assert chapter.end_ms == meeting.length_samples * 1000 // 48_000
    assert source_of(mix_listen) == mix.sha256  # still names its source

    # deleting the recording removes what was made from it
    assert listen.exists() and Path(rec.path).with_suffix(".opus").exists()
    await world.cog.service.recorder.delete_recording(rec.id, guild_id=GUILD_ID)
    assert not Path(rec.path).exists() and not listen.exists() and not Path(rec.path).with_suffix(".opus").exists()


def test_flac_parts_are_cut_between_frames_and_cat_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    pcm = rng.normal(0, 4000, (48_000 * 40, 1)).astype(np.int16)  # 40 s of noise: ~3.8 MB of FLAC
    frames = b"".join(flac.encode_frames(pcm, first_sample=0, sample_rate=48_000, channels=1))
    part = tmp_path / "t.flac.part"
    part.write_bytes(frames)
    final = tmp_path / "t.flac"
    flac.finish_track(part, final, length=len(frames), sample_rate=48_000, channels=1)
    whole = final.read_bytes()
    parts = plan_parts(final, 1_500_000, "t.flac")
    assert len(parts) >= 3 and all(p.size <= 1_500_000 for p in parts)
    assert [p.filename for p in parts][:2] == [f"t.part1of{len(parts)}.flac", f"t.part2of{len(parts)}.flac"]
    blobs = [read_part(p) for p in parts]
    assert b"".join(blobs) == whole  # cat gives the file back
    assert blobs[0].startswith(b"fLaC")
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    total = 0
    for i, blob in enumerate(blobs):  # each later part starts on a frame: FFmpeg reads it alone
        assert i == 0 or flac.parse_frame_header(blob, 0).number == total
        path = tmp_path / f"p{i}.flac"
        path.write_bytes(blob if i == 0 else whole[: flac.metadata_end(whole)] + blob)
        out = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-f", "s16le", "-"], capture_output=True,
                             timeout=50)
        assert not out.stderr
        got = np.frombuffer(out.stdout, dtype="<i2")
        assert np.array_equal(got, pcm[total : total + len(got), 0])
        total += len(got)
    assert total == len(pcm)
    # under 10 s of audio per part: cut at any frame, still whole frames that cat back
    small = plan_parts(final, 200_000, "t.flac")
    assert len(small) > len(parts) and all(p.size <= 200_000 for p in small)
    assert b"".join(read_part(p) for p in small) == whole
    for p in small[1:]:
        flac.parse_frame_header(read_part(p), 0)
