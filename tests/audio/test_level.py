"""LevelMeter against signals with known levels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wavlm_live.audio import LevelMeter

SINE_RMS_DB = 20 * math.log10(1 / math.sqrt(2))  # -3.0103 dB: RMS of a full-scale sine


def sine(amplitude: float, seconds: float, freq: float = 1000.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_full_scale_sine():
    meter = LevelMeter()
    (end, rms, peak), = meter.update(sine(1.0, 0.1))
    assert end == 1600
    assert rms == pytest.approx(SINE_RMS_DB, abs=0.01)
    assert peak == pytest.approx(0.0, abs=0.01)  # 1 kHz at 16 kHz hits sin(pi/2) exactly


def test_half_scale_sine_and_silence():
    meter = LevelMeter(interval_s=0.05)
    levels = meter.update(np.concatenate([sine(0.5, 0.05), np.zeros(800, np.float32)]))
    assert [lv[0] for lv in levels] == [800, 1600]
    assert levels[0][1] == pytest.approx(SINE_RMS_DB - 6.0206, abs=0.01)
    assert levels[0][2] == pytest.approx(-6.0206, abs=0.01)
    assert levels[1][1:] == (-120.0, -120.0)


def test_tiny_signal_clamps_at_minus_120():
    (_, rms, peak), = LevelMeter().update(np.full(1600, 1e-9, np.float32))
    assert (rms, peak) == (-120.0, -120.0)


def test_intervals_tile_the_stream_whatever_the_block_sizes():
    x = sine(0.25, 1.0)
    x[8000:] = 0.0  # the second half second is silent
    meter = LevelMeter(interval_s=0.1)
    levels = []
    rng = np.random.default_rng(1)
    pos = 0
    while pos < len(x):
        n = int(rng.integers(1, 2500))
        levels += meter.update(x[pos : pos + n])
        pos += n
    assert [lv[0] for lv in levels] == list(range(1600, 16001, 1600))
    for end, rms, peak in levels:
        if end <= 8000:
            assert rms == pytest.approx(SINE_RMS_DB - 12.0412, abs=0.01)
            assert peak == pytest.approx(-12.0412, abs=0.01)
        else:
            assert (rms, peak) == (-120.0, -120.0)
    assert meter.update(np.zeros(0, np.float32)) == []


def test_partial_interval_waits_for_more():
    meter = LevelMeter(interval_s=0.1)
    assert meter.update(sine(1.0, 0.05)) == []
    (end, rms, _), = meter.update(np.zeros(800, np.float32))
    assert end == 1600
    assert rms == pytest.approx(SINE_RMS_DB - 3.0103, abs=0.01)  # half the energy


@pytest.mark.parametrize("kwargs", [{"interval_s": 0}, {"interval_s": 1e-6}, {"sample_rate": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        LevelMeter(**kwargs)
