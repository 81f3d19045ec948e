"""The installed console script: help, transcribe, eval, devices, demo, and its errors."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

pytestmark = pytest.mark.slow  # starts processes, plays audio or trains: not in the fast lane

DATA = Path(__file__).parents[1] / "data"
CLIPS = sorted(DATA.glob("sense_and_sensibility_*.wav"))
CLI = Path(sys.executable).with_name("wavlm-live")


def run(*args, env=None, timeout=300):
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def model_args(ckpt):
    return ["--ctc-model", ckpt["captions"], "--diarization-model", ckpt["diarization"], "--embedding-model", ckpt["embeddings"]]


def test_help_lists_every_command():
    out = run("--help")
    assert out.returncode == 0
    for command in ("run", "serve", "demo", "tui", "listen", "transcribe", "eval", "devices", "bench"):
        assert command in out.stdout


def test_transcribe_writes_every_format(tiny_checkpoints, tmp_path):
    out = run("transcribe", CLIPS[0], "-o", tmp_path / "out" / "clip", *model_args(tiny_checkpoints))
    assert out.returncode == 0, out.stderr
    duration = sf.info(CLIPS[0]).duration
    events = [json.loads(line) for line in (tmp_path / "out" / "clip.jsonl").read_text().splitlines()]
    from tests.e2e.test_serve import validate_jsonl

    validate_jsonl(events)
    header, events = events[0], events[1:]
    from wavlm_live.cli.defaults import DEFAULT_TASK_WINDOWS

    captions = DEFAULT_TASK_WINDOWS["captions"]
    assert header["source"] == str(CLIPS[0]) and (header["window"], header["hop"]) == captions[:2]
    assert events[-1]["type"] == "end" and abs(events[-1]["t"] - duration) < 1e-3
    finals = [e for e in events if e["type"] == "caption" and e["final"]]
    text = (tmp_path / "out" / "clip.txt").read_text().strip()
    assert text == " ".join(e["text"] for e in finals) and text
    srt = (tmp_path / "out" / "clip.srt").read_text()
    assert srt.startswith("1\n00:00:0") and " --> " in srt
    assert (tmp_path / "out" / "clip.vtt").read_text().startswith("WEBVTT")
    rttm = (tmp_path / "out" / "clip.rttm").read_text().splitlines()
    turns = [e for ev in events if ev["type"] == "diarization" for e in ev["turns"]]
    assert len(rttm) == len(turns) > 0
    assert all(line.startswith("SPEAKER sense_and_sensibility_01_austen_64kb-0870 1 ") for line in rttm)
    assert "RTF" in out.stderr


def test_transcribe_errors_are_one_line_and_keep_existing_results(tiny_checkpoints, tmp_path):
    good = tmp_path / "clip.jsonl"
    good.write_text("previous results\n")
    bad = tmp_path / "clip.wav"
    bad.write_bytes(b"not audio at all")
    out = run("transcribe", bad, "-o", tmp_path / "clip", "--force", *model_args(tiny_checkpoints))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1 and "cannot decode" in out.stderr
    assert good.read_text() == "previous results\n"  # nothing already produced is lost


def test_missing_model_offline_is_one_sentence(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    out = run("transcribe", CLIPS[1], "-o", tmp_path / "x", "--no-diarization", "--no-embeddings", env=env)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "patrickvonplaten/wavlm-libri-clean-100h-base-plus" in out.stderr
    assert out.stderr.count("\n") == 1


def test_eval_prints_every_metric(tiny_checkpoints, tmp_path):
    refs = {}
    for line in (DATA / "librivox-transcription.txt").read_text().splitlines():
        text, _, name = line.rpartition("(")
        refs[name.strip(") ")] = text.replace("<s>", "").replace("</s>", "").strip()
    folder = tmp_path / "eval"
    folder.mkdir()
    for clip in CLIPS[:3]:
        (folder / clip.name).symlink_to(clip)
        (folder / f"{clip.stem}.txt").write_text(refs[clip.stem] + "\n")
        dur = sf.info(clip).duration
        (folder / f"{clip.stem}.rttm").write_text(f"SPEAKER {clip.stem} 1 0.300 {dur - 0.6:.3f} <NA> <NA> reader <NA> <NA>\n")
    (folder / "trials.txt").write_text(
        f"1 {CLIPS[0].name} {CLIPS[1].name}\n0 {CLIPS[0].name} {CLIPS[2].name}\n1 {CLIPS[1].name} {CLIPS[2].name}\n"
    )
    out = run("eval", folder, "--json", *model_args(tiny_checkpoints))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["clips_captions"] == 3 and report["clips_diarization"] == 3 and report["trials"] == 3
    # random-weight models: captions are gibberish, so the error rates are high but finite
    assert 0.5 < report["cer"] < 10 and 0.5 < report["wer"] < 10
    assert 0 <= report["der"] < 10 and 0 <= report["eer"] <= 1
    assert report["captions_decoder"] == "greedy"  # the tiny checkpoint has no language_model/
    # a disabled task's references are left out (and said so), the rest is still scored
    out = run("eval", folder, "--json", "--no-captions", "--no-embeddings", *model_args(tiny_checkpoints))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert "cer" not in report and "eer" not in report and report["clips_diarization"] == 3
    assert "not scoring the transcripts" in out.stderr and "not scoring the trials.txt" in out.stderr
    assert re.search(r"^eval: 3 clip\(s\) in \d+ s$", out.stderr, re.M)  # the closing line
    out = run("eval", folder, "--no-captions", "--no-diarization", "--no-embeddings", *model_args(tiny_checkpoints))
    assert out.returncode == 2 and "disable" in out.stderr and "Traceback" not in out.stderr


def test_devices_lists_the_virtual_microphone(virtual_mic):
    out = run("devices", env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert "pulse" in out.stdout


def test_devices_without_portaudio_is_one_line(tmp_path):
    # An empty library path and no ldconfig cache entry for PortAudio: simulate its absence.
    shim = tmp_path / "sounddevice.py"
    shim.write_text("raise OSError('PortAudio library not found')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    out = run("devices", env=env)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "PortAudio" in out.stderr and out.stderr.count("\n") == 1


def test_enrolled_speaker_is_named_in_the_results(tiny_checkpoints, tmp_path):
    out = run("transcribe", CLIPS[0], "-o", tmp_path / "clip", "--formats", "jsonl", "--no-diarization",
              "--enroll", f"Reader={CLIPS[3]}", "--speaker-threshold", "-1", *model_args(tiny_checkpoints))
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in (tmp_path / "clip.jsonl").read_text().splitlines()]
    speakers = [e for e in events if e["type"] == "speaker"]
    assert {e["id"] for e in speakers} == {"S1"} and speakers[-1]["name"] == "Reader"
    assert speakers[-1]["updates"] > 1 and speakers[-1]["talk_time"] > 5
    words = [w for e in events if e["type"] == "caption" and e["final"] for w in e["words"]]
    assert words and all(w["speaker"] == "S1" for w in words)


def test_bad_enrolment_is_a_clear_error(tiny_checkpoints, tmp_path):
    out = run("transcribe", CLIPS[0], "-o", tmp_path / "clip", "--enroll", "NoFile", *model_args(tiny_checkpoints))
    assert out.returncode == 2 and "NAME=FILE" in out.stderr and "Traceback" not in out.stderr
