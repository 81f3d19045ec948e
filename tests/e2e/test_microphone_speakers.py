"""Speaker stability through the PulseAudio virtual microphone (issue #20).

The bundled two-voice demo conversation is played with ``paplay`` into the null sink of
the `virtual_mic` fixture while a fresh ``wavlm-live serve --demo --input mic`` process
captures the sink's monitor, analyses it live with the bundled demo models and records
its events with ``--jsonl``. The run must find exactly the conversation's two speakers,
one per voice, and keep a turn's label: at most ``MAX_FLIPS`` stretches of 0.2 s or more
inside the conversation's 20 turns may carry the other speaker's label.

Where the live stream's 1 s window grid falls relative to the speech depends on when the
capture started and when playback began. Some phases used to make a returning voice's
first x-vector fall just short of the speaker threshold, and the stitcher founded a third
speaker on it (offline, with leading silence: 5 of 30 random phases gave 3 speakers, all
with the phase, mod 1 s, between 0.03 and 0.25 s; docs/engine.md, "Speaker stability").
Each case aims the playback at one of those phases, measured on the stream's own clock
(``level`` events); the phase hit is only about 20 ms exact, so the cases are three
fresh runs in the band rather than one exact reproduction.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
from websockets.asyncio.client import connect

pytestmark = pytest.mark.slow  # starts processes, plays audio or trains: not in the fast lane

SCHEDULE: list[str] = []
"""Extra schedule options: none, the command line's per-task default (captions 2 s /
0.5 s, diarization 4 s / 2 s)."""
DEMO = Path(__file__).resolve().parents[2] / "wavlm_live" / "data" / "demo"
CONVERSATION = DEMO / "conversation.flac"  # 46 s, 16 kHz mono, two espeak-ng voices
RTTM = DEMO / "conversation.rttm"
FRAME = 0.02  # seconds per diarization frame
PLAY_LATENCY = 0.015  # s from starting paplay to its first sample in the capture (measured 13-23 ms)
MAX_FLIPS = 5  # stretches of >= 0.2 s labelled as the other speaker inside the 20 turns
# (offline, 20 random phases with trailing silence gave 1-5, mean 3)
FLIP_FRAMES = 10  # 0.2 s
EDGE_FRAMES = 5  # frames left out at each end of a turn (alignment tolerance, 0.1 s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reference_turns() -> list[tuple[float, float, str]]:
    """(start s, end s, identity) of the conversation's RTTM turns."""
    turns = []
    for line in RTTM.read_text().splitlines():
        f = line.split()
        turns.append((float(f[3]), float(f[3]) + float(f[4]), f[7]))
    return turns


def settled_labels(events: list[dict]) -> dict[int, tuple[str, ...]]:
    """Absolute frame -> speaker ids, from the ``diarization`` events."""
    labels: dict[int, tuple[str, ...]] = {}
    for e in events:
        if e["type"] == "diarization":
            first = round(e["start"] / FRAME)
            for i, lab in enumerate(e["labels"]):
                labels[first + i] = tuple(lab)
    return labels


def turn_labels(labels: dict[int, tuple[str, ...]], offset: float) -> list[tuple[str, list[str]]]:
    """Per reference turn, its identity and the single-speaker labels of its frames where
    no other turn overlaps it (the conversation starts at stream time ``offset`` s)."""
    turns = reference_turns()
    out = []
    for i, (a, b, who) in enumerate(turns):
        others = [(c, d) for j, (c, d, _) in enumerate(turns) if j != i]
        seq = []
        for f in range(int((a + offset) / FRAME) + 1, int((b + offset) / FRAME)):
            t = (f + 0.5) * FRAME - offset
            if any(c <= t < d for c, d in others):
                continue
            lab = labels.get(f, ())
            if len(lab) == 1:
                seq.append(lab[0])
        out.append((who, seq[EDGE_FRAMES:-EDGE_FRAMES]))
    return out


def flips(per_turn: list[tuple[str, list[str]]], speaker_of: dict[str, str]) -> int:
    """Stretches of at least ``FLIP_FRAMES`` frames inside turns that carry another label
    than the turn's identity's speaker."""
    count = 0
    for who, seq in per_turn:
        run = 0
        for s in [*seq, speaker_of[who]]:
            if s != speaker_of[who]:
                run += 1
            else:
                count += run >= FLIP_FRAMES
                run = 0
    return count


async def stream_clock(ws, levels: int = 5, timeout: float = 60.0) -> tuple[float, float]:
    """(stream seconds, time.monotonic()) of the newest of ``levels`` ``level`` events:
    the capture is running and this is where its clock stood."""
    seen = 0
    deadline = time.monotonic() + timeout
    while seen < levels:
        msg = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if msg["type"] == "level":
            seen += 1
            last = (msg["t"], time.monotonic())
    return last


async def drain_until(ws, stream_t: float, timeout: float) -> None:
    """Read messages until a ``stats`` event at stream time ``stream_t`` s or later."""
    deadline = time.monotonic() + timeout
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if msg["type"] == "stats" and msg["t"] >= stream_t:
            return


def live_run(virtual_mic, log: Path, phase: float) -> tuple[list[dict], float]:
    """One fresh ``serve --demo --input mic`` run with the conversation played so that it
    starts at a stream time of ``phase`` modulo 1 s. Returns the run's events (from its
    ``--jsonl`` log) and the stream time the playback was aimed at."""
    port = free_port()
    cmd = [sys.executable, "-m", "wavlm_live", "serve", "--demo", "--input", "mic",
           "--input-device", virtual_mic.alsa_device, "--port", str(port), "--jsonl", str(log),
           "--threads", "1", *SCHEDULE]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    duration = sf.info(CONVERSATION).duration

    async def client() -> float:
        deadline = time.monotonic() + 60
        while True:
            try:
                ws = await connect(f"ws://127.0.0.1:{port}", open_timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                await asyncio.sleep(0.2)
        async with ws:
            t, at = await stream_clock(ws)
            now = t + time.monotonic() - at
            start = int(now) + 2 + phase  # a whole second or more of silence first
            await asyncio.sleep(start - now - PLAY_LATENCY)
            player = await asyncio.create_subprocess_exec(
                "paplay", f"--device={virtual_mic.sink}", str(CONVERSATION), stderr=subprocess.PIPE)
            await drain_until(ws, start + duration + 3.0, timeout=duration + 60)
            _, perr = await asyncio.wait_for(player.communicate(), 10)
            assert player.returncode == 0, perr.decode()
        return start

    try:
        start = asyncio.run(client())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert "Traceback" not in err, err
    events = [json.loads(line) for line in log.read_text().splitlines()]
    return events, start


PHASES = (0.035, 0.086, 0.124)


def test_microphone_conversation_has_two_stable_speakers(virtual_mic, tmp_path):
    """Three fresh live runs at the phases of :data:`PHASES`: each keeps up (no skipped
    window, no overflow), finds exactly the conversation's 2 speakers, one per voice, with
    at most ``MAX_FLIPS`` mislabelled stretches. (The third speaker some runs used to find
    was the silence after the conversation, labelled active in the final window: see
    docs/engine.md, "Speaker stability".)"""
    for i, phase in enumerate(PHASES):
        events, start = live_run(virtual_mic, tmp_path / f"events{i}.jsonl", phase)
        stats = [e for e in events if e["type"] == "stats"]
        assert stats and stats[-1]["windows_skipped"] == 0, "the machine did not keep up: windows were skipped"
        assert stats[-1]["input_overflows"] == 0
        labels = settled_labels(events)
        found = sorted({s for lab in labels.values() for s in lab})
        per_turn = turn_labels(labels, start)
        counts: dict[str, dict[str, int]] = {}
        for who, seq in per_turn:
            for s in seq:
                counts.setdefault(who, {}).setdefault(s, 0)
                counts[who][s] += 1
        speaker_of = {who: max(c, key=c.get) for who, c in counts.items()}
        n_flips = flips(per_turn, speaker_of)
        print(f"\nplayback aimed at stream time {start:.3f} s: speakers {found}, identities {speaker_of}, "
              f"{n_flips} flip(s) of >= {FLIP_FRAMES * FRAME:.1f} s inside turns, per identity {counts}")
        assert found == ["S1", "S2"], counts
        assert len(set(speaker_of.values())) == 2, speaker_of  # one speaker per voice
        assert {e["id"] for e in events if e["type"] == "speaker"} == {"S1", "S2"}
        assert n_flips <= MAX_FLIPS, counts
