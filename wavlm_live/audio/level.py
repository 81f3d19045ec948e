"""RMS and peak level meter in dBFS over fixed intervals, for the dashboard."""

from __future__ import annotations

import math

import numpy as np

from .base import TARGET_RATE

SILENCE_DB = -120.0
"""Floor of the meter in dBFS: digital silence reads this instead of -inf."""


def to_dbfs(amplitude: float) -> float:
    """Convert a linear amplitude (1.0 = full scale) to dBFS, floored at -120 dB.

    dBFS here is 20 * log10(amplitude), so a full-scale sine reads 0 dBFS peak and
    -3.01 dBFS RMS (the convention of most meters; AES17 instead adds +3.01 dB to RMS).
    """
    if amplitude <= 0.0:
        return SILENCE_DB
    return max(SILENCE_DB, 20.0 * math.log10(amplitude))


class LevelMeter:
    """Accumulates blocks and reports RMS and peak level once per full interval.

    Intervals tile the stream: interval k covers samples [k * n, (k + 1) * n) with
    n = round(interval_s * sample_rate), whatever the block sizes are.

    Args:
        interval_s: interval length in seconds, > 0 and at least one sample.
        sample_rate: sample rate of the blocks in Hz (16000 for source output).

    Raises:
        ValueError: on a non-positive interval or sample rate.
    """

    def __init__(self, interval_s: float = 0.1, sample_rate: int = TARGET_RATE) -> None:
        if not sample_rate > 0:
            raise ValueError(f"sample_rate must be > 0 Hz, got {sample_rate!r}")
        if not interval_s > 0 or round(interval_s * sample_rate) < 1:
            raise ValueError(f"interval_s must cover at least one sample, got {interval_s!r}")
        self.interval = round(interval_s * sample_rate)
        self.sample_rate = sample_rate
        self._end = 0  # samples consumed so far
        self._count = 0  # samples in the open interval
        self._sum_sq = 0.0
        self._peak = 0.0

    def update(self, block: np.ndarray) -> list[tuple[int, float, float]]:
        """Add one block; return the intervals it completed.

        Args:
            block: 1-D float array of samples, full scale +-1 (finite).

        Returns:
            One (end_sample_index, rms_dbfs, peak_dbfs) tuple per interval completed by
            this block, oldest first; end_sample_index is the absolute index (since the
            meter's first sample) one past the interval's last sample.
        """
        x = np.asarray(block, dtype=np.float64).reshape(-1)
        out: list[tuple[int, float, float]] = []
        pos = 0
        while pos < len(x):
            take = min(self.interval - self._count, len(x) - pos)
            seg = x[pos : pos + take]
            self._sum_sq += float(np.dot(seg, seg))
            self._peak = max(self._peak, float(np.max(np.abs(seg))))
            self._count += take
            self._end += take
            pos += take
            if self._count == self.interval:
                rms = math.sqrt(self._sum_sq / self.interval)
                out.append((self._end, to_dbfs(rms), to_dbfs(self._peak)))
                self._count, self._sum_sq, self._peak = 0, 0.0, 0.0
        return out
