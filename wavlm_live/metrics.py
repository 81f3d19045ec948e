"""Evaluation metrics: CER/WER, DER (collar, overlap scored), EER; RTTM and trials files.

numpy/scipy and jiwer, no torch. Conventions follow the standard scoring tools so that
numbers are comparable with published ones:

- CER/WER: computed by jiwer (``process_words`` / ``process_characters``: Levenshtein
  alignment in linear memory, substitutions S, deletions D, insertions I, all cost 1) of
  hypothesis against reference; rate = (S + D + I) / N with N the number of reference
  tokens, summed over a corpus before dividing (as NIST sclite and jiwer do). Words are
  whitespace-separated; characters are those of the words joined by single spaces
  (spaces count, as in jiwer's `cer`). Text is compared after `normalize_transcript`
  (ours: jiwer's default transforms only split).
- DER: NIST RT md-eval-22.pl conventions. DER = (missed + false alarm + confusion) /
  total reference speaker time, where at every instant with N_ref reference and N_hyp
  hypothesis speakers and N_correct mapped pairs both active, missed = max(0, N_ref -
  N_hyp), false alarm = max(0, N_hyp - N_ref), confusion = min(N_ref, N_hyp) -
  N_correct and the scored time counts N_ref (overlapping speech is scored, each speaker
  separately). Reference and hypothesis speakers are mapped one-to-one to maximise their
  total overlap time (Hungarian algorithm, `scipy.optimize.linear_sum_assignment`),
  over the scored regions. A collar of c seconds removes [b - c, b + c] around every
  reference segment boundary b from scoring (md-eval `-c 0.25` is a 0.25 s collar on each
  side; pyannote.metrics calls the same thing `collar=0.5`, the total width).
  Segments of one speaker that overlap or touch are merged first (md-eval does; pyannote
  .metrics instead scores each of a speaker's overlapping segments as a track of its own).
  Otherwise the numbers equal pyannote.metrics' ``DiarizationErrorRate(collar=2 * c,
  skip_overlap=False)`` (tested on random RTTM files).
- EER: the operating point where the false-acceptance rate (different-speaker trials
  scored >= threshold) equals the false-rejection rate (same-speaker trials scored <
  threshold), linearly interpolated between the two neighbouring thresholds of the
  empirical ROC (the VoxCeleb/ASVspoof recipe). Higher scores mean "same speaker".

File formats (see docs/demo-models.md):
- RTTM: NIST Rich Transcription Time Marked lines ``SPEAKER FILE CHAN ONSET DUR <NA>
  <NA> NAME <NA> <NA>``, onset and duration in seconds; other line types are ignored.
  The writer is :func:`wavlm_live.engine.writers.format_rttm` (results and corpus alike).
- trials: VoxCeleb verification lists, lines ``LABEL ENROL TEST`` with LABEL 1 (same
  speaker) or 0 (different).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "ErrorCounts", "normalize_transcript", "word_errors", "char_errors",
    "wer", "cer", "DiarizationErrors", "diarization_errors", "der", "read_rttm",
    "equal_error_rate", "read_trials",
]

_NOT_LETTER = re.compile(r"[^A-Z' ]")


def normalize_transcript(text: str) -> str:
    """Upper-case `text` and keep only the LibriSpeech letter vocabulary: A-Z, apostrophe, space.

    Hyphens and slashes become spaces, every other character is dropped as a space,
    apostrophes that open or close a word (quotation marks) are stripped, runs of spaces
    collapse. Raises TypeError for a non-str.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    text = text.upper().replace("\u2019", "'").replace("`", "'")
    text = _NOT_LETTER.sub(" ", text.replace("-", " ").replace("/", " "))
    return " ".join(w for w in (w.strip("'") for w in text.split()) if w)


# ----------------------------------------------------------------------------- CER / WER

@dataclasses.dataclass(frozen=True)
class ErrorCounts:
    """Levenshtein alignment counts; add them to pool a corpus. `rate` = (S + D + I) / N,
    N the number of reference tokens (S + D + hits)."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference_length: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """(S + D + I) / N; inf when N is 0 and there are errors, 0.0 when both are 0."""
        if self.reference_length == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.reference_length

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        return ErrorCounts(self.substitutions + other.substitutions, self.deletions + other.deletions,
                           self.insertions + other.insertions, self.reference_length + other.reference_length)


def _pairs(references, hypotheses) -> list[tuple[str, str]]:
    if isinstance(references, str) != isinstance(hypotheses, str):
        raise TypeError("references and hypotheses must both be str or both be sequences of str")
    if isinstance(references, str):
        return [(references, hypotheses)]
    references, hypotheses = list(references), list(hypotheses)
    if len(references) != len(hypotheses):
        raise ValueError(f"got {len(references)} references but {len(hypotheses)} hypotheses")
    return list(zip(references, hypotheses))


def _counts(pairs: list[tuple[str, str]], unit: str) -> ErrorCounts:
    """Pooled alignment counts of normalised (reference, hypothesis) pairs by jiwer:
    ``unit`` "words" (whitespace-separated) or "chars" (spaces included). Pairs with an
    empty side are counted here (all insertions or all deletions), as jiwer 3 refuses
    empty references."""
    import jiwer  # noqa: PLC0415 - eval and training use it, the live app never does

    tokens = (lambda t: t.split()) if unit == "words" else list
    s = d = i = n = 0
    refs, hyps = [], []
    for ref, hyp in pairs:
        ref, hyp = normalize_transcript(ref), normalize_transcript(hyp)
        if not ref or not hyp:
            d += len(tokens(ref))
            i += len(tokens(hyp))
            n += len(tokens(ref))
        else:
            refs.append(ref)
            hyps.append(hyp)
    if refs:
        out = jiwer.process_words(refs, hyps) if unit == "words" else jiwer.process_characters(refs, hyps)
        s, d, i = s + out.substitutions, d + out.deletions, i + out.insertions
        n += out.substitutions + out.deletions + out.hits
    return ErrorCounts(int(s), int(d), int(i), int(n))


def word_errors(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> ErrorCounts:
    """Word alignment counts over one transcript pair or a corpus (lists of equal length),
    after :func:`normalize_transcript`, by ``jiwer.process_words`` (Levenshtein over
    whitespace-separated words, rapidfuzz's linear-memory alignment)."""
    return _counts(_pairs(references, hypotheses), "words")


def char_errors(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> ErrorCounts:
    """Character alignment counts (spaces between words included) over one pair or a
    corpus, after :func:`normalize_transcript`, by ``jiwer.process_characters``."""
    return _counts(_pairs(references, hypotheses), "chars")


def wer(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> float:
    """Word error rate (S + D + I) / N, pooled over the corpus; 0.25 means 25%."""
    return word_errors(references, hypotheses).rate


def cer(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> float:
    """Character error rate (S + D + I) / N, pooled over the corpus; 0.25 means 25%."""
    return char_errors(references, hypotheses).rate


# ----------------------------------------------------------------------------- DER

Turn = tuple[float, float, str]
"""(start seconds, end seconds, speaker label)."""


@dataclasses.dataclass(frozen=True)
class DiarizationErrors:
    """Durations in seconds of scored reference speech and of each error kind; add to pool files."""

    total: float = 0.0
    missed: float = 0.0
    false_alarm: float = 0.0
    confusion: float = 0.0
    mapping: tuple = ()
    """(reference speaker, hypothesis speaker) pairs of the optimal mapping (one file only)."""

    @property
    def der(self) -> float:
        """(missed + false alarm + confusion) / total; 0.0 when nothing is scored and nothing is wrong."""
        err = self.missed + self.false_alarm + self.confusion
        if self.total == 0:
            return 0.0 if err == 0 else float("inf")
        return err / self.total

    def __add__(self, other: "DiarizationErrors") -> "DiarizationErrors":
        return DiarizationErrors(self.total + other.total, self.missed + other.missed,
                                 self.false_alarm + other.false_alarm, self.confusion + other.confusion)


def _merge(turns: Iterable[Turn]) -> dict[str, np.ndarray]:
    """Per speaker, the union of its intervals as a sorted [k, 2] array of disjoint [start, end)."""
    by_spk: dict[str, list[tuple[float, float]]] = {}
    for t in turns:
        if len(t) != 3:
            raise ValueError(f"a turn is (start, end, speaker), got {t!r}")
        start, end, spk = float(t[0]), float(t[1]), str(t[2])
        if not (np.isfinite(start) and np.isfinite(end)) or end < start:
            raise ValueError(f"turn ends before it starts or is not finite: {t!r}")
        if end > start:
            by_spk.setdefault(spk, []).append((start, end))
    out = {}
    for spk, iv in by_spk.items():
        iv.sort()
        merged = [list(iv[0])]
        for s, e in iv[1:]:
            if s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        out[spk] = np.array(merged, np.float64)
    return out


def _active(intervals: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Boolean [len(t)]: t inside one of the disjoint sorted [start, end) intervals."""
    k = np.searchsorted(intervals[:, 0], t, side="right") - 1
    return (k >= 0) & (t < intervals[np.maximum(k, 0), 1])


def diarization_errors(reference: Iterable[Turn], hypothesis: Iterable[Turn], collar: float = 0.25,
                       uem: tuple[float, float] | None = None) -> DiarizationErrors:
    """Score one file's hypothesis turns against its reference turns (md-eval conventions).

    reference, hypothesis: iterables of (start s, end s, speaker label); labels of the two
    sides need not match (they are mapped optimally). collar: seconds excluded on each
    side of every reference boundary (0 scores everything). uem: optional (start, end)
    scoring region in seconds; default from the earliest to the latest turn of either
    side. Overlapping reference speech is scored. Raises ValueError on a negative collar
    or a malformed turn.
    """
    if collar < 0:
        raise ValueError(f"collar must be >= 0 seconds, got {collar}")
    reference, hypothesis = list(reference), list(hypothesis)
    ref, hyp = _merge(reference), _merge(hypothesis)
    everything = [iv for d in (ref, hyp) for iv in d.values()]
    if not everything:
        return DiarizationErrors()
    if uem is None:
        uem = (min(iv[0, 0] for iv in everything), max(iv[-1, 1] for iv in everything))
    # elementary intervals between every boundary, collar edge and UEM edge
    bounds = [np.array(uem, np.float64)] + [iv.ravel() for iv in everything]
    # collars go around every reference turn's start and end as given (pyannote.metrics
    # does the same), before same-speaker turns are merged
    ref_bounds = np.array([float(x) for t in reference for x in t[:2]], np.float64)
    if collar > 0 and len(ref_bounds):
        bounds += [ref_bounds - collar, ref_bounds + collar]
    edges = np.unique(np.clip(np.concatenate(bounds), uem[0], uem[1]))
    if len(edges) < 2:
        return DiarizationErrors()
    mid = (edges[:-1] + edges[1:]) / 2
    dur = np.diff(edges)
    scored = np.ones(len(mid), bool)
    if collar > 0 and len(ref_bounds):
        # distance from each midpoint to its nearest reference boundary
        sb = np.sort(ref_bounds)
        k = np.searchsorted(sb, mid)
        near = np.minimum(np.abs(mid - sb[np.clip(k - 1, 0, len(sb) - 1)]), np.abs(sb[np.clip(k, 0, len(sb) - 1)] - mid))
        scored &= near >= collar
    w = dur * scored
    ref_names, hyp_names = sorted(ref), sorted(hyp)
    R = np.zeros((len(ref_names), len(mid)), bool)
    H = np.zeros((len(hyp_names), len(mid)), bool)
    for i, s in enumerate(ref_names):
        R[i] = _active(ref[s], mid)
    for i, s in enumerate(hyp_names):
        H[i] = _active(hyp[s], mid)
    overlap = (R[:, None, :] & H[None, :, :]).astype(np.float64) @ w  # [n_ref, n_hyp] seconds
    mapping = ()
    n_correct = np.zeros(len(mid))
    if len(ref_names) and len(hyp_names):
        rows, cols = linear_sum_assignment(overlap, maximize=True)
        mapping = tuple((ref_names[r], hyp_names[c]) for r, c in zip(rows, cols))
        n_correct = (R[rows] & H[cols]).sum(axis=0)
    n_ref, n_hyp = R.sum(axis=0), H.sum(axis=0)
    return DiarizationErrors(
        total=float(n_ref @ w),
        missed=float(np.maximum(0, n_ref - n_hyp) @ w),
        false_alarm=float(np.maximum(0, n_hyp - n_ref) @ w),
        confusion=float((np.minimum(n_ref, n_hyp) - n_correct) @ w),
        mapping=mapping,
    )


def der(reference: Iterable[Turn], hypothesis: Iterable[Turn], collar: float = 0.25) -> float:
    """Diarization error rate of one file; see `diarization_errors`. 0.15 means 15%."""
    return diarization_errors(reference, hypothesis, collar).der


def read_rttm(path: str | Path) -> dict[str, list[Turn]]:
    """Read SPEAKER lines of an RTTM file: {file id: [(start s, end s, speaker), ...]}.

    Raises ValueError naming the line for a SPEAKER line with fewer than 8 fields or
    non-numeric onset/duration. Blank lines, ``;;`` comments and other types are skipped.
    """
    out: dict[str, list[Turn]] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        f = line.split()
        if not f or f[0] != "SPEAKER":
            continue
        if len(f) < 8:
            raise ValueError(f"{path}:{n}: RTTM SPEAKER line needs 8+ fields, got {len(f)}: {line!r}")
        try:
            onset, duration = float(f[3]), float(f[4])
        except ValueError:
            raise ValueError(f"{path}:{n}: onset/duration are not numbers: {line!r}") from None
        out.setdefault(f[1], []).append((onset, onset + duration, f[7]))
    return out


# ----------------------------------------------------------------------------- EER

def equal_error_rate(scores: Sequence[float], labels: Sequence[int]) -> tuple[float, float]:
    """Equal error rate of verification trials; returns (eer, threshold).

    scores: [n] floats, higher = more likely the same speaker (e.g. cosine similarity).
    labels: [n] of 1 (same speaker, target) or 0 (different, non-target); both kinds must
    occur. At threshold t a trial is accepted when score >= t; FAR(t) = accepted
    non-targets / non-targets, FRR(t) = rejected targets / targets. The ROC points at
    every distinct score are joined by straight lines and the EER is where FAR = FRR;
    the threshold is interpolated the same way. Raises ValueError on mismatched lengths,
    labels other than 0/1 or a missing class.
    """
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise ValueError(f"got {s.size} scores but {y.size} labels")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0 or 1, found {sorted(set(np.unique(y).tolist()) - {0, 1})}")
    n_tar, n_non = int((y == 1).sum()), int((y == 0).sum())
    if n_tar == 0 or n_non == 0:
        raise ValueError(f"need both target and non-target trials, got {n_tar} and {n_non}")
    thr = np.unique(s)[::-1]  # descending: FAR rises, FRR falls
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    # accepted counts at each threshold t: trials with score >= t
    idx = np.searchsorted(-s_sorted, -thr, side="right")
    tar_acc = np.concatenate([[0], np.cumsum(y_sorted == 1)])[idx]
    non_acc = np.concatenate([[0], np.cumsum(y_sorted == 0)])[idx]
    far = np.concatenate([[0.0], non_acc / n_non])  # threshold above every score: accept nothing
    frr = np.concatenate([[1.0], 1 - tar_acc / n_tar])
    t = np.concatenate([[thr[0] + 1.0], thr])
    diff = frr - far  # starts at 1, ends <= 0 (at the lowest threshold FAR = 1, FRR = 0)
    k = int(np.argmax(diff <= 0))
    if diff[k] == 0:
        return float(far[k]), float(t[k])
    # linear interpolation between ROC points k-1 (diff > 0) and k (diff < 0)
    a = diff[k - 1] / (diff[k - 1] - diff[k])
    eer = far[k - 1] + a * (far[k] - far[k - 1])
    return float(eer), float(t[k - 1] + a * (t[k] - t[k - 1]))


def read_trials(path: str | Path) -> list[tuple[int, str, str]]:
    """Read a trials file: [(label 1/0, enrolment path, test path), ...], paths as written.

    Raises ValueError naming the line when it is not three fields with a 0/1 label.
    """
    out = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        f = line.split()
        if not f:
            continue
        if len(f) != 3 or f[0] not in ("0", "1"):
            raise ValueError(f"{path}:{n}: expected 'LABEL ENROL TEST' with LABEL 0 or 1, got {line!r}")
        out.append((int(f[0]), f[1], f[2]))
    return out
