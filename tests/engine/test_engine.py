"""The engine with tiny real checkpoints on real recordings: streamed == offline per window,
exact frame coverage, monotonic times, no skipping at real-time pace."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from wavlm_live.audio import FileSource
from wavlm_live.engine.bus import EventBus
from wavlm_live.engine.engine import Engine, EngineConfig
from wavlm_live.engine.windows import frames_for_samples
from wavlm_live.events import CaptionEvent, DiarizationEvent, EndEvent, LevelEvent, SpeakerEvent, StatsEvent

DATA = Path(__file__).parents[1] / "data"
CLIP = DATA / "sense_and_sensibility_01_austen_64kb-0870.wav"  # 7.1 s
SHORT = DATA / "sense_and_sensibility_01_austen_64kb-0880.wav"  # 3.0 s


def run_offline(runners, audio, tasks=("captions", "diarization", "embeddings"), **config):
    bus, events = EventBus(), []
    bus.subscribe(events.append)
    engine = Engine(EngineConfig(realtime=False, **config), bus, **{t: runners[t] for t in tasks})
    if engine.captioner is not None:
        engine.captioner.kept_logits = []
    engine.run_offline(audio[i : i + 1234] for i in range(0, len(audio), 1234))
    return engine, events


@pytest.mark.parametrize("window,hop", [(4.0, 1.0), (2.0, 0.5), (3.0, 2.0)])
def test_streamed_logits_equal_model_on_each_window(runners, window, hop):
    audio, _ = sf.read(CLIP, dtype="float32")
    engine, events = run_offline(runners, audio, ("captions",), window=window, hop=hop, pause_seconds=None)
    stitched = np.concatenate(engine.captioner.kept_logits)
    # offline: the model on each window of the same plan, kept rows concatenated
    expected = []
    for w in engine.plan.windows_for(len(audio)):
        logits = runners["captions"].logits(audio[w.start : w.end])
        expected.append(logits[w.keep_start - w.frame_start : w.keep_end - w.frame_start])
    expected = np.concatenate(expected)
    assert stitched.shape == expected.shape == (frames_for_samples(len(audio)), 30)
    np.testing.assert_allclose(stitched, expected, atol=1e-5)
    # the final captions are the decode of the concatenated kept logits
    finals = [e for e in events if isinstance(e, CaptionEvent) and e.final]
    decoded = runners["captions"].decoder.decode(expected)
    assert " ".join(e.text for e in finals).split() == decoded.text.split()
    words = [w for e in finals for w in e.words]
    assert [(w.text, w.start, w.end) for w in words] == [
        (w.word, round(w.start_frame * 0.02, 4), round(w.end_frame * 0.02, 4)) for w in decoded.words
    ]
    assert [e.segment for e in finals] == list(range(len(finals)))


def test_one_window_covering_the_file_equals_offline(runners):
    audio, _ = sf.read(CLIP, dtype="float32")
    engine, events = run_offline(runners, audio, window=8.0, hop=7.9, pause_seconds=None)
    assert engine.windows_analysed == 1
    whole = runners["captions"].logits(audio)
    np.testing.assert_array_equal(np.concatenate(engine.captioner.kept_logits), whole)
    finals = [e for e in events if isinstance(e, CaptionEvent) and e.final]
    assert " ".join(e.text for e in finals) == " ".join(runners["captions"].decoder.decode(whole).text.split())
    diar = [e for e in events if isinstance(e, DiarizationEvent) and e.labels]
    assert len(diar) == 1
    active = engine.diarizer.binarize(runners["diarization"].activity(audio))
    assert [len(lab) for lab in diar[0].labels] == active.sum(axis=1).tolist()


def check_stream(events, duration, n_frames, tasks):
    """Coverage, ordering and range checks shared by the offline and live runs."""
    diar = [e for e in events if isinstance(e, DiarizationEvent) and e.labels]
    if "diarization" in tasks:
        # settled labels tile the frame axis exactly: every frame once, in order
        starts = [round(e.start / 0.02) for e in diar]
        ends = [round(e.end / 0.02) for e in diar]
        assert starts[0] == 0 and ends[-1] == n_frames
        assert starts[1:] == ends[:-1]
        assert sum(len(e.labels) for e in diar) == n_frames
    finals = [e for e in events if isinstance(e, CaptionEvent) and e.final]
    times = [w.start for e in finals for w in e.words]
    assert times == sorted(times)
    for e in finals:
        for w in e.words:
            assert 0 <= w.start < w.end <= duration + 1e-6
    for kind in (LevelEvent, StatsEvent):
        ts = [e.t for e in events if isinstance(e, kind)]
        assert ts == sorted(ts) and ts[-1] <= duration + 1e-6
    for e in events:
        if isinstance(e, SpeakerEvent):
            assert 0 <= e.first_seen <= e.last_seen <= duration + 1e-6
    assert isinstance(events[-1], EndEvent) and events[-1].t == pytest.approx(duration, abs=1e-3)


def test_offline_run_covers_every_frame_once(runners):
    audio, _ = sf.read(CLIP, dtype="float32")
    engine, events = run_offline(runners, audio)
    n = frames_for_samples(len(audio))
    assert sum(len(k) for k in engine.captioner.kept_logits) == n
    check_stream(events, len(audio) / 16000, n, engine.tasks)
    speakers = {e.id for e in events if isinstance(e, SpeakerEvent)}
    assert speakers and all(s.startswith("S") for s in speakers)
    assert engine.windows_skipped == 0


def test_live_engine_at_real_time_pace_skips_nothing(runners):
    source = FileSource(SHORT, speed=1.0)
    bus, events = EventBus(), []
    bus.subscribe(events.append)
    engine = Engine(EngineConfig(window=2.0, hop=0.5), bus, source_stats=source.stats, **runners)
    engine.captioner.kept_logits = []
    engine.start()
    source.start(engine.feed)
    assert source.finished.wait(15)
    engine.close_input()
    assert engine.join(15)
    total = engine.ring.written
    n = frames_for_samples(total)
    check_stream(events, total / 16000, n, engine.tasks)
    assert sum(len(k) for k in engine.captioner.kept_logits) == n
    stats = [e for e in events if isinstance(e, StatsEvent)]
    assert stats[-1].windows_skipped == 0 and stats[-1].input_overflows == 0
    assert stats[-1].windows_analysed >= int(total / 8000) - 1
    # partial captions come before the final that replaces them
    caps = [e for e in events if isinstance(e, CaptionEvent)]
    assert any(not e.final for e in caps)


@pytest.mark.parametrize("max_lag", [0.0, 2.0])
def test_engine_catches_up_and_reports_when_behind(runners, max_lag):
    """Behind, the engine first widens its hop (no frame lost, ``windows_widened``); with
    no lag allowed beyond that (``max_lag`` 0) it skips windows (``windows_skipped``)."""
    class Slow:
        name = "slow"

        def activity(self, audio):
            import time

            time.sleep(0.3)
            return runners["diarization"].activity(audio)

        def activity_batch(self, audios):
            return [self.activity(a) for a in audios]

    bus, events = EventBus(), []
    bus.subscribe(events.append)
    engine = Engine(EngineConfig(window=1.0, hop=0.1, max_backlog=0, max_lag=max_lag), bus, diarization=Slow())
    engine.start()
    audio, _ = sf.read(SHORT, dtype="float32")
    for i in range(0, len(audio), 320):
        engine.feed(audio[i : i + 320])
    engine.close_input()
    assert engine.join(30)
    stats = [e for e in events if isinstance(e, StatsEvent)]
    diar = [e for e in events if isinstance(e, DiarizationEvent) and e.labels]
    if max_lag == 0:
        assert stats[-1].windows_skipped > 0
        assert stats[-1].windows_analysed + stats[-1].windows_skipped >= len(audio) // 1600 - 1
        # labels stay in order and within the stream even with gaps
        assert all(a.end <= b.start for a, b in zip(diar, diar[1:]))
    else:
        assert stats[-1].windows_skipped == 0 and stats[-1].windows_widened > 0
        assert max(s.hop for s in stats) > 0.1  # a wider hop ...
        # ... that still settles every frame exactly once
        assert diar[0].start == 0 and all(a.end == b.start for a, b in zip(diar, diar[1:]))
        assert round(diar[-1].end / 0.02) == frames_for_samples(len(audio))
    assert isinstance(events[-1], EndEvent)


def test_rename_and_bad_names(runners):
    audio, _ = sf.read(SHORT, dtype="float32")
    engine, events = run_offline(runners, audio, ("diarization",))
    sid = next(iter(engine.tracker.speakers))
    seen = []
    engine.bus.subscribe(seen.append)
    engine.rename_speaker(sid, "Elinor")
    assert isinstance(seen[-1], SpeakerEvent) and seen[-1].name == "Elinor" and seen[-1].id == sid
    with pytest.raises(KeyError):
        engine.rename_speaker("S99", "x")
    with pytest.raises(ValueError):
        engine.rename_speaker(sid, "\x00")


def test_non_finite_input_is_sanitised_and_counted(runners):
    bus, events = EventBus(), []
    bus.subscribe(events.append)
    engine = Engine(EngineConfig(realtime=False), bus, diarization=runners["diarization"])
    audio, _ = sf.read(SHORT, dtype="float32")
    audio[100:110] = np.nan
    audio[200] = np.inf
    engine.run_offline([audio])
    stats = [e for e in events if isinstance(e, StatsEvent)]
    assert stats[-1].samples_sanitised == 11
    assert all(np.isfinite(e.rms_db) for e in events if isinstance(e, LevelEvent))


def test_embeddings_only_with_short_first_windows(runners):
    # hop 0.25 s: the first growing windows are shorter than the x-vector model accepts
    audio, _ = sf.read(SHORT, dtype="float32")
    engine, events = run_offline(runners, audio, ("captions", "embeddings"), window=2.0, hop=0.25)
    assert not [e for e in events if e.TYPE == "error"]
    speakers = [e for e in events if isinstance(e, SpeakerEvent)]
    assert speakers and speakers[-1].updates > 0
    finals = [e for e in events if isinstance(e, CaptionEvent) and e.final]
    assert all(w.speaker is not None for e in finals for w in e.words if w.start >= 1.0)


def test_masked_xvectors_pool_the_selected_frames(runners, monkeypatch):
    """Per-speaker x-vectors: the mean and unbiased std of the TDNN frames whose centre
    backbone frame the mask selects (checked with numpy), all frames = the plain x-vector,
    and masks the pooling cannot use are refused."""
    import torch

    runner = runners["embeddings"]
    model = runner.model
    audio, _ = sf.read(CLIP, dtype="float32")
    audio = audio[: 3 * 16000]
    n = frames_for_samples(len(audio))
    masks = np.zeros((3, n), bool)
    masks[0] = True
    masks[1, : n // 2] = True
    masks[2, n // 3 :: 2] = True
    np.testing.assert_allclose(runner.embed(audio, masks[:1]), runner.embed(audio), atol=1e-5)
    with torch.inference_mode():
        h = model.frame_features(runner._input(audio))[0][0].numpy()  # [T', C]
    span = model.frame_span
    expected = []
    for m in masks:
        sel = h[m[span // 2 : span // 2 + len(h)]]
        expected.append(np.concatenate([sel.mean(0), sel.std(0, ddof=1)]))
    # the pooled statistics themselves, before the embedding layer
    monkeypatch.setattr(model, "embed_statistics", lambda mean, std: torch.cat([mean, std], dim=-1))
    got = runner.embed(audio, masks)
    expected = np.stack(expected)
    scale = np.abs(expected).max()  # the tiny random model's features are ~1e-6
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * scale)
    assert np.abs(got[1] - got[2]).max() > 1e-2 * scale
    with pytest.raises(ValueError, match="at least 2 frames"):
        runner.embed(audio, np.eye(1, n, n // 2, dtype=bool))
    with pytest.raises(ValueError, match="shape"):
        runner.embed(audio, masks[:, :-1])
