"""End to end: the installed `wavlm-live serve` on a real LibriVox recording, as a file at
real-time pace and through the PulseAudio virtual microphone, with a real websocket client."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.slow  # starts processes, plays audio or trains: not in the fast lane

DATA = Path(__file__).parents[1] / "data"
CLIP = DATA / "sense_and_sensibility_01_austen_64kb-0870.wav"  # 7.1 s
CLI = Path(sys.executable).with_name("wavlm-live")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(tiny_checkpoints, *extra, env=None):
    port = free_port()
    cmd = [
        str(CLI), "serve", "--port", str(port),
        "--ctc-model", str(tiny_checkpoints["captions"]),
        "--diarization-model", str(tiny_checkpoints["diarization"]),
        "--embedding-model", str(tiny_checkpoints["embeddings"]),
        "--window", "2", "--hop", "0.5", *extra,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return proc, f"ws://127.0.0.1:{port}"


async def connect_retry(url, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await connect(url, open_timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def collect(ws, until, timeout):
    """Messages until ``until(msg)`` is true (inclusive) or ``timeout`` seconds."""
    out = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            raw = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
        except TimeoutError:
            break
        out.append(json.loads(raw))
        if until(out[-1]):
            break
    return out


def check_coverage(messages, duration):
    types = {m["type"] for m in messages}
    assert {"hello", "level", "caption", "diarization", "speaker", "stats"} <= types, types
    diar = [m for m in messages if m["type"] == "diarization" and m["labels"]]
    frames = [f for m in diar for f in range(round(m["start"] / 0.02), round(m["end"] / 0.02))]
    n_frames = (round(duration * 16000) - 400) // 320 + 1
    assert frames == list(range(n_frames))  # every frame settled exactly once, in order
    levels = [m["t"] for m in messages if m["type"] == "level"]
    assert levels == sorted(levels) and levels[-1] <= duration + 1e-3
    for m in messages:
        if m["type"] == "caption" and m["final"]:
            assert all(0 <= w["start"] < w["end"] <= duration + 1e-3 for w in m["words"])
    seqs = [m["seq"] for m in messages]
    assert seqs == sorted(seqs)


def test_serve_file_at_real_time_then_sigterm(tiny_checkpoints, tmp_path):
    log = tmp_path / "events.jsonl"
    proc, url = start_serve(tiny_checkpoints, "--input", str(CLIP), "--wait-client", "--jsonl", str(log))
    duration = sf.info(CLIP).frames / 16000

    async def client():
        ws = await connect_retry(url)
        t0 = time.monotonic()
        messages = await collect(ws, lambda m: m["type"] == "end", timeout=60)
        elapsed = time.monotonic() - t0
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 20)
        return messages, elapsed, closed.value.rcvd.code

    try:
        messages, elapsed, code = asyncio.run(client())
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert code == 1001
    assert messages[0]["type"] == "hello" and set(messages[0]["tasks"]) == {"captions", "diarization", "embeddings"}
    assert messages[-1]["type"] == "end" and messages[-1]["t"] == pytest.approx(duration, abs=1e-3)
    assert elapsed >= duration * 0.9  # paced at real time, not faster
    check_coverage(messages, duration)
    stats = [m for m in messages if m["type"] == "stats"]
    assert stats[-1]["windows_skipped"] == 0
    assert "Traceback" not in err
    # the --jsonl log: a header, then the same events without the websocket envelope
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    validate_jsonl(lines)
    assert lines[0]["source"] == str(CLIP)
    sent = [{k: v for k, v in m.items() if k not in ("seq", "wall", "clients", "snapshot")}
            for m in messages if m["type"] == "caption" and m["final"]]
    assert [line for line in lines if line["type"] == "caption" and line["final"]] == sent


def validate_jsonl(lines: list[dict]) -> None:
    """Every line of a JSON Lines event file against its documented schema."""
    from jsonschema import Draft202012Validator

    from wavlm_live.server import JSONL_SCHEMAS

    assert lines[0]["type"] == "header" and all(line["type"] != "header" for line in lines[1:])
    for line in lines:
        Draft202012Validator(JSONL_SCHEMAS[line["type"]]).validate(line)


def test_serve_microphone_through_virtual_mic(tiny_checkpoints, virtual_mic):
    env = dict(os.environ)
    proc, url = start_serve(tiny_checkpoints, "--input", "mic", "--input-device", virtual_mic.alsa_device, env=env)
    audio, rate = sf.read(CLIP, dtype="float32")

    async def client():
        ws = await connect_retry(url)
        hello = json.loads(await ws.recv())
        await asyncio.sleep(1.0)
        player = virtual_mic.play(audio, rate)
        messages = await collect(ws, lambda m: m["type"] == "stats" and m["t"] > 1.0 + len(audio) / rate + 2.5, timeout=40)
        assert player.wait(20) == 0
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 20)
        return [hello, *messages], closed.value.rcvd.code

    try:
        messages, code = asyncio.run(client())
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert code == 1001
    types = {m["type"] for m in messages}
    assert {"hello", "level", "caption", "diarization", "speaker", "stats"} <= types, (types, err)
    # the played speech shows in the level meter: loud while playing, near silence before
    levels = [(m["t"], m["rms_db"]) for m in messages if m["type"] == "level"]
    loud = [db for t, db in levels if db > -40]
    assert len(loud) >= 0.5 * len(audio) / rate / 0.1
    stats = [m for m in messages if m["type"] == "stats"]
    assert stats[-1]["input_overflows"] == 0
    assert "Traceback" not in err


def test_serve_reports_bad_input_in_one_line(tiny_checkpoints, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    for args in (["--input", str(broken)], ["--input", str(tmp_path / "missing.flac")],
                 ["--input", str(CLIP), "--ctc-model", str(tmp_path / "no-model")]):
        proc, _ = start_serve(tiny_checkpoints, *args)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, err  # a runtime failure, not a usage error
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1 and err.startswith("wavlm-live: "), err
