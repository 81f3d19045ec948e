"""Speech gating: Silero VAD run incrementally per stream, so windows without speech skip every model.

`silero-vad <https://github.com/snakers4/silero-vad>`_ (MIT) ships its weights inside its
PyPI package (``silero_vad/data/silero_vad.jit``, no download). Its model is recurrent: it
reads 512-sample chunks (32 ms at 16 kHz) one after the other and keeps its state between
them, so each stream has its own :class:`SpeechGate` with its own model instance, fed with
the stream's new audio whenever the scheduler takes a window (:meth:`SpeechGate.advance`,
in the scheduler's thread, never in the producer's).

A chunk is speech with the hysteresis of silero's ``get_speech_timestamps`` /
``VADIterator``: speech starts at a probability >= ``threshold`` and ends after
``min_silence_seconds`` below ``threshold - 0.15``; every speech region is then padded by
``pad_seconds`` after its end. A window holds speech when a speech region starts before
its end and, padded, reaches into it (:meth:`SpeechGate.has_speech`); the engine feeds the
gate up to the window's end only, so the decision does not depend on how much later audio
had arrived.

Importing ``silero_vad`` calls ``torch.set_num_threads(1)`` for the whole process
(``silero_vad/model.py``); :func:`load_vad_model` restores the thread count.
"""

from __future__ import annotations

import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from wavlm_live.timegrid import HOP_SAMPLES, RECEPTIVE_FIELD, SAMPLE_RATE, frames_for_samples

CHUNK_SAMPLES = 512
"""Samples per VAD step at 16 kHz (the only chunk size silero-vad v5+ takes at 16 kHz)."""

_LOCK = threading.Lock()
_MODEL_FILE: str | None = None


@dataclass(frozen=True)
class VADConfig:
    """Settings of the speech gate.

    Attributes:
        threshold: speech probability at or above which a chunk starts speech (silero's
            default, 0.5); speech goes on until the probability falls below
            ``threshold - 0.15``.
        min_silence_seconds: silence that must last before a speech region ends
            (silero's ``min_silence_duration_ms``, 100 ms).
        pad_seconds: padding after the end of each speech region, seconds (a region
            that starts after a window's end never counts for it: see
            :meth:`SpeechGate.has_speech`). Larger than silero's 30 ms: a skipped window
            loses all its model outputs, so the gate errs towards running the models.
        history_seconds: chunk decisions kept per stream (at least the ring buffer).
    """

    threshold: float = 0.5
    min_silence_seconds: float = 0.1
    pad_seconds: float = 0.25
    history_seconds: float = 120.0

    def __post_init__(self) -> None:
        if not 0.15 < self.threshold < 1:
            raise ValueError(f"VAD threshold must be within (0.15, 1), got {self.threshold!r}")
        if self.min_silence_seconds < 0 or self.pad_seconds < 0 or not self.history_seconds > 0:
            raise ValueError("VAD seconds must be >= 0 (history > 0)")


def load_vad_model() -> Any:
    """A fresh Silero VAD model (TorchScript, CPU, eval mode) with its own state.

    The file comes from the installed ``silero-vad`` package. The process's intra-op
    thread count (``torch.get_num_threads()``) is the same after the call as before,
    although importing ``silero_vad`` sets it to 1.

    Raises:
        RuntimeError: ``silero-vad`` is not installed (it is a dependency of wavlm-live).
    """
    global _MODEL_FILE
    with _LOCK:
        if _MODEL_FILE is None:
            threads = torch.get_num_threads()
            try:
                import silero_vad  # noqa: PLC0415 - sets torch's thread count as a side effect
                from importlib import resources  # noqa: PLC0415
            except ImportError as exc:  # pragma: no cover - a declared dependency
                raise RuntimeError(f"speech gating needs the silero-vad package ({exc})") from None
            finally:
                torch.set_num_threads(threads)
            _MODEL_FILE = str(resources.files("silero_vad.data").joinpath("silero_vad.jit"))
            del silero_vad
        path = _MODEL_FILE
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript loading; silero ships TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(path, map_location="cpu")
    model.eval()
    return model


class SpeechGate:
    """One stream's voice activity, chunk by chunk, and the speech test of its windows.

    Args:
        config: gate settings.
        model: a Silero VAD model of this stream alone (default: :func:`load_vad_model`).

    Attributes:
        position: absolute sample index up to which audio has been read (a multiple of
            :data:`CHUNK_SAMPLES`).
        seconds: compute seconds spent in the model so far.

    Not thread-safe: the stream's analysis thread (the scheduler's) owns it.
    """

    def __init__(self, config: VADConfig | None = None, model: Any = None) -> None:
        self.config = config or VADConfig()
        self.model = model if model is not None else load_vad_model()
        self.model.reset_states()
        self.position = 0
        self.seconds = 0.0
        self._triggered = False
        self._quiet = 0  # samples below the low threshold since speech last held
        self._regions: list[list[int]] = []  # [start, end) speech sample spans, unpadded, in order
        self._min_silence = int(round(self.config.min_silence_seconds * SAMPLE_RATE))
        self._pad = int(round(self.config.pad_seconds * SAMPLE_RATE))
        self._history = int(round(self.config.history_seconds * SAMPLE_RATE))

    @torch.inference_mode()
    def advance(self, audio: np.ndarray) -> None:
        """Read the next samples of the stream (float32 ``[n]`` at 16 kHz, starting at
        :attr:`position`; ``n`` a multiple of :data:`CHUNK_SAMPLES`).

        The model runs with one intra-op thread (the thread count is restored after):
        its steps are tiny, and with two threads on a loaded 2-core machine OpenMP's
        hand-offs made it 50x slower (measured: 75-220 ms against 1.3 ms per chunk).

        Raises:
            ValueError: ``n`` is not a multiple of the chunk size.
        """
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size % CHUNK_SAMPLES:
            raise ValueError(f"VAD input must be a multiple of {CHUNK_SAMPLES} samples, got {audio.size}")
        if audio.size == 0:
            return
        t0 = time.perf_counter()
        threads = torch.get_num_threads()
        if threads != 1:
            torch.set_num_threads(1)
        try:
            probs = [float(self.model(row[None], SAMPLE_RATE)) for row in torch.from_numpy(audio).reshape(-1, CHUNK_SAMPLES)]
        finally:
            if threads != 1:
                torch.set_num_threads(threads)
        low = self.config.threshold - 0.15
        for p in probs:
            start = self.position
            self.position += CHUNK_SAMPLES
            if p >= self.config.threshold:
                self._quiet = 0
                if self._triggered:
                    self._regions[-1][1] = self.position
                else:
                    self._triggered = True
                    self._regions.append([start, self.position])
            elif self._triggered:
                if p < low:
                    self._quiet += CHUNK_SAMPLES
                    if self._quiet >= self._min_silence:
                        self._triggered = False
                        self._quiet = 0
                else:
                    self._quiet = 0
                if self._triggered:
                    self._regions[-1][1] = self.position
        oldest = self.position - self._history
        while self._regions and self._regions[0][1] < oldest:
            self._regions.pop(0)
        self.seconds += time.perf_counter() - t0

    def restart(self, position: int) -> None:
        """Go on from ``position`` (a multiple of :data:`CHUNK_SAMPLES`) with a fresh model
        state, after audio the gate could not read (overwritten in the ring): the
        regions read so far stay."""
        if position % CHUNK_SAMPLES:
            raise ValueError(f"VAD position must be a multiple of {CHUNK_SAMPLES}, got {position}")
        self.model.reset_states()
        self.position = position
        self._triggered = False
        self._quiet = 0

    def has_speech(self, start: int, end: int) -> bool:
        """Whether samples ``[start, end)`` (absolute indices) touch a speech region
        that starts before ``end`` and ends, padded by ``pad_seconds``, after ``start``.
        A region starting after ``end`` never counts, even within its padding and even
        when the gate has read that far, so the answer does not depend on how much audio
        after the window had been read. Audio not read yet counts as speech only through
        the padding of a region that is still open (speech going on at :attr:`position`)."""
        for a, b in reversed(self._regions):
            if b + self._pad <= start:
                return False
            if a < end:
                return True
        return False

    def speech_frames(self, start: int, end: int) -> np.ndarray:
        """Which WavLM frames of samples ``[start, end)`` (a window: ``start`` a multiple
        of 320) lie in speech: bool ``[frames_for_samples(end - start)]``, frame ``i``
        (centre ``start + 320 i + 200``) True when its centre is within ``pad_seconds`` of
        a speech region that starts before ``end`` (the regions :meth:`has_speech` counts,
        padded on both sides)."""
        n = frames_for_samples(end - start)
        centres = start + np.arange(n) * HOP_SAMPLES + RECEPTIVE_FIELD // 2
        mask = np.zeros(n, bool)
        for a, b in self._regions:
            if a >= end:
                break
            if b + self._pad <= start:
                continue
            mask |= (centres >= a - self._pad) & (centres < b + self._pad)
        return mask

    def speech_regions(self) -> list[tuple[int, int]]:
        """The speech regions kept, ``(start, end)`` sample spans without padding."""
        return [(a, b) for a, b in self._regions]
