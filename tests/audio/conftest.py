"""A fake sounddevice module: PortAudio without hardware, driven by the test.

The fake keeps sounddevice's calling conventions for what wavlm_live.audio uses:
query_devices / query_hostapis / check_input_settings / InputStream / PortAudioError.
Tests push blocks into a stream's callback with `FakeInputStream.feed`.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest


class PortAudioError(Exception):
    """Same role as sounddevice.PortAudioError."""


class CallbackFlags:
    """Same attributes and truthiness as sounddevice.CallbackFlags for input streams."""

    def __init__(self, input_overflow: bool = False, input_underflow: bool = False) -> None:
        self.input_overflow = input_overflow
        self.input_underflow = input_underflow

    def __bool__(self) -> bool:
        return self.input_overflow or self.input_underflow


class FakeInputStream:
    """Records its arguments; `feed` calls the callback like PortAudio's audio thread."""

    def __init__(self, module: FakeSoundDevice, **kwargs) -> None:
        if module.open_error is not None:
            raise module.open_error
        self.kwargs = kwargs
        self.callback = kwargs["callback"]
        self.finished_callback = kwargs.get("finished_callback")
        self.active = False
        self.closed = False
        self._module = module
        module.streams.append(self)

    def start(self) -> None:
        if self._module.start_error is not None:
            raise self._module.start_error
        self.active = True

    def feed(self, block: np.ndarray, flags: CallbackFlags | None = None) -> None:
        """Deliver one [frames, channels] float32 block to the callback."""
        assert self.active, "stream not started"
        block = np.asarray(block, dtype=np.float32)
        if block.ndim == 1:
            block = block[:, None]
        self.callback(block, len(block), None, flags or CallbackFlags())

    def stop(self) -> None:
        was_active, self.active = self.active, False
        if was_active and self.finished_callback is not None:
            self.finished_callback()

    def close(self) -> None:
        self.stop()
        self.closed = True


class FakeSoundDevice(types.ModuleType):
    """Module object standing in for sounddevice.

    Attributes tests set:
        devices: list of device dicts (name, hostapi, max_input_channels,
            max_output_channels, default_samplerate); the index is the position.
        default_input: index of the default input device, or -1 for none.
        supported: device index -> set of accepted (samplerate, channels); a device
            not in it accepts everything.
        open_error / start_error: raised by InputStream() / stream.start().
    """

    PortAudioError = PortAudioError
    CallbackFlags = CallbackFlags

    def __init__(self) -> None:
        super().__init__("sounddevice")
        self.devices = [
            {"name": "Built-in Microphone", "hostapi": 0, "max_input_channels": 2,
             "max_output_channels": 0, "default_samplerate": 48000.0},
            {"name": "Speakers", "hostapi": 0, "max_input_channels": 0,
             "max_output_channels": 2, "default_samplerate": 48000.0},
            {"name": "USB Headset Mic", "hostapi": 0, "max_input_channels": 1,
             "max_output_channels": 0, "default_samplerate": 44100.0},
        ]
        self.default_input = 0
        self.supported: dict[int, set[tuple[float, int]]] = {}
        self.open_error: Exception | None = None
        self.start_error: Exception | None = None
        self.streams: list[FakeInputStream] = []

    def query_hostapis(self, index=None):
        apis = ({"name": "FakeAPI", "devices": list(range(len(self.devices)))},)
        return apis if index is None else apis[index]

    def query_devices(self, device=None, kind=None):
        listed = [dict(d, index=i) for i, d in enumerate(self.devices)]
        if kind == "input" and device is None:
            if self.default_input < 0:
                raise PortAudioError("Error querying device -1")
            return listed[self.default_input]
        if device is not None:
            return listed[device]
        return listed

    def check_input_settings(self, device=None, channels=None, dtype=None, samplerate=None, **kw):
        dev = self.devices[device]
        if channels > dev["max_input_channels"]:
            raise PortAudioError("Invalid number of channels [PaErrorCode -9998]")
        allowed = self.supported.get(device)
        if allowed is not None and (samplerate, channels) not in allowed:
            raise PortAudioError("Invalid sample rate [PaErrorCode -9997]")

    def InputStream(self, **kwargs):  # noqa: N802 (sounddevice's name)
        return FakeInputStream(self, **kwargs)


@pytest.fixture
def fake_sd(monkeypatch) -> FakeSoundDevice:
    """Install a FakeSoundDevice as `sounddevice` for the duration of one test."""
    module = FakeSoundDevice()
    monkeypatch.setitem(sys.modules, "sounddevice", module)
    return module
