"""Preallocated ring buffer of 16 kHz mono audio indexed by absolute sample number."""

from __future__ import annotations

import threading
import time

import numpy as np

from wavlm_live.timegrid import SAMPLE_RATE


class OverwrittenError(LookupError):
    """The requested audio was already overwritten by newer samples (the reader fell
    more than the buffer's capacity behind the writer)."""


class RingBuffer:
    """Fixed-size float32 audio store for one producer thread and any number of readers.

    Samples are addressed by their absolute index since the stream started (sample ``i``
    is at ``i / sample_rate`` seconds). The buffer keeps the newest ``capacity`` samples;
    writing never blocks and never allocates.

    Overwrite accounting: the consumer calls :meth:`release` with the first sample it still
    needs; samples at or after that index that get overwritten before being released are
    counted in :attr:`overwritten` (audio lost to a slow consumer). A single write longer
    than the capacity keeps only its newest ``capacity`` samples and is counted in
    :attr:`oversize_writes` (its dropped head is counted in :attr:`overwritten` too).

    Thread safety: one writer thread (``write``/``close``), any number of reader threads.
    The lock is held only for the copy. Readers can block in :meth:`wait_for` until a given
    sample index has been written or the stream is closed.

    Args:
        seconds: capacity in seconds (> 0).
        sample_rate: samples per second (Hz), 16000 for WavLM.

    Raises:
        ValueError: non-positive capacity or sample rate.
    """

    def __init__(self, seconds: float, sample_rate: int = SAMPLE_RATE) -> None:
        if not seconds > 0:
            raise ValueError(f"ring buffer capacity must be > 0 seconds, got {seconds!r}")
        if sample_rate <= 0:
            raise ValueError(f"sample rate must be > 0 Hz, got {sample_rate!r}")
        self.sample_rate = int(sample_rate)
        self.capacity = int(round(seconds * sample_rate))
        self._data = np.zeros(self.capacity, dtype=np.float32)
        self._written = 0  # absolute index one past the newest sample
        self._released = 0  # consumer no longer needs samples before this index
        self._closed = False
        self._last_write_wall = 0.0
        self.overwritten = 0
        self.oversize_writes = 0
        self._cond = threading.Condition(threading.Lock())

    @property
    def written(self) -> int:
        """Absolute index one past the newest written sample (= samples written so far)."""
        return self._written

    @property
    def closed(self) -> bool:
        """True once the producer called :meth:`close` (no more samples will come)."""
        return self._closed

    @property
    def oldest(self) -> int:
        """Absolute index of the oldest sample still held."""
        return max(0, self._written - self.capacity)

    @property
    def last_write_wall(self) -> float:
        """``time.monotonic()`` of the newest write (0.0 before the first)."""
        return self._last_write_wall

    def write(self, block: np.ndarray) -> None:
        """Append ``block`` (1-D, float32-convertible samples) after the newest sample.

        Raises:
            ValueError: the block is not 1-D, or the buffer is closed.
        """
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 1:
            raise ValueError(f"ring buffer takes 1-D mono blocks, got shape {block.shape}")
        n = block.shape[0]
        if n == 0:
            return
        with self._cond:
            if self._closed:
                raise ValueError("ring buffer is closed")
            start = self._written
            if n > self.capacity:
                self.oversize_writes += 1
                block = block[-self.capacity :]
                start += n - self.capacity
            end = self._written + n
            # Samples pushed out: [old_oldest, new_oldest); count the ones still needed.
            lost_from = max(self._released, self.oldest)
            lost_to = max(0, end - self.capacity)
            if lost_to > lost_from:
                self.overwritten += lost_to - lost_from
            m = block.shape[0]
            i = start % self.capacity
            first = min(m, self.capacity - i)
            self._data[i : i + first] = block[:first]
            if first < m:
                self._data[: m - first] = block[first:]
            self._written = end
            self._last_write_wall = time.monotonic()
            self._cond.notify_all()

    def close(self) -> None:
        """Mark the end of the stream and wake every waiting reader."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def release(self, upto: int) -> None:
        """Tell the buffer that samples before absolute index ``upto`` are no longer
        needed (used for overwrite accounting only)."""
        with self._cond:
            self._released = max(self._released, int(upto))

    def read(self, start: int, end: int) -> np.ndarray:
        """Copy samples ``[start, end)`` (absolute indices) into a new float32 array.

        Raises:
            ValueError: ``start > end``, negative indices, or ``end`` beyond the newest
                written sample.
            OverwrittenError: part of the range was already overwritten.
        """
        if start < 0 or end < start:
            raise ValueError(f"bad sample range [{start}, {end})")
        with self._cond:
            if end > self._written:
                raise ValueError(f"samples up to {end} requested but only {self._written} written")
            if start < self.oldest:
                raise OverwrittenError(
                    f"samples from {start} requested but the buffer only holds {self.oldest}..{self._written}"
                )
            out = np.empty(end - start, dtype=np.float32)
            i = start % self.capacity
            first = min(end - start, self.capacity - i)
            out[:first] = self._data[i : i + first]
            if first < end - start:
                out[first:] = self._data[: end - start - first]
            return out

    def wait_for(self, index: int, timeout: float | None = None) -> bool:
        """Block until sample ``index - 1`` is written (``written >= index``) or the buffer
        is closed; returns True when ``written >= index``. ``timeout`` in seconds."""
        with self._cond:
            self._cond.wait_for(lambda: self._written >= index or self._closed, timeout)
            return self._written >= index
