"""Microphone capture: a PortAudio input stream feeding a converter thread.

The PortAudio callback only copies each block into a bounded queue, counts the driver's
status flags and returns (python-sounddevice's recording examples do the same). A small
converter thread drains the queue: sanitise, downmix, stream-resample to 16 kHz, call
the sink. When the queue is full the block is dropped and counted instead of blocking
the audio thread.
"""

from __future__ import annotations

import math
import queue
import threading
from types import ModuleType

import numpy as np

from .base import TARGET_RATE, AudioError, AudioSource, Sink, format_rate, one_line
from .devices import LIST_HINT, InputDevice, import_sounddevice, input_devices
from .resample import BlockConverter

QUEUE_SECONDS = 2.0
"""Audio the hand-off queue holds before blocks are dropped, in seconds."""

_STOP = object()  # queue sentinel: the stream is closed, flush and exit


def resolve_device(sd: ModuleType, device: int | str | None) -> InputDevice:
    """Find the input device meant by `device`.

    Args:
        sd: the sounddevice module.
        device: None for the default input device; an int (or a string of digits) for a
            PortAudio device index; otherwise a case-insensitive name substring (an exact
            name match wins over substring matches).

    Raises:
        AudioError: no input device, no default input, unknown index or name, or a name
            that matches several devices.
        TypeError: `device` is not None, int or str.
    """
    if isinstance(device, bool) or not isinstance(device, (int, str, type(None))):
        raise TypeError(f"device must be None, an index or a name, got {type(device).__name__}")
    devices = input_devices(sd)
    if not devices:
        raise AudioError("no audio input device found: connect a microphone, or use an audio file")
    if device is None:
        for d in devices:
            if d.is_default:
                return d
        raise AudioError(f"no default audio input device: choose one by index or name; {LIST_HINT}")
    if isinstance(device, str) and device.strip().isdigit():
        device = int(device)
    if isinstance(device, int):
        for d in devices:
            if d.index == device:
                return d
        raise AudioError(f"no input device with index {device}: {LIST_HINT}")
    query = device.strip().lower()
    exact = [d for d in devices if d.name.lower() == query]
    matches = exact or [d for d in devices if query in d.name.lower()]
    if not matches:
        names = ", ".join(repr(d.name) for d in devices)
        raise AudioError(f"no input device matches {device!r} (input devices: {names}): {LIST_HINT}")
    if len(matches) > 1:
        names = ", ".join(f"{d.index} {d.name!r}" for d in matches)
        raise AudioError(
            f"device name {device!r} matches {len(matches)} input devices ({names}): "
            "give the index or a longer part of the name"
        )
    return matches[0]


def choose_settings(
    sd: ModuleType, dev: InputDevice, samplerate: float | None, channels: int | None
) -> tuple[float, int]:
    """Pick (sample rate in Hz, channels) to open `dev` with.

    Tries 16 kHz first (no resampling), then the device's default rate, each with 1, 2
    and all the device's channels (mono first: no downmix); a given `samplerate` or
    `channels` replaces those candidates.
    The first setting PortAudio accepts (`check_input_settings`, float32) wins.

    Raises:
        AudioError: the device accepts none of the candidates.
    """
    rates = [samplerate] if samplerate is not None else [TARGET_RATE, dev.default_samplerate]
    chans = [channels] if channels is not None else [1, min(2, dev.channels), dev.channels]
    tried: list[tuple[float, int]] = []
    last: Exception | None = None
    for rate in rates:
        for ch in chans:
            if (rate, ch) in tried:
                continue
            tried.append((rate, ch))
            try:
                sd.check_input_settings(device=dev.index, channels=ch, dtype="float32", samplerate=rate)
                return rate, ch
            except (sd.PortAudioError, ValueError) as exc:
                last = exc
    settings = ", ".join(f"{format_rate(r)} Hz x{c}" for r, c in tried)
    raise AudioError(
        f"input device {dev.index} {dev.name!r} supports none of {settings} ({one_line(last)}): "
        "pass a samplerate/channels it supports, or pick another device"
    )


class MicrophoneSource(AudioSource):
    """Captures an input device through PortAudio and delivers 16 kHz mono blocks.

    The device is resolved and its settings checked at construction (so errors come
    before any thread starts); the stream opens in `start()`. The device is opened at
    16 kHz mono when it supports that, else at its default rate and channel count, and
    the converter thread downmixes and resamples (libsoxr VHQ, streaming).

    Args:
        device: None (default input), a device index, or a name substring; see
            `resolve_device`.
        block_seconds: PortAudio block length in seconds (> 0); output blocks are at
            most this long.
        channels: force this input channel count (>= 1), else chosen automatically.
        samplerate: force this device rate in Hz (> 0), else chosen automatically.
        latency: PortAudio latency: "low", "high" or seconds.

    Raises:
        AudioError: PortAudio is missing, or the device is missing, unknown, ambiguous
            or supports no usable setting.
        ValueError / TypeError: on out-of-range or mistyped arguments.

    Threads: the PortAudio callback thread copies blocks into a queue of about
    `QUEUE_SECONDS`; the converter thread calls the sink. `stop()` closes the stream,
    lets the converter deliver what was captured plus the resampler tail, and joins it.
    """

    def __init__(
        self,
        device: int | str | None = None,
        *,
        block_seconds: float = 0.02,
        channels: int | None = None,
        samplerate: float | None = None,
        latency: str | float = "low",
    ) -> None:
        if not (block_seconds > 0 and math.isfinite(block_seconds)):
            raise ValueError(f"block_seconds must be a positive number, got {block_seconds!r}")
        if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
            raise ValueError(f"channels must be an integer >= 1 or None, got {channels!r}")
        if samplerate is not None and not (samplerate > 0 and math.isfinite(samplerate)):
            raise ValueError(f"samplerate must be a positive number of Hz or None, got {samplerate!r}")
        if not (latency in ("low", "high") or (isinstance(latency, (int, float)) and latency >= 0)):
            raise ValueError(f"latency must be 'low', 'high' or seconds >= 0, got {latency!r}")
        sd = import_sounddevice()
        dev = resolve_device(sd, device)
        if channels is not None and channels > dev.channels:
            raise AudioError(
                f"input device {dev.index} {dev.name!r} has {dev.channels} input channel(s), "
                f"{channels} were asked for: ask for fewer channels"
            )
        rate, ch = choose_settings(sd, dev, samplerate, channels)
        super().__init__(dev.name, rate, ch)
        self.device = dev
        self.block_seconds = block_seconds
        self.latency = latency
        self.blocksize = max(1, round(block_seconds * rate))
        self._sd = sd
        self._queue: queue.Queue = queue.Queue(maxsize=max(4, math.ceil(QUEUE_SECONDS / block_seconds)))
        self._stream = None
        self._thread: threading.Thread | None = None
        self._state_lock = threading.Lock()
        self._stopping = False

    def describe(self) -> str:
        """E.g. 'mic "pulse" 48000 Hz x2 -> 16 kHz mono'."""
        return f'mic "{self._name}" {format_rate(self._input_rate)} Hz x{self._input_channels} -> 16 kHz mono'

    def start(self, sink: Sink) -> None:
        """Open the input stream and start capturing into `sink`; returns at once.

        Raises:
            AudioError: PortAudio cannot open or start the stream (device busy,
                disconnected, setting refused...).
            RuntimeError: the source was already started or stopped.
        """
        with self._state_lock:
            if self._stream is not None or self._stopping:
                raise RuntimeError("MicrophoneSource.start() may be called once")
            sd = self._sd
            where = (
                f"input device {self.device.index} {self.device.name!r} at "
                f"{format_rate(self._input_rate)} Hz x{self._input_channels}"
            )
            try:
                self._stream = sd.InputStream(
                    device=self.device.index,
                    samplerate=self._input_rate,
                    channels=self._input_channels,
                    dtype="float32",
                    blocksize=self.blocksize,
                    latency=self.latency,
                    callback=self._callback,
                    finished_callback=self._on_stream_finished,
                )
            except (sd.PortAudioError, ValueError) as exc:
                raise AudioError(
                    f"cannot open {where}: {one_line(exc)}; check that no other program holds "
                    f"it, or pick another device ({LIST_HINT})"
                ) from exc
            conv = BlockConverter(self._input_rate, self._input_channels, self.block_seconds)
            self._thread = threading.Thread(
                target=self._convert, args=(conv, sink), name="wavlm-live-mic-converter", daemon=True
            )
            self._thread.start()
            try:
                self._stream.start()
            except sd.PortAudioError as exc:
                self._stopping = True
                self._close_stream()
                self._queue.put(_STOP)
                self._thread.join()
                self.finished.set()
                raise AudioError(f"cannot start {where}: {one_line(exc)}; pick another device ({LIST_HINT})") from exc

    def _callback(self, indata: np.ndarray, frames: int, time_info, status) -> None:
        """PortAudio callback (audio thread): count flags, copy the block, return."""
        if status and status.input_overflow:
            self._overflows += 1
        try:
            self._queue.put_nowait(indata.copy())
        except queue.Full:
            self._dropped_blocks += 1

    def _on_stream_finished(self) -> None:
        """PortAudio calls this when the stream becomes inactive, stopped or not."""
        if not self._stopping:
            self._fail(
                AudioError(
                    f'the input stream of "{self._name}" stopped unexpectedly (device disconnected '
                    f"or failed): reconnect it or pick another device ({LIST_HINT})"
                )
            )

    def _convert(self, conv: BlockConverter, sink: Sink) -> None:
        """Converter thread: drain the queue until _STOP, then flush the resampler."""
        failed = False
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            if failed:
                continue  # keep draining so the callback never blocks; stop() ends us
            try:
                blocks, repaired = conv.process(item)
                if repaired:
                    self._count(sanitised=repaired)
                self._deliver(sink, blocks)
            except AudioError as exc:
                failed = True
                self._fail(exc)
        if not failed:
            try:
                self._deliver(sink, conv.flush())
            except AudioError as exc:
                self._fail(exc)

    def _deliver(self, sink: Sink, blocks: list[np.ndarray]) -> None:
        for block in blocks:
            try:
                sink(block)
            except Exception as exc:  # the sink's bug must not vanish silently
                raise AudioError(f"the audio sink raised {exc!r}; capture stopped") from exc
            self._count(block)

    def _close_stream(self) -> None:
        stream = self._stream
        if stream is None:
            return
        try:
            stream.stop()
        except Exception:  # a failed device still has to be closed
            pass
        try:
            stream.close()
        except Exception as exc:
            if self.error is None:
                self.error = AudioError(f'closing the input stream of "{self._name}" failed: {one_line(exc)}')

    def stop(self) -> None:
        """Close the stream, deliver the captured rest, join the converter; idempotent.

        The sink is not called after this returns, except when stop() is called from
        the sink itself: then the converter thread delivers the blocks already captured
        after the sink returns, and exits.
        """
        with self._state_lock:
            if self._stopping:
                return
            self._stopping = True
            self._close_stream()
            thread = self._thread
        if thread is threading.current_thread():  # called from the sink: only request it
            try:
                self._queue.put_nowait(_STOP)
            except queue.Full:  # we are the only consumer: make room by dropping a block
                self._queue.get_nowait()
                self._dropped_blocks += 1
                self._queue.put_nowait(_STOP)
        elif thread is not None:
            self._queue.put(_STOP)  # no producer is left; the converter drains the queue
            thread.join()
        self.finished.set()
