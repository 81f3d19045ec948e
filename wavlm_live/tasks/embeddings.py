"""Speaker embeddings: x-vectors that keep speaker labels stable and recognise people.

The model is an x-vector checkpoint (``WavLMForXVector`` and its equivalents,
:class:`~wavlm_live.engine.tasks.XVectorRunner`). With diarization, it pools one x-vector
per local speaker (and per solo run) of each window from one backbone pass, over the frame
masks the diarization stream derives from its activity (a stage-2 request); the
diarization stitcher uses them. Without diarization, each window long enough gets one
whole-window x-vector, assigned to a tracked speaker (``speaker`` events).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from wavlm_live.engine.diarization import solo_activity
from wavlm_live.engine.windows import FRAME_SECONDS
from wavlm_live.events import Event

from .base import StreamContext, Task, TaskStream, Work


class EmbeddingsTask(Task):
    """Shared x-vector model (a :class:`~wavlm_live.engine.tasks.XVectorRunner`)."""

    name = "embeddings"
    kind = "xvector"
    stage = 2

    def warmup(self, samples: int) -> None:
        self.runner.embed(np.zeros(samples, np.float32))

    def run(self, requests: list[tuple[np.ndarray, Any]]) -> list[np.ndarray]:
        """Requests ``(window, masks request or None)`` -> x-vectors ``[n, dim]`` each."""
        audios = [audio for audio, _ in requests]
        masks = [None if mask is None else mask[2] for _, mask in requests]
        return [np.asarray(v, dtype=np.float32) for v in self.runner.embed_batch(audios, masks)]

    def open(self, ctx: StreamContext) -> EmbeddingsStream:
        return EmbeddingsStream(self, ctx)


class EmbeddingsStream(TaskStream):
    """One stream's x-vector requests (and, without diarization, speaker assignment)."""

    def __init__(self, task: EmbeddingsTask, ctx: StreamContext) -> None:
        super().__init__(task, ctx)
        model_min = int(task.runner.min_frames)
        self.min_frames = max(round(ctx.config.min_embedding_seconds / FRAME_SECONDS), model_min)
        # the TDNN needs a few frames more than its span to pool over (>= 2 outputs)
        self.min_segment_frames = model_min + 2
        self._current: str | None = None
        interval = ctx.config.embedding_interval
        self.interval_frames = round(interval / FRAME_SECONDS) if interval else 0
        self._solo_since = 0  # settled solo frames since the last x-vector pass
        if "diarization" not in ctx.tasks:
            ctx.speaker_of = lambda start, end: self._current

    def request(self, work: Work) -> tuple[np.ndarray, Any] | None:
        cut = self.cut(work)
        if cut is None:
            return None
        if not cut.speech:
            self._current = None  # silence: nobody speaks
            return None
        diarization = self.ctx.streams.get("diarization")
        if diarization is not None:
            probs = work.outputs.get("diarization")
            if probs is None:
                return None
            masks = diarization.embedding_masks(probs, self.min_frames, self.min_segment_frames)
            if masks is None or not self._due(diarization, cut.window, probs, masks[0]):
                return None
            return (cut.audio, masks)
        window = cut.window
        if window.frame_end - window.frame_start >= self.min_frames:
            return (cut.audio, None)
        return None

    def _due(self, diarization: Any, window: Any, probs: np.ndarray, locals_: list[int]) -> bool:
        """With ``embedding_interval``, whether this diarization window needs x-vectors:
        a voice with enough solo speech continues no speaker of the previous window (it
        must be matched or founded), no speaker has a centroid yet, or the settled solo
        speech since the last x-vector pass has reached the interval (centroids are
        refreshed). Without an interval every window does."""
        if not self.interval_frames:
            return True
        stitcher = diarization.stitcher
        alone = solo_activity(stitcher.binarize(probs))
        a, b = window.keep_start - window.frame_start, window.keep_end - window.frame_start
        self._solo_since += int(alone[a:b].any(axis=1).sum())
        due = (self._solo_since >= self.interval_frames
               or not any(s.centroid is not None for s in self.ctx.tracker.speakers.values())
               or not all(stitcher.continues(window, probs, k) for k in locals_))
        if due:
            self._solo_since = 0
        return due

    def apply(self, work: Work, output: Any | None) -> Iterable[Event]:
        if output is None or "diarization" in self.ctx.streams:
            return ()  # with diarization, its stitcher takes the x-vectors
        tracker = self.ctx.tracker
        speaker = tracker.assign(output[0])
        self._current = speaker.id
        window = self.cut(work).window
        for frame in range(window.keep_start, window.keep_end):
            tracker.mark_active(speaker, frame)
        return (tracker.event(speaker),)
