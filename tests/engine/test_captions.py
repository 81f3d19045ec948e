"""Caption stitching on synthetic CTC id streams with the real greedy decoder: phrases end
at pauses and speaker changes, long speech is cut by length, partials precede finals."""

import numpy as np
import pytest

from wavlm_live.engine.captions import CaptionStitcher
from wavlm_live.engine.windows import WindowPlan
from wavlm_live.model import CTCDecoder, CTCVocabulary

TOKENS = ("[PAD]", "[UNK]", "|", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "'")
VOCAB = CTCVocabulary(TOKENS, pad_token="[PAD]", unk_token="[UNK]", bos_token=None, eos_token=None)


def frames_of(script):
    """A CTC frame sequence: each letter 2 frames, a blank after it, '|' between words,
    and '_' in the script meaning 10 blank frames (0.2 s)."""
    ids = []
    for ch in script:
        if ch == "_":
            ids += [0] * 10
        elif ch == " ":
            ids += [2, 2]
        else:
            ids += [TOKENS.index(ch)] * 2 + [0]
    return np.array(ids)


def run(ids, speaker_of=None, **kw):
    plan = WindowPlan(2.0, 0.5)
    total = (len(ids) - 1) * 320 + 400
    stitcher = CaptionStitcher(CTCDecoder(VOCAB), 0, 2, speaker_of=speaker_of, **kw)
    onehot = np.eye(len(TOKENS), dtype=np.float32)[ids]
    events = []
    for w in plan.windows_for(total):
        events.append(stitcher.add(w, onehot[w.frame_start : w.frame_end]))
        events += stitcher.commit()
    events += stitcher.finish()
    return [e for e in events if e is not None]


def finals(events):
    return [e.text for e in events if e.final]


def test_phrases_end_at_pauses_not_at_windows():
    ids = frames_of("GOOD MORNING EVERYONE" + "_" * 4 + "HOW ARE YOU" + "_" * 4 + "FINE")
    events = run(ids)
    assert finals(events) == ["GOOD MORNING EVERYONE", "HOW ARE YOU", "FINE"]
    # the words showed up in partials before they became final
    first_partial = next(i for i, e in enumerate(events) if not e.final and "MORNING" in e.text)
    first_final = next(i for i, e in enumerate(events) if e.final)
    assert first_partial < first_final


def test_speaker_change_splits_a_phrase_at_the_word_boundary():
    ids = frames_of("YES I AGREE NO WAY")
    change = len(frames_of("YES I AGREE "))

    def speaker_of(start, end):
        return "S1" if end <= change else "S2"

    events = run(ids, speaker_of=speaker_of)
    fin = [e for e in events if e.final]
    assert [e.text for e in fin] == ["YES I AGREE", "NO WAY"]
    assert [e.speaker for e in fin] == ["S1", "S2"]
    assert all(w.speaker == e.speaker for e in fin for w in e.words)


def test_long_speech_without_pause_is_cut_by_length():
    words = [f"W{c}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"] * 2
    ids = frames_of(" ".join(words))
    events = run(ids, max_segment_words=10, max_segment_seconds=60)
    out = finals(events)
    assert " ".join(out).split() == words
    assert all(len(t.split()) >= 10 for t in out[:-1]) and len(out) >= 4
    assert [e.segment for e in events if e.final] == list(range(len(out)))


def test_long_speech_finals_are_short_phrases_by_default():
    """Without pauses, the default cuts give finals of about 10 words or 3 s (a cut is made
    at the first window past the limit: up to one 0.5 s hop of words more), so a word's
    final does not wait for a 5 s phrase to fill."""
    words = [f"{c}{c}{c}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"] * 3  # 11 frames a word: 0.22 s
    events = run(frames_of(" ".join(words)))
    fin = [e for e in events if e.final]
    assert " ".join(e.text for e in fin).split() == words
    assert len(fin) >= 8
    for e in fin[:-1]:
        span = e.words[-1].end - e.words[0].start
        assert len(e.words) <= 10 + 3 and span <= 3.0 + 0.5, (len(e.words), span)
        assert len(e.words) >= 10 or span >= 3.0  # cut for its length, not earlier


@pytest.mark.parametrize("bad", [dict(max_segment_words=0), dict(max_segment_seconds=0), dict(pause_frames=0)])
def test_bad_settings_are_rejected(bad):
    with pytest.raises(ValueError):
        CaptionStitcher(CTCDecoder(VOCAB), 0, 2, **bad)


def test_final_decoder_rereads_each_final_segment_while_partials_stay_greedy(tmp_path):
    from wavlm_live.model.lm import BeamSettings, CTCBeamDecoder, KenLM, build_arpa

    build_arpa(["the cat sat", "a cat ran"], tmp_path / "lm.arpa", order=2)
    beam = CTCBeamDecoder(VOCAB, KenLM(tmp_path / "lm.arpa"), BeamSettings(alpha=0.8, beta=1.0))
    ids = frames_of("THE KAT SAT" + "_" * 4 + "A KAT RAN")
    probs = np.full((len(ids), len(TOKENS)), 0.002)
    probs[np.arange(len(ids)), ids] = 0.9
    k_frames = np.flatnonzero(ids == TOKENS.index("K"))
    probs[k_frames, TOKENS.index("K")], probs[k_frames, TOKENS.index("C")] = 0.5, 0.4
    logits = np.log(probs / probs.sum(1, keepdims=True)).astype(np.float32)

    def stream(**kw):
        stitcher = CaptionStitcher(CTCDecoder(VOCAB), 0, 2, **kw)
        events = []
        for w in WindowPlan(2.0, 0.5).windows_for((len(ids) - 1) * 320 + 400):
            events.append(stitcher.add(w, logits[w.frame_start : w.frame_end]))
            events += stitcher.commit()
        return [e for e in events + stitcher.finish() if e is not None]

    assert finals(stream()) == ["THE KAT SAT", "A KAT RAN"]
    events = stream(final_decoder=beam)
    assert finals(events) == ["THE CAT SAT", "A CAT RAN"]
    assert any("KAT" in e.text for e in events if not e.final)  # partials: greedy
    second = [e for e in events if e.final][1]
    assert second.words[0].start == pytest.approx(len(frames_of("THE KAT SAT" + "_" * 4)) * 0.02)


def test_final_decoder_gets_the_previous_words_only_when_a_segment_was_cut_for_length():
    greedy = CTCDecoder(VOCAB)
    contexts = []

    ends = []

    class Recorder:
        def decode(self, logits, context=(), ends_utterance=True):
            contexts.append(tuple(context))
            ends.append(ends_utterance)
            return greedy.decode(logits.argmax(-1))

    ids = frames_of("ONE TWO THREE FOUR FIVE SIX SEVEN" + "_" * 4 + "EIGHT NINE")
    events = run(ids, max_segment_words=2, final_decoder=Recorder())
    texts = finals(events)
    assert " ".join(texts) == "ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE"
    after_pause = next(k for k, t in enumerate(texts) if t.startswith("EIGHT"))
    assert after_pause >= 3 and len(contexts) == len(texts)  # several length cuts before the pause
    assert contexts[0] == () and contexts[after_pause] == ()
    for k in range(1, after_pause):
        assert contexts[k] == tuple(texts[k - 1].split())
    # a segment the next one continues does not end the utterance (no </s> for the LM)
    assert ends == [False] * (after_pause - 1) + [True] * (len(texts) - after_pause + 1)


ZH_TOKENS = ("[PAD]", "[UNK]", *"你好世界我们在这里", *"abcxyz")
ZH_VOCAB = CTCVocabulary(ZH_TOKENS + ("|",), pad_token="[PAD]", unk_token="[UNK]", bos_token=None, eos_token=None)


def zh_frames(script):
    """Chinese CTC frames: each character 2 frames then a blank, '_' = 10 blanks, no delimiter
    (Latin letters 1 frame each, then no blank, so a Latin run is one word)."""
    ids = []
    for ch in script:
        if ch == "_":
            ids += [0] * 10
        elif ch.isascii():
            ids += [ZH_TOKENS.index(ch)]
        else:
            ids += [ZH_TOKENS.index(ch)] * 2 + [0]
    return np.array(ids)


def test_character_vocabulary_without_delimiter_cuts_by_length_and_joins_without_spaces():
    """Chinese: every character is a word (its own timing), a word closes after the blank that
    follows a character, so long speech without pauses is cut into segments by length; the
    text has no spaces between characters (one before and after a Latin word)."""
    script = "你好世界我们在这里" * 4 + "abc" + "你好"
    ids = zh_frames(script)
    decoder = CTCDecoder(ZH_VOCAB)
    plan = WindowPlan(2.0, 0.5)
    stitcher = CaptionStitcher(decoder, 0, None, max_segment_words=8, max_segment_seconds=60)
    onehot = np.eye(len(ZH_VOCAB), dtype=np.float32)[ids][:, : len(ZH_TOKENS)]  # the head has no "|"
    events = []
    for w in plan.windows_for((len(ids) - 1) * 320 + 400):
        events.append(stitcher.add(w, onehot[w.frame_start : w.frame_end]))
        events += stitcher.commit()
    events = [e for e in events + stitcher.finish() if e is not None]
    fin = [e for e in events if e.final]
    assert len(fin) >= 3 and all(len(e.words) >= 8 for e in fin[:-1])  # cut by length: no pause, no delimiter
    words = [w.text for e in fin for w in e.words]
    assert words == [*("你好世界我们在这里" * 4), "abc", "你", "好"]
    assert all(" " not in e.text or "abc" in e.text for e in fin)
    assert "".join(e.text for e in fin).replace(" ", "") == script
    whole = decoder.decode(ids)
    assert [w.text for e in fin for w in e.words] == [w.word for w in whole.words]
    assert [(w.start, w.end) for e in fin for w in e.words] == \
        [(round(w.start, 4), round(w.end, 4)) for w in whole.words]
    assert any(e.text.endswith("abc 你好") for e in fin)


@pytest.mark.parametrize("lag", [0, 60, 150])
def test_finals_wait_for_settled_speakers_but_not_for_ever(lag):
    """With speakers settled ``lag`` frames behind the captions, long speech without
    pauses is still cut by length at the last word whose speakers are settled, every
    final word has its speaker, and the text equals the run without the wait."""
    words = "ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE TEN ELEVEN TWELVE " * 4
    ids = frames_of(words.strip())
    state = {"settled": 0}

    def speaker_of(start, end):  # a speaker only where settled (partials ask for the tail too)
        return "S1" if end <= state["settled"] else None

    plan = WindowPlan(2.0, 0.5)
    stitcher = CaptionStitcher(CTCDecoder(VOCAB), 0, 2, speaker_of=speaker_of, max_segment_seconds=3.0,
                               speakers_settled=lambda: state["settled"])
    onehot = np.eye(len(TOKENS), dtype=np.float32)[ids]
    events, cut_at = [], []
    for w in plan.windows_for((len(ids) - 1) * 320 + 400):
        events.append(stitcher.add(w, onehot[w.frame_start : w.frame_end]))
        state["settled"] = max(0, w.keep_end - lag) if not w.final else w.keep_end
        new = stitcher.commit()
        cut_at += [w.keep_end for e in new if e.final]
        events += new
    events += stitcher.finish()
    final_events = [e for e in events if e is not None and e.final]
    assert " ".join(e.text for e in final_events).split() == words.split()
    assert all(w.speaker == "S1" for e in final_events for w in e.words)
    assert len(final_events) >= 4  # cut by length while the speech went on, not one final at the end
    assert len(cut_at) >= 3
