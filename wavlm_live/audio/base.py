"""The source contract shared by the microphone and file sources.

A source delivers 1-D float32 blocks of 16 kHz mono audio to a sink callable, from its own
thread, until it is stopped or ends. Stats are counted under a lock and read as snapshots.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from wavlm_live.timegrid import SAMPLE_RATE

TARGET_RATE = SAMPLE_RATE
"""Output sample rate of every source, in Hz (WavLM's input rate)."""

Sink = Callable[[np.ndarray], None]
"""Receives one block: a 1-D float32 array of 16 kHz mono samples."""


class AudioError(RuntimeError):
    """An audio source cannot open, read or keep running.

    The message is one line that names what failed and says what to do about it
    (install PortAudio, pick another device, convert the file...).
    """


@dataclass(frozen=True)
class SourceStats:
    """Snapshot of a source's counters.

    Attributes:
        name: what the source reads, as `describe()` says it.
        input_rate: sample rate the source is read at, in Hz (device or file rate).
        input_channels: channel count the source is read with (before the downmix).
        blocks: output blocks delivered so far.
        samples: output samples delivered so far (16 kHz mono).
        overflows: input overflows reported by the audio driver (audio was lost there).
        sanitised: input samples repaired because they were NaN/Inf (set to 0 or +-1)
            or outside [-1, 1] (clipped to +-1); counted per channel sample.
        dropped_blocks: input blocks dropped because the hand-off queue was full (the
            consumer fell behind the device).
    """

    name: str
    input_rate: float
    input_channels: int
    blocks: int = 0
    samples: int = 0
    overflows: int = 0
    sanitised: int = 0
    dropped_blocks: int = 0

    @property
    def seconds(self) -> float:
        """Output audio delivered so far, in seconds."""
        return self.samples / TARGET_RATE


class AudioSource(abc.ABC):
    """Base class of audio sources: delivers 16 kHz mono float32 blocks to a sink.

    Attributes:
        finished: set when the source has ended: end of file (without loop), `stop()`,
            or a fatal error.
        error: the `AudioError` that ended the source abnormally, else None. Errors in
            the sink are wrapped in an `AudioError` whose `__cause__` is the original.

    Thread contract: `start`, `stop`, `stats` and `describe` may be called from any
    thread; the sink is called from the source's own thread, one block at a time, never
    after `stop()` has returned.
    """

    def __init__(self, name: str, input_rate: float, input_channels: int) -> None:
        self.finished = threading.Event()
        self.error: AudioError | None = None
        self._name = name
        self._input_rate = input_rate
        self._input_channels = input_channels
        self._lock = threading.Lock()
        self._blocks = 0
        self._samples = 0
        self._sanitised = 0
        # Written only by the driver's callback thread (single writer), read under no lock.
        self._overflows = 0
        self._dropped_blocks = 0

    @abc.abstractmethod
    def start(self, sink: Sink) -> None:
        """Start delivering blocks to `sink`; returns at once.

        Raises:
            AudioError: the source cannot be opened.
            RuntimeError: the source was already started.
        """

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop the source, join its threads and close the device or file; idempotent."""

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for display, e.g. 'mic "pulse" 48000 Hz x2 -> 16 kHz mono'."""

    def stats(self) -> SourceStats:
        """Return a consistent snapshot of the counters (thread-safe)."""
        with self._lock:
            return SourceStats(
                name=self.describe(),
                input_rate=self._input_rate,
                input_channels=self._input_channels,
                blocks=self._blocks,
                samples=self._samples,
                overflows=self._overflows,
                sanitised=self._sanitised,
                dropped_blocks=self._dropped_blocks,
            )

    def _count(self, block: np.ndarray | None = None, sanitised: int = 0) -> None:
        """Count one delivered block and/or repaired input samples."""
        with self._lock:
            if block is not None:
                self._blocks += 1
                self._samples += len(block)
            self._sanitised += sanitised

    def _fail(self, error: AudioError) -> None:
        """Record the first fatal error and mark the source finished."""
        if self.error is None:
            self.error = error
        self.finished.set()


def one_line(exc: BaseException) -> str:
    """Return `str(exc)` with all whitespace runs collapsed, for one-line messages."""
    return " ".join(str(exc).split()) or type(exc).__name__


def format_rate(rate: float) -> str:
    """Format a rate in Hz without a trailing '.0' (44100.0 -> '44100')."""
    return f"{rate:g}" if rate != int(rate) else str(int(rate))
