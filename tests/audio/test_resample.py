"""Resampler path on real recordings: 44.1 kHz stereo and 8 kHz mono files (made with
sox) come out of FileSource.blocks() as 16 kHz mono that matches independent offline
resamples, and block-wise output equals one-shot output (no block-boundary clicks)."""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from scipy.signal import firwin, resample_poly, welch

from wavlm_live.audio import TARGET_RATE, BlockConverter, FileSource, resample_to_16k_mono

DATA = Path(__file__).resolve().parents[1] / "data"
CLIP_A = DATA / "sense_and_sensibility_01_austen_64kb-0870.wav"  # 7.10 s
CLIP_B = DATA / "sense_and_sensibility_01_austen_64kb-0890.wav"  # 5.30 s


def sox(*args: str) -> None:
    if shutil.which("sox") is None:
        pytest.fail("sox not found: apt-get install sox")
    subprocess.run(["sox", "-V1", *args], check=True)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> dict[str, Path]:
    """44.1 kHz stereo (two different clips as left/right) and 8 kHz mono versions."""
    tmp = tmp_path_factory.mktemp("rates")
    stereo = tmp / "stereo_44k1.wav"
    sox("-M", str(CLIP_A), str(CLIP_B), "-r", "44100", str(stereo))
    narrow = tmp / "mono_8k.wav"
    sox(str(CLIP_A), "-r", "8000", str(narrow))
    return {"stereo_44k1": stereo, "mono_8k": narrow}


def offline_reference(x: np.ndarray, rate: int) -> np.ndarray:
    """Independent offline resample of the channel mean: scipy's polyphase resampler with
    a long linear-phase FIR (64 zero crossings a side, Kaiser beta 12, about 120 dB
    stop-band) cut at 95 % of the lower Nyquist frequency, SoX's "very high" band-width."""
    mono = x.mean(axis=1) if x.ndim == 2 else x
    ratio = Fraction(TARGET_RATE, rate)
    up, down = ratio.numerator, ratio.denominator
    widest = max(up, down)
    taps = firwin(2 * 64 * widest + 1, 0.95 / widest, window=("kaiser", 12.0))
    return resample_poly(mono.astype(np.float64), up, down, window=taps)


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    a, b = a[:n].astype(np.float64), b[:n].astype(np.float64)
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def psd_db(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f, p = welch(x.astype(np.float64), fs=TARGET_RATE, nperseg=1024)
    return f, 10 * np.log10(p + 1e-20)


@pytest.mark.parametrize(
    ("name", "band_hz"),
    [("stereo_44k1", (60.0, 7000.0)), ("mono_8k", (60.0, 3500.0))],
)
def test_file_blocks_match_offline_resample(recordings, name, band_hz):
    path = recordings[name]
    x, rate = sf.read(path, dtype="float32", always_2d=True)
    source = FileSource(path, speed=None)
    blocks = list(source.blocks())
    assert all(b.dtype == np.float32 and b.ndim == 1 and 0 < len(b) <= 320 for b in blocks)
    out = np.concatenate(blocks)

    expected_len = len(x) * TARGET_RATE / rate
    assert abs(len(out) - expected_len) <= 320  # +-1 block
    assert len(out) == source.num_samples
    assert source.duration == pytest.approx(len(x) / rate, abs=1 / TARGET_RATE)

    ref = offline_reference(x, rate)
    corr = ncc(out, ref)
    f, p_out = psd_db(out)
    _, p_ref = psd_db(ref[: len(out)])
    band = (f >= band_hz[0]) & (f <= band_hz[1])
    spectral_gap = np.max(np.abs(p_out[band] - p_ref[band]))
    print(f"\n{name}: {len(out)} samples, ncc vs scipy {corr:.6f}, max PSD gap {spectral_gap:.3f} dB in {band_hz} Hz")
    assert corr >= 0.9999
    assert spectral_gap < 0.1

    if name == "mono_8k":
        # Upsampling must not create images above the 4 kHz input Nyquist frequency.
        images = (f > 4300) & (f < 7800)
        assert np.max(p_out[images]) < np.max(p_out[band]) - 80
    else:
        # Round trip 16 kHz -> sox 44.1 kHz -> ours 16 kHz restores the original clips.
        a, _ = sf.read(CLIP_A, dtype="float32")
        b, _ = sf.read(CLIP_B, dtype="float32")
        mix = np.zeros(max(len(a), len(b)), np.float32)
        mix[: len(a)] += a / 2
        mix[: len(b)] += b / 2
        assert ncc(out, mix) >= 0.999


@pytest.mark.parametrize("name", ["stereo_44k1", "mono_8k"])
@pytest.mark.parametrize("block_seconds", [0.02, 0.0137, 0.25])
def test_blockwise_output_equals_one_shot(recordings, name, block_seconds):
    path = recordings[name]
    x, rate = sf.read(path, dtype="float32", always_2d=True)
    out = np.concatenate(list(FileSource(path, speed=None, block_seconds=block_seconds).blocks()))
    one_shot = soxr.resample(x.mean(axis=1), rate, TARGET_RATE, quality="VHQ")
    assert len(out) == len(one_shot)
    diff = float(np.max(np.abs(out - one_shot)))
    print(f"\n{name} block {block_seconds} s: max |block-wise - one-shot| = {diff:.2e}")
    assert diff < 1e-6
    # The offline helper is the same one-shot resample.
    np.testing.assert_allclose(resample_to_16k_mono(x, rate), one_shot, atol=1e-7, rtol=0)


def test_block_converter_tail_and_passthrough():
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.5, 0.5, size=(22050, 2)).astype(np.float32)
    conv = BlockConverter(22050, 2, 0.02)
    out = []
    for i in range(0, len(x), 441):
        blocks, repaired = conv.process(x[i : i + 441])
        assert repaired == 0
        out += blocks
    tail = conv.flush()
    assert tail  # the resampler's delay is delivered at the end of the stream
    y = np.concatenate(out + tail)
    assert len(y) == 16000
    same = BlockConverter(16000, 1, 0.02)
    blocks, _ = same.process(x[:1000, 0])
    np.testing.assert_array_equal(np.concatenate(blocks), x[:1000, 0])
    assert [len(b) for b in blocks] == [320, 320, 320, 40]
    assert same.flush() == []
    with pytest.raises(ValueError, match="expected blocks of 1 channel"):
        same.process(x[:10])
