"""FileSource: pacing (real time, faster, as fast as possible), loop, lifecycle, and the
errors for missing, unreadable, empty and corrupt files."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from wavlm_live.audio import TARGET_RATE, AudioError, FileSource

DATA = Path(__file__).resolve().parents[1] / "data"
SHORT = DATA / "sense_and_sensibility_01_austen_64kb-0880.wav"  # 2.99 s, 16 kHz mono
LONG = DATA / "sense_and_sensibility_01_austen_64kb-0870.wav"  # 7.10 s, 16 kHz mono


class Recorder:
    """Sink keeping blocks and arrival times (monotonic seconds)."""

    def __init__(self) -> None:
        self.blocks: list[np.ndarray] = []
        self.times: list[float] = []

    def __call__(self, block: np.ndarray) -> None:
        self.times.append(time.monotonic())
        self.blocks.append(block)

    def audio(self) -> np.ndarray:
        return np.concatenate(self.blocks)

    def rate(self) -> float:
        """Delivered samples per second of wall time (least squares over block arrivals)."""
        ends = np.cumsum([len(b) for b in self.blocks])
        t = np.asarray(self.times)
        return float(np.polyfit(t - t[0], ends, 1)[0])


def run_to_end(source: FileSource, timeout: float = 30.0) -> Recorder:
    rec = Recorder()
    source.start(rec)
    assert source.finished.wait(timeout)
    source.stop()
    assert source.error is None
    return rec


@pytest.fixture(scope="module")
def wav_44k1_stereo(tmp_path_factory) -> Path:
    x, _ = sf.read(SHORT, dtype="float32")
    up = soxr.resample(x, 16000, 44100, quality="VHQ")
    path = tmp_path_factory.mktemp("files") / "stereo_44k1.wav"
    sf.write(path, np.stack([up, -0.5 * up], axis=1), 44100, subtype="FLOAT")
    return path


# --- pacing ---------------------------------------------------------------------------


def test_real_time_pacing(wav_44k1_stereo):
    # Behaviour check with a generous tolerance: about 16000 samples per second.
    source = FileSource(wav_44k1_stereo)
    rec = run_to_end(source)
    rate = rec.rate()
    span = rec.times[-1] - rec.times[0]
    print(f"\nspeed 1: {rate:.1f} samples/s over {span:.2f} s")
    assert span > 2.0
    assert rate == pytest.approx(TARGET_RATE, rel=0.05)
    assert len(rec.audio()) == source.num_samples == source.stats().samples


def test_faster_than_real_time():
    source = FileSource(LONG, speed=4.0)
    rec = run_to_end(source)
    print(f"\nspeed 4: {rec.rate():.1f} samples/s")
    assert rec.rate() == pytest.approx(4 * TARGET_RATE, rel=0.1)
    x, _ = sf.read(LONG, dtype="float32")
    np.testing.assert_array_equal(rec.audio(), x)


def test_as_fast_as_possible():
    source = FileSource(LONG, speed=None)
    t0 = time.monotonic()
    rec = run_to_end(source)
    elapsed = time.monotonic() - t0
    assert elapsed < source.duration / 4  # no pacing at all (7.1 s of audio)
    assert len(rec.audio()) == source.num_samples


def test_loop_continues_without_gap_or_reset(wav_44k1_stereo):
    x, rate = sf.read(wav_44k1_stereo, dtype="float32", always_2d=True)
    source = FileSource(wav_44k1_stereo, speed=None, loop=True)
    n = source.num_samples
    out = np.concatenate(list(itertools.islice(source.blocks(), 3 * n // 320)))
    assert len(out) > 2.5 * n
    tiled = np.tile(x.mean(axis=1), 3)
    expected = soxr.resample(tiled, rate, TARGET_RATE, quality="VHQ")
    assert np.max(np.abs(out - expected[: len(out)])) < 1e-6


def test_loop_with_pacing_thread_runs_until_stopped():
    x, _ = sf.read(SHORT, dtype="float32")
    got = threading.Event()
    rec = Recorder()

    def sink(block):
        rec(block)
        if sum(len(b) for b in rec.blocks) > 2.5 * len(x):
            got.set()

    source = FileSource(SHORT, speed=None, loop=True)
    source.start(sink)
    assert got.wait(30)
    assert not source.finished.is_set()
    source.stop()
    assert source.finished.is_set() and source.error is None
    out = rec.audio()
    np.testing.assert_array_equal(out[: 2 * len(x)], np.tile(x, 2))
    count = len(rec.blocks)
    time.sleep(0.05)
    assert len(rec.blocks) == count  # nothing delivered after stop() returned


def test_stop_mid_file_joins_the_thread():
    source = FileSource(LONG)
    rec = Recorder()
    source.start(rec)
    time.sleep(0.3)
    source.stop()
    assert source.finished.is_set() and source.error is None
    assert not source._thread.is_alive()
    assert 0 < source.stats().samples < source.num_samples
    source.stop()  # idempotent


def test_blocks_equal_threaded_output_and_are_counted():
    source = FileSource(LONG, speed=None)
    offline = list(source.blocks())
    stats = source.stats()
    assert stats.blocks == len(offline) and stats.samples == sum(map(len, offline))
    threaded = run_to_end(FileSource(LONG, speed=None))
    np.testing.assert_array_equal(np.concatenate(offline), threaded.audio())
    assert all(len(b) == 320 for b in offline[:-1])


def test_describe_and_duration(wav_44k1_stereo):
    source = FileSource(wav_44k1_stereo)
    assert source.describe() == "file stereo_44k1.wav 44100 Hz x2, 3.0 s"
    assert source.duration == pytest.approx(2.99, abs=1 / TARGET_RATE)
    assert FileSource(SHORT, speed=None, loop=True).describe() == (
        f"file {SHORT.name} 16000 Hz x1, 3.0 s, as fast as possible, looped"
    )
    stats = source.stats()
    assert (stats.input_rate, stats.input_channels, stats.samples) == (44100, 2, 0)


def test_bad_samples_in_a_float_file_are_sanitised(tmp_path):
    x, _ = sf.read(SHORT, dtype="float32")
    x[[100, 200, 300]] = [np.nan, np.inf, 3.0]
    path = tmp_path / "bad.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    source = FileSource(path, speed=None)
    out = np.concatenate(list(source.blocks()))
    assert np.all(np.isfinite(out)) and np.max(np.abs(out)) <= 1.0
    assert out[100] == 0.0 and out[200] == 1.0 and out[300] == 1.0
    assert source.stats().sanitised == 3


def test_sink_exception_sets_error():
    source = FileSource(SHORT, speed=None)

    def sink(block):
        raise KeyError("boom")

    source.start(sink)
    assert source.finished.wait(10)
    source.stop()
    assert "the audio sink raised KeyError('boom')" in str(source.error)
    assert source.stats().blocks == 0


def test_start_only_once():
    source = FileSource(SHORT, speed=None)
    source.start(lambda b: None)
    with pytest.raises(RuntimeError):
        source.start(lambda b: None)
    source.stop()


# --- errors ----------------------------------------------------------------------------


def check_one_line(excinfo, *parts: str) -> None:
    msg = str(excinfo.value)
    assert "\n" not in msg
    for part in parts:
        assert part in msg, msg


def test_missing_file(tmp_path):
    with pytest.raises(AudioError) as e:
        FileSource(tmp_path / "nope.wav")
    check_one_line(e, "audio file not found", "nope.wav")


def test_directory_is_unreadable(tmp_path):
    with pytest.raises(AudioError) as e:
        FileSource(tmp_path)
    check_one_line(e, "cannot read audio file", "is a directory")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError) as e:
        FileSource(path)
    check_one_line(e, "empty.wav", "is empty (0 bytes)")


def test_header_only_file_has_no_samples(tmp_path):
    path = tmp_path / "silent.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    assert path.stat().st_size > 0
    with pytest.raises(AudioError) as e:
        FileSource(path)
    check_one_line(e, "silent.wav", "has no audio samples")


@pytest.mark.parametrize(
    "content",
    [b"this is not audio at all" * 100, b"RIFF\x24\x08\x00\x00WAVEfmt " + bytes(range(256)) * 4],
    ids=["text", "broken-wav-header"],
)
def test_corrupt_file(tmp_path, content):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError) as e:
        FileSource(path)
    check_one_line(e, "cannot decode audio file", "corrupt.wav", "convert it to WAV or FLAC")


def test_corrupt_data_mid_stream(tmp_path):
    x, _ = sf.read(LONG, dtype="float32")
    good = tmp_path / "good.flac"
    sf.write(good, x, 16000)
    path = tmp_path / "truncated.flac"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    source = FileSource(path, speed=None)  # the header is intact
    with pytest.raises(AudioError) as e:
        list(source.blocks())
    check_one_line(e, "error decoding audio file", "truncated.flac", "after ")
    threaded = FileSource(path, speed=None)
    threaded.start(lambda b: None)
    assert threaded.finished.wait(10)
    threaded.stop()
    assert "error decoding audio file" in str(threaded.error)


@pytest.mark.parametrize(
    "kwargs", [{"speed": 0}, {"speed": -1.0}, {"speed": float("nan")}, {"block_seconds": 0}]
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        FileSource(SHORT, **kwargs)
