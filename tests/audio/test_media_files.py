"""FileSource on media files libsndfile cannot read (or should not): M4A, the audio track
of an MP4 video, Ogg Opus and a stereo 48 kHz MP3, all written by the ffmpeg binary; and
the one-line errors for a video without sound and for broken or truncated files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import soxr
from scipy.signal import correlate

from wavlm_live.audio import AudioError, FileSource


def decode(path, **kwargs) -> tuple[FileSource, np.ndarray]:
    source = FileSource(path, speed=None, **kwargs)
    return source, np.concatenate(list(source.blocks()))


def aligned(ref: np.ndarray, got: np.ndarray) -> tuple[int, float]:
    """(lag of `got` behind `ref` in samples, normalised correlation at that lag)."""
    c = correlate(got, ref, mode="full", method="fft")
    lag = int(np.argmax(c)) - (len(ref) - 1)
    a, b = (ref, got[lag:]) if lag >= 0 else (ref[-lag:], got)
    n = min(len(a), len(b))
    return lag, float(np.dot(a[:n], b[:n]) / (np.linalg.norm(a[:n]) * np.linalg.norm(b[:n])))


@pytest.fixture(scope="module")
def reference(media_files) -> np.ndarray:
    x, rate = sf.read(media_files["source"], dtype="float32")
    assert rate == 16000 and x.ndim == 1
    return x


@pytest.mark.parametrize(("kind", "gain", "rate", "channels"), [
    ("m4a", 1.0, 16000, 1),
    ("mp4", 1.0, 16000, 1),
    ("opus", 1.0, None, 1),  # libsndfile decodes Opus at the rate in its header, FFmpeg at 48 kHz
    ("mp3", 0.75, 48000, 2),  # the channel mean of 1.0 and 0.5 times the clip
])
def test_media_files_decode_to_the_recorded_clip(media_files, reference, kind, gain, rate, channels):
    source, audio = decode(media_files[kind])
    if kind != "opus":
        assert source.decoded_by == "FFmpeg"
    stats = source.stats()
    assert stats.input_channels == channels and (rate is None or stats.input_rate == rate)
    assert f"file clip.{kind} " in source.describe()
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / 16000 - 7.1) < 0.1  # codec padding and priming are a few ms
    assert abs(source.duration - 7.1) < 0.1
    lag, corr = aligned(reference, audio)
    assert abs(lag) <= 16 and corr > 0.97, (lag, corr)  # lossy codecs, same timing
    rms_ratio = np.sqrt(np.mean(audio**2) / np.mean(reference**2))
    assert rms_ratio == pytest.approx(gain, rel=0.05)
    assert stats.samples == len(audio)  # every delivered block is counted


@pytest.mark.parametrize(("kind", "other"), [("opus", "ffmpeg"), ("mp3", "soundfile")])
def test_libsndfile_and_ffmpeg_decode_the_same_sound(media_files, kind, other):
    # Two independent decoders (libopus/mpg123 in libsndfile, FFmpeg's own) agree.
    _, auto = decode(media_files[kind])
    forced, audio = decode(media_files[kind], decoder=other)
    assert forced.decoded_by == {"ffmpeg": "FFmpeg", "soundfile": "libsndfile"}[other]
    lag, corr = aligned(auto, audio)
    assert abs(lag) <= 16 and corr > 0.995, (lag, corr)


@pytest.mark.parametrize("subtype", ["FLOAT", "PCM_16"])
def test_ffmpeg_feeds_the_same_downmix_and_resampler(tmp_path, reference, subtype):
    # Lossless input: both decoders hand over the same samples, so the 16 kHz mono output
    # (channel mean, then libsoxr VHQ) is identical to the last bit.
    up = soxr.resample(reference, 16000, 44100, quality="VHQ")
    path = tmp_path / f"stereo_{subtype}.wav"
    sf.write(path, np.stack([up, -0.3 * up], axis=1), 44100, subtype=subtype)
    _, by_libsndfile = decode(path, decoder="soundfile")
    source, by_ffmpeg = decode(path, decoder="ffmpeg")
    assert source.decoded_by == "FFmpeg" and source.describe().startswith("file stereo")
    assert np.array_equal(by_libsndfile, by_ffmpeg)


def test_run_input_opens_media_files(media_files):
    from wavlm_live.cli import app

    source = app.open_source(str(media_files["mp4"]), None, 2.0, False)  # what `run --input clip.mp4` opens
    assert isinstance(source, FileSource) and source.decoded_by == "FFmpeg"
    assert source.describe() == "file clip.mp4 16000 Hz x1, 7.1 s, speed x2"


def test_looping_an_ffmpeg_file_continues_without_a_gap(media_files):
    source = FileSource(media_files["m4a"], speed=None, loop=True)
    once = np.concatenate(list(FileSource(media_files["m4a"], speed=None).blocks()))
    got, n = [], 0
    for block in source.blocks():
        got.append(block)
        n += len(block)
        if n > 2.5 * len(once):
            break
    audio = np.concatenate(got)
    # the second pass repeats the first (the resampler is not reset: 16 kHz needs none)
    assert np.allclose(audio[len(once) : 2 * len(once)], once, atol=1e-6)


def one_line(excinfo, *parts: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    for part in parts:
        assert part in msg, msg
    return msg


def test_a_video_without_sound_is_one_clear_line(media_files):
    with pytest.raises(AudioError) as e:
        FileSource(media_files["video_only"])
    one_line(e, "video.mp4", "has no audio stream", "video h264")


def test_broken_and_truncated_media_files(media_files, tmp_path, capfd):
    data = media_files["m4a"].read_bytes()
    cut = tmp_path / "cut.m4a"  # the index (moov atom) comes last: cut off, nothing decodes
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError) as e:
        FileSource(cut)
    one_line(e, "cannot decode audio file", "cut.m4a")

    data = media_files["m4a_faststart"].read_bytes()
    cut_late = tmp_path / "cut_late.m4a"  # the index is intact, the data ends early
    cut_late.write_bytes(data[: len(data) // 2])
    source = FileSource(cut_late, speed=None)
    with pytest.raises(AudioError) as e:
        list(source.blocks())
    one_line(e, "error decoding audio file", "cut_late.m4a", "after ", "truncated")

    garbage = tmp_path / "noise.mp3"
    garbage.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(AudioError) as e:
        FileSource(garbage)
    one_line(e, "cannot decode audio file", "noise.mp3")

    wav = tmp_path / "cut.wav"
    whole = media_files["source"].read_bytes()
    wav.write_bytes(whole[: len(whole) // 3])
    with pytest.raises(AudioError) as e:
        FileSource(wav)
    one_line(e, "cut.wav", "is truncated", "header declares")
    # neither decoder printed anything of its own
    out, err = capfd.readouterr()
    assert out == "" and err == ""
