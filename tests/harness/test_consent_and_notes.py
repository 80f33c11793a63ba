"""Consent and notes through the harness: the files hold only who agreed, and the notes
are where they were taken, in the label track and as chapters a parser reads back.

The harness runs the cog's own consent gate (``core.consent.ConsentGate``) on the
receive path and takes notes through ``Recorder.add_note`` at the meeting's time, as
``[p]record note`` does; what is checked is what a member would find in the files.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import av
import mutagen.id3
import pytest

from chunkrecorder.audio import id3
from chunkrecorder.core.consent import ConsentMode
from harness import cli
from harness.simulate import HarnessError, SimulateOptions, simulate
from tests.support.lifecycle import best_corr, check_meeting, reference, track
from tests.support.signals import decode_file

FLUSH = 2.0
SECONDS = 6.0


async def test_optin_records_only_the_speakers_who_agreed_and_the_mix_leaves_the_others_out(tmp_path: Path) -> None:
    result = await simulate(SimulateOptions(speakers=3, seconds=SECONDS, flush_interval=FLUSH, seed=7,
                                            talk_spurts=False, data_dir=tmp_path, consent=ConsentMode.OPTIN,
                                            agree=["speaker1", "speaker3"]))
    agreed, refused = [1001, 1003], 1002
    # Per-speaker files exist for the two who agreed, each is their voice, in time; the
    # mix is the sum of exactly those two (check_meeting's SNR against their tracks).
    verdict = check_meeting(result, FLUSH, users=agreed)
    assert verdict.mix_snr_db is not None and verdict.mix_snr_db > 20
    assert not list(tmp_path.glob(f"recordings/*_{refused}.mp3"))
    assert not list(tmp_path.glob(f"chunks/**/{refused}_*"))
    # The speaker who did not agree is nowhere in the mix: it correlates with each voice
    # that agreed and not with theirs (which was sent the whole time).
    mix = track(result, agreed[0])
    mix.recording = decode_file(result.recording_for(None).path)
    for uid in agreed:
        assert best_corr(mix, track(result, uid).reference) > 0.4, uid
    ref, _mask = reference(result, refused, len(mix.recording))
    assert abs(ref).max() > 1000  # they did talk
    assert abs(best_corr(mix, ref)) < 0.05
    assert result.recorded == agreed


async def test_everyone_is_recorded_under_notice_and_nobody_under_optin_without_agreement(tmp_path: Path) -> None:
    result = await simulate(SimulateOptions(speakers=2, seconds=3.0, flush_interval=1.0, seed=3, talk_spurts=False,
                                            data_dir=tmp_path / "optin", consent=ConsentMode.OPTIN))
    assert result.status == "PROMOTED" and result.recordings == [] and result.recorded == []
    result = await simulate(SimulateOptions(speakers=2, seconds=3.0, flush_interval=1.0, seed=3, talk_spurts=False,
                                            data_dir=tmp_path / "notice"))
    assert sorted(r.user_id or 0 for r in result.recordings) == [0, 1001, 1002]


async def test_an_unknown_agree_name_or_a_note_outside_the_meeting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="no speaker carol"):
        await simulate(SimulateOptions(speakers=2, seconds=2.0, data_dir=tmp_path, consent=ConsentMode.OPTIN,
                                       agree=["carol"]))
    with pytest.raises(HarnessError, match="outside the meeting"):
        await simulate(SimulateOptions(speakers=1, seconds=2.0, data_dir=tmp_path, notes=[(3.0, "late")]))
    with pytest.raises(HarnessError, match="--consent optin"):
        await simulate(SimulateOptions(speakers=1, seconds=2.0, data_dir=tmp_path, agree=["speaker1"]))


async def _cli(*argv: str) -> tuple[int, dict, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await cli.run(cli.parse_args(list(argv)), stdout=out, stderr=err)
    return code, json.loads(out.getvalue()), err.getvalue()


async def test_notes_are_labels_and_chapters_at_the_times_they_were_taken(tmp_path: Path) -> None:
    code, data, err = await _cli(
        "simulate", "--speakers", "3", "--seconds", str(SECONDS), "--flush-interval", str(FLUSH), "--seed", "7",
        "--data-dir", str(tmp_path), "--note", "1.5=Intro", "--note", "4.2=Budget\tand\nplans",
        "--note", "0=Start", "--json",
    )
    assert code == 0, err
    assert data["notes"] == [{"at_ms": 0, "text": "Start"}, {"at_ms": 1500, "text": "Intro"},
                             {"at_ms": 4200, "text": "Budget\tand\nplans"}]
    labels = Path(data["labels_path"])
    assert labels.parent == tmp_path / "recordings"
    # Audacity's label track: start, end, text, tab separated; one line per note.
    assert labels.read_text() == ("0.000000\t0.000000\tStart\n"
                                  "1.500000\t1.500000\tIntro\n"
                                  "4.200000\t4.200000\tBudget and plans\n")
    (mix,) = [r for r in data["recordings"] if r["kind"] == "mixed"]
    path = Path(mix["path"])
    # Chapters, read by two independent parsers: mutagen's ID3 and FFmpeg's (PyAV).
    tag = mutagen.id3.ID3(path)
    (toc,) = tag.getall("CTOC")
    assert toc.flags & mutagen.id3.CTOCFlags.TOP_LEVEL and toc.flags & mutagen.id3.CTOCFlags.ORDERED
    chaps = {c.element_id: c for c in tag.getall("CHAP")}
    got = [(chaps[e].start_time, chaps[e].end_time, str(chaps[e].sub_frames["TIT2"])) for e in toc.child_element_ids]
    assert got == [(0, 1500, "Start"), (1500, 4200, "Intro"), (4200, data["length_ms"], "Budget and plans")]
    with av.open(str(path)) as container:
        assert [(c["start"], c["end"], c["metadata"]["title"]) for c in container.chapters()] == got
    # The tag sits before the first frame and the frames are untouched: the file still
    # decodes to the meeting's length, in sync (check_meeting below), and the database
    # describes the tagged file.
    raw = path.read_bytes()
    assert raw.startswith(b"ID3") and id3.tag_length(raw) > 0
    assert raw[id3.tag_length(raw):][:2] == b"\xff\xfb"  # an MPEG-1 layer III frame header next
    assert mix["size_bytes"] == len(raw) and mix["sha256"] == hashlib.sha256(raw).hexdigest()
    # The per-speaker files carry their own tags (issue 14) but no chapters: those are the mix's.
    for r in data["recordings"]:
        if r["kind"] == "per_user":
            own = Path(r["path"]).read_bytes()
            assert own.startswith(b"ID3") and not id3.read_chapters(own)
            assert r["tags"]["ARTIST"] == r["speaker"]


async def test_a_meeting_with_notes_keeps_its_sync_and_length(tmp_path: Path) -> None:
    result = await simulate(SimulateOptions(speakers=2, seconds=SECONDS, flush_interval=FLUSH, seed=7,
                                            data_dir=tmp_path, notes=[(2.0, "two"), (5.0, "five")]))
    check_meeting(result, FLUSH)  # alignment at every boundary, the mix the sum of the speakers
    assert [n["at_ms"] for n in result.notes] == [2000, 5000]
    assert len(decode_file(result.recording_for(None).path)) == len(decode_file(result.recording_for(1001).path))
