"""The command line as a Unix tool: results are never overwritten without --force, stems
keep their dots, exit statuses mean one thing each, a closed pipe ends quietly, progress
shows in logs, and no network is found out at once. Plus media files and `convert`."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import soundfile as sf
from websockets.sync.server import serve

pytestmark = pytest.mark.slow  # starts processes, plays audio or trains: not in the fast lane

DATA = Path(__file__).parents[1] / "data"
CLIPS = sorted(DATA.glob("sense_and_sensibility_*.wav"))
CLI = Path(sys.executable).with_name("wavlm-live")


def run(*args, env=None, timeout=300):
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def model_args(ckpt):
    return ["--ctc-model", ckpt["captions"], "--diarization-model", ckpt["diarization"], "--embedding-model", ckpt["embeddings"]]


def test_transcribe_keeps_dotted_stems_apart_and_never_overwrites_without_force(tiny_checkpoints, tmp_path):
    for day in ("day1", "day2"):
        (tmp_path / f"meeting.{day}.wav").symlink_to(CLIPS[1] if day == "day1" else CLIPS[2])
    for day in ("day1", "day2"):
        out = run("transcribe", tmp_path / f"meeting.{day}.wav", "--formats", "jsonl,txt,rttm", *model_args(tiny_checkpoints))
        assert out.returncode == 0, out.stderr
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".wav"))
    assert names == ["meeting.day1.jsonl", "meeting.day1.rttm", "meeting.day1.txt",
                     "meeting.day2.jsonl", "meeting.day2.rttm", "meeting.day2.txt"]
    ends = [json.loads((tmp_path / f"meeting.{d}.jsonl").read_text().splitlines()[-1])["t"] for d in ("day1", "day2")]
    assert ends == pytest.approx([sf.info(CLIPS[1]).duration, sf.info(CLIPS[2]).duration], abs=1e-3)
    assert (tmp_path / "meeting.day1.rttm").read_text().startswith("SPEAKER meeting.day1 1 ")

    before = {p: p.read_bytes() for p in tmp_path.glob("meeting.day1.*") if p.suffix != ".wav"}
    out = run("transcribe", tmp_path / "meeting.day1.wav", "--formats", "jsonl,txt,rttm", *model_args(tiny_checkpoints))
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "exist already; pass --force" in out.stderr and "meeting.day1." in out.stderr
    assert {p: p.read_bytes() for p in before} == before  # nothing touched
    out = run("transcribe", tmp_path / "meeting.day1.wav", "--formats", "txt", "--force", "--window", "2",
              *model_args(tiny_checkpoints))
    assert out.returncode == 0, out.stderr


def test_exit_status_two_is_for_usage_errors_only(tiny_checkpoints, tmp_path):
    usage = [
        ["transcribe", CLIPS[0], "--formats", "srt,doc"],
        ["transcribe", CLIPS[0], "--lm", "x.arpa", "--no-lm", *model_args(tiny_checkpoints)],
        ["transcribe", CLIPS[0], "--window", "0.5"],
        ["transcribe", CLIPS[0], "--enroll", "Alice=a.wav", "--no-embeddings"],
        ["transcribe", "--no-such-option"],
    ]
    failures = [
        ["transcribe", tmp_path / "missing.wav", "-o", tmp_path / "x", *model_args(tiny_checkpoints)],
        ["transcribe", CLIPS[0], "-o", tmp_path / "y", "--ctc-model", tmp_path / "no-model", "--no-diarization",
         "--no-embeddings"],
        ["convert", tmp_path / "missing.jsonl"],
    ]
    for argv in usage:
        out = run(*argv)
        assert out.returncode == 2, (argv, out.stderr)
        assert "Traceback" not in out.stderr
    for argv in failures:
        out = run(*argv)
        assert out.returncode == 1, (argv, out.stderr)
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_help_names_every_output_format_and_the_exit_statuses():
    out = run("transcribe", "--help")
    assert out.returncode == 0
    help_text = " ".join(out.stdout.split())
    for word in ("JSONL", "SRT", "WebVTT", "RTTM", "TXT", "--force"):
        assert word in out.stdout
    assert "the hop stays 1 s unless --hop is given" in help_text
    out = run("--help")
    assert "2 usage error" in out.stdout and "141" in out.stdout and "convert" in out.stdout


def test_devices_with_no_input_device_fails(tmp_path):
    # Real PortAudio, with its ALSA "pulse" device pointed at a server that is not there.
    env = dict(os.environ, PULSE_SERVER=f"unix:{tmp_path}/no-such-pulse-server")
    env.pop("PULSE_SOURCE", None)
    out = run("devices", env=env)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert out.stdout == "" and out.stderr.startswith("wavlm-live: no audio input devices found")
    assert out.stderr.count("\n") == 1


def test_progress_lines_when_stderr_is_not_a_terminal(tiny_checkpoints, tmp_path):
    out = run("transcribe", CLIPS[0], "-o", tmp_path / "clip", "--formats", "txt", "--progress-interval", "0.2",
              "--no-diarization", "--no-embeddings", *model_args(tiny_checkpoints))
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith(CLIPS[0].name + ": ")]
    assert lines, out.stderr
    assert all(re.fullmatch(r".+: \d+\.\d of 7\.1 s \(\d+%\), \d+ s elapsed", ln) for ln in lines), lines
    assert "\r" not in out.stderr
    done = [float(ln.split(": ")[1].split()[0]) for ln in lines]
    assert done == sorted(done)
    # the default interval (10 s) prints nothing for a run this short
    out = run("transcribe", CLIPS[0], "-o", tmp_path / "quiet", "--formats", "txt", "--no-diarization",
              "--no-embeddings", *model_args(tiny_checkpoints))
    assert out.returncode == 0 and out.stderr.count("\n") == 1, out.stderr


def test_no_network_is_found_out_at_once_and_said_once(tmp_path):
    with socket.socket() as s:  # a port that refuses connections: the "Hub" is unreachable
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT=f"http://127.0.0.1:{port}")
    env.pop("HF_HUB_OFFLINE", None)
    t0 = time.monotonic()
    out = run("transcribe", CLIPS[1], "-o", tmp_path / "x", "--no-diarization", "--no-embeddings", env=env)
    elapsed = time.monotonic() - t0
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr  # no retry warnings
    assert "patrickvonplaten/wavlm-libri-clean-100h-base-plus" in out.stderr
    assert f"cannot connect to 127.0.0.1:{port}" in out.stderr
    assert elapsed < 20, elapsed  # huggingface_hub's retries alone took 25 s


def test_bench_runs_offline_and_prints_each_task(tmp_path):
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    out = run("bench", CLIPS[0], env=env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["demo"] is True and report["tasks"] == ["captions", "diarization", "embeddings", "classification"]
    assert set(report["task_rtf"]) == set(report["task_seconds"]) == set(report["tasks"])
    assert all(v > 0 for v in report["task_rtf"].values())
    audio = report["audio_seconds"]
    assert audio == pytest.approx(sf.info(CLIPS[0]).duration, abs=0.01)
    for task, seconds in report["task_seconds"].items():
        assert report["task_rtf"][task] == pytest.approx(seconds / audio, abs=1e-3)
    assert sum(report["task_seconds"].values()) + report["other_seconds"] == pytest.approx(report["wall_seconds"], abs=2e-3)
    out = run("bench", CLIPS[0], "--ctc-model", tmp_path / "nothing-here", "--no-diarization", "--no-embeddings", env=env)
    assert out.returncode == 1 and "nothing-here" in out.stderr  # a model option means: measure that model


def test_media_files_through_transcribe_enroll_and_eval(tiny_checkpoints, media_files, tmp_path):
    out = run("transcribe", media_files["mp4"], "-o", tmp_path / "video", "--formats", "jsonl",
              "--no-diarization", "--enroll", f"Reader={media_files['mp3']}", "--speaker-threshold", "-1",
              *model_args(tiny_checkpoints))
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in (tmp_path / "video.jsonl").read_text().splitlines()]
    assert events[-1]["type"] == "end" and abs(events[-1]["t"] - 7.1) < 0.1
    assert [e["name"] for e in events if e["type"] == "speaker"][-1] == "Reader"
    out = run("transcribe", media_files["video_only"], "-o", tmp_path / "silent", *model_args(tiny_checkpoints))
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "has no audio stream" in out.stderr

    folder = tmp_path / "eval"
    folder.mkdir()
    (folder / "talk.m4a").symlink_to(media_files["m4a"])
    (folder / "talk.rttm").write_text("SPEAKER talk 1 0.300 6.500 <NA> <NA> reader <NA> <NA>\n")
    (folder / "a.opus").symlink_to(media_files["opus"])
    (folder / "trials.txt").write_text("1 a.opus talk.m4a\n0 a.opus a.opus\n")
    out = run("eval", folder, "--json", "--no-captions", *model_args(tiny_checkpoints))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["clips_diarization"] == 1 and report["trials"] == 2


def test_convert_writes_what_transcribe_wrote(tiny_checkpoints, tmp_path):
    out = run("transcribe", CLIPS[0], "-o", tmp_path / "t" / "clip", "--enroll", f"Jane <Reader>={CLIPS[3]}",
              *model_args(tiny_checkpoints))
    assert out.returncode == 0, out.stderr
    log = tmp_path / "t" / "clip.jsonl"
    out = run("convert", log, "-o", tmp_path / "c" / "clip", "--file-id", CLIPS[0].stem)
    assert out.returncode == 0, out.stderr
    for fmt in ("srt", "vtt", "rttm", "txt"):
        assert (tmp_path / "c" / f"clip.{fmt}").read_bytes() == (tmp_path / "t" / f"clip.{fmt}").read_bytes(), fmt
    assert "Jane ‹Reader›: " in (tmp_path / "c" / "clip.srt").read_text()
    # next to the log by default, which already holds transcribe's files: --force needed
    out = run("convert", log)
    assert out.returncode == 1 and "--force" in out.stderr
    assert run("convert", log, "--force", "--formats", "srt").returncode == 0

    # two runs appended to one log are two streams
    twice = tmp_path / "twice.jsonl"
    twice.write_text(log.read_text() + log.read_text() + '{"type": "caption", "v": 1, "fin')
    out = run("convert", twice)
    assert out.returncode == 2 and "2 streams" in out.stderr and "--stream" in out.stderr
    out = run("convert", twice, "--stream", "2", "-o", tmp_path / "second")
    assert out.returncode == 0, out.stderr
    assert "skipped an incomplete last line" in out.stderr
    assert (tmp_path / "second.srt").read_bytes() == (tmp_path / "t" / "clip.srt").read_bytes()
    assert (tmp_path / "second.rttm").read_text().startswith("SPEAKER twice 1 ")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "end", "v": 1, "t": 1.0}\n{"type": "caption", "v": 1}\n{"type": "end", "v": 1, "t": 2}\n')
    out = run("convert", bad, "--stream", "2")
    assert out.returncode == 1 and "bad.jsonl:2" in out.stderr and "lacks field" in out.stderr


@pytest.mark.slow
def test_listen_into_a_closed_pipe_ends_quietly():
    # A real websocket server that streams many captions; `listen | head -n 3`.
    def handler(ws):
        ws.recv()  # subscribe
        ws.send(json.dumps({"type": "hello", "v": 1, "seq": 0, "wall": 0.0, "version": "x", "tasks": ["captions"]}))
        try:
            for i in range(20000):
                ws.send(json.dumps({"type": "caption", "v": 1, "seq": i + 1, "wall": 0.0, "final": True, "segment": i,
                                    "start": float(i), "end": i + 0.5, "text": "WORDS " * 20, "words": [],
                                    "speaker": None}))
            ws.send(json.dumps({"type": "end", "v": 1, "seq": 20001, "wall": 0.0, "t": 20000.0}))
        except Exception:  # noqa: BLE001 - the client went away, as expected
            pass

    with serve(handler, "127.0.0.1", 0) as server:
        port = server.socket.getsockname()[1]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        pipeline = subprocess.run(
            ["bash", "-c", f'set -o pipefail; "{CLI}" listen ws://127.0.0.1:{port} | head -n 3'],
            capture_output=True, text=True, timeout=60,
        )
        server.shutdown()
    assert pipeline.stdout.count("\n") == 3
    assert "Traceback" not in pipeline.stderr and "BrokenPipe" not in pipeline.stderr, pipeline.stderr
    assert pipeline.stderr == ""
    assert pipeline.returncode == 141  # like any producer that SIGPIPE ends (pipefail)
