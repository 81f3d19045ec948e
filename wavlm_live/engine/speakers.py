"""Running speaker identities: x-vector centroids, talk time, turns and names."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from wavlm_live.engine.windows import FRAME_SECONDS
from wavlm_live.events import SpeakerEvent

MAX_NAME_LENGTH = 64


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Return ``x`` (shape ``[..., dim]``) scaled to unit L2 norm along the last axis
    (zero vectors stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors of the same dimension, in [-1, 1]."""
    return float(np.dot(l2_normalize(a), l2_normalize(b)))


def check_name(name: str | None) -> str | None:
    """Validate a display name: ``None`` or empty clears it; otherwise printable text of
    at most 64 characters, stripped.

    Raises:
        ValueError: not a string, too long, or containing control characters.
    """
    if name is None:
        return None
    if not isinstance(name, str):
        raise ValueError(f"speaker name must be a string, got {type(name).__name__}")
    name = name.strip()
    if not name:
        return None
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"speaker name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}")
    if not name.isprintable():
        raise ValueError("speaker name contains control characters")
    return name


@dataclass
class Speaker:
    """Mutable state of one tracked speaker (owned by :class:`SpeakerTracker`).

    Attributes:
        id: global id, ``"S1"``, ``"S2"``, ...
        name: display name or ``None``.
        centroid: mean of the L2-normalised x-vectors merged so far (not normalised), or
            ``None`` before the first one.
        updates: x-vectors merged into the centroid.
        similarity: cosine similarity of the latest x-vector to the centroid before merging.
        talk_frames: settled frames (20 ms) in which the speaker was active.
        turns: completed or open speaker turns.
        first_frame / last_frame: absolute frame indices of the first/last active frame
            (``None`` before any activity, e.g. for an enrolled speaker).
        enrolled: True for speakers created from reference recordings.
    """

    id: str
    name: str | None = None
    centroid: np.ndarray | None = None
    updates: int = 0
    similarity: float | None = None
    talk_frames: int = 0
    turns: int = 0
    first_frame: int | None = None
    last_frame: int | None = None
    enrolled: bool = False

    def similarity_to(self, embedding: np.ndarray) -> float | None:
        """Cosine similarity of ``embedding`` to this speaker's centroid (``None`` without one)."""
        if self.centroid is None:
            return None
        return cosine_similarity(embedding, self.centroid)


class SpeakerTracker:
    """Tracks global speakers: assigns x-vectors by cosine similarity, keeps centroids,
    talk time and turn counts, and names.

    An x-vector joins the speaker whose centroid is most similar when the cosine
    similarity reaches ``threshold``; otherwise a new speaker is created (the usual
    online clustering of speaker embeddings, cf. diart's ``OnlineSpeakerClustering``).
    Centroids are running means of L2-normalised x-vectors.

    Thread safety: the engine thread updates it; :meth:`rename` may be called from any
    thread (it takes the tracker's lock, as do the engine-side methods).

    With ``max_speakers`` set, no speaker is created beyond that many: an x-vector that
    matches nobody joins the most similar speaker instead (diart's ``max_speakers``; the
    "oracle number of speakers" condition of diarization benchmarks). Enrolled speakers
    count towards the cap.

    Args:
        threshold: minimum cosine similarity to join an existing speaker, in [-1, 1].
        max_speakers: most speakers to create (``None``: no limit).

    Raises:
        ValueError: a threshold outside [-1, 1] or ``max_speakers`` < 1.
    """

    def __init__(self, threshold: float = 0.86, max_speakers: int | None = None) -> None:
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"speaker similarity threshold must be within [-1, 1], got {threshold}")
        if max_speakers is not None and max_speakers < 1:
            raise ValueError(f"max_speakers must be at least 1, got {max_speakers}")
        self.threshold = threshold
        self.max_speakers = max_speakers
        self.speakers: dict[str, Speaker] = {}
        self.lock = threading.RLock()

    @property
    def full(self) -> bool:
        """True when ``max_speakers`` speakers exist, so no new one may be created."""
        return self.max_speakers is not None and len(self.speakers) >= self.max_speakers

    def new_speaker(self, embedding: np.ndarray | None = None, name: str | None = None) -> Speaker:
        """Create the next speaker (``S<n>``), optionally seeded with an x-vector."""
        with self.lock:
            speaker = Speaker(id=f"S{len(self.speakers) + 1}", name=check_name(name))
            self.speakers[speaker.id] = speaker
            if embedding is not None:
                self.add_embedding(speaker, embedding)
            return speaker

    def best_match(self, embedding: np.ndarray, exclude: set[str] | frozenset[str] = frozenset()) -> tuple[Speaker | None, float]:
        """The speaker (not in ``exclude``) whose centroid is most similar to
        ``embedding``, and that cosine similarity; ``(None, -inf)`` without candidates.
        The threshold is not applied here."""
        best, best_sim = None, float("-inf")
        with self.lock:
            for speaker in self.speakers.values():
                if speaker.id in exclude:
                    continue
                sim = speaker.similarity_to(embedding)
                if sim is not None and sim > best_sim:
                    best, best_sim = speaker, sim
        return best, best_sim

    def assign(self, embedding: np.ndarray, exclude: set[str] | frozenset[str] = frozenset()) -> Speaker:
        """Merge ``embedding`` into the best matching speaker at or above the threshold
        (or the best one at all when the tracker is :attr:`full`), or create a new
        speaker with it."""
        with self.lock:
            best, sim = self.best_match(embedding, exclude)
            if best is None or (sim < self.threshold and not self.full):
                return self.new_speaker(embedding)
            self.add_embedding(best, embedding)
            return best

    def add_embedding(self, speaker: Speaker, embedding: np.ndarray) -> float | None:
        """Merge one x-vector into ``speaker``'s centroid; returns (and records) its cosine
        similarity to the centroid before the merge."""
        e = l2_normalize(np.asarray(embedding, dtype=np.float32).reshape(-1))
        with self.lock:
            sim = speaker.similarity_to(e)
            if speaker.centroid is None:
                speaker.centroid = e.copy()
            else:
                if speaker.centroid.shape != e.shape:
                    raise ValueError(f"x-vector has dimension {e.shape[0]}, speaker {speaker.id} has {speaker.centroid.shape[0]}")
                speaker.centroid += (e - speaker.centroid) / (speaker.updates + 1)
            speaker.updates += 1
            speaker.similarity = sim
            return sim

    def enroll(self, name: str, embeddings: np.ndarray) -> Speaker:
        """Create a named speaker from reference x-vectors ``[n, dim]`` (n >= 1).

        Raises:
            ValueError: bad name, a name already taken, no x-vectors, or the tracker
                is :attr:`full`.
        """
        embeddings = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if embeddings.shape[0] == 0:
            raise ValueError(f"no x-vectors to enrol {name!r} with")
        with self.lock:
            checked = check_name(name)
            if checked is None:
                raise ValueError("an enrolled speaker needs a name")
            if any(s.name == checked for s in self.speakers.values()):
                raise ValueError(f"a speaker called {checked!r} is already enrolled")
            if self.full:
                raise ValueError(f"max_speakers is {self.max_speakers}: no room to enrol {checked!r}")
            speaker = self.new_speaker(name=checked)
            speaker.enrolled = True
            for e in embeddings:
                self.add_embedding(speaker, e)
            speaker.similarity = None
            return speaker

    def rename(self, speaker_id: str, name: str | None) -> Speaker:
        """Set or clear (``None``/empty) a speaker's display name.

        Raises:
            KeyError: unknown speaker id.
            ValueError: bad name (see :func:`check_name`).
        """
        checked = check_name(name)
        with self.lock:
            speaker = self.speakers.get(speaker_id)
            if speaker is None:
                raise KeyError(speaker_id)
            speaker.name = checked
            return speaker

    def mark_active(self, speaker: Speaker, frame: int) -> None:
        """Count one settled active frame (absolute index ``frame``) for ``speaker``."""
        speaker.talk_frames += 1
        if speaker.first_frame is None:
            speaker.first_frame = frame
        speaker.last_frame = frame if speaker.last_frame is None else max(speaker.last_frame, frame)

    def event(self, speaker: Speaker) -> SpeakerEvent:
        """The :class:`~wavlm_live.events.SpeakerEvent` describing ``speaker`` now."""
        with self.lock:
            first = (speaker.first_frame or 0) * FRAME_SECONDS
            last = ((speaker.last_frame + 1) * FRAME_SECONDS) if speaker.last_frame is not None else first
            centroid = None
            if speaker.centroid is not None:
                centroid = tuple(float(x) for x in l2_normalize(speaker.centroid))
            return SpeakerEvent(
                id=speaker.id,
                name=speaker.name,
                talk_time=round(speaker.talk_frames * FRAME_SECONDS, 4),
                turns=speaker.turns,
                updates=speaker.updates,
                similarity=None if speaker.similarity is None else round(speaker.similarity, 4),
                first_seen=round(first, 4),
                last_seen=round(last, 4),
                embedding=centroid,
            )
