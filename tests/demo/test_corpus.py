"""scripts/corpus.py: text normalisation, splits, synthesis, conversations and eval folders on a tiny run."""

import json

import numpy as np
import pytest
import soundfile as sf

from wavlm_live import metrics


def test_normalize_and_filter(corpus_mod):
    assert corpus_mod.normalize_text("'I hate you,' she burst out -- twice!") == "I HATE YOU SHE BURST OUT TWICE"
    assert corpus_mod.normalize_text("a well-known man's dog") == "A WELL KNOWN MAN'S DOG"
    usable = corpus_mod.sentence_is_usable
    assert usable("the oven is off and the kitchen is cold")
    assert not usable("the plans were filed in 1966 by the city")  # digits are read as number words
    assert not usable("the NATO summit was held in the spring")  # acronyms may be spelled out
    assert not usable("Mr. Smith went to the station")  # abbreviation
    assert not usable("too short")


def test_split_list_is_seeded_and_disjoint(corpus_mod):
    items = list(range(50))
    a = corpus_mod.split_list(items, 7, 5, 10)
    assert a == corpus_mod.split_list(items, 7, 5, 10)
    assert a != corpus_mod.split_list(items, 8, 5, 10)
    assert (len(a["val"]), len(a["test"]), len(a["train"])) == (5, 10, 35)
    assert sorted(a["train"] + a["val"] + a["test"]) == items
    with pytest.raises(ValueError):
        corpus_mod.split_list(items, 0, 25, 25)


def test_speaker_names_round_trip(corpus_mod):
    s = corpus_mod.Speaker("en-US", "Annie", 35)
    assert (s.espeak_voice, s.name) == ("en-US+Annie", "en-US+Annie@p35")
    assert corpus_mod.Speaker.parse(s.name) == s
    assert corpus_mod.Speaker.parse("en@p65") == corpus_mod.Speaker("en", "", 65)
    with pytest.raises(ValueError):
        corpus_mod.Speaker.parse("en-US+Annie")


def test_synthesize_is_trimmed_16k_speech(corpus_mod):
    spk = corpus_mod.Speaker("en-GB-x-rp", "f3", 50)
    slow = corpus_mod.synthesize("the oven is off and the kitchen is cold", spk, 140)
    fast = corpus_mod.synthesize("the oven is off and the kitchen is cold", spk, 210)
    assert slow.dtype == np.float32 and slow.ndim == 1
    # 9 words: about 1.5-5 s at 16 kHz; the faster rate is shorter
    assert 1.5 * 16000 < len(slow) < 5 * 16000
    assert len(fast) < 0.9 * len(slow)
    # trimmed: the first and last 40 ms hold speech (within 40 dB of the mean level), not silence
    rms = lambda x: float(np.sqrt(np.mean(x ** 2)))
    assert rms(slow[:320 * 2]) > 0.01 * rms(slow)
    assert rms(slow[-320 * 2:]) > 0.01 * rms(slow)


def test_tiny_build_splits_and_contents(tiny_corpus, corpus_mod):
    folder, meta = tiny_corpus
    s, v = meta["sentences"], meta["variants"]
    assert (len(s["val"]), len(s["test"])) == (5, 8)
    assert not set(s["train"]) & set(s["val"]) and not set(s["train"]) & set(s["test"])
    assert not set(s["val"]) & set(s["test"])
    assert (len(v["val"]), len(v["test"])) == (2, 2)
    assert "" in v["train"]
    assert not set(v["train"]) & set(v["val"]) and not set(v["train"]) & set(v["test"])
    assert json.loads((folder / "meta.json").read_text()) == meta

    sentence_split = {"train": s["train"], "val": s["val"], "val_unseen": s["val"]}
    variant_split = {"train": v["train"], "val": v["train"], "val_unseen": v["val"]}
    for name in ("train", "val", "val_unseen"):
        uset = corpus_mod.UtteranceSet(folder / name)
        assert len(uset) > 0
        raw = np.load(folder / name / "audio.npy")
        assert raw.dtype == np.int16 and len(raw) == sum(u["length"] for u in uset.utts)
        for i, u in enumerate(uset.utts):
            assert u["text"] in sentence_split[name]
            assert u["norm"] == corpus_mod.normalize_text(u["text"])
            spk = corpus_mod.Speaker.parse(u["speaker"])
            assert spk.variant in variant_split[name] and spk.voice in corpus_mod.BASE_VOICES
            assert spk.pitch in corpus_mod.PITCHES and abs(u["pitch"] - spk.pitch) <= corpus_mod.PITCH_JITTER
            lo, hi = corpus_mod.SPEED_RANGE
            assert lo <= u["speed"] <= hi
            x = uset.audio(i)
            assert len(x) == u["length"] and np.abs(x).max() > 0.05
            # at least ~40 ms of audio per letter at these speaking rates, at most ~150 ms
            assert 0.03 * len(u["norm"]) < len(x) / 16000 < 0.15 * len(u["norm"])
    train = corpus_mod.UtteranceSet(folder / "train")
    assert 35 < train.seconds < 50  # asked for 40 s


def test_conversation_labels_match_audio_activity(corpus_mod):
    rng = np.random.default_rng(0)
    spk = [corpus_mod.Speaker("en-US", "m3", 35), corpus_mod.Speaker("en-GB-scotland", "f2", 65)]
    texts = ["the oven is off and the kitchen is cold", "we ascended the mountain before dawn",
             "pepper makes me sneeze every morning", "the proposal found wide acceptance in town"]
    turns = [(k % 2, corpus_mod.synthesize(t, spk[k % 2], 175), corpus_mod.normalize_text(t))
             for k, t in enumerate(texts)]
    mix, segs = corpus_mod.mix_conversation(turns, rng, 2, p_overlap=1.0)
    assert len(segs) == 4 and [s.speaker for s in segs] == ["spk0", "spk1", "spk0", "spk1"]
    # p_overlap=1 and alternating speakers: every turn after the first overlaps the previous one
    for a, b in zip(segs, segs[1:]):
        assert b.start < a.end
        assert b.start >= a.start + 0.3 - 1e-9
    # each segment is exactly its utterance's span
    for (k, audio, text), seg in zip(turns, segs):
        assert seg.end - seg.start == pytest.approx(len(audio) / 16000, abs=1e-4)
        assert seg.text == text
    labels = corpus_mod.frame_labels(segs, ["spk0", "spk1"], (len(mix) - 400) // 320 + 1)
    frames = np.lib.stride_tricks.sliding_window_view(mix, 400)[::320][:len(labels)]
    energy = np.sqrt(np.mean(frames ** 2, axis=1))
    silent = labels.sum(axis=1) == 0
    assert silent.any() and (labels.sum(axis=1) == 2).any()
    assert energy[silent].max() < 1e-3  # unlabelled frames hold no speech at all
    assert np.median(energy[~silent]) > 0.02
    # RTTM round trip keeps the segments
    assert np.mean(np.abs(mix)) > 0 and np.abs(mix).max() <= 0.95 + 1e-6


def test_frame_labels_use_frame_centres(corpus_mod):
    seg = [corpus_mod.Segment(0.0325, 0.0725, "a")]  # 32.5-72.5 ms
    # frame centres: 12.5, 32.5, 52.5, 72.5, 92.5 ms -> frames 1 and 2 ([start, end) on centres)
    y = corpus_mod.frame_labels(seg, ["a", "b"], 5)
    assert y[:, 0].tolist() == [0, 1, 1, 0, 0] and y[:, 1].sum() == 0
    y = corpus_mod.frame_labels(seg, ["a", "b"], 5, offset=0.02)  # window starts 20 ms in
    assert y[:, 0].tolist() == [1, 1, 0, 0, 0]


def test_eval_folders(tiny_corpus, corpus_mod, tmp_path):
    folder, meta = tiny_corpus
    test_sents = {corpus_mod.normalize_text(t) for t in meta["sentences"]["test"]}
    names = corpus_mod.eval_captions(folder, tmp_path / "cap", "unseen", clips=2, sentences_per_clip=3)
    for n in names:
        x, sr = sf.read(tmp_path / "cap" / f"{n}.wav")
        text = (tmp_path / "cap" / f"{n}.txt").read_text().strip()
        assert sr == 16000 and len(x) > 16000 * 2
        assert all(w.isupper() or w == "'" for w in text.replace("'", "").split())
        assert any(t in text for t in test_sents)
    with pytest.raises(ValueError, match="exceeds"):
        corpus_mod.eval_captions(folder, tmp_path / "cap2", "seen", clips=5, sentences_per_clip=3)

    names = corpus_mod.eval_diarization(folder, tmp_path / "dia", clips=1, duration=10)
    x, sr = sf.read(tmp_path / "dia" / f"{names[0]}.wav")
    turns = metrics.read_rttm(tmp_path / "dia" / f"{names[0]}.rttm")[names[0]]
    assert {s for *_, s in turns} == {"spk0", "spk1"}
    assert max(e for _, e, _ in turns) <= len(x) / sr + 1e-3
    assert metrics.der(turns, turns) == 0.0

    n = corpus_mod.eval_verification(folder, tmp_path / "ver", speakers=3, clips_per_speaker=2, trials=10)
    trials = metrics.read_trials(tmp_path / "ver" / "trials.txt")
    assert len(trials) == n and {t[0] for t in trials} == {0, 1}
    who = dict(line.split() for line in (tmp_path / "ver" / "speakers.txt").read_text().splitlines())
    for label, a, b in trials:
        assert (tmp_path / "ver" / a).exists() and (tmp_path / "ver" / b).exists()
        assert label == int(who[a] == who[b])
        assert corpus_mod.Speaker.parse(who[a]).variant in meta["variants"]["test"]
