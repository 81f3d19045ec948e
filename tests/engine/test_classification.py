"""The classification task through the engine: windows (keyword spotting) and speaker
turns (with the diarization task), exact against the runner, JSON round trip, auto mode."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from wavlm_live.cli.app import demo_dir
from wavlm_live.engine.bus import EventBus
from wavlm_live.engine.engine import Engine, EngineConfig
from wavlm_live.engine.tasks import FrameRunner, SequenceRunner
from wavlm_live.events import ClassificationEvent, DiarizationEvent, event_from_dict
from wavlm_live.model import load_pretrained
from wavlm_live.tasks.classification import ClassificationConfig, clip_samples

DATA = Path(__file__).resolve().parents[1] / "data"
CLIP = DATA / "sense_and_sensibility_01_austen_64kb-0870.wav"  # 7.1 s


@pytest.fixture(scope="module")
def classifier(tiny_checkpoints):
    return SequenceRunner(load_pretrained(tiny_checkpoints["classification"]))


def run(config: EngineConfig, audio: np.ndarray, **runners) -> list:
    bus, events = EventBus(), []
    bus.subscribe(events.append)
    Engine(replace(config, realtime=False), bus, **runners).run_offline([audio[i : i + 1600] for i in range(0, len(audio), 1600)])
    return events


def test_runner_reads_the_classes_and_sums_to_one(classifier, tiny_checkpoints):
    assert classifier.labels == ["en", "fr", "de"] and not classifier.keyword_spotting
    keywords = SequenceRunner(load_pretrained(tiny_checkpoints["keywords"]))
    assert keywords.keyword_spotting and keywords.labels[-2:] == ["_silence_", "_unknown_"]
    audio, _ = sf.read(CLIP, dtype="float32")
    probs = classifier.probabilities(audio[:32000])
    assert probs.shape == (3,) and abs(float(probs.sum()) - 1) < 1e-5
    batch = classifier.probabilities_batch([audio[:32000], audio[:16000], audio[16000:48000]])
    np.testing.assert_allclose(batch[0], probs, atol=1e-6)
    np.testing.assert_allclose(batch[2], classifier.probabilities(audio[16000:48000]), atol=1e-6)


def test_windows_mode_classifies_every_window_exactly(classifier):
    audio, _ = sf.read(CLIP, dtype="float32")
    config = EngineConfig(window=2.0, hop=1.0, classification=ClassificationConfig(mode="windows", top_k=2))
    events = run(config, audio, classification=classifier)
    found = [e for e in events if isinstance(e, ClassificationEvent)]
    assert len(found) == len(audio) // 16000 + 1  # every running window and the final one
    for event in found:
        assert event.scope == "window" and event.speaker is None and len(event.labels) == 2
        clip = audio[round(event.start * 16000) : round(event.end * 16000)]
        probs = classifier.probabilities(clip)
        best = np.argsort(-probs)[:2]
        assert [label.label for label in event.labels] == [classifier.labels[i] for i in best]
        assert [label.score for label in event.labels] == pytest.approx([float(probs[i]) for i in best], abs=1e-4)
        assert event_from_dict(event.to_dict()) == event


def test_turns_mode_classifies_each_diarization_turn(classifier):
    """The bundled demo diarization model finds the turns of the demo conversation; every
    turn of at least min_turn_seconds gets one classification with its speaker."""
    frames = FrameRunner(load_pretrained(demo_dir() / "diarization"))
    audio, _ = sf.read(demo_dir() / "conversation.flac", dtype="float32")
    audio = audio[: 25 * 16000]
    config = EngineConfig(classification=ClassificationConfig(mode="turns", min_turn_seconds=0.5))
    seen: list[int] = []
    batch = classifier.probabilities_batch

    def spy(audios):
        seen.extend(len(a) for a in audios)
        return batch(audios)

    classifier.probabilities_batch = spy
    try:
        events = run(config, audio, diarization=frames, classification=classifier)
    finally:
        del classifier.probabilities_batch
    turns = [t for e in events if isinstance(e, DiarizationEvent) for t in e.turns if t.end - t.start >= 0.5]
    found = [e for e in events if isinstance(e, ClassificationEvent)]
    assert len(turns) >= 4
    assert [(e.speaker, e.start, e.end) for e in found] == [(t.speaker, t.start, t.end) for t in turns]
    # the model saw clip lengths from the ladder only: a bounded set of input lengths (exact
    # turn lengths made every turn a new shape and grew the process's memory without bound)
    assert seen and set(seen) <= LADDER and len(seen) == len(turns)
    for event, turn in zip(found, turns):
        start, end = int(round(turn.start * 16000)), int(round(turn.end * 16000))
        clip = audio[start : start + clip_samples(end - start, 20 * 16000)]
        assert event.labels[0].label == classifier.labels[int(np.argmax(classifier.probabilities(clip)))]
        assert event.scope == "turn"


LADDER = {q * 4000 for q in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 80)}
"""Clip lengths in samples for max_turn_seconds 20: 0.25 s quanta 2^k and 1.5 * 2^k, and 20 s."""


def test_clip_lengths_come_from_a_short_ladder():
    """Every turn length maps to one of 13 clip lengths (20 s cap), the longest that fits,
    keeping more than two thirds of the turn's whole quanta; under 0.25 s gives no clip."""
    lengths = {n: clip_samples(n, 20 * 16000) for n in range(0, 30 * 16000, 333)}
    assert set(lengths.values()) - {0} == LADDER
    for n, clip in lengths.items():
        assert clip <= n
        if n < 4000:
            assert clip == 0
        else:
            assert clip > (min(n, 20 * 16000) // 4000 * 4000) * 2 / 3
            assert clip == max(length for length in LADDER if length <= n)
    assert clip_samples(19 * 16000, 20 * 16000) == 16 * 16000  # on the ladder below the cap
    assert clip_samples(60 * 16000, 20 * 16000) == 20 * 16000  # a long turn: its first 20 s


def test_auto_mode_and_what_it_needs(classifier, tiny_checkpoints):
    keywords = SequenceRunner(load_pretrained(tiny_checkpoints["keywords"]))
    frames = FrameRunner(load_pretrained(tiny_checkpoints["diarization"]))
    bus = EventBus()
    assert Engine(EngineConfig(), bus, classification=classifier).context.streams["classification"].mode == "windows"
    both = Engine(EngineConfig(), bus, diarization=frames, classification=classifier)
    assert both.context.streams["classification"].mode == "turns"
    kws = Engine(EngineConfig(), bus, diarization=frames, classification=keywords)
    assert kws.context.streams["classification"].mode == "windows"  # keyword spotting: every window
    with pytest.raises(ValueError, match="needs the diarization task"):
        Engine(EngineConfig(classification=ClassificationConfig(mode="turns")), bus, classification=classifier)
    with pytest.raises(ValueError, match="mode"):
        ClassificationConfig(mode="sometimes")
    assert Engine(EngineConfig(), bus, classification=classifier).hello()["classification_labels"] == ["en", "fr", "de"]
