"""Speech gating with Silero VAD: the torch thread count survives its import, speech is found
in real recordings and not in silence, and windows without speech skip every model and
settle as silence (blank captions, no speaker), counted in ``stats``."""

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from wavlm_live.engine import vad
from wavlm_live.engine.bus import EventBus
from wavlm_live.engine.engine import Engine, EngineConfig
from wavlm_live.engine.vad import CHUNK_SAMPLES, SpeechGate, VADConfig, load_vad_model
from wavlm_live.engine.windows import frames_for_samples
from wavlm_live.events import CaptionEvent, DiarizationEvent, EndEvent, ErrorEvent, SpeakerEvent, StatsEvent

DATA = Path(__file__).parents[1] / "data"
CLIP = DATA / "sense_and_sensibility_01_austen_64kb-0870.wav"  # 7.1 s of read speech
SHORT = DATA / "sense_and_sensibility_01_austen_64kb-0880.wav"  # 3.0 s


def test_importing_silero_keeps_the_thread_count(monkeypatch):
    # silero_vad/model.py calls torch.set_num_threads(1) at import: make it import afresh
    for name in [m for m in sys.modules if m == "silero_vad" or m.startswith("silero_vad.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(vad, "_MODEL_FILE", None)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        model = load_vad_model()
        assert "silero_vad" in sys.modules  # it really was imported again
        assert torch.get_num_threads() == 3
        gate = SpeechGate(model=model)
        gate.advance(np.zeros(4 * CHUNK_SAMPLES, np.float32))  # runs on one thread, then restores
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_gate_finds_the_speech_of_a_recording_and_none_in_silence():
    audio, _ = sf.read(CLIP, dtype="float32")
    gap = np.zeros(5 * 16000, np.float32)
    stream = np.concatenate([audio, gap, audio])
    gate = SpeechGate()
    n = len(stream) - len(stream) % CHUNK_SAMPLES
    for i in range(0, n, 8 * CHUNK_SAMPLES):  # fed in pieces: one state across calls
        gate.advance(stream[i : min(i + 8 * CHUNK_SAMPLES, n)])
    regions = gate.speech_regions()
    assert len(regions) >= 2
    speech = sum(b - a for a, b in regions) / 16000
    assert 0.7 * 2 * 7.1 < speech < 2 * 7.1 + 0.1  # read speech is mostly speech
    first, last = len(audio), len(audio) + len(gap)
    assert all(b <= first + 2000 or a >= last - 2000 for a, b in regions)  # nothing in the gap
    assert gate.has_speech(16000, 3 * 16000)
    assert not gate.has_speech(first + 16000, last - 16000)
    # per frame: nothing in the gap, the speech regions (padded) covered
    frames = gate.speech_frames(first - first % 320, last - last % 320)
    assert frames.shape == (frames_for_samples(last - last % 320 - (first - first % 320)),)
    assert not frames[100:-100].any() and frames[:5].any()
    over = gate.speech_frames(0, first - first % 320)
    covered = sum(min(b, first) - a for a, b in regions if a < first)
    assert over.sum() * 320 >= covered - 320
    # a fresh gate on silence alone: no speech, and bad input is one clear error
    quiet = SpeechGate()
    quiet.advance(np.zeros(40 * CHUNK_SAMPLES, np.float32))
    assert quiet.speech_regions() == [] and not quiet.has_speech(0, 40 * CHUNK_SAMPLES)
    with pytest.raises(ValueError, match="multiple of 512"):
        quiet.advance(np.zeros(100, np.float32))
    with pytest.raises(ValueError):
        VADConfig(threshold=0.1)


def run(runners, audio, tasks, gate, block=1000, **config):
    bus, events = EventBus(), []
    bus.subscribe(events.append)
    cfg = EngineConfig(realtime=False, vad=VADConfig() if gate else None, **config)
    engine = Engine(cfg, bus, **{t: runners[t] for t in tasks})
    if engine.captioner is not None:
        engine.captioner.kept_logits = []
    engine.run_offline(audio[i : i + block] for i in range(0, len(audio), block))
    return engine, events


def test_windows_without_speech_skip_the_models_and_settle_as_silence(runners):
    audio, _ = sf.read(SHORT, dtype="float32")
    stream = np.concatenate([audio, np.zeros(8 * 16000, np.float32), audio])
    tasks = ("captions", "diarization", "embeddings")
    engine, events = run(runners, stream, tasks, gate=True)
    plan = engine.plan
    windows = plan.windows_for(len(stream))
    silent = [w for w in windows if not engine.gate.has_speech(w.start, w.end)]
    assert len(silent) >= 3  # the windows inside the 8 s gap
    stats = [e for e in events if isinstance(e, StatsEvent)]
    assert stats[-1].windows_silent == len(silent) and stats[-1].windows_analysed == len(windows)
    # every frame settled once; silent windows' kept frames are blank / nobody
    n = frames_for_samples(len(stream))
    kept = engine.captioner.kept_logits
    assert sum(len(k) for k in kept) == n
    blank = runners["captions"].blank_id
    diar = [e for e in events if isinstance(e, DiarizationEvent) and e.labels]
    labels = [lab for e in diar for lab in e.labels]
    assert len(labels) == n
    for w, rows in zip(windows, kept):
        if w in silent:
            assert (rows.argmax(-1) == blank).all()
            assert all(labels[f] == () for f in range(w.keep_start, w.keep_end))
        else:  # speech windows: exactly the model's output on that window
            expected = runners["captions"].logits(stream[w.start : w.end])
            np.testing.assert_allclose(rows, expected[w.keep_start - w.frame_start : w.keep_end - w.frame_start],
                                       atol=1e-5)
    # no caption word in the frames that silent windows settled (blank)
    quiet = {f for w in silent for f in range(w.keep_start, w.keep_end)}
    words = [w for e in events if isinstance(e, CaptionEvent) and e.final for w in e.words]
    assert words and not any(f in quiet for w in words for f in range(round(w.start / 0.02), round(w.end / 0.02)))
    # without the gate every window runs the models
    _, ungated = run(runners, stream, tasks, gate=False)
    assert [e for e in ungated if isinstance(e, StatsEvent)][-1].windows_silent == 0


def test_gate_off_and_on_agree_on_speech_only_audio(runners):
    # read speech throughout: the gate skips nothing and the captions are the same
    audio, _ = sf.read(CLIP, dtype="float32")
    _, on = run(runners, audio, ("captions",), gate=True)
    _, off = run(runners, audio, ("captions",), gate=False)
    text = lambda evs: [e.text for e in evs if isinstance(e, CaptionEvent) and e.final]  # noqa: E731
    assert [e for e in on if isinstance(e, StatsEvent)][-1].windows_silent == 0
    assert text(on) == text(off)


def onset_after_a_tick(audio: np.ndarray, tick: int, after: tuple[int, int]) -> tuple[np.ndarray, int]:
    """``audio`` behind leading zeros (whole chunks) so that its first speech region starts
    ``after[0]..after[1]`` samples after a multiple of ``tick``: (stream, onset)."""
    for chunks in range(64, 200):
        stream = np.concatenate([np.zeros(chunks * CHUNK_SAMPLES, np.float32), audio])
        gate = SpeechGate()
        gate.advance(stream[: len(stream) - len(stream) % CHUNK_SAMPLES])
        onset = gate.speech_regions()[0][0]
        if after[0] <= onset % tick <= after[1]:
            return stream, onset
    raise AssertionError("no offset puts the onset there")


def test_a_window_is_gated_on_audio_up_to_its_end_only():
    # speech starting within the padding after a window's end: whether the gate had read
    # that far (a live stream with more audio waiting, or not) must not change the answer
    audio, _ = sf.read(SHORT, dtype="float32")
    stream, onset = onset_after_a_tick(audio, 16000, (CHUNK_SAMPLES, 3000))
    end = onset - onset % 16000
    assert 0 < onset - end < VADConfig().pad_seconds * 16000
    ahead = SpeechGate()  # has read the whole stream
    ahead.advance(stream[: len(stream) - len(stream) % CHUNK_SAMPLES])
    upto = SpeechGate()  # has read up to the window's end
    upto.advance(stream[: end - end % CHUNK_SAMPLES])
    assert not upto.has_speech(end - 4 * 16000, end)
    assert not ahead.has_speech(end - 4 * 16000, end)
    assert ahead.has_speech(end - 3 * 16000, end + 16000)  # the next window has the speech


def test_live_arrival_and_offline_feeding_gate_the_same_windows(runners):
    # the same stream fed in one piece (all audio there before the first window is taken,
    # as for a live stream that is behind) and in small blocks: the same windows are silent
    audio, _ = sf.read(SHORT, dtype="float32")
    stream, _ = onset_after_a_tick(audio, 16000, (CHUNK_SAMPLES, 3000))
    silent = []
    for block in (len(stream), 512):
        _, events = run(runners, stream, ("captions",), gate=True, block=block, window=4.0, hop=1.0,
                        buffer_seconds=60.0)
        silent.append([e for e in events if isinstance(e, StatsEvent)][-1].windows_silent)
    assert silent[0] == silent[1] >= 2


def test_a_malformed_diarization_output_ends_the_stream_even_where_the_gate_masks_frames(runners):
    """A diarization model giving ``[frames]`` instead of ``[frames, speakers]`` is refused by
    the stitcher (a fatal ``engine`` error), also on a window whose edges the speech gate
    masks: the mask must not broadcast the vector into a ``[frames, frames]`` activity of
    hundreds of speakers."""
    audio, _ = sf.read(SHORT, dtype="float32")
    stream = np.concatenate([np.zeros(int(1.5 * 16000), np.float32), audio])

    class Broken:
        name = "broken"

        def activity(self, x):
            return runners["diarization"].activity(x)[:, 0]

        def activity_batch(self, audios):
            return [self.activity(a) for a in audios]

    engine, events = run({"diarization": Broken()}, stream, ("diarization",), gate=True, window=4.0, hop=2.0)
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert [(e.code, e.fatal) for e in errors] == [("engine", True)]
    assert "expected activity of shape" in errors[0].message
    assert not [e for e in events if isinstance(e, SpeakerEvent)]
    assert isinstance(events[-1], EndEvent)
