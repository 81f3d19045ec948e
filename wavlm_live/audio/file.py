"""Replay an audio file as a 16 kHz mono source, paced like a microphone or faster."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from .base import TARGET_RATE, AudioError, AudioSource, Sink, format_rate, one_line
from .resample import BlockConverter


def _open(path: Path) -> sf.SoundFile:
    """Open `path` for reading with libsndfile, turning every failure into AudioError."""
    if not path.exists():
        raise AudioError(f"audio file not found: {path}")
    if path.is_dir():
        raise AudioError(f"cannot read audio file {path}: it is a directory, give a file")
    if not os.access(path, os.R_OK):
        raise AudioError(f"cannot read audio file {path}: permission denied")
    if path.stat().st_size == 0:
        raise AudioError(f"audio file {path} is empty (0 bytes)")
    try:
        return sf.SoundFile(path)
    except sf.LibsndfileError as exc:
        raise AudioError(
            f"cannot decode audio file {path}: {one_line(exc)} "
            "(corrupt or unsupported format: convert it to WAV or FLAC)"
        ) from exc
    except OSError as exc:
        raise AudioError(f"cannot read audio file {path}: {one_line(exc)}") from exc


class FileSource(AudioSource):
    """Replays any file libsndfile reads (WAV, FLAC, OGG, ...) as 16 kHz mono blocks.

    The file is downmixed, sanitised and resampled (libsoxr VHQ, streaming) block by
    block. With `start(sink)` a pacing thread delivers block k when its last sample is
    due: at `t0 + end_sample / (16000 * speed)` seconds, like a microphone that hands
    over each block once it has been recorded. If the sink is slow the schedule is kept
    and later blocks follow without waiting until it is caught up.

    Args:
        path: the audio file.
        speed: replay speed relative to real time (> 0; 1.0 = real time), or None for
            as fast as the sink takes blocks.
        loop: start over at the end of the file instead of ending (the stream continues
            without a gap or a resampler reset).
        block_seconds: input is read in blocks of this many seconds; output blocks are
            at most this long (> 0).

    Raises:
        AudioError: the file is missing, unreadable, corrupt, unsupported or empty.
        ValueError: on a non-positive speed or block_seconds.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        speed: float | None = 1.0,
        loop: bool = False,
        block_seconds: float = 0.02,
    ) -> None:
        if speed is not None and not (speed > 0 and math.isfinite(speed)):
            raise ValueError(f"speed must be a positive number or None, got {speed!r}")
        if not block_seconds > 0:
            raise ValueError(f"block_seconds must be > 0, got {block_seconds!r}")
        self.path = Path(path)
        with _open(self.path) as f:
            rate, channels, frames = f.samplerate, f.channels, f.frames
        if frames <= 0:
            raise AudioError(f"audio file {self.path} has no audio samples")
        super().__init__(self.path.name, rate, channels)
        self.speed = speed
        self.loop = loop
        self.block_seconds = block_seconds
        self.input_frames = frames
        self.num_samples = round(frames * TARGET_RATE / rate)
        """Length of one pass through the file at 16 kHz, in samples."""
        self.duration = self.num_samples / TARGET_RATE
        """Length of one pass through the file at 16 kHz, in seconds."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop_lock = threading.Lock()

    def describe(self) -> str:
        """E.g. 'file x.wav 44100 Hz x2, 12.3 s' (plus ', looped' / speed when set)."""
        text = (
            f"file {self._name} {format_rate(self._input_rate)} Hz x{self._input_channels}, "
            f"{self.duration:.1f} s"
        )
        if self.speed is None:
            text += ", as fast as possible"
        elif self.speed != 1.0:
            text += f", speed x{self.speed:g}"
        return text + (", looped" if self.loop else "")

    def _generate(self) -> Iterator[np.ndarray]:
        """Yield 16 kHz mono float32 blocks; count repaired samples; raise AudioError."""
        conv = BlockConverter(self._input_rate, self._input_channels, self.block_seconds)
        frames = max(1, round(self.block_seconds * self._input_rate))
        position = 0
        with _open(self.path) as f:
            while not self._stop.is_set():
                try:
                    data = f.read(frames, dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError) as exc:
                    raise AudioError(
                        f"error decoding audio file {self.path} after "
                        f"{position / self._input_rate:.2f} s: {one_line(exc)}"
                    ) from exc
                if len(data) == 0:
                    if self.loop and position > 0:
                        f.seek(0)
                        position = 0
                        continue
                    break
                position += len(data)
                blocks, repaired = conv.process(data)
                if repaired:
                    self._count(sanitised=repaired)
                yield from blocks
        if not self._stop.is_set():
            yield from conv.flush()

    def blocks(self) -> Iterator[np.ndarray]:
        """Yield the file's 16 kHz mono float32 blocks synchronously, without pacing.

        For offline use (no thread). Endless when `loop` is true. Each yielded block is
        counted in `stats()`.

        Raises:
            AudioError: the file cannot be opened or decoded.
        """
        for block in self._generate():
            self._count(block)
            yield block

    def start(self, sink: Sink) -> None:
        """Start the pacing thread that feeds `sink`; see the class docstring.

        At the end of the file (without loop) the thread sets `finished` and exits; a
        decoding error or an exception raised by the sink sets `error` first.

        Raises:
            RuntimeError: the source was already started or stopped.
        """
        with self._stop_lock:
            if self._thread is not None or self._stop.is_set():
                raise RuntimeError("FileSource.start() may be called once")
            self._thread = threading.Thread(
                target=self._run, args=(sink,), name="wavlm-live-file-source", daemon=True
            )
        self._thread.start()

    def _run(self, sink: Sink) -> None:
        t0 = time.monotonic()
        delivered = 0
        try:
            for block in self._generate():
                if self.speed is not None:
                    due = t0 + (delivered + len(block)) / (TARGET_RATE * self.speed)
                    wait = due - time.monotonic()
                    if wait > 0 and self._stop.wait(wait):
                        break
                if self._stop.is_set():
                    break
                try:
                    sink(block)
                except Exception as exc:  # the sink's bug must not vanish silently
                    raise AudioError(f"the audio sink raised {exc!r}; source stopped") from exc
                delivered += len(block)
                self._count(block)
        except AudioError as exc:
            self._fail(exc)
        finally:
            self.finished.set()

    def stop(self) -> None:
        """Stop the pacing thread and close the file; idempotent; safe before start().

        Blocks until the thread has exited, so the sink is not called after this returns
        (unless stop() is called from within the sink itself).
        """
        with self._stop_lock:
            self._stop.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self.finished.set()
