"""The time grid every part of wavlm-live shares: the model sample rate, the frame hop and
receptive field of the WavLM-family feature encoder, and the conversions between them.

WavLM, Wav2Vec2 and HuBERT read 16 kHz audio through 7 convolutions (kernels
10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2): frames are 320 samples (20 ms) apart and see 400
samples (25 ms), so ``n`` samples give ``floor((n - 400) / 320) + 1`` frames. Source:
transformers' ``_get_feat_extract_output_lengths``. Every sample rate, frame count and
frame time in the package comes from here.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
"""Model sample rate in Hz; every source resamples to it."""
HOP_SAMPLES = 320
"""Samples between WavLM frames (20 ms at 16 kHz)."""
RECEPTIVE_FIELD = 400
"""Samples seen by one WavLM frame (25 ms at 16 kHz)."""
FRAME_SECONDS = HOP_SAMPLES / SAMPLE_RATE
"""Frame period in seconds (0.02)."""


def frames_for_samples(n_samples: int) -> int:
    """Number of WavLM frames for ``n_samples`` samples: ``floor((n - 400) / 320) + 1``
    for ``n >= 400``, else 0.

    Raises:
        TypeError: not an integer.
        ValueError: a negative count.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)):
        raise TypeError(f"n_samples must be an int, got {type(n_samples).__name__}")
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    return 0 if n_samples < RECEPTIVE_FIELD else (int(n_samples) - RECEPTIVE_FIELD) // HOP_SAMPLES + 1


def snap_seconds(seconds: float) -> int:
    """Seconds to samples, rounded to the nearest multiple of 320 (at least 320)."""
    return max(HOP_SAMPLES, int(round(seconds * SAMPLE_RATE / HOP_SAMPLES)) * HOP_SAMPLES)


def seconds(samples: int) -> float:
    """Samples to seconds of stream time."""
    return samples / SAMPLE_RATE
