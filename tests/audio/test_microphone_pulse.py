"""Real microphone path: a LibriVox recording played into a PulseAudio null sink with
pacat, captured from its monitor by MicrophoneSource through sounddevice/PortAudio/ALSA."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import correlate, correlation_lags

from wavlm_live.audio import TARGET_RATE, MicrophoneSource, list_input_devices

pytestmark = pytest.mark.slow  # starts processes, plays audio or trains: not in the fast lane

DATA = Path(__file__).resolve().parents[1] / "data"
CLIP = DATA / "sense_and_sensibility_01_austen_64kb-0870.wav"  # 7.1 s, 16 kHz mono
LEAD_IN = 0.5  # seconds of silence played before the speech


class Recorder:
    """Sink that keeps the blocks and their arrival times (monotonic seconds)."""

    def __init__(self) -> None:
        self.blocks: list[np.ndarray] = []
        self.times: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, block: np.ndarray) -> None:
        now = time.monotonic()
        with self.lock:
            self.blocks.append(block)
            self.times.append(now)

    def audio(self) -> np.ndarray:
        return np.concatenate(self.blocks)

    def rate(self) -> tuple[float, float]:
        """(samples per second of wall time by least squares, seconds measured).

        Fits cumulative output samples against arrival time over every block but the
        first (PortAudio's start-up burst), which is robust to scheduling jitter.
        """
        ends = np.cumsum([len(b) for b in self.blocks])[1:]
        t = np.asarray(self.times[1:])
        slope = np.polyfit(t - t[0], ends, 1)[0]
        return float(slope), float(t[-1] - t[0])


def aligned_ncc(captured: np.ndarray, played: np.ndarray) -> tuple[float, int]:
    """Peak normalised cross-correlation after aligning by the cross-correlation peak.

    Returns (ncc of the overlapping parts, lag of `played` in `captured` in samples).
    """
    c = correlate(captured, played, mode="full", method="fft")
    lag = int(correlation_lags(len(captured), len(played), mode="full")[np.argmax(np.abs(c))])
    if lag >= 0:
        a, b = captured[lag : lag + len(played)], played[: len(captured) - lag]
    else:
        a, b = captured[: len(played) + lag], played[-lag:]
    n = min(len(a), len(b))
    a, b = a[:n].astype(np.float64), b[:n].astype(np.float64)
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))), lag


def capture_while_playing(virtual_mic, source: MicrophoneSource, audio: np.ndarray, rate: int) -> Recorder:
    rec = Recorder()
    source.start(rec)
    try:
        time.sleep(0.2)  # the stream runs before playback starts, like a live mic
        player = virtual_mic.play(audio, rate)
        _, err = player.communicate(timeout=60)
        assert player.returncode == 0, err.decode()
        time.sleep(0.3)
    finally:
        source.stop()
    assert source.finished.is_set()
    assert source.error is None
    return rec


def test_pulse_device_is_listed(virtual_mic):
    names = [d.name for d in list_input_devices()]
    assert virtual_mic.alsa_device in names


@pytest.mark.parametrize(
    "settings",
    [
        {},  # the "pulse" device takes 16 kHz mono: no resampling on our side
        {"samplerate": 48000, "channels": 2},  # device-rate path: downmix + soxr stream
    ],
    ids=["16k-mono", "48k-stereo"],
)
def test_captures_played_recording_at_real_time(virtual_mic, settings):
    speech, rate = sf.read(CLIP, dtype="float32")
    assert rate == TARGET_RATE
    played = np.concatenate([np.zeros(round(LEAD_IN * rate), np.float32), speech])
    source = MicrophoneSource(virtual_mic.alsa_device, **settings)
    expect_rate = settings.get("samplerate", TARGET_RATE)
    assert source.stats().input_rate == expect_rate
    assert source.stats().input_channels == settings.get("channels", 1)

    rec = capture_while_playing(virtual_mic, source, played, rate)
    captured = rec.audio()
    assert captured.dtype == np.float32 and captured.ndim == 1
    assert np.all(np.isfinite(captured))

    ncc, lag = aligned_ncc(captured, speech)
    measured, span = rec.rate()
    stats = source.stats()
    print(
        f"\n{source.describe()}: ncc={ncc:.5f} lag={lag} samples, capture rate {measured:.1f} Hz "
        f"over {span:.2f} s ({(measured / TARGET_RATE - 1) * 100:+.3f} %), {stats}"
    )
    assert ncc >= 0.9
    assert span >= 5.0
    assert abs(measured / TARGET_RATE - 1) <= 0.02
    assert stats.samples == len(captured)
    assert stats.blocks == len(rec.blocks)
