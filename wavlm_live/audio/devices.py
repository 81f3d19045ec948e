"""Input device discovery through sounddevice (PortAudio), imported lazily.

`import_sounddevice()` is the only place the package imports sounddevice: importing
`wavlm_live.audio` never loads PortAudio, so file sources work on machines without it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from .base import AudioError, format_rate, one_line

PORTAUDIO_HINT = "install libportaudio2 (Debian/Ubuntu) or portaudio (Homebrew), or use an audio file"
LIST_HINT = "run `wavlm-live devices` to list input devices"


def import_sounddevice() -> ModuleType:
    """Import and return the sounddevice module.

    Raises:
        AudioError: the PortAudio library or the sounddevice package is missing.
    """
    try:
        return importlib.import_module("sounddevice")
    except OSError as exc:  # sounddevice raises OSError("PortAudio library not found")
        raise AudioError(f"PortAudio library not found ({one_line(exc)}): {PORTAUDIO_HINT}") from exc
    except ImportError as exc:
        raise AudioError(
            f"the sounddevice package is not installed ({one_line(exc)}): pip install sounddevice"
        ) from exc


@dataclass(frozen=True)
class InputDevice:
    """One audio input device as PortAudio reports it.

    Attributes:
        index: PortAudio device index (what `MicrophoneSource(device=index)` takes).
        name: device name.
        hostapi: host API name (ALSA, Core Audio, WASAPI...).
        channels: maximum number of input channels.
        default_samplerate: the device's default sample rate in Hz.
        is_default: whether this is the default input device.
    """

    index: int
    name: str
    hostapi: str
    channels: int
    default_samplerate: float
    is_default: bool


def default_input_index(sd: ModuleType) -> int | None:
    """Index of the default input device, or None when there is none."""
    try:
        info = sd.query_devices(kind="input")
    except (sd.PortAudioError, ValueError):
        return None
    index = info.get("index", -1) if isinstance(info, dict) else -1
    return index if index is not None and index >= 0 else None


def input_devices(sd: ModuleType) -> list[InputDevice]:
    """List the input-capable devices of an imported sounddevice module."""
    try:
        hostapis = sd.query_hostapis()
        devices = sd.query_devices()
    except sd.PortAudioError as exc:
        raise AudioError(f"cannot list audio devices: {one_line(exc)}; {PORTAUDIO_HINT}") from exc
    default = default_input_index(sd)
    out = []
    for index, dev in enumerate(devices):
        if dev["max_input_channels"] <= 0:
            continue
        index = dev.get("index", index)
        out.append(
            InputDevice(
                index=index,
                name=dev["name"],
                hostapi=hostapis[dev["hostapi"]]["name"],
                channels=dev["max_input_channels"],
                default_samplerate=float(dev["default_samplerate"]),
                is_default=index == default,
            )
        )
    return out


def list_input_devices() -> list[InputDevice]:
    """List the audio input devices PortAudio sees, in index order.

    Returns:
        One `InputDevice` per device with at least one input channel (maybe none).

    Raises:
        AudioError: PortAudio or sounddevice is missing, or PortAudio fails.
    """
    return input_devices(import_sounddevice())


def format_device_table(devices: list[InputDevice]) -> str:
    """Format devices as a plain-text table (no trailing newline) for `wavlm-live devices`.

    Columns: a '*' marking the default input, index, name, host API, input channels,
    default rate in Hz. An empty list gives a one-line hint instead of a table.
    """
    if not devices:
        return "no audio input devices found: connect a microphone, or use an audio file"
    header = ("", "index", "name", "host API", "channels", "default rate (Hz)")
    rows = [
        ("*" if d.is_default else "", str(d.index), d.name, d.hostapi, str(d.channels),
         format_rate(d.default_samplerate))
        for d in devices
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {1, 4, 5}  # numbers are right-aligned

    def line(row: tuple[str, ...]) -> str:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows), "* default input device"])
