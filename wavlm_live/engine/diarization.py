"""Diarization stitching: per-window local speaker activity -> stable global speaker labels.

A frame-classification model (``WavLMForAudioFrameClassification``, e.g.
microsoft/wavlm-base-plus-sd) gives, for every frame of a window, the activity
probability of K *local* speakers whose order is arbitrary per window (the models are
trained with a permutation-invariant loss). Local speakers are mapped to global ones by
optimal assignment (Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``) on

* the agreement of their activity with the previous window's mapped activity on the
  frames both windows share (soft Dice overlap), as in block-online EEND
  (Xue et al., "Online end-to-end neural diarization with speaker-tracing buffer", 2021)
  and diart's overlap-aware stitching;
* the cosine similarity of their x-vector to tracked speakers' centroids when embeddings
  are enabled (diart's ``OnlineSpeakerClustering``), which also re-identifies speakers
  returning after a silence.

A two-speaker frame model sometimes puts two people in one local slot of a window (one
after the other). With x-vectors of each slot's *segments* (runs of speech separated by
pauses, :class:`Segment`), a segment whose x-vector is closer to another tracked speaker's
centroid than to its slot's speaker is moved to that speaker, and centroids are updated
per segment, so one window's mix-up neither mislabels the other voice nor blurs the
centroids (segment-level re-assignment, cf. the clustering step of VBx/pyannote's
segment embeddings).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import median_filter
from scipy.optimize import linear_sum_assignment

from wavlm_live.engine.speakers import Speaker, SpeakerTracker, l2_normalize
from wavlm_live.engine.windows import FRAME_SECONDS, Window
from wavlm_live.events import DiarizationEvent, Turn


@dataclass(frozen=True)
class DiarizationConfig:
    """Settings of :class:`DiarizationStitcher` (frames are 20 ms).

    Attributes:
        threshold: activity probability at or above which a speaker counts as active.
        median_frames: odd length of the median filter applied to each local speaker's
            binary activity (1 disables it); removes blips shorter than half of it.
        overlap_min: minimum soft-Dice overlap (0..1) for a local speaker to continue a
            global one by overlap alone.
        embedding_weight: weight of the cosine similarity next to the overlap score.
        min_new_frames: active frames a local speaker needs in a window before an
            unmatched one becomes a new global speaker.
        turn_gap_frames: silence (frames) that ends a speaker turn.
        history_frames: settled frame labels kept for speaker look-ups of caption words.
        segment_margin: how much more similar (cosine) a segment's x-vector must be to
            another speaker's centroid than to its slot's speaker to be moved there.
        new_speaker_frames: with x-vectors on, solo frames a local speaker needs in a
            window before an x-vector that matches nobody makes it a new speaker (a
            shorter one joins the most similar unused speaker: x-vectors of a second or
            so are too noisy to found a speaker on).
        segment_min_frames: solo frames a run needs to get its own x-vector (0 disables
            segment re-assignment).
        segment_gap_frames: pauses shorter than this do not split a run.
        new_speaker_margin: hysteresis of speaker creation (cosine similarity): a voice
            that continues nobody founds a new speaker only when its x-vector is more than
            this much below ``threshold`` of the speaker tracker for every tracked speaker.
            Within the margin it is *undecided*: labelled as the most similar free speaker,
            without touching that speaker's centroid, and decided on the mean of its
            x-vectors of the next windows (see :meth:`DiarizationStitcher._decide`). One
            voice's 4 s x-vectors of the demo models vary by about 0.1 with where the
            windows fall (docs/engine.md, "Speaker stability"). 0 decides on the first
            x-vector alone (the behaviour before the margin).
        confirm_windows: x-vectors (one per window) an undecided voice is decided on:
            with that many, a mean still within the margin joins the speaker.
        undecided_margin: how far below the threshold (cosine) a first x-vector may be and
            still make the voice undecided rather than a new speaker at once (at least
            ``new_speaker_margin``; the decision itself uses ``new_speaker_margin``). On
            the held-out demo conversations 4.7% of a voice's window x-vectors are more
            than 0.1 below the 0.86 threshold to its own centroid, 1% more than 0.3.
    """

    threshold: float = 0.5
    median_frames: int = 5
    overlap_min: float = 0.3
    embedding_weight: float = 1.0
    min_new_frames: int = 15
    turn_gap_frames: int = 15
    history_frames: int = 3000
    segment_margin: float = 0.0
    new_speaker_frames: int = 100
    segment_min_frames: int = 40
    segment_gap_frames: int = 10
    new_speaker_margin: float = 0.1
    confirm_windows: int = 2
    undecided_margin: float = 0.3


@dataclass
class _Undecided:
    """A voice labelled, for now, as a speaker it may not be (see
    ``DiarizationConfig.new_speaker_margin``): its x-vectors so far (not merged into any
    centroid) and the windows it has been undecided in."""

    vectors: list[np.ndarray]
    windows: int = 1


@dataclass(frozen=True)
class Segment:
    """A run of one local speaker's solo speech inside a window, with its x-vector.

    Attributes:
        local: local speaker (slot) index.
        start, end: window-relative frames ``[start, end)``.
        embedding: float32 ``[dim]`` x-vector pooled over the run.
    """

    local: int
    start: int
    end: int
    embedding: np.ndarray


@dataclass
class DiarizationResult:
    """What one window produced.

    Attributes:
        event: settled labels of the window's kept frames (``None`` if it settled none).
        mapping: local speaker index -> global speaker id for this window.
        changed: speakers whose state changed (talk time, new turn, new x-vector).
    """

    event: DiarizationEvent | None
    mapping: dict[int, str]
    changed: list[Speaker] = field(default_factory=list)


def soft_dice(p: np.ndarray, q: np.ndarray) -> float:
    """Soft Dice overlap ``2 sum(min(p, q)) / (sum p + sum q)`` of two activity curves
    in [0, 1] (0 when both are silent)."""
    denom = float(p.sum() + q.sum())
    return 0.0 if denom <= 1e-6 else 2.0 * float(np.minimum(p, q).sum()) / denom


def solo_activity(active: np.ndarray) -> np.ndarray:
    """Bool ``[frames, local_speakers]``: where each local speaker alone is active
    (``active`` of the same shape)."""
    return active & (active.sum(axis=1, keepdims=True) == 1)


def solo_runs(alone: np.ndarray, min_frames: int, max_gap: int) -> list[tuple[int, int, int]]:
    """Runs of solo speech per local speaker: ``(local, start, end)`` frame spans
    (``end`` exclusive) holding at least ``min_frames`` solo frames, joining runs
    separated by fewer than ``max_gap`` frames.

    Args:
        alone: bool ``[frames, local_speakers]`` solo activity (:func:`solo_activity`).
        min_frames: shortest run kept (frames).
        max_gap: gaps shorter than this many frames do not split a run.
    """
    runs = []
    for k in range(alone.shape[1]):
        idx = np.flatnonzero(alone[:, k])
        if idx.size == 0:
            continue
        breaks = np.flatnonzero(np.diff(idx) > max_gap)
        starts = np.r_[idx[0], idx[breaks + 1]]
        ends = np.r_[idx[breaks], idx[-1]] + 1
        runs += [(k, int(a), int(b)) for a, b in zip(starts, ends) if alone[a:b, k].sum() >= min_frames]
    return sorted(runs, key=lambda r: (r[1], r[0]))


class DiarizationStitcher:
    """Maps each window's local speakers to global speakers and emits settled labels.

    Args:
        tracker: the shared speaker registry (ids, centroids, talk time, turns).
        config: thresholds and filter lengths.

    Call :meth:`update` once per window in stream order and :meth:`finish` at the end.
    Not thread-safe; the engine thread owns it.
    """

    def __init__(self, tracker: SpeakerTracker, config: DiarizationConfig | None = None) -> None:
        self.tracker = tracker
        self.config = config or DiarizationConfig()
        if self.config.median_frames < 1 or self.config.median_frames % 2 == 0:
            raise ValueError(f"median_frames must be odd and >= 1, got {self.config.median_frames}")
        self._prev_start = 0  # absolute frame of the previous window's first frame
        self._prev: dict[str, np.ndarray] = {}  # global id -> activity probs over the previous window
        self._history: deque[tuple[str, ...]] = deque(maxlen=self.config.history_frames)
        self._history_end = 0  # absolute frame one past the newest settled label
        self._tail_start = 0
        self._tail: list[tuple[str, ...]] = []  # tentative labels of the unsettled tail
        self._open: dict[str, list[int]] = {}  # speaker id -> [turn start frame, last active frame]
        self._undecided: dict[str, _Undecided] = {}  # speaker id an undecided voice is labelled with -> it

    # -- look-ups ----------------------------------------------------------------------

    @property
    def settled_end(self) -> int:
        """Absolute frame index one past the newest settled label."""
        return self._history_end

    def labels(self, start: int, end: int) -> list[tuple[str, ...]]:
        """Labels of absolute frames ``[start, end)``: settled ones from the history,
        tentative ones from the newest window's tail, empty tuples where unknown."""
        out = []
        hist_start = self._history_end - len(self._history)
        for f in range(start, end):
            if hist_start <= f < self._history_end:
                out.append(self._history[f - hist_start])
            elif self._tail_start <= f < self._tail_start + len(self._tail):
                out.append(self._tail[f - self._tail_start])
            else:
                out.append(())
        return out

    def speaker_of(self, start: int, end: int) -> str | None:
        """The speaker active in most of the absolute frames ``[start, end)`` (ties go to
        the lower id), or ``None`` when nobody is active there."""
        counts: dict[str, int] = {}
        for labels in self.labels(start, end):
            for s in labels:
                counts[s] = counts.get(s, 0) + 1
        if not counts:
            return None
        return max(sorted(counts), key=lambda s: counts[s])

    def continues(self, window: Window, probs: np.ndarray, local: int) -> bool:
        """Whether local speaker ``local`` of ``window`` (activity ``probs`` ``[frames,
        speakers]``, before :meth:`update` of that window) continues a speaker of the
        previous window by overlap alone: a soft-Dice overlap of at least
        ``overlap_min`` on the frames both windows share."""
        if not self._prev:
            return False
        f0, n = window.frame_start, probs.shape[0]
        lo = max(f0, self._prev_start)
        hi = min(f0 + n, self._prev_start + len(next(iter(self._prev.values()))))
        if hi <= lo:
            return False
        ours = probs[lo - f0 : hi - f0, local]
        return any(soft_dice(ours, prev[lo - self._prev_start : hi - self._prev_start]) >= self.config.overlap_min
                   for prev in self._prev.values())

    # -- stitching ---------------------------------------------------------------------

    def binarize(self, probs: np.ndarray) -> np.ndarray:
        """Activity probabilities ``[frames, speakers]`` -> bool activity after the
        threshold and the median filter."""
        active = probs >= self.config.threshold
        if self.config.median_frames > 1 and active.shape[0] >= self.config.median_frames:
            active = median_filter(active, size=(self.config.median_frames, 1), mode="nearest")
        return active

    def _map(self, window: Window, probs: np.ndarray, active: np.ndarray,
             embeddings: dict[int, np.ndarray] | None
             ) -> tuple[dict[int, str], dict[int, _Undecided], list[tuple[str, list[np.ndarray]]]]:
        """Local -> global mapping of one window, the slots still undecided (with their
        state) and the x-vectors of earlier windows that decided voices bring to their
        speaker's centroid."""
        cfg = self.config
        xvectors_on = embeddings is not None
        embeddings = embeddings or {}
        f0 = window.frame_start
        n, k_local = probs.shape
        prev_ids = list(self._prev)
        tracked = [s for s in self.tracker.speakers.values() if s.centroid is not None and s.id not in self._prev]
        candidates = prev_ids + [s.id for s in tracked]
        lo = max(f0, self._prev_start)
        hi = min(f0 + n, self._prev_start + (len(next(iter(self._prev.values()))) if self._prev else 0))
        score = np.full((k_local, len(candidates)), -np.inf)
        for k in range(k_local):
            if not active[:, k].any():
                continue
            emb = embeddings.get(k)
            for j, gid in enumerate(candidates):
                total, admissible = 0.0, False
                if gid in self._prev and hi > lo:
                    ov = soft_dice(probs[lo - f0 : hi - f0, k], self._prev[gid][lo - self._prev_start : hi - self._prev_start])
                    total += ov
                    admissible |= ov >= cfg.overlap_min
                if emb is not None:
                    sim = self.tracker.speakers[gid].similarity_to(emb)
                    if sim is not None:
                        total += cfg.embedding_weight * sim
                        admissible |= sim >= self.tracker.threshold
                if admissible:
                    score[k, j] = total
        mapping: dict[int, str] = {}
        if candidates:
            finite = np.where(np.isfinite(score), score, -1e6)
            rows, cols = linear_sum_assignment(finite, maximize=True)
            for k, j in zip(rows, cols):
                if np.isfinite(score[k, j]):
                    mapping[int(k)] = candidates[j]
        used = set(mapping.values())
        undecided, confirmed = self._decide(mapping, embeddings, used)
        keep = slice(window.keep_start - f0, window.keep_end - f0)
        alone = solo_activity(active)
        for k in range(k_local):
            if k in mapping or active[:, k].sum() < cfg.min_new_frames:
                continue
            emb = embeddings.get(k)
            if emb is None and xvectors_on and not active[keep, k].any():
                # x-vectors are on but this voice has too little solo speech yet, and none
                # of it settles now: decide in a later window, when it has an x-vector
                continue
            twin = self._twin(emb, used)
            if twin is not None:
                mapping[k] = twin.id  # the frame model gave one voice two slots
                continue
            may_create = not xvectors_on or (emb is not None and alone[:, k].sum() >= cfg.new_speaker_frames)
            speaker, tentative = self._match_or_create(emb, used, may_create=may_create)
            if speaker is None:
                continue  # every allowed speaker is taken in this window: leave it unlabelled
            mapping[k] = speaker.id
            used.add(speaker.id)
            if tentative:
                undecided[k] = _Undecided([emb])
        return mapping, undecided, confirmed

    def _decide(self, mapping: dict[int, str], embeddings: dict[int, np.ndarray],
                used: set[str]) -> tuple[dict[int, _Undecided], list[tuple[str, list[np.ndarray]]]]:
        """Decide the undecided voices of the previous window that this window continues
        (the Hungarian step mapped their slot to the speaker they are labelled with).

        With this window's x-vector added, the mean of the voice's L2-normalised
        x-vectors (cosine similarity ``sim`` to the speaker's centroid) decides: ``sim``
        at or above the tracker's threshold joins the speaker; more than
        ``new_speaker_margin`` below it founds a new speaker, which this window's slot is
        then mapped to (``mapping`` and ``used`` are updated); within the margin it joins
        once ``confirm_windows`` x-vectors are in (or after ``2 * confirm_windows``
        windows without enough of them), else it stays undecided. A voice this window
        does not continue is dropped undecided: its frames keep their label and its
        x-vectors are merged nowhere.

        Returns:
            (slot -> state of the voices still undecided, [(speaker id, x-vectors of
            earlier windows to merge into its centroid)] of the decided ones).
        """
        cfg = self.config
        pending, self._undecided = self._undecided, {}
        still: dict[int, _Undecided] = {}
        confirmed: list[tuple[str, list[np.ndarray]]] = []
        threshold = self.tracker.threshold
        for k, gid in list(mapping.items()):
            state = pending.pop(gid, None)
            if state is None:
                continue
            emb = embeddings.get(k)
            vectors = state.vectors + ([emb] if emb is not None else [])
            windows = state.windows + 1
            sim = self.tracker.speakers[gid].similarity_to(np.mean(l2_normalize(np.stack(vectors)), axis=0))
            if sim is None or sim >= threshold:
                confirmed.append((gid, state.vectors))
            elif sim < threshold - cfg.new_speaker_margin and emb is not None and not self.tracker.full:
                new = self.tracker.new_speaker()
                confirmed.append((new.id, state.vectors))
                mapping[k] = new.id
                used.discard(gid)
                used.add(new.id)
            elif len(vectors) >= cfg.confirm_windows or windows >= 2 * cfg.confirm_windows:
                confirmed.append((gid, state.vectors))
            else:
                still[k] = _Undecided(vectors, windows)
        return still, confirmed

    def _twin(self, emb: np.ndarray | None, used: set[str]) -> Speaker | None:
        """The speaker already mapped in this window (one of ``used``) whose centroid an
        unmatched voice's x-vector is most similar to, when that similarity is at least
        the threshold minus ``new_speaker_margin`` while every unused speaker's is below
        it: the frame model has put one voice in two slots, both are that speaker.
        ``None`` otherwise, without an x-vector, or with a margin of 0."""
        margin = self.config.new_speaker_margin
        if emb is None or margin <= 0 or not used:
            return None
        floor = self.tracker.threshold - margin
        best, sim = self.tracker.best_match(emb)
        if best is None or best.id not in used or sim < floor:
            return None
        _, free_sim = self.tracker.best_match(emb, exclude=used)
        return best if free_sim < floor else None

    def _match_or_create(self, emb: np.ndarray | None, used: set[str],
                         may_create: bool = True) -> tuple[Speaker | None, bool]:
        """Global speaker for a local one that continues nobody in the previous window,
        and whether that is tentative: the most similar tracked speaker not ``used`` at or
        above the threshold; that speaker, tentatively (an undecided voice, see
        :meth:`_decide`), when a voice that could found a new speaker has an x-vector
        within ``new_speaker_margin`` below the threshold; else a new one (if
        ``may_create``, i.e. x-vectors are off or this voice has one, or if every tracked
        speaker is used); else the most similar unused speaker (without an x-vector: the
        unused one that talked most); ``None`` when the tracker is full and all are used."""
        best, sim = (None, float("-inf")) if emb is None else self.tracker.best_match(emb, exclude=used)
        threshold = self.tracker.threshold
        if best is not None and sim >= threshold:
            return best, False
        free = [s for s in self.tracker.speakers.values() if s.id not in used]
        if not self.tracker.full and (may_create or not free):
            margin = self.config.new_speaker_margin
            if (may_create and best is not None and margin > 0
                    and sim >= threshold - max(margin, self.config.undecided_margin)):
                return best, True
            return self.tracker.new_speaker(), False
        if best is not None:
            return best, False
        return (max(free, key=lambda s: s.talk_frames) if free else None), False

    def _reassign(self, segment: Segment, slot_speaker: str, mapping: dict[int, str], active: np.ndarray) -> str:
        """The global speaker a segment of a slot mapped to ``slot_speaker`` belongs to:
        another tracked speaker whose centroid is more similar (by ``segment_margin``)
        and who is not active in another slot during the segment, else ``slot_speaker``."""
        own = self.tracker.speakers[slot_speaker].similarity_to(segment.embedding)
        if own is None:
            return slot_speaker
        s, e = segment.start, segment.end
        busy = {g for k, g in mapping.items() if k != segment.local and active[s:e, k].mean() > 0.5}
        best, sim = self.tracker.best_match(segment.embedding, exclude=busy | {slot_speaker})
        if best is not None and sim > own + self.config.segment_margin:
            return best.id
        return slot_speaker

    def update(self, window: Window, probs: np.ndarray, embeddings: dict[int, np.ndarray] | None = None,
               segments: list[Segment] | None = None) -> DiarizationResult:
        """Map one window's local speakers and settle its kept frames.

        Args:
            window: the analysed window.
            probs: float array ``[frames, local_speakers]`` of activity probabilities in
                [0, 1], ``frames == window.frame_end - window.frame_start``.
            embeddings: x-vectors ``{local index: [dim]}`` of the local speakers, or
                ``None`` when x-vectors are off. When they are on, a new voice with too
                little solo speech for an x-vector is not made a new speaker until one of
                its frames must settle, and then joins the unused speaker that talked
                most if there is one.
            segments: optional x-vectors of the local speakers' solo runs; segments may
                be moved to another speaker (see the module docstring) and then update
                the centroids instead of the slot x-vectors.

        Returns:
            The settled labels and the local -> global mapping (slot level).

        Raises:
            ValueError: probabilities of the wrong shape.
        """
        n_frames = window.frame_end - window.frame_start
        if probs.ndim != 2 or probs.shape[0] != n_frames:
            raise ValueError(f"expected activity of shape [{n_frames}, speakers], got {tuple(probs.shape)}")
        segments = segments or []
        active = self.binarize(probs)
        mapping, undecided, confirmed = self._map(window, probs, active, embeddings)
        self._undecided = {mapping[k]: state for k, state in undecided.items()}
        # an undecided voice's x-vectors and segments change no centroid yet
        embeddings = {k: v for k, v in (embeddings or {}).items() if k not in undecided}
        # frame-level ownership: start from the slot mapping (two slots of one voice
        # united), then move re-assigned segments
        owner_p: dict[str, np.ndarray] = {}
        owner_a: dict[str, np.ndarray] = {}
        for k, gid in mapping.items():
            if gid in owner_p:
                owner_p[gid] = np.maximum(owner_p[gid], probs[:, k])
                owner_a[gid] = owner_a[gid] | active[:, k]
            else:
                owner_p[gid], owner_a[gid] = probs[:, k] * 1.0, active[:, k].copy()
        updates: list[tuple[str, np.ndarray]] = [(gid, v) for gid, vectors in confirmed for v in vectors]
        seg_slots = set()
        for seg in segments:
            if seg.local not in mapping or seg.local in undecided:
                continue
            slot_speaker = mapping[seg.local]
            gid = self._reassign(seg, slot_speaker, mapping, active)
            if gid != slot_speaker:
                s, e = seg.start, seg.end
                if gid not in owner_p:
                    owner_p[gid], owner_a[gid] = np.zeros(n_frames, probs.dtype), np.zeros(n_frames, bool)
                owner_p[gid][s:e] = np.maximum(owner_p[gid][s:e], probs[s:e, seg.local])
                owner_a[gid][s:e] |= active[s:e, seg.local]
                owner_p[slot_speaker][s:e] = 0.0
                owner_a[slot_speaker][s:e] = False
            updates.append((gid, seg.embedding))
            seg_slots.add(seg.local)
        updates += [(gid, embeddings[k]) for k, gid in mapping.items() if k in embeddings and k not in seg_slots]
        changed: dict[str, Speaker] = {}
        for gid, emb in updates:
            self.tracker.add_embedding(self.tracker.speakers[gid], emb)
            changed[gid] = self.tracker.speakers[gid]
        f0 = window.frame_start
        gids = sorted(owner_a)
        stacked = np.stack([owner_a[g] for g in gids], axis=1) if gids else np.zeros((n_frames, 0), bool)
        labels = [tuple(g for g, on in zip(gids, row) if on) for row in stacked]
        self._prev = owner_p
        self._prev_start = f0
        a, b = window.keep_start - f0, window.keep_end - f0
        settled = labels[a:b]
        self._tail_start = window.keep_end
        self._tail = labels[b:]
        if not settled:
            return DiarizationResult(None, mapping, list(changed.values()))
        turns = self._settle(window.keep_start, settled, changed)
        event = DiarizationEvent(
            start=round(window.keep_start * FRAME_SECONDS, 4),
            end=round(window.keep_end * FRAME_SECONDS, 4),
            frame=FRAME_SECONDS,
            labels=tuple(settled),
            turns=tuple(turns),
        )
        return DiarizationResult(event, mapping, list(changed.values()))

    def _settle(self, start: int, settled: list[tuple[str, ...]], changed: dict[str, Speaker]) -> list[Turn]:
        """Append settled labels to the history, update talk time and turns."""
        if start != self._history_end:
            self._history.clear()  # a gap (skipped windows): earlier labels no longer adjoin
        turns: list[Turn] = []
        for i, labels in enumerate(settled):
            frame = start + i
            for gid in labels:
                speaker = self.tracker.speakers[gid]
                self.tracker.mark_active(speaker, frame)
                if gid in self._open:
                    self._open[gid][1] = frame
                else:
                    self._open[gid] = [frame, frame]
                    speaker.turns += 1
                changed[gid] = speaker
            for gid, (t0, last) in list(self._open.items()):
                if frame - last >= self.config.turn_gap_frames:
                    turns.append(self._close(gid))
            self._history.append(labels)
        self._history_end = start + len(settled)
        return turns

    def _close(self, gid: str) -> Turn:
        t0, last = self._open.pop(gid)
        return Turn(gid, round(t0 * FRAME_SECONDS, 4), round((last + 1) * FRAME_SECONDS, 4))

    def finish(self) -> list[Turn]:
        """Close every open turn (end of stream) and return them in start order."""
        turns = [self._close(gid) for gid in list(self._open)]
        return sorted(turns, key=lambda t: (t.start, t.speaker))
