"""wavlm_live.metrics on cases computed by hand (the derivations are in the comments)."""

import math

import numpy as np
import pytest

from wavlm_live import metrics as M


# ----------------------------------------------------------------------------- CER / WER

def test_char_errors_kitten_sitting():
    # kitten -> sitting: k->s, e->i (substitutions), + g (insertion): the textbook distance 3
    c = M.char_errors("kitten", "sitting")
    assert (c.substitutions, c.deletions, c.insertions, c.reference_length) == (2, 0, 1, 6)
    assert c.rate == pytest.approx(3 / 6)


def test_word_errors_each_kind():
    ref = "one two three four five six seven"
    hyp = "one TOO three five six seven eight"
    # one | two->too (S) | three | four (D) | five six seven | eight (I): S=1 D=1 I=1, N=7;
    # every other alignment costs more (e.g. shifting five..seven by substitution costs 4)
    c = M.word_errors(ref, hyp)
    assert (c.substitutions, c.deletions, c.insertions, c.reference_length) == (1, 1, 1, 7)
    assert M.wer(ref, hyp) == pytest.approx(3 / 7)


def test_cer_counts_spaces_and_normalises():
    # normalisation: case, punctuation and quote-apostrophes do not count
    assert M.cer("It's a dog.", "'IT'S A DOG'") == 0.0
    # "AB CD" -> "ABCD": one deleted space out of 5 characters
    assert M.cer("ab cd", "abcd") == pytest.approx(1 / 5)


def test_corpus_rates_are_pooled_not_averaged():
    refs = ["a b c d", "e f"]  # 4 + 2 words
    hyps = ["a b c d", "x y"]  # 0 + 2 errors
    assert M.wer(refs, hyps) == pytest.approx(2 / 6)  # the mean of per-utterance rates would be 0.5


def test_empty_cases_and_bad_input():
    assert M.wer("", "") == 0.0
    assert M.wer("", "word") == math.inf
    assert M.wer("two words", "") == 1.0
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        M.wer(["a", "b"], ["a"])
    with pytest.raises(TypeError):
        M.wer("a", ["a"])


@pytest.mark.parametrize("seed", range(3))
def test_error_counts_match_a_textbook_levenshtein(seed):
    rng = np.random.default_rng(seed)
    a = "".join(rng.choice(list("ABC D"), 60))
    b = "".join(rng.choice(list("ABC D"), 45))
    ref, hyp = M.normalize_transcript(a), M.normalize_transcript(b)
    # textbook O(nm) Levenshtein distance
    d = list(range(len(hyp) + 1))
    for i, x in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    c = M.char_errors(a, b)
    assert c.errors == d[-1] and c.reference_length == len(ref)


def test_long_transcripts_use_little_memory():
    # An 18 000-character pair (a few minutes of speech): the old full (n+1) x (m+1) cost
    # matrix peaked at 924 MiB in this test (4.2 s); jiwer: 1.5 MiB traced (0.09 s).
    import tracemalloc

    rng = np.random.default_rng(0)
    words = ["THE", "CAT", "SAT", "ON", "A", "MAT", "AND", "SLEPT"]
    ref = " ".join(rng.choice(words, 4000))[:18000]
    hyp = " ".join(w if rng.random() > 0.1 else "DOG" for w in ref.split())
    tracemalloc.start()
    try:
        rate = M.cer(ref, hyp)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert 0 < rate < 0.2
    assert peak < 50 * 2**20, f"{peak / 2**20:.0f} MiB"


# ----------------------------------------------------------------------------- DER

REF = [(0.0, 10.0, "A"), (8.0, 15.0, "B")]  # 2 s of overlap, 8-10 s


def test_der_perfect_with_renamed_speakers():
    hyp = [(0.0, 10.0, "s1"), (8.0, 15.0, "s2")]
    e = M.diarization_errors(REF, hyp, collar=0.0)
    assert e.total == pytest.approx(17.0)  # 10 s of A + 7 s of B: overlap counted per speaker
    assert e.der == 0.0
    assert dict(e.mapping) == {"A": "s1", "B": "s2"}


def test_der_overlap_missed_no_collar():
    # hypothesis has one speaker at a time: x 0-9, y 9-15
    # 8-9: ref {A, B}, hyp {x}: 1 missed;  9-10: ref {A, B}, hyp {y}: 1 missed;  else exact.
    e = M.diarization_errors(REF, [(0.0, 9.0, "x"), (9.0, 15.0, "y")], collar=0.0)
    assert (e.total, e.missed, e.false_alarm, e.confusion) == pytest.approx((17.0, 2.0, 0.0, 0.0))
    assert e.der == pytest.approx(2 / 17)


def test_der_collar_removes_boundary_regions():
    # collar 0.5 s around the reference boundaries 0, 8, 10, 15 leaves scored
    # A: 0.5-7.5 and 8.5-9.5 (8 s), B: 8.5-9.5 and 10.5-14.5 (5 s) -> 13 s;
    # missed: 8.5-9.5 has 2 reference speakers and 1 hypothesis speaker -> 1 s.
    e = M.diarization_errors(REF, [(0.0, 9.0, "x"), (9.0, 15.0, "y")], collar=0.5)
    assert (e.total, e.missed, e.false_alarm, e.confusion) == pytest.approx((13.0, 1.0, 0.0, 0.0))


def test_der_confusion_and_false_alarm():
    ref = [(0.0, 4.0, "A"), (4.0, 10.0, "B")]
    # hyp: s1 0-6, s2 6-10, s3 1-2 (an extra speaker).  Mapping by overlap: A->s1 (4 s), B->s2 (4 s).
    # 4-6: ref B, hyp s1: confusion 2 s.  1-2: ref A, hyp s1+s3: false alarm 1 s.  total 10 s.
    hyp = [(0.0, 6.0, "s1"), (6.0, 10.0, "s2"), (1.0, 2.0, "s3")]
    e = M.diarization_errors(ref, hyp, collar=0.0)
    assert (e.total, e.missed, e.false_alarm, e.confusion) == pytest.approx((10.0, 0.0, 1.0, 2.0))
    assert e.der == pytest.approx(0.3)
    # a 0.25 s collar around 0, 4, 10 removes 0-0.25, 3.75-4.25, 9.75-10 (scored 10 - 1 = 9 s):
    # confusion 4.25-6 = 1.75 s, false alarm still 1 s
    e = M.diarization_errors(ref, hyp, collar=0.25)
    assert (e.total, e.false_alarm, e.confusion) == pytest.approx((9.0, 1.0, 1.75))


def test_der_missed_speech_and_pooling():
    e1 = M.diarization_errors([(0.0, 4.0, "A")], [], collar=0.0)
    assert (e1.total, e1.missed) == (4.0, 4.0)
    e2 = M.diarization_errors([(0.0, 6.0, "A")], [(0.0, 6.0, "z")], collar=0.0)
    assert (e1 + e2).der == pytest.approx(4 / 10)


def test_der_merges_self_overlapping_turns_and_rejects_bad_turns():
    e = M.diarization_errors([(0.0, 3.0, "A"), (2.0, 5.0, "A")], [(0.0, 5.0, "h")], collar=0.0)
    assert (e.total, e.der) == (5.0, 0.0)
    with pytest.raises(ValueError, match="ends before it starts"):
        M.diarization_errors([(2.0, 1.0, "A")], [])
    with pytest.raises(ValueError, match="collar"):
        M.diarization_errors([], [], collar=-1)


def test_rttm_round_trip(tmp_path):
    from wavlm_live.engine.writers import write_rttm

    turns = [(0.5, 2.25, "spk0"), (1.75, 3.0, "spk1")]
    write_rttm(tmp_path / "a.rttm", "conv", turns)
    line = (tmp_path / "a.rttm").read_text().splitlines()[0]
    assert line == "SPEAKER conv 1 0.500 1.750 <NA> <NA> spk0 <NA> <NA>"
    assert M.read_rttm(tmp_path / "a.rttm") == {"conv": turns}
    (tmp_path / "bad.rttm").write_text("SPEAKER conv 1 x 1.0 <NA> <NA> a <NA> <NA>\n")
    with pytest.raises(ValueError, match="bad.rttm:1"):
        M.read_rttm(tmp_path / "bad.rttm")


# ----------------------------------------------------------------------------- EER

def test_eer_exact_crossing():
    # targets .9 .8 .7, non-targets .75 .2 .1.  At threshold .75: accepted non-targets 1/3
    # (FAR 1/3), rejected targets 1/3 (.7): FRR 1/3 -> EER 1/3 at .75.
    eer, thr = M.equal_error_rate([0.9, 0.8, 0.7, 0.75, 0.2, 0.1], [1, 1, 1, 0, 0, 0])
    assert eer == pytest.approx(1 / 3)
    assert thr == pytest.approx(0.75)


def test_eer_interpolated_and_separable():
    # targets .9 .6, non-targets .7 .1.  ROC points (FAR, FRR): t=.9 (0, .5), t=.7 (.5, .5)...
    # FRR - FAR: t=.9: .5 > 0; t=.7: 0 -> EER .5 at .7 exactly.
    assert M.equal_error_rate([0.9, 0.6, 0.7, 0.1], [1, 1, 0, 0])[0] == pytest.approx(0.5)
    # 4 targets .9 .8 .7 .3, 2 non-targets .5 .1: t=.7: FAR 0, FRR .25;  t=.5: FAR .5, FRR .25;
    # the line between them crosses FAR = FRR at a = .25/.5 -> EER .25, threshold .7 - .5*.2 = .6
    eer, thr = M.equal_error_rate([0.9, 0.8, 0.7, 0.3, 0.5, 0.1], [1, 1, 1, 1, 0, 0])
    assert eer == pytest.approx(0.25)
    assert thr == pytest.approx(0.6)
    assert M.equal_error_rate([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0])[0] == 0.0
    assert M.equal_error_rate([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0])[0] == 1.0


def test_eer_bad_input():
    with pytest.raises(ValueError, match="target and non-target"):
        M.equal_error_rate([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        M.equal_error_rate([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError, match="3 scores but 2 labels"):
        M.equal_error_rate([0.1, 0.2, 0.3], [1, 0])


def test_read_trials(tmp_path):
    (tmp_path / "trials.txt").write_text("1 a.wav b.wav\n0 a.wav c.wav\n\n")
    assert M.read_trials(tmp_path / "trials.txt") == [(1, "a.wav", "b.wav"), (0, "a.wav", "c.wav")]
    (tmp_path / "bad.txt").write_text("yes a.wav b.wav\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        M.read_trials(tmp_path / "bad.txt")


def _brute_force_der(ref, hyp, collar, step=0.001):
    """Independent check: 1 ms grid, all one-to-one mappings tried, md-eval formula per frame."""
    import itertools
    end = max(e for _, e, _ in ref + hyp)
    t = (np.arange(int(round(end / step))) + 0.5) * step
    rs, hs = sorted({s for *_, s in ref}), sorted({s for *_, s in hyp})
    R = np.array([np.any([(t >= a) & (t < b) for a, b, s in ref if s == n], axis=0) for n in rs])
    H = np.array([np.any([(t >= a) & (t < b) for a, b, s in hyp if s == n], axis=0) for n in hs])
    bounds = np.array([x for a, b, _ in ref for x in (a, b)])
    scored = np.min(np.abs(t[:, None] - bounds[None]), axis=1) >= collar
    nr, nh = R.sum(0), H.sum(0)
    best = None
    k = min(len(rs), len(hs))
    for perm in itertools.permutations(range(len(hs)), k):
        for rsel in itertools.combinations(range(len(rs)), k):
            correct = sum(R[r] & H[h] for r, h in zip(rsel, perm))
            err = (np.maximum(0, nr - nh) + np.maximum(0, nh - nr) + np.minimum(nr, nh) - correct)[scored].sum()
            best = err if best is None else min(best, err)
    return best / nr[scored].sum()


@pytest.mark.parametrize("seed", range(5))
def test_der_matches_brute_force_grid(seed):
    rng = np.random.default_rng(seed)

    def turns(names, n):
        out = []
        for _ in range(n):
            a = round(float(rng.uniform(0, 9)), 2)
            out.append((a, round(a + float(rng.uniform(0.3, 3)), 2), str(rng.choice(names))))
        return out

    ref, hyp = turns(["A", "B", "C"], 6), turns(["x", "y"], 5)
    for collar in (0.0, 0.25):
        assert M.der(ref, hyp, collar) == pytest.approx(_brute_force_der(ref, hyp, collar), abs=2e-3)


# ----------------------------------------------------------------------------- DER vs pyannote.metrics

@pytest.mark.parametrize("seed", range(6))
@pytest.mark.filterwarnings("ignore:'uem' was approximated")
def test_der_equals_pyannote_metrics_on_the_same_rttm_files(tmp_path, seed):
    # pyannote.metrics (an independent implementation) scores the same RTTM files; its
    # collar is the total width, twice ours (md-eval's -c), and it scores overlap when
    # skip_overlap is False. Times on a 10 ms grid, as RTTM files usually have. Speakers
    # overlap each other, but no speaker overlaps itself: there pyannote counts each
    # segment as a separate track where md-eval (and we) merge them.
    from pyannote.database.util import load_rttm
    from pyannote.metrics.diarization import DiarizationErrorRate

    from wavlm_live.engine.writers import write_rttm

    rng = np.random.default_rng(100 + seed)

    def turns(names, n):
        out = []
        for name in names:
            t = round(float(rng.uniform(0, 3)), 2)
            for _ in range(n):
                end = round(t + float(rng.uniform(0.2, 6)), 2)
                out.append((t, end, name))
                t = round(end + float(rng.uniform(0.01, 5)), 2)
        return out

    ref_path, hyp_path = tmp_path / "ref.rttm", tmp_path / "hyp.rttm"
    write_rttm(ref_path, "conv", turns(["A", "B", "C"], 5))
    write_rttm(hyp_path, "conv", turns(["S1", "S2", "S3", "S4"], 4))
    reference = [t for ts in M.read_rttm(ref_path).values() for t in ts]
    hypothesis = [t for ts in M.read_rttm(hyp_path).values() for t in ts]
    ref_ann, hyp_ann = load_rttm(ref_path)["conv"], load_rttm(hyp_path)["conv"]
    for collar in (0.0, 0.25):
        ours = M.diarization_errors(reference, hypothesis, collar=collar)
        metric = DiarizationErrorRate(collar=2 * collar, skip_overlap=False)
        theirs = metric(ref_ann, hyp_ann, detailed=True)
        assert ours.der == pytest.approx(theirs["diarization error rate"], abs=1e-9)
        assert ours.total == pytest.approx(theirs["total"], abs=1e-6)
        assert ours.missed == pytest.approx(theirs["missed detection"], abs=1e-6)
        assert ours.false_alarm == pytest.approx(theirs["false alarm"], abs=1e-6)
        assert ours.confusion == pytest.approx(theirs["confusion"], abs=1e-6)
