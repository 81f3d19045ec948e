"""Utterance classification: keyword spotting, emotion, language identification.

The model is a sequence-classification checkpoint (``WavLMForSequenceClassification`` and
its Wav2Vec2/HuBERT equivalents: projector, mean pooling over frames, classifier), run by
:class:`~wavlm_live.engine.tasks.SequenceRunner`; its classes come from the checkpoint's ``id2label``. What is
classified (:class:`ClassificationConfig`):

- ``turns``: every speaker turn the diarization task closes (its audio read back from the
  ring buffer, at most ``max_turn_seconds``), one ``classification`` event per turn with
  the turn's speaker; a turn closed in one window is classified with the next window's
  batch (or when the stream ends);
- ``windows``: every analysis window (keyword spotting: the keyword classes show up
  where someone says one; ``_silence_``/``_unknown_`` classes elsewhere).

``auto`` takes ``windows`` for keyword-spotting label sets (they hold ``_silence_`` or
``_unknown_``, as superb/wav2vec2-base-superb-ks does) or without diarization, ``turns``
otherwise. Each event carries the ``top_k`` classes with their softmax probabilities.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wavlm_live.engine.ringbuffer import OverwrittenError
from wavlm_live.engine.windows import SAMPLE_RATE
from wavlm_live.events import ClassificationEvent, Event, Label, Turn

from .base import StreamContext, Task, TaskStream, Work

log = logging.getLogger(__name__)

CLIP_QUANTUM = SAMPLE_RATE // 4
"""Turn clips are whole multiples of 0.25 s (4000 samples)."""


def clip_samples(available: int, max_samples: int) -> int:
    """Length in samples of the clip a turn of ``available`` samples is classified on: the
    largest rung of the ladder 1, 2, 3, 4, 6, 8, 12, 16, ... quanta of :data:`CLIP_QUANTUM`
    (``2^k`` and ``1.5 * 2^k``; a clip keeps more than two thirds of its turn) or
    ``max_samples`` floored to a quantum, whichever fits in ``min(available, max_samples)``;
    0 when under one quantum.

    Why a ladder: every distinct input length makes oneDNN build and cache new kernels
    (primitives) and PyTorch new buffers, kept for the life of the process. Exact turn
    lengths grew a looped 46 s demo stream's memory by ~30 MB per loop (653 -> 1060 MiB
    over 9 minutes of audio; 502 -> 513 MiB with the classification task off); whole
    quanta still gave a new length now and then for as long as the stream ran (+8% over a
    10-minute soak; ~10 MB per new length of the demo language model, measured on lengths
    1-16 s); the ladder bounds the lengths by about ``2 log2(max_turn_seconds / 0.25 s)``.
    """
    top = min(available, max_samples) // CLIP_QUANTUM
    if top < 1:
        return 0
    if top == max_samples // CLIP_QUANTUM:
        return top * CLIP_QUANTUM  # the longest clip: max_turn_seconds itself
    best, k = 1, 0
    while (2 << k) <= top:  # rungs 2^(k+1) and 3 * 2^k
        best = 3 << k if (3 << k) <= top else 2 << k
        k += 1
    return best * CLIP_QUANTUM


@dataclass(frozen=True)
class ClassificationConfig:
    """Settings of the classification task.

    Attributes:
        mode: ``"auto"``, ``"turns"`` or ``"windows"`` (see the module docstring).
        top_k: classes per event, best first.
        min_turn_seconds: shorter turns are not classified.
        max_turn_seconds: a longer turn is classified on its first this-many seconds.
    """

    mode: str = "auto"
    top_k: int = 3
    min_turn_seconds: float = 0.5
    max_turn_seconds: float = 20.0

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "turns", "windows"):
            raise ValueError(f"classification mode must be auto, turns or windows, got {self.mode!r}")
        if not 1 <= self.top_k <= 1000:
            raise ValueError(f"top_k must be within [1, 1000], got {self.top_k}")
        if not 0 < self.min_turn_seconds <= self.max_turn_seconds:
            raise ValueError("turn seconds must satisfy 0 < min_turn_seconds <= max_turn_seconds")


class ClassificationTask(Task):
    """Shared sequence-classification model (a :class:`~wavlm_live.engine.tasks.SequenceRunner`)."""

    name = "classification"
    kind = "sequence"

    def describe(self) -> dict[str, Any]:
        """``classification_labels``: the model's classes."""
        return {"classification_labels": list(self.runner.labels)}

    def warmup(self, samples: int) -> None:
        self.runner.probabilities(np.zeros(samples, np.float32))

    def run(self, requests: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
        """Requests (each a list of clips) -> probabilities ``[classes]`` per clip."""
        clips = [clip for request in requests for clip in request]
        probs = self.runner.probabilities_batch(clips) if clips else []
        out, i = [], 0
        for request in requests:
            out.append(probs[i : i + len(request)])
            i += len(request)
        return out

    def open(self, ctx: StreamContext) -> ClassificationStream:
        return ClassificationStream(self, ctx)


class ClassificationStream(TaskStream):
    """One stream's classifications: of its turns, or of its windows."""

    def __init__(self, task: ClassificationTask, ctx: StreamContext) -> None:
        super().__init__(task, ctx)
        self.config: ClassificationConfig = ctx.config.classification
        mode = self.config.mode
        if mode == "auto":
            mode = "windows" if task.runner.keyword_spotting or "diarization" not in ctx.tasks else "turns"
        if mode == "turns" and "diarization" not in ctx.tasks:
            raise ValueError("classifying speaker turns needs the diarization task; use the windows mode")
        self.mode = mode
        self._pending: list[Turn] = []
        self._asked: list[Turn] = []

    def _event(self, start: float, end: float, speaker: str | None, scope: str, probs: np.ndarray) -> ClassificationEvent:
        labels = self.task.runner.labels
        top = np.argsort(-probs, kind="stable")[: self.config.top_k]
        return ClassificationEvent(start=round(start, 4), end=round(end, 4), speaker=speaker, scope=scope,
                                   labels=tuple(Label(labels[i], round(float(probs[i]), 4)) for i in top))

    def _clip(self, turn: Turn) -> np.ndarray | None:
        """The turn's first :func:`clip_samples` samples from the ring (at most
        ``max_turn_seconds``, on the ladder of clip lengths); ``None`` when it is shorter
        than one quantum or already overwritten."""
        start = int(round(turn.start * SAMPLE_RATE))
        end = min(int(round(turn.end * SAMPLE_RATE)), self.ctx.ring.written)
        n = clip_samples(end - start, int(self.config.max_turn_seconds * SAMPLE_RATE))
        if n == 0:
            return None
        end = start + n
        try:
            return self.ctx.ring.read(start, end)
        except OverwrittenError:
            log.debug("turn %.2f-%.2f s of %s: audio already overwritten, not classified", turn.start, turn.end,
                      turn.speaker)
            return None

    def request(self, work: Work) -> list[np.ndarray] | None:
        if self.mode == "windows":
            cut = self.cut(work)
            return [cut.audio] if cut is not None and cut.speech else None
        clips, self._asked = [], []
        for turn in self._pending:
            clip = self._clip(turn)
            if clip is not None:
                clips.append(clip)
                self._asked.append(turn)
        self._pending = []
        return clips or None

    def apply(self, work: Work, output: Any | None) -> Iterable[Event]:
        if output is None:
            return ()
        if self.mode == "windows":
            window = self.cut(work).window
            return (self._event(window.start / SAMPLE_RATE, window.end / SAMPLE_RATE, None, "window", output[0]),)
        events = [self._event(t.start, t.end, t.speaker, "turn", p) for t, p in zip(self._asked, output)]
        self._asked = []
        return events

    def _closed_turns(self) -> None:
        diarization = self.ctx.streams.get("diarization")
        for turn in getattr(diarization, "last_turns", ()):
            if turn.end - turn.start >= self.config.min_turn_seconds:
                self._pending.append(turn)

    def settle(self, work: Work) -> Iterable[Event]:
        if self.mode == "turns":
            self._closed_turns()
        return ()

    def finish(self) -> Iterable[Event]:
        """Classify the turns still pending (with the last ones the diarization task
        closed when the stream ended), without batching."""
        if self.mode != "turns":
            return ()
        self._closed_turns()
        turns = [t for t in self._pending if (clip := self._clip(t)) is not None]
        clips = [self._clip(t) for t in turns]
        self._pending = []
        if not clips:
            return ()
        probs = self.task.run([clips])[0]
        return [self._event(t.start, t.end, t.speaker, "turn", p) for t, p in zip(turns, probs)]
