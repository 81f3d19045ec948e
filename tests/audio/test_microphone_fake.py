"""MicrophoneSource and device listing against a fake sounddevice module (no hardware)."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from wavlm_live.audio import (
    AudioError,
    InputDevice,
    MicrophoneSource,
    format_device_table,
    list_input_devices,
)

CLIP = Path(__file__).resolve().parents[1] / "data" / "sense_and_sensibility_01_austen_64kb-0880.wav"


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    audio, rate = sf.read(CLIP, dtype="float32")
    assert rate == 16000
    return audio


class Collect:
    def __init__(self) -> None:
        self.blocks: list[np.ndarray] = []

    def __call__(self, block: np.ndarray) -> None:
        self.blocks.append(block)

    def audio(self) -> np.ndarray:
        return np.concatenate(self.blocks) if self.blocks else np.zeros(0, np.float32)


def feed_all(source, stream, audio: np.ndarray, blocksize: int) -> int:
    """Feed `audio` in blocks, no faster than the converter drains (no drops)."""
    n = 0
    for i in range(0, len(audio), blocksize):
        while source._queue.full():
            time.sleep(0.001)
        stream.feed(audio[i : i + blocksize])
        n += 1
    assert source.stats().dropped_blocks == 0
    return n


def one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    return msg


# --- opening -------------------------------------------------------------------------


def test_opens_default_device_at_16k_mono_and_passes_blocks_through(fake_sd, speech):
    source = MicrophoneSource()
    assert source.describe() == 'mic "Built-in Microphone" 16000 Hz x1 -> 16 kHz mono'
    sink = Collect()
    source.start(sink)
    (stream,) = fake_sd.streams
    kw = stream.kwargs
    assert (kw["device"], kw["samplerate"], kw["channels"], kw["dtype"]) == (0, 16000, 1, "float32")
    assert kw["blocksize"] == 320 and kw["latency"] == "low"
    n = feed_all(source, stream, speech, 320)
    source.stop()
    assert stream.closed and source.finished.is_set() and source.error is None
    np.testing.assert_array_equal(sink.audio(), speech)
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in sink.blocks)
    stats = source.stats()
    assert (stats.blocks, stats.samples, stats.overflows, stats.sanitised, stats.dropped_blocks) == (
        n, len(speech), 0, 0, 0)
    assert (stats.input_rate, stats.input_channels) == (16000, 1)


def test_falls_back_to_device_rate_and_channels_then_downmixes_and_resamples(fake_sd, speech):
    fake_sd.supported[0] = {(48000.0, 2)}  # a stereo-only 48 kHz device
    source = MicrophoneSource("built-in", block_seconds=0.02)
    assert source.describe() == 'mic "Built-in Microphone" 48000 Hz x2 -> 16 kHz mono'
    left = soxr.resample(speech, 16000, 48000, quality="VHQ").astype(np.float32)
    stereo = np.stack([left, 0.25 * left[::-1]], axis=1)  # channels that differ
    sink = Collect()
    source.start(sink)
    (stream,) = fake_sd.streams
    assert (stream.kwargs["samplerate"], stream.kwargs["channels"], stream.kwargs["blocksize"]) == (48000, 2, 960)
    feed_all(source, stream, stereo, 960)
    source.stop()
    out = sink.audio()
    # Independent reference: one-shot libsoxr of the channel mean.
    expected = soxr.resample(stereo.mean(axis=1), 48000, 16000, quality="VHQ")
    assert len(out) == len(expected) == round(len(stereo) / 3)
    assert np.max(np.abs(out - expected)) < 1e-6
    assert max(len(b) for b in sink.blocks) <= 320


def test_explicit_settings_are_used_or_rejected(fake_sd):
    source = MicrophoneSource(2, samplerate=44100, channels=1, latency="high", block_seconds=0.01)
    source.start(Collect())
    kw = fake_sd.streams[0].kwargs
    assert (kw["device"], kw["samplerate"], kw["channels"], kw["latency"], kw["blocksize"]) == (
        2, 44100, 1, "high", 441)
    source.stop()
    with pytest.raises(AudioError) as e:
        MicrophoneSource(2, channels=2)
    assert "has 1 input channel(s), 2 were asked for" in one_line_error(e)


# --- status flags, bad samples, back-pressure -----------------------------------------


def test_overflow_flags_are_counted(fake_sd, speech):
    source = MicrophoneSource()
    sink = Collect()
    source.start(sink)
    stream = fake_sd.streams[0]
    overflow = fake_sd.CallbackFlags(input_overflow=True)
    for i in range(10):
        stream.feed(speech[i * 320 : (i + 1) * 320], overflow if i in (2, 3, 7) else None)
    stream.feed(speech[:320], fake_sd.CallbackFlags(input_underflow=True))  # not an overflow
    source.stop()
    stats = source.stats()
    assert stats.overflows == 3
    assert stats.blocks == 11  # blocks with flags are still delivered


def test_nan_inf_and_clipped_samples_are_repaired_and_counted(fake_sd, speech):
    source = MicrophoneSource()
    sink = Collect()
    source.start(sink)
    stream = fake_sd.streams[0]
    bad = speech[:320].copy()
    bad[[10, 20, 30, 40, 50]] = [np.nan, np.inf, -np.inf, 1.5, -2.0]
    stream.feed(bad)
    stream.feed(speech[320:640])
    source.stop()
    first, second = sink.blocks
    assert np.all(np.isfinite(first)) and np.max(np.abs(first)) <= 1.0
    np.testing.assert_array_equal(first[[10, 20, 30, 40, 50]], [0.0, 1.0, -1.0, 1.0, -1.0])
    keep = np.ones(320, bool)
    keep[[10, 20, 30, 40, 50]] = False
    np.testing.assert_array_equal(first[keep], speech[:320][keep])
    np.testing.assert_array_equal(second, speech[320:640])  # later blocks unaffected
    assert source.stats().sanitised == 5


def test_nan_does_not_poison_the_resampler(fake_sd, speech):
    fake_sd.supported[0] = {(48000.0, 2)}
    source = MicrophoneSource()
    sink = Collect()
    source.start(sink)
    x = soxr.resample(speech, 16000, 48000, quality="VHQ").astype(np.float32)
    stereo = np.stack([x, x], axis=1)
    stereo[5000, 0] = np.nan
    stereo[7000:7010, 1] = np.inf
    feed_all(source, fake_sd.streams[0], stereo, 960)
    source.stop()
    out = sink.audio()
    assert np.all(np.isfinite(out))
    assert source.stats().sanitised == 11
    repaired = stereo.copy()
    repaired[5000, 0] = 0.0
    repaired[7000:7010, 1] = 1.0
    expected = soxr.resample(repaired.mean(axis=1), 48000, 16000, quality="VHQ")
    assert np.max(np.abs(out - expected)) < 1e-6


def test_full_hand_off_queue_drops_blocks_and_counts_them(fake_sd, speech):
    source = MicrophoneSource()
    entered, release = threading.Event(), threading.Event()
    sink = Collect()

    def slow_sink(block):
        entered.set()
        release.wait(10)
        sink(block)

    source.start(slow_sink)
    stream = fake_sd.streams[0]
    stream.feed(speech[:320])
    assert entered.wait(5)  # the converter is now stuck in the sink with block 0
    capacity = source._queue.maxsize
    for _ in range(capacity + 7):
        stream.feed(speech[:320])  # the callback must never block
    assert source.stats().dropped_blocks == 7
    release.set()
    source.stop()
    assert source.stats().blocks == 1 + capacity
    assert len(sink.blocks) == 1 + capacity


# --- errors and lifecycle ---------------------------------------------------------------


def test_device_error_at_open_gives_a_one_line_hint(fake_sd):
    fake_sd.open_error = fake_sd.PortAudioError(
        "Error opening InputStream: Device unavailable\n[PaErrorCode -9985]"
    )
    source = MicrophoneSource()
    with pytest.raises(AudioError) as e:
        source.start(Collect())
    msg = one_line_error(e)
    assert msg.startswith("cannot open input device 0 'Built-in Microphone' at 16000 Hz x1")
    assert "Device unavailable [PaErrorCode -9985]" in msg and "wavlm-live devices" in msg
    assert isinstance(e.value, RuntimeError)


def test_device_error_at_start_gives_a_one_line_hint_and_cleans_up(fake_sd):
    fake_sd.start_error = fake_sd.PortAudioError("Error starting stream: Unanticipated host error")
    source = MicrophoneSource()
    with pytest.raises(AudioError) as e:
        source.start(Collect())
    assert one_line_error(e).startswith("cannot start input device 0")
    assert fake_sd.streams[0].closed and source.finished.is_set()
    source.stop()


@pytest.mark.parametrize(
    ("setup", "device", "expected"),
    [
        (lambda sd: sd.devices.__setitem__(slice(None), [sd.devices[1]]), None, "no audio input device found"),
        (lambda sd: setattr(sd, "default_input", -1), None, "no default audio input device"),
        (None, "webcam", "no input device matches 'webcam' (input devices: 'Built-in Microphone', 'USB Headset Mic')"),
        (lambda sd: sd.devices.append(dict(sd.devices[2], name="USB Camera Mic")), "usb",
         "device name 'usb' matches 2 input devices (2 'USB Headset Mic', 3 'USB Camera Mic')"),
        (None, 1, "no input device with index 1"),  # "Speakers" has no input channels
        (None, "9", "no input device with index 9"),
        (lambda sd: sd.supported.__setitem__(0, set()), None,
         "supports none of 16000 Hz x1, 16000 Hz x2, 48000 Hz x1, 48000 Hz x2 (Invalid sample rate [PaErrorCode -9997])"),
    ],
    ids=["no-input", "no-default", "unknown-name", "ambiguous-name", "output-only-index",
         "unknown-index", "unsupported"],
)
def test_device_selection_errors(fake_sd, setup, device, expected):
    if setup is not None:
        setup(fake_sd)
    with pytest.raises(AudioError) as e:
        MicrophoneSource(device)
    assert expected in one_line_error(e)


def test_device_selection_by_index_name_and_exact_name(fake_sd):
    assert MicrophoneSource(2).device.name == "USB Headset Mic"
    assert MicrophoneSource("2").device.index == 2
    assert MicrophoneSource("headset").device.index == 2
    fake_sd.devices.append(dict(fake_sd.devices[2], name="USB Headset Mic 2"))
    assert MicrophoneSource("usb headset mic").device.index == 2  # exact match wins


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"device": 1.5}, TypeError),
        ({"block_seconds": 0}, ValueError),
        ({"channels": 0}, ValueError),
        ({"samplerate": -16000}, ValueError),
        ({"latency": "medium"}, ValueError),
    ],
)
def test_bad_arguments(fake_sd, kwargs, error):
    with pytest.raises(error):
        MicrophoneSource(**kwargs)


def test_missing_portaudio_gives_install_hint(monkeypatch, tmp_path):
    # What sounddevice does when libportaudio cannot be loaded.
    (tmp_path / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    for call in (list_input_devices, MicrophoneSource):
        with pytest.raises(AudioError) as e:
            call()
        msg = one_line_error(e)
        assert msg.startswith("PortAudio library not found")
        assert "install libportaudio2 (Debian/Ubuntu) or portaudio (Homebrew)" in msg


def test_stream_that_dies_sets_error_and_finished(fake_sd, speech):
    source = MicrophoneSource()
    source.start(Collect())
    stream = fake_sd.streams[0]
    stream.feed(speech[:320])
    stream.active = False
    stream.finished_callback()  # PortAudio: the stream went inactive on its own
    assert source.finished.wait(1)
    assert "stopped unexpectedly" in str(source.error)
    source.stop()
    assert stream.closed


def test_sink_exception_ends_the_source_with_error(fake_sd, speech):
    source = MicrophoneSource()
    calls = []

    def bad_sink(block):
        calls.append(len(block))
        raise ValueError("boom")

    source.start(bad_sink)
    stream = fake_sd.streams[0]
    stream.feed(speech[:320])
    assert source.finished.wait(5)
    assert "the audio sink raised ValueError('boom')" in str(source.error)
    assert isinstance(source.error.__cause__, ValueError)
    stream.feed(speech[:320])  # captured audio after the failure is discarded
    source.stop()
    assert calls == [320]


def test_stop_is_idempotent_and_start_only_once(fake_sd):
    source = MicrophoneSource()
    source.stop()
    source.stop()
    assert source.finished.is_set()
    with pytest.raises(RuntimeError):
        source.start(Collect())
    other = MicrophoneSource()
    other.start(Collect())
    with pytest.raises(RuntimeError):
        other.start(Collect())
    other.stop()
    other.stop()
    assert fake_sd.streams[0].closed


def test_stop_from_inside_the_sink(fake_sd, speech):
    source = MicrophoneSource()
    got = []

    def sink(block):
        got.append(block)
        if len(got) == 1:
            source.stop()

    source.start(sink)
    stream = fake_sd.streams[0]
    stream.feed(speech[:320])
    stream.feed(speech[320:640])  # queued before the stream is closed by the sink
    assert source.finished.wait(5)
    source._thread.join(5)
    assert not source._thread.is_alive()
    assert len(got) in (1, 2) and source.error is None


# --- device listing --------------------------------------------------------------------


def test_list_input_devices_and_table(fake_sd):
    devices = list_input_devices()
    assert devices == [
        InputDevice(0, "Built-in Microphone", "FakeAPI", 2, 48000.0, True),
        InputDevice(2, "USB Headset Mic", "FakeAPI", 1, 44100.0, False),
    ]
    table = format_device_table(devices).splitlines()
    assert table[0].split() == ["index", "name", "host", "API", "channels", "default", "rate", "(Hz)"]
    assert table[1].split() == ["*", "0", "Built-in", "Microphone", "FakeAPI", "2", "48000"]
    assert table[2].split() == ["2", "USB", "Headset", "Mic", "FakeAPI", "1", "44100"]
    assert table[3] == "* default input device"
    assert format_device_table([]).startswith("no audio input devices found")
