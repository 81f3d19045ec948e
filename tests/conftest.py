"""Shared pytest fixtures.

`tiny_checkpoints`: three tiny random-weight WavLM checkpoints (CTC, frame classification,
x-vector) in Hugging Face format, built with transformers (a test-only dependency) and saved
with its ``save_pretrained``; the project loads them through its own loader.

`virtual_mic`: a PulseAudio null sink used as a virtual microphone. Audio played into the
sink with `pacat` is recorded from its monitor through ALSA's "pulse" device (how
PortAudio, hence sounddevice, sees PulseAudio). The PulseAudio server is started by
`scripts/pulse-virtual-mic.sh` (idempotent: a server .ci/run already started is reused).
Each test session gets its own null sink, so concurrent sessions do not hear each other.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
PULSE_SCRIPT = REPO / "scripts" / "pulse-virtual-mic.sh"
VMIC_RATE = 48000  # the null sink's rate, like a common sound card (float32, 2 channels)


@dataclass
class VirtualMic:
    """A null sink whose monitor is the default PulseAudio source of this process.

    Attributes:
        sink: PulseAudio sink name to play into.
        source: its monitor, which `PULSE_SOURCE` points the "pulse" ALSA device at.
        alsa_device: the PortAudio/sounddevice device name that records from `source`.
    """

    sink: str
    source: str
    tmp: Path
    alsa_device: str = "pulse"

    def play(self, audio: np.ndarray, rate: int) -> subprocess.Popen:
        """Start playing `audio` (float, [frames] or [frames, channels]) into the sink.

        Returns the `pacat` process; wait() on it to know when playback has drained.
        """
        path = self.tmp / f"play-{time.monotonic_ns()}.wav"
        sf.write(path, audio, rate, subtype="FLOAT")
        return subprocess.Popen(
            ["pacat", "--playback", f"--device={self.sink}", "--file-format=wav", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )


def _run_pulse_script() -> None:
    result = subprocess.run(
        [str(PULSE_SCRIPT), "--exit-idle-time", "10"], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        pytest.fail(f"{PULSE_SCRIPT.name} failed: {result.stderr.strip()}")


def _refresh_portaudio() -> None:
    """Make an already imported sounddevice re-enumerate devices now that the server runs.

    PortAudio lists ALSA devices once, at initialisation; without a PulseAudio server
    the "pulse" device is missing from that list.
    """
    sd = sys.modules.get("sounddevice")
    if sd is not None and hasattr(sd, "_terminate") and hasattr(sd, "_initialize"):
        sd._terminate()
        sd._initialize()


@pytest.fixture(scope="session")
def virtual_mic(tmp_path_factory: pytest.TempPathFactory):
    """Yield a `VirtualMic`; start PulseAudio first if it is not running."""
    missing = [t for t in ("pulseaudio", "pactl", "pacat") if shutil.which(t) is None]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: apt-get install pulseaudio pulseaudio-utils libasound2-plugins"
        )
    # A connected client keeps the server from exiting on idle while this session runs.
    holder = None
    for _ in range(3):
        _run_pulse_script()
        holder = subprocess.Popen(["pactl", "subscribe"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.2)
        if holder.poll() is None and subprocess.run(["pactl", "info"], capture_output=True).returncode == 0:
            break
        holder.kill()
        holder.wait()
        holder = None
    if holder is None:
        pytest.fail("PulseAudio does not stay up: see /tmp/wavlm-live-pulse-*.log")

    sink = f"wavlm_test_{os.getpid()}"
    module = subprocess.run(
        ["pactl", "load-module", "module-null-sink", f"sink_name={sink}", f"rate={VMIC_RATE}",
         "channels=2", "format=float32le"],
        capture_output=True, text=True,
    )
    if module.returncode != 0:
        holder.kill()
        holder.wait()
        pytest.fail(f"cannot load the null sink: {module.stderr.strip()}")
    with pytest.MonkeyPatch.context() as mp:
        # libpulse records from PULSE_SOURCE when a client (ALSA's "pulse" pcm) names none.
        mp.setenv("PULSE_SOURCE", f"{sink}.monitor")
        _refresh_portaudio()
        try:
            yield VirtualMic(sink=sink, source=f"{sink}.monitor", tmp=tmp_path_factory.mktemp("vmic"))
        finally:
            subprocess.run(["pactl", "unload-module", module.stdout.strip()], capture_output=True)
            holder.terminate()
            holder.wait()


# -- tiny checkpoints -----------------------------------------------------------------

LIBRISPEECH_VOCAB = {"[PAD]": 0, "[UNK]": 1, "|": 2, **{c: i + 3 for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")}, "'": 29}


def tiny_config(**overrides):
    from transformers import WavLMConfig

    kw = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        tdnn_dim=(32, 32, 32, 32, 64), xvector_output_dim=16, vocab_size=len(LIBRISPEECH_VOCAB),
        pad_token_id=0, num_labels=2,
    )
    kw.update(overrides)
    return WavLMConfig(**kw)


def save_tiny(folder, kind, seed=0, **overrides):
    """Write a tiny checkpoint of ``kind`` ('ctc', 'frames', 'xvector', 'sequence') to ``folder``."""
    from transformers import (
        Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, WavLMForAudioFrameClassification, WavLMForCTC,
        WavLMForSequenceClassification, WavLMForXVector,
    )

    torch.manual_seed(seed)
    cls = {"ctc": WavLMForCTC, "frames": WavLMForAudioFrameClassification, "xvector": WavLMForXVector,
           "sequence": WavLMForSequenceClassification}[kind]
    model = cls(tiny_config(**overrides)).eval()
    if kind == "ctc":
        # Random heads give nearly constant logits; sharpen the head so that the argmax
        # varies from frame to frame, with blank and the delimiter frequent like a real model.
        with torch.no_grad():
            model.lm_head.weight *= 40
            model.lm_head.bias[0] += 2.0
            model.lm_head.bias[2] += 1.0
    if kind == "sequence":
        with torch.no_grad():  # spread the classes: a random head is nearly uniform
            model.classifier.weight *= 30
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    if kind == "ctc":
        (folder / "vocab.json").write_text(json.dumps(LIBRISPEECH_VOCAB))
        Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), pad_token="[PAD]", unk_token="[UNK]", bos_token=None, eos_token=None).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """Folders of tiny checkpoints: {'captions', 'diarization', 'embeddings', 'classification'}
    (the classifier: three language classes, or twelve keyword-spotting ones as
    'keywords')."""
    root = tmp_path_factory.mktemp("tiny-models")
    langs = {0: "en", 1: "fr", 2: "de"}
    keywords = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "_silence_", "_unknown_"]
    return {
        "captions": save_tiny(root / "ctc", "ctc", seed=1),
        "diarization": save_tiny(root / "sd", "frames", seed=2),
        "embeddings": save_tiny(root / "sv", "xvector", seed=3),
        "classification": save_tiny(root / "lid", "sequence", seed=4, num_labels=3, id2label=langs,
                                    label2id={v: k for k, v in langs.items()}, use_weighted_layer_sum=True),
        "keywords": save_tiny(root / "ks", "sequence", seed=5, num_labels=len(keywords),
                              id2label=dict(enumerate(keywords)), label2id={k: i for i, k in enumerate(keywords)}),
    }


# -- media files written by the ffmpeg binary -------------------------------------------

MEDIA_SOURCE = REPO / "tests" / "data" / "sense_and_sensibility_01_austen_64kb-0870.wav"  # 7.10 s, 16 kHz mono


def ffmpeg(*args: str) -> None:
    """Run the ffmpeg binary (quiet); fail the test with its message when it fails."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg not found: apt-get install ffmpeg (scripts/setup.sh installs it)")
    done = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.fail(f"ffmpeg {' '.join(args)} failed: {done.stderr.strip()}")


@pytest.fixture(scope="session")
def media_files(tmp_path_factory) -> dict[str, Path]:
    """Media files of the 7.1 s LibriVox clip, encoded by the ffmpeg binary: ``m4a`` (AAC),
    ``mp4`` (H.264 video track first, then AAC), ``opus`` (Ogg Opus, 48 kHz), ``mp3``
    (stereo 48 kHz: left = the clip, right = the clip at half amplitude), ``video_only``
    (an MP4 without audio), ``m4a_faststart`` (the M4A with its index first) and ``source`` (the WAV they were made from)."""
    out = tmp_path_factory.mktemp("media")
    src = str(MEDIA_SOURCE)
    files = {"source": MEDIA_SOURCE}
    files["m4a"] = out / "clip.m4a"
    ffmpeg("-i", src, "-c:a", "aac", "-b:a", "96k", str(files["m4a"]))
    files["mp4"] = out / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=7.1", "-i", src, "-map", "0:v", "-map", "1:a",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", str(files["mp4"]))
    files["opus"] = out / "clip.opus"
    ffmpeg("-i", src, "-c:a", "libopus", "-b:a", "48k", str(files["opus"]))
    files["mp3"] = out / "clip.mp3"
    ffmpeg("-i", src, "-af", "aresample=48000:resampler=soxr,pan=stereo|c0=c0|c1=0.5*c0", "-c:a", "libmp3lame",
           "-b:a", "192k", str(files["mp3"]))
    files["m4a_faststart"] = out / "faststart.m4a"  # the index (moov) before the data
    ffmpeg("-i", str(files["m4a"]), "-c", "copy", "-movflags", "+faststart", str(files["m4a_faststart"]))
    files["video_only"] = out / "video.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           str(files["video_only"]))
    return files
