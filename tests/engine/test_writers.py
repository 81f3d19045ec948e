"""Subtitle and diarization files read back by independent readers: pysrt, webvtt-py and
the ffmpeg binary (whose SubRip and WebVTT decoders are what players built on FFmpeg show)."""

from __future__ import annotations

import html
import shutil
import subprocess
from pathlib import Path

import pysrt
import pytest
import webvtt

from wavlm_live.engine.writers import (
    MAX_LABEL_CHARS, ResultCollector, format_rttm, group_cues, output_path, write_rttm,
)
from wavlm_live.events import CaptionEvent, DiarizationEvent, SpeakerEvent, Turn, Word

NAMES = {"S1": "<Who>", "S2": "{Co} & Who: Ltd"}


def words(*spec: tuple[str, str, float]) -> list[Word]:
    """(text, speaker, start) triples, each word 0.3 s long."""
    return [Word(t, start, start + 0.3, spk) for t, spk, start in spec]


def speaker(sid: str, name: str | None, talk: float = 1.0) -> SpeakerEvent:
    return SpeakerEvent(sid, name, talk, 1, 1, None, 0.5, 1.5)


def ffmpeg_reads(path: Path, fmt: str) -> str:
    """What ffmpeg decodes from a subtitle file, re-encoded as ``fmt`` ("ass" or "srt")."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg not found: apt-get install ffmpeg (scripts/setup.sh installs it)")
    done = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", fmt, "-"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def collector(ws: list[Word], names: dict[str, str]) -> ResultCollector:
    c = ResultCollector()
    for sid, name in names.items():
        c(speaker(sid, name))
    c(CaptionEvent(True, 0, ws[0].start, ws[-1].end, " ".join(w.text for w in ws), tuple(ws), ws[0].speaker))
    return c


WORDS = words(("HELLO", "S1", 0.0), ("THERE", "S1", 0.4), ("GOOD", "S2", 2.0), ("DAY", "S2", 2.4),
              ("A<B", None, 5.0))


def test_srt_speaker_names_survive_pysrt_and_ffmpeg(tmp_path):
    path = tmp_path / "x.srt"
    path.write_text(collector(WORDS, NAMES).contents("srt", "x"), encoding="utf-8")
    items = pysrt.open(str(path), encoding="utf-8")
    assert [i.text_without_tags for i in items] == ["‹Who›: HELLO THERE", "❴Co❵ & Who: Ltd: GOOD DAY", "A‹B"]
    assert [(i.start.ordinal, i.end.ordinal) for i in items] == [(0, 700), (2000, 2700), (5000, 5300)]
    dialogue = [ln.split(",", 9)[9] for ln in ffmpeg_reads(path, "ass").splitlines() if ln.startswith("Dialogue:")]
    assert dialogue == ["‹Who›: HELLO THERE", "❴Co❵ & Who: Ltd: GOOD DAY", "A‹B"]


def test_vtt_voices_carry_the_whole_names_for_webvtt_py_and_ffmpeg(tmp_path):
    path = tmp_path / "x.vtt"
    path.write_text(collector(WORDS, NAMES).contents("vtt", "x"), encoding="utf-8")
    captions = webvtt.read(str(path))
    assert [html.unescape(c.voice) if c.voice else None for c in captions] == [NAMES["S1"], NAMES["S2"], None]
    assert [html.unescape(c.text) for c in captions] == ["HELLO THERE", "GOOD DAY", "A<B"]
    assert [(c.start, c.end) for c in captions] == [("00:00:00.000", "00:00:00.700"), ("00:00:02.000", "00:00:02.700"),
                                                      ("00:00:05.000", "00:00:05.300")]
    # ffmpeg drops voice spans: exactly the words remain, nothing of the names leaks
    shown = [ln for ln in ffmpeg_reads(path, "srt").splitlines() if ln and "-->" not in ln and not ln.isdigit()]
    assert shown == ["HELLO THERE", "GOOD DAY", "A<B"]


def test_vtt_and_srt_name_the_same_speakers(tmp_path):
    c = collector(WORDS[:2], {"S1": "Alice"})
    srt = pysrt.from_string(c.contents("srt", "x"))
    vtt = webvtt.from_string(c.contents("vtt", "x"))
    assert srt[0].text == "Alice: HELLO THERE" and vtt[0].voice == "Alice"
    c(speaker("S1", None))  # renamed back to no name: both show the id
    assert pysrt.from_string(c.contents("srt", "x"))[0].text.startswith("S1: ")
    assert webvtt.from_string(c.contents("vtt", "x"))[0].voice == "S1"


@pytest.mark.parametrize("name", ["Al", "Alexandra Konstantinopoulou-Smith", "X" * 64])
def test_srt_lines_never_exceed_42_characters(name):
    text = "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG AND RUNS AWAY INTO THE WOODS AGAIN".split()
    ws = [Word(t, 0.35 * i, 0.35 * i + 0.3, "S1") for i, t in enumerate(text)]
    c = collector(ws, {"S1": name})
    items = pysrt.from_string(c.contents("srt", "x"))
    assert all(len(line) <= 42 for i in items for line in i.text.splitlines()), [i.text for i in items]
    label = name if len(name) <= MAX_LABEL_CHARS else name[: MAX_LABEL_CHARS - 1] + "…"
    assert all(i.text.startswith(label + ": ") for i in items)
    assert " ".join(i.text[len(label) + 2 :] for i in items) == " ".join(text)  # no word lost
    assert [webvtt.from_string(c.contents("vtt", "x"))[k].voice for k in range(len(items))] == [name] * len(items)


def test_a_single_long_word_is_the_only_overflow():
    cues = group_cues([Word("W" * 50, 0.0, 1.0, "S1"), Word("NEXT", 1.1, 1.4, "S1")])
    assert [c.text for c in cues] == ["W" * 50, "NEXT"]


def test_outputs_append_the_format_to_the_stem(tmp_path):
    assert output_path(tmp_path / "meeting.day1", "srt") == tmp_path / "meeting.day1.srt"
    assert output_path(tmp_path / "meeting.day2", "rttm") != output_path(tmp_path / "meeting.day1", "rttm")
    c = collector(WORDS, NAMES)
    c(DiarizationEvent(0.0, 1.0, 0.02, (), (Turn("S1", 0.0, 0.7),)))
    written = c.write(tmp_path / "meeting.day1", "meeting.day1", {"srt", "vtt", "rttm", "txt"})
    assert sorted(p.name for p in written) == ["meeting.day1.rttm", "meeting.day1.srt", "meeting.day1.txt",
                                               "meeting.day1.vtt"]
    assert not list(tmp_path.glob("*.part"))


def test_one_rttm_writer_for_turns_and_tuples(tmp_path):
    text = format_rttm([Turn("S2", 1.0, 2.5), (0.25, 1.0, "S1")], "conv")
    assert text.splitlines() == ["SPEAKER conv 1 0.250 0.750 <NA> <NA> S1 <NA> <NA>",
                                 "SPEAKER conv 1 1.000 1.500 <NA> <NA> S2 <NA> <NA>"]
    write_rttm(tmp_path / "a.rttm", "conv", [(0.25, 1.0, "S1")])
    assert (tmp_path / "a.rttm").read_text() == text.splitlines()[0] + "\n"
    for bad in ([(0.0, 1.0, "two words")], [(2.0, 1.0, "S1")]):
        with pytest.raises(ValueError):
            format_rttm(bad, "conv")
    with pytest.raises(ValueError, match="file id"):
        format_rttm([], "my file")
