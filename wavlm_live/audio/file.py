"""Replay an audio or video file as a 16 kHz mono source, paced like a microphone or faster.

Two decoders: libsndfile (python-soundfile) for the formats it reads exactly and quietly
(WAV, FLAC, Ogg Vorbis/Opus, AIFF, ...), and FFmpeg through PyAV (whose wheels bundle
FFmpeg) for everything else: MP3, M4A/AAC, the audio track of MP4/MKV/WebM/MOV videos,
WMA, ... MP3 goes to FFmpeg although libsndfile reads it, because libsndfile's mpg123
prints warnings straight to stderr. Either way the samples are downmixed and resampled
by the same :class:`~wavlm_live.audio.resample.BlockConverter` (channel mean, libsoxr VHQ).
"""

from __future__ import annotations

import math
import os
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from .base import TARGET_RATE, AudioError, AudioSource, Sink, format_rate, one_line
from .resample import BlockConverter

MEDIA_SUFFIXES = (
    ".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".mp4", ".m4v", ".mov",
    ".mkv", ".mka", ".webm", ".aif", ".aiff", ".caf", ".wma", ".amr", ".3gp",
)
"""File name endings that ``eval`` treats as clips (case-insensitive). Any file either
decoder reads works as ``--input``, ``transcribe`` or ``--enroll`` input, whatever its name."""

DECODERS = ("auto", "soundfile", "ffmpeg")
"""Values of ``FileSource(decoder=...)``."""

_SF_UNRECOGNISED = 1
"""libsndfile's SF_ERR_UNRECOGNISED_FORMAT: not a format it knows (FFmpeg may know it)."""

_MAX_WAIT_S = 1.0
"""Longest single wait of the pacing thread, in seconds (it loops for longer ones)."""

_INT_SCALE = {np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31, np.dtype(np.int64): 2.0**63}


def _check_path(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"audio file not found: {path}")
    if path.is_dir():
        raise AudioError(f"cannot read audio file {path}: it is a directory, give a file")
    if not os.access(path, os.R_OK):
        raise AudioError(f"cannot read audio file {path}: permission denied")
    if path.stat().st_size == 0:
        raise AudioError(f"audio file {path} is empty (0 bytes)")


def _undecodable(path: Path, exc: BaseException) -> AudioError:
    return AudioError(
        f"cannot decode audio file {path}: {one_line(exc)} "
        "(corrupt or unsupported format: convert it to WAV or FLAC)"
    )


def wav_data_shortfall(path: Path) -> tuple[int, int] | None:
    """For a RIFF/WAVE file whose ``data`` chunk claims more bytes than the file holds,
    ``(declared bytes, bytes present)``; ``None`` otherwise (not RIFF/WAVE, complete, or a
    streaming header whose size is 0 or 0xFFFFFFFF, i.e. unknown). Reads only the chunk
    headers (RIFF layout: Microsoft/IBM Multimedia Programming Interface 1.0)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                present = size - pos - 8
                if chunk_size in (0, 0xFFFFFFFF) or chunk_size <= present:
                    return None
                return chunk_size, present
            pos += 8 + chunk_size + (chunk_size & 1)
    return None


class _SoundFileReader:
    """libsndfile decoding: exact lengths, float32 chunks of shape [frames, channels]."""

    name = "libsndfile"

    def __init__(self, path: Path, f: sf.SoundFile) -> None:
        self.path = path
        self._f = f
        self.rate = float(f.samplerate)
        self.channels = int(f.channels)
        self.frames = int(f.frames)

    def chunks(self, frames: int) -> Iterator[np.ndarray]:
        while True:
            data = self._f.read(frames, dtype="float32", always_2d=True)
            if len(data) == 0:
                return
            yield data

    def close(self) -> None:
        self._f.close()


class _FFmpegReader:
    """FFmpeg (PyAV) decoding of the first audio stream: float32 chunks of shape
    [frames, channels], samples converted exactly (integers divided by 2**(bits-1)); the
    length is the container's figure (an estimate for some formats)."""

    name = "FFmpeg"

    def __init__(self, path: Path) -> None:
        import av  # noqa: PLC0415 - only files libsndfile cannot read need FFmpeg

        self.path = path
        self._av = av
        try:
            self._container = av.open(str(path), mode="r")
        except av.error.FFmpegError as exc:
            raise _undecodable(path, exc) from exc
        except (OSError, ValueError) as exc:
            raise AudioError(f"cannot read audio file {path}: {one_line(exc)}") from exc
        streams = self._container.streams
        if not streams.audio:
            kinds = ", ".join(f"{s.type} {s.codec_context.name}" for s in streams) or "no streams"
            self._container.close()
            raise AudioError(f"audio file {path} has no audio stream (it holds {kinds}); give a file with sound")
        self._stream = streams.audio[0]
        ctx = self._stream.codec_context
        self.rate = float(ctx.sample_rate)
        self.channels = int(ctx.layout.nb_channels) or int(getattr(ctx, "channels", 0))
        if not self.rate > 0 or self.channels < 1:
            self._container.close()
            raise _undecodable(path, ValueError(f"audio stream has rate {self.rate} Hz, {self.channels} channel(s)"))
        if self._stream.duration is not None and self._stream.time_base is not None:
            seconds = float(self._stream.duration * self._stream.time_base)
        elif self._container.duration is not None:
            seconds = self._container.duration / 1_000_000  # AV_TIME_BASE
        else:
            seconds = 0.0
        self.frames = max(0, round(seconds * self.rate))

    def _to_float(self, frame: Any) -> np.ndarray:
        a = frame.to_ndarray()
        if frame.format.is_planar:
            a = a.T  # [channels, frames] -> [frames, channels]
        else:
            a = a.reshape(-1, frame.layout.nb_channels)  # interleaved: [1, frames * channels]
        if a.shape[1] != self.channels or frame.sample_rate != self.rate:
            raise AudioError(
                f"audio file {self.path} changes from {format_rate(self.rate)} Hz x{self.channels} to "
                f"{frame.sample_rate} Hz x{a.shape[1]} mid-stream; convert it to WAV or FLAC first"
            )
        if a.dtype.kind == "f":
            return np.ascontiguousarray(a, dtype=np.float32)
        if a.dtype == np.uint8:
            return ((a.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
        return (a.astype(np.float64) / _INT_SCALE[a.dtype]).astype(np.float32)

    def chunks(self, frames: int) -> Iterator[np.ndarray]:  # noqa: ARG002 - FFmpeg's packet sizes
        for packet in self._container.demux(self._stream):
            for frame in packet.decode():
                if frame.samples:
                    yield self._to_float(frame)

    def close(self) -> None:
        self._container.close()


def looks_like_mp3(path: Path) -> bool:
    """True for a ``.mp3`` name or a file that starts like MPEG audio (an ID3v2 tag or an
    MPEG frame sync: 11 set bits). Such files go to FFmpeg without trying libsndfile,
    whose mpg123 prints notes to stderr while it probes them."""
    if path.suffix.lower() == ".mp3":
        return True
    with open(path, "rb") as f:
        head = f.read(3)
    return head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


def _open_reader(path: Path, decoder: str) -> _SoundFileReader | _FFmpegReader:
    """Open ``path`` with the chosen decoder; every failure becomes one AudioError line."""
    _check_path(path)
    if decoder == "soundfile" or (decoder == "auto" and not looks_like_mp3(path)):
        try:
            f = sf.SoundFile(path)
        except sf.LibsndfileError as exc:
            if decoder == "soundfile" or exc.code != _SF_UNRECOGNISED:
                raise _undecodable(path, exc) from exc
        except OSError as exc:
            raise AudioError(f"cannot read audio file {path}: {one_line(exc)}") from exc
        else:
            if decoder == "soundfile" or f.format != "MP3":
                if f.format in ("WAV", "WAVEX"):
                    short = wav_data_shortfall(path)
                    if short is not None:
                        f.close()
                        declared, present = short
                        raise AudioError(
                            f"audio file {path} is truncated: its header declares {declared} bytes of audio, "
                            f"the file holds {present} ({100 * present / declared:.0f}%); repair the header "
                            f"(e.g. ffmpeg -i {path.name} fixed.wav) to use what is there"
                        )
                return _SoundFileReader(path, f)
            f.close()
    return _FFmpegReader(path)


class FileSource(AudioSource):
    """Replays an audio file, or the first audio track of a video file, as 16 kHz mono blocks.

    libsndfile decodes WAV, FLAC, Ogg (Vorbis, Opus), AIFF and its other formats; FFmpeg
    (PyAV) decodes MP3 and whatever libsndfile does not recognise (M4A/AAC, MP4/MKV/WebM
    /MOV audio tracks, WMA, ...). The samples are downmixed, sanitised and resampled
    (libsoxr VHQ, streaming) block by block, identically for both decoders. With
    `start(sink)` a pacing thread delivers block k when its last sample is due: at
    `t0 + end_sample / (16000 * speed)` seconds, like a microphone that hands over each
    block once it has been recorded. If the sink is slow the schedule is kept and later
    blocks follow without waiting until it is caught up.

    Args:
        path: the audio or video file.
        speed: replay speed relative to real time (> 0; 1.0 = real time), or None for
            as fast as the sink takes blocks.
        loop: start over at the end of the file instead of ending (the stream continues
            without a gap or a resampler reset).
        block_seconds: libsndfile input is read in blocks of this many seconds (FFmpeg
            delivers its codec's frames, e.g. 1024 samples for AAC); output blocks are at
            most this long (> 0).
        decoder: "auto" (as above), "soundfile" (libsndfile only) or "ffmpeg" (PyAV only).

    Raises:
        AudioError: the file is missing, unreadable, corrupt, truncated (a WAV whose
            header declares more data than it holds), unsupported, has no audio stream,
            or is empty. Decoding errors later in the file are raised by `blocks()` (or
            set as `error` by the pacing thread), as is a file that decodes to nothing.
        ValueError: on a non-positive speed or block_seconds, or an unknown decoder.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        speed: float | None = 1.0,
        loop: bool = False,
        block_seconds: float = 0.02,
        decoder: str = "auto",
    ) -> None:
        if speed is not None and not (speed > 0 and math.isfinite(speed)):
            raise ValueError(f"speed must be a positive number or None, got {speed!r}")
        if not block_seconds > 0:
            raise ValueError(f"block_seconds must be > 0, got {block_seconds!r}")
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        self.path = Path(path)
        self.decoder = decoder
        reader = _open_reader(self.path, decoder)
        try:
            rate, channels, frames = reader.rate, reader.channels, reader.frames
            self.decoded_by = reader.name
            """Which library decodes the file: "libsndfile" or "FFmpeg"."""
            if isinstance(reader, _SoundFileReader) and frames <= 0:
                raise AudioError(f"audio file {self.path} has no audio samples")
        finally:
            reader.close()
        super().__init__(self.path.name, rate, channels)
        self.speed = speed
        self.loop = loop
        self.block_seconds = block_seconds
        self.input_frames = frames
        """Frames per channel at the file's rate: exact for libsndfile, the container's
        figure for FFmpeg (an estimate for some formats, 0 when it states none)."""
        self.num_samples = round(frames * TARGET_RATE / rate)
        """Length of one pass through the file at 16 kHz, in samples (see `input_frames`)."""
        self.duration = self.num_samples / TARGET_RATE
        """Length of one pass through the file at 16 kHz, in seconds (see `input_frames`)."""
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
        total = 0
        while not self._stop.is_set():
            reader = _open_reader(self.path, self.decoder)
            position = 0
            try:
                chunks = reader.chunks(frames)
                while not self._stop.is_set():
                    try:
                        data = next(chunks, None)
                    except AudioError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - libsndfile/FFmpeg errors, one line
                        raise AudioError(
                            f"error decoding audio file {self.path} after "
                            f"{position / self._input_rate:.2f} s: {one_line(exc)} (the file may be truncated "
                            "or damaged)"
                        ) from exc
                    if data is None:
                        break
                    position += len(data)
                    blocks, repaired = conv.process(data)
                    if repaired:
                        self._count(sanitised=repaired)
                    yield from blocks
            finally:
                reader.close()
            total += position
            if total == 0:
                raise AudioError(f"audio file {self.path} has no audio samples")
            if not (self.loop and position > 0):
                break
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
                    # in steps: a slow speed gives waits too long for one timed wait
                    while (wait := due - time.monotonic()) > 0 and not self._stop.wait(min(wait, _MAX_WAIT_S)):
                        pass
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
        except Exception as exc:  # noqa: BLE001 - never a thread traceback: the source fails
            self._fail(AudioError(f"replaying {self.path} failed: {one_line(exc)}"))
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
