"""Raw PCM from the network: interleaved sample frames to 16 kHz mono float32 blocks.

A client session sends binary websocket frames of interleaved little-endian samples in
one of :data:`PCM_FORMATS`; :class:`PcmStream` checks and decodes each frame, then
sanitises, down-mixes and stream-resamples it with the same :class:`BlockConverter`
(libsoxr VHQ) the file and microphone sources use, so a session fed with a file's samples
sees exactly the audio that replaying the file gives.
"""

from __future__ import annotations

import numpy as np

from .resample import BlockConverter

PCM_FORMATS: dict[str, np.dtype] = {
    "pcm_s16le": np.dtype("<i2"),
    "f32le": np.dtype("<f4"),
}
"""Accepted sample formats: signed 16-bit and 32-bit float, little-endian, interleaved."""

MIN_RATE = 8000
"""Lowest accepted input sample rate in Hz (telephone audio)."""
MAX_RATE = 192000
"""Highest accepted input sample rate in Hz (studio interfaces)."""
MAX_CHANNELS = 8
"""Most interleaved channels accepted."""


class PcmError(ValueError):
    """A frame that cannot be decoded in the session's format (the message says why)."""


class PcmStream:
    """Decoder and converter of one session's binary audio frames.

    Args:
        sample_rate: input sample rate in Hz, in [MIN_RATE, MAX_RATE].
        channels: interleaved channels, in [1, MAX_CHANNELS].
        format: a key of :data:`PCM_FORMATS`.
        block_seconds: longest output block in seconds.

    Attributes:
        frames: input frames (samples per channel) decoded so far.
        nonfinite: NaN/Inf input samples seen (``f32le`` only); they and samples outside
            [-1, 1] are repaired by the converter and counted in ``sanitised``.
        sanitised: input samples repaired so far.

    Raises:
        ValueError: a rate, channel count or format outside the accepted ranges.

    Not thread-safe: one thread decodes one stream.
    """

    def __init__(self, sample_rate: int, channels: int, format: str, block_seconds: float = 0.1) -> None:  # noqa: A002
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not MIN_RATE <= sample_rate <= MAX_RATE:
            raise ValueError(f"sample_rate must be a whole number of Hz in [{MIN_RATE}, {MAX_RATE}], got {sample_rate!r}")
        if isinstance(channels, bool) or not isinstance(channels, int) or not 1 <= channels <= MAX_CHANNELS:
            raise ValueError(f"channels must be a whole number in [1, {MAX_CHANNELS}], got {channels!r}")
        if format not in PCM_FORMATS:
            raise ValueError(f"format must be one of {', '.join(PCM_FORMATS)}, got {format!r}")
        self.sample_rate = sample_rate
        self.channels = channels
        self.format = format
        self._dtype = PCM_FORMATS[format]
        self.frame_bytes = self._dtype.itemsize * channels
        self._converter = BlockConverter(sample_rate, channels, block_seconds)
        self.frames = 0
        self.nonfinite = 0
        self.sanitised = 0

    def decode(self, data: bytes) -> list[np.ndarray]:
        """Decode one binary frame into 16 kHz mono float32 blocks (maybe none while the
        resampler fills its filter).

        Raises:
            PcmError: the frame is empty or not a whole number of sample frames.
        """
        if not data:
            raise PcmError("empty audio frame")
        if len(data) % self.frame_bytes:
            raise PcmError(
                f"audio frame of {len(data)} bytes is not a whole number of {self.channels}-channel "
                f"{self.format} sample frames ({self.frame_bytes} bytes each)"
            )
        x = np.frombuffer(data, dtype=self._dtype).reshape(-1, self.channels)
        self.frames += x.shape[0]
        if self._dtype.kind == "i":
            x = x.astype(np.float32) / np.float32(32768.0)
        else:
            x = x.astype(np.float32)
            self.nonfinite += int(np.count_nonzero(~np.isfinite(x)))
        blocks, repaired = self._converter.process(x if self.channels > 1 else x[:, 0])
        self.sanitised += repaired
        return blocks

    def flush(self) -> list[np.ndarray]:
        """End of the stream: the resampler's remaining output blocks."""
        return self._converter.flush()

    @property
    def seconds(self) -> float:
        """Input audio decoded so far, in seconds."""
        return self.frames / self.sample_rate
