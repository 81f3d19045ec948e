"""Per-task schedules: each task on its own windows (exact tiling per task, outputs equal to
the model on each of its windows), caption finals waiting for their speakers, and a live
stream that falls behind widening its hop before it skips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.engine.test_engine import run_offline
from wavlm_live.engine.bus import EventBus
from wavlm_live.engine.engine import Engine, EngineConfig, TaskWindow
from wavlm_live.engine.windows import (
    HOP_SAMPLES,
    Schedule,
    WindowPlan,
    frames_for_samples,
)
from wavlm_live.events import CaptionEvent, DiarizationEvent

DATA = Path(__file__).parents[1] / "data"
CLIP = DATA / "sense_and_sensibility_01_austen_64kb-0870.wav"  # 7.1 s


@pytest.mark.parametrize("total", [16000 * 7 + 123, 16000 * 3, 4000])
def test_each_plan_of_a_schedule_tiles_its_frames(total):
    plans = {"captions": WindowPlan(2.0, 0.5), "diarization": WindowPlan(4.0, 1.0), "x": WindowPlan(3.0, 0.6)}
    schedule = Schedule(plans)
    assert schedule.tick_samples == 0.1 * 16000  # gcd of 0.5, 1 and 0.6 s
    ticks = schedule.windows_for(total)
    n_frames = frames_for_samples(total)
    for name, plan in plans.items():
        windows = [t[name] for t in ticks if name in t]
        assert windows[0].keep_start == 0 and windows[-1].keep_end == n_frames
        for a, b in zip(windows, windows[1:]):
            assert b.keep_start == a.keep_end  # no gap, no frame twice
        for w in windows[:-1]:
            assert w.end % plan.hop_samples == 0  # on its own hop
            assert w.num_samples <= plan.window_samples
            assert w.keep_start >= w.frame_start and w.keep_end <= w.frame_end
        assert windows[-1].final and windows[-1].end == total


def test_a_schedule_of_one_plan_is_that_plan():
    plan = WindowPlan(4.0, 1.0)
    total = 16000 * 9 + 777
    assert [t["a"] for t in Schedule({"a": plan}).windows_for(total)] == plan.windows_for(total)


def test_tasks_run_on_their_own_windows(runners):
    audio, _ = sf.read(CLIP, dtype="float32")
    seen: dict[str, list[int]] = {"captions": [], "diarization": []}
    calls = {"captions": runners["captions"].logits_batch, "diarization": runners["diarization"].activity_batch}

    class Spy:
        def __init__(self, name, runner):
            self.name, self.runner = name, runner

        def __getattr__(self, item):
            return getattr(self.runner, item)

        def logits_batch(self, audios):
            seen["captions"].extend(a.size for a in audios)
            return calls["captions"](audios)

        def activity_batch(self, audios):
            seen["diarization"].extend(a.size for a in audios)
            return calls["diarization"](audios)

    spies = {"captions": Spy("captions", runners["captions"]), "diarization": Spy("diarization", runners["diarization"])}
    windows = {"captions": TaskWindow(2.0, 0.5)}
    engine, events = run_offline(spies, audio, ("captions", "diarization"), window=4.0, hop=1.0, task_windows=windows,
                              pause_seconds=None)
    schedule = engine.schedule
    ticks = schedule.windows_for(len(audio))
    expected_caps = [t["captions"] for t in ticks if "captions" in t]
    expected_diar = [t["diarization"] for t in ticks if "diarization" in t]
    # each model saw exactly its own windows: 2 s caption windows every 0.5 s, 4 s diarization ones every 1 s
    assert seen["captions"] == [w.num_samples for w in expected_caps]
    assert seen["diarization"] == [w.num_samples for w in expected_diar]
    assert len(expected_caps) > len(expected_diar) and max(seen["captions"]) == 32000
    # stitched caption logits = the model on each caption window, kept rows
    expected = np.concatenate([runners["captions"].logits(audio[w.start : w.end])[w.keep_start - w.frame_start :
                                                                                  w.keep_end - w.frame_start]
                               for w in expected_caps])
    np.testing.assert_allclose(np.concatenate(engine.captioner.kept_logits), expected, atol=1e-5)
    # settled diarization labels tile the frame axis exactly
    diar = [e for e in events if isinstance(e, DiarizationEvent) and e.labels]
    assert sum(len(e.labels) for e in diar) == frames_for_samples(len(audio))
    hello = engine.hello()
    assert hello["schedule"]["captions"]["window"] == 2.0 and hello["schedule"]["captions"]["hop"] == 0.5
    assert hello["schedule"]["diarization"]["window"] == 4.0 and hello["schedule"]["diarization"]["hop"] == 1.0


def test_embeddings_follow_the_diarization_windows(runners):
    audio, _ = sf.read(CLIP, dtype="float32")
    engine, _ = run_offline(runners, audio, ("captions", "diarization", "embeddings"),
                         task_windows={"diarization": TaskWindow(3.0, 1.5), "captions": TaskWindow(2.0, 0.5)})
    assert engine.hello()["schedule"]["embeddings"] == engine.hello()["schedule"]["diarization"]
    with pytest.raises(ValueError, match="diarization windows"):
        Engine(EngineConfig(task_windows={"embeddings": TaskWindow(2.0, 0.5)}), EventBus(),
               diarization=runners["diarization"], embeddings=runners["embeddings"])
    with pytest.raises(ValueError, match="unknown task"):
        Engine(EngineConfig(task_windows={"caption": TaskWindow(2.0, 0.5)}), EventBus(), captions=runners["captions"])


def test_caption_finals_wait_for_their_speakers(runners):
    """Diarization on slower windows with more right context than the captions: every
    final word still has the speaker of its settled frames (finals wait for them)."""
    audio, _ = sf.read(CLIP, dtype="float32")
    audio = np.concatenate([audio, audio])
    engine, events = run_offline(runners, audio, ("captions", "diarization"),
                              task_windows={"captions": TaskWindow(2.0, 0.5, right_context=5),
                                            "diarization": TaskWindow(4.0, 2.0, right_context=80)})
    settled: dict[int, tuple] = {}
    for e in events:
        if isinstance(e, DiarizationEvent):
            for i, labels in enumerate(e.labels):
                settled[round(e.start / 0.02) + i] = labels
    words = [w for e in events if isinstance(e, CaptionEvent) and e.final for w in e.words]
    assert words, "the tiny CTC model writes words on this clip"
    checked = 0
    for w in words:
        frames = range(round(w.start / 0.02), round(w.end / 0.02))
        counts: dict[str, int] = {}
        for f in frames:
            for s in settled.get(f, ()):
                counts[s] = counts.get(s, 0) + 1
        expected = max(sorted(counts), key=counts.get) if counts else None
        assert w.speaker == expected, (w, counts)
        checked += expected is not None
    assert checked > 0


def _live(runners, **config) -> Engine:
    return Engine(EngineConfig(realtime=True, max_backlog=1, **config), EventBus(),
                  captions=runners["captions"], diarization=runners["diarization"])


def test_a_stream_that_falls_behind_widens_its_hop_without_losing_frames(runners):
    engine = _live(runners, task_windows={"captions": TaskWindow(2.0, 0.5)})
    plan = engine.schedule.plans["captions"]
    engine.feed(np.zeros(16000 * 4, np.float32))  # 4 s at once: the first ticks cannot reach back far
    works = []
    while (work := engine.take()) is not None:
        engine.apply(work, 0.0)
        works.append(work)
    fed = 4 * 16000
    for _ in range(6):  # then 1.25 s per tick of compute: behind by 2.5 ticks each time
        engine.feed(np.zeros(20000, np.float32))
        fed += 20000
        work = engine.take()
        engine.apply(work, 0.0)
        works.append(work)
    assert engine.windows_widened >= 6 and engine.windows_skipped == 0
    caps = [w.cuts["captions"].window for w in works if "captions" in w.cuts]
    for a, b in zip(caps, caps[1:]):
        assert b.keep_start == a.keep_end  # no frame lost, none twice
        assert b.start <= b.keep_start * HOP_SAMPLES  # every unsettled frame within the window
    assert max(b.end - a.end for a, b in zip(caps, caps[1:])) > plan.hop_samples  # a wider hop
    stats = engine._stats(works[-1].window.end)
    assert stats.windows_widened == engine.windows_widened and stats.hop > 0.5
    diar = [w.cuts["diarization"].window for w in works if "diarization" in w.cuts]
    assert all(b.keep_start == a.keep_end for a, b in zip(diar, diar[1:]))


def test_a_stream_far_behind_skips_to_the_newest_tick(runners):
    engine = _live(runners, task_windows={"captions": TaskWindow(2.0, 0.5)})
    engine.feed(np.zeros(16000, np.float32))
    engine.apply(engine.take(), 0.0)
    engine.feed(np.zeros(16000 * 10, np.float32))  # 11 s: a 2 s caption window cannot reach back
    work = engine.take()
    assert engine.windows_skipped > 0
    assert work.window.end == 11 * 16000
    assert work.cuts["captions"].window.keep_start > 25  # a gap: those frames are never analysed


def test_the_caption_preview_goes_out_before_the_diarization_runs(runners):
    """Captions are an early task: at a tick where both run, the preview partial is
    published as soon as the CTC model has run, before the diarization pass."""
    audio, _ = sf.read(CLIP, dtype="float32")
    bus, events = EventBus(), []
    bus.subscribe(events.append)
    seen_before: list[int] = []

    class Diarization:
        def __getattr__(self, item):
            return getattr(runners["diarization"], item)

        def activity_batch(self, audios):
            seen_before.append(sum(isinstance(e, CaptionEvent) for e in events))
            return runners["diarization"].activity_batch(audios)

    engine = Engine(EngineConfig(realtime=False, pause_seconds=None), bus, captions=runners["captions"],
                    diarization=Diarization())
    engine.run_offline(audio[i : i + 16000] for i in range(0, len(audio), 16000))
    captions_per_tick = [sum(isinstance(e, CaptionEvent) for e in events)]
    assert seen_before and captions_per_tick[0] > 0
    # the first diarization pass already found the first tick's preview on the bus
    assert seen_before[0] >= 1 and all(a <= b for a, b in zip(seen_before, seen_before[1:]))
