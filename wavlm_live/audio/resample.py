"""Downmix, sanitise and resample audio to 16 kHz mono, whole arrays or block by block.

Resampling uses libsoxr (python-soxr) at its "VHQ" quality (SOXR_28_BITQ), the recipe of
SoX's `rate -v`: linear phase, 95 % band-width, 175 dB rejection (SoX rate effect manual).
The streaming form (`soxr.ResampleStream`) keeps the filter state across blocks, so the
concatenated block outputs equal the one-shot resample of the whole signal: no clicks at
block boundaries. libsoxr emits its output in bursts of about 70-100 ms; `BlockConverter`
splits them into blocks of at most `block_seconds`.
"""

from __future__ import annotations

import numpy as np
import soxr

from .base import TARGET_RATE

QUALITY = "VHQ"
"""libsoxr quality recipe used everywhere in this package."""


def downmix(x: np.ndarray) -> np.ndarray:
    """Average the channels of `x` into one.

    Args:
        x: float array, shape [frames] (returned as is) or [frames, channels].

    Returns:
        1-D float32 array of shape [frames], C-contiguous.

    Raises:
        ValueError: `x` has more than 2 dimensions.
    """
    if x.ndim == 1:
        return np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"audio must have shape [frames] or [frames, channels], got {x.shape}")
    if x.shape[1] == 1:
        return np.ascontiguousarray(x[:, 0], dtype=np.float32)
    return x.mean(axis=1, dtype=np.float32)


def sanitise(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Repair samples a float audio stream should not carry.

    NaN becomes 0, +Inf/-Inf become +1/-1, and values outside [-1, 1] are clipped to +-1.
    Clean input (the common case) is returned as is after one max-abs pass, without a copy.

    Args:
        x: float32 array of samples, any shape.

    Returns:
        (repaired array, number of repaired samples). The input is never modified.
    """
    peak = np.max(np.abs(x)) if x.size else 0.0
    if peak <= 1.0:  # False for NaN as well
        return x, 0
    bad = ~(np.abs(x) <= 1.0)
    fixed = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    np.clip(fixed, -1.0, 1.0, out=fixed)
    return fixed, int(np.count_nonzero(bad))


def resample_to_16k_mono(x: np.ndarray, rate: float) -> np.ndarray:
    """Downmix and resample a whole signal to 16 kHz mono in one shot (libsoxr VHQ).

    No sanitising: the input is expected to be finite.

    Args:
        x: float array, shape [frames] or [frames, channels], full scale +-1.
        rate: sample rate of `x` in Hz, > 0.

    Returns:
        1-D float32 array of round(frames * 16000 / rate) samples (a new array).

    Raises:
        ValueError: `rate` is not positive or `x` has more than 2 dimensions.
    """
    if not rate > 0:
        raise ValueError(f"sample rate must be > 0 Hz, got {rate!r}")
    mono = downmix(np.asarray(x, dtype=np.float32))
    if rate == TARGET_RATE:
        return mono.copy() if np.shares_memory(mono, x) else mono
    return soxr.resample(mono, rate, TARGET_RATE, quality=QUALITY).astype(np.float32, copy=False)


class BlockConverter:
    """Stateful block converter: sanitise, downmix and stream-resample to 16 kHz mono.

    Feed consecutive input blocks to `process`, then call `flush` once at the end of the
    stream to get the resampler's tail. The concatenation of all returned blocks equals
    `resample_to_16k_mono` of the concatenated (sanitised) input. Not thread-safe: one
    thread drives one converter.

    Args:
        rate: input sample rate in Hz, > 0. At 16000 Hz no resampling is done.
        channels: input channel count, >= 1.
        block_seconds: output blocks are split to at most this long (at least 1 sample).
    """

    def __init__(self, rate: float, channels: int, block_seconds: float) -> None:
        if not rate > 0:
            raise ValueError(f"sample rate must be > 0 Hz, got {rate!r}")
        if channels < 1:
            raise ValueError(f"channel count must be >= 1, got {channels}")
        if not block_seconds > 0:
            raise ValueError(f"block_seconds must be > 0, got {block_seconds!r}")
        self.rate = rate
        self.channels = channels
        self.max_block = max(1, round(block_seconds * TARGET_RATE))
        self._stream = (
            None
            if rate == TARGET_RATE
            else soxr.ResampleStream(rate, TARGET_RATE, 1, dtype="float32", quality=QUALITY)
        )

    def process(self, block: np.ndarray) -> tuple[list[np.ndarray], int]:
        """Convert one input block.

        Args:
            block: float32 array, shape [frames, channels] (or [frames] when mono).

        Returns:
            (output blocks, repaired sample count). Output blocks are 1-D float32 16 kHz
            mono, non-empty, each at most `block_seconds` long; the list may be empty
            while the resampler fills its filter.

        Raises:
            ValueError: the block's channel count is not the converter's.
        """
        x = np.asarray(block, dtype=np.float32)
        found = 1 if x.ndim == 1 else x.shape[-1]
        if found != self.channels or x.ndim > 2:
            raise ValueError(f"expected blocks of {self.channels} channel(s), got shape {x.shape}")
        x, repaired = sanitise(x)
        mono = downmix(x)
        if self._stream is not None:
            mono = self._stream.resample_chunk(mono)
        return self._split(mono), repaired

    def flush(self) -> list[np.ndarray]:
        """End the stream: return the resampler's remaining output blocks (maybe none)."""
        if self._stream is None:
            return []
        tail = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        return self._split(tail)

    def _split(self, y: np.ndarray) -> list[np.ndarray]:
        n = self.max_block
        return [y[i : i + n] for i in range(0, len(y), n)]
