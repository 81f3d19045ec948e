"""Audio input: microphone capture, file replay, resampling to 16 kHz mono, level meter.

Every source delivers 1-D float32 blocks of 16 kHz mono samples to a sink callable from
its own thread. sounddevice (PortAudio) is imported only when a microphone or the device
list is asked for, so file sources work without PortAudio. This package imports nothing
from the engine, the server or the TUI.
"""

from typing import Any

from .base import TARGET_RATE, AudioError, AudioSource, Sink, SourceStats

_LAZY = {
    "InputDevice": "devices", "format_device_table": "devices", "list_input_devices": "devices",
    "FileSource": "file", "LevelMeter": "level", "MicrophoneSource": "mic",
    "BlockConverter": "resample", "resample_to_16k_mono": "resample",
}
"""Names imported from their module on first use, so that importing one submodule (the
engine's level meter, say) does not load libsndfile, PyAV or PortAudio."""

__all__ = [
    "TARGET_RATE",
    "AudioError",
    "AudioSource",
    "BlockConverter",
    "FileSource",
    "InputDevice",
    "LevelMeter",
    "MicrophoneSource",
    "Sink",
    "SourceStats",
    "format_device_table",
    "list_input_devices",
    "resample_to_16k_mono",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wavlm_live.audio' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)
