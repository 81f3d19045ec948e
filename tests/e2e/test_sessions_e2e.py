"""End to end: one installed `wavlm-live serve --demo`, eight `wavlm-live send` processes
streaming different recordings at real-time pace as live sessions; each session's finals
equal what `wavlm-live transcribe` writes for the same file, and no window is skipped."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import soundfile as sf

DATA = Path(__file__).parents[1] / "data"
CLI = Path(sys.executable).with_name("wavlm-live")
SETTINGS = ("--dtype", "float32", "--window", "2", "--hop", "1")
"""Both sides: float32, where batched windows give bit for bit the single-window outputs (in
bfloat16 oneDNN's blocking depends on the batch size: ~1 bf16 ulp apart), and a 2 s window,
which leaves this 2-core machine room for eight float32 streams (bench/sessions.py)."""
LINE = re.compile(r"^\[(?P<start>[0-9.?]+)-(?P<end>[0-9.?]+)\] (?P<rest>.*)$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                health = json.loads(r.read())
                if health["ready"]:
                    return health
        except OSError:
            time.sleep(0.3)
    raise AssertionError("the server did not become ready")


def recordings(tmp_path: Path) -> list[Path]:
    from wavlm_live.cli.app import demo_recording

    clips = sorted(DATA.glob("sense_and_sensibility_*.wav"))  # five LibriVox clips
    conversation, rate = sf.read(demo_recording(), dtype="float32")
    first, second = tmp_path / "conversation-a.wav", tmp_path / "conversation-b.wav"
    sf.write(first, conversation[: 15 * rate], rate)
    sf.write(second, conversation[15 * rate : 32 * rate], rate)
    return [*clips, first, second, demo_recording()]


def transcribed_finals(path: Path, out: Path) -> list[str]:
    subprocess.run([str(CLI), "transcribe", str(path), "--demo", *SETTINGS, "-o", str(out), "--formats", "jsonl"],
                   check=True, capture_output=True, timeout=300)
    lines = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
    return [(f"{m['speaker']}: " if m["speaker"] else "") + m["text"]
            for m in lines if m["type"] == "caption" and m["final"] and m["text"]]


@pytest.mark.slow
def test_eight_live_senders_through_one_server_match_transcribe(tmp_path: Path) -> None:
    files = recordings(tmp_path)
    assert len(files) == 8
    port = free_port()
    server = subprocess.Popen([str(CLI), "serve", "--demo", *SETTINGS, "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        health = wait_ready(port, server)
        assert health["input"] is False and health["sessions"] == 0
        url = f"ws://127.0.0.1:{port}"
        senders = [subprocess.Popen([str(CLI), "send", str(f), url, "--live"], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for f in files]
        outputs = [p.communicate(timeout=180) for p in senders]
        for (out, err), p, f in zip(outputs, senders, files):
            assert p.returncode == 0, (f.name, out[-500:], err[-500:])
    finally:
        server.terminate()
        server.wait(30)
    assert server.returncode == 0
    for (out, _), f in zip(outputs, files):
        lines = out.splitlines()
        assert lines[0].startswith("session ") and " started " in lines[0]
        summary = lines[-1]
        assert re.fullmatch(r"\d+ windows analysed, 0 skipped \(RTF [0-9.]+\)", summary), (f.name, summary)
        ended = [line for line in lines if line.startswith("stream ended at ")]
        assert ended == [f"stream ended at {sf.info(f).frames / 16000:.2f} s"], f.name
        got = [LINE.match(line)["rest"] for line in lines if LINE.match(line)]
        assert got == transcribed_finals(f, tmp_path / f.stem), f.name
