"""Audio input: microphone capture, file replay, resampling to 16 kHz mono, level meter.

Every source delivers 1-D float32 blocks of 16 kHz mono samples to a sink callable from
its own thread. sounddevice (PortAudio) is imported only when a microphone or the device
list is asked for, so file sources work without PortAudio. This package imports nothing
from the engine, the server or the TUI.
"""

from .base import TARGET_RATE, AudioError, AudioSource, Sink, SourceStats
from .devices import InputDevice, format_device_table, list_input_devices
from .file import FileSource
from .level import LevelMeter
from .mic import MicrophoneSource
from .resample import BlockConverter, resample_to_16k_mono

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
