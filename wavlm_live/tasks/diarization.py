"""Diarization: who speaks when, with overlapping speech, stitched into global speakers.

The model is a frame-classification checkpoint (``WavLMForAudioFrameClassification`` and
its equivalents, :class:`~wavlm_live.engine.tasks.FrameRunner`): sigmoid activity per frame
and local speaker. The stitcher, :class:`~wavlm_live.engine.diarization.DiarizationStitcher`,
maps each window's local speakers to the stream's global ones (overlap with the settled
labels, and the x-vectors of the embeddings task when it runs); events: settled
``diarization`` labels with the turns that ended, and the ``speaker`` updates.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from wavlm_live.engine.diarization import DiarizationStitcher, Segment, solo_activity, solo_runs
from wavlm_live.engine.windows import FRAME_SECONDS
from wavlm_live.events import DiarizationEvent, Event

from .base import StreamContext, Task, TaskStream, Work


class DiarizationTask(Task):
    """Shared frame-classification model (a :class:`~wavlm_live.engine.tasks.FrameRunner`)."""

    name = "diarization"
    kind = "frames"

    def warmup(self, samples: int) -> None:
        self.runner.activity(np.zeros(samples, np.float32))

    def run(self, requests: list[np.ndarray]) -> list[np.ndarray]:
        """Windows ``[samples]`` -> activity ``[frames, local speakers]`` in [0, 1] each."""
        return [np.asarray(p, dtype=np.float32) for p in self.runner.activity_batch(requests)]

    def open(self, ctx: StreamContext) -> DiarizationStream:
        return DiarizationStream(self, ctx)


class DiarizationStream(TaskStream):
    """One stream's diarization stitching.

    Attributes:
        stitcher: the :class:`~wavlm_live.engine.diarization.DiarizationStitcher`.
    """

    def __init__(self, task: DiarizationTask, ctx: StreamContext) -> None:
        super().__init__(task, ctx)
        self.stitcher = DiarizationStitcher(ctx.tracker, ctx.config.diarization)
        ctx.speaker_of = self.stitcher.speaker_of
        self.last_turns: tuple = ()
        """The turns closed by the latest window (or by :meth:`finish`), for the tasks
        that look at turns (classification)."""

    def request(self, work: Work) -> np.ndarray | None:
        cut = self.cut(work)
        return cut.audio if cut is not None and cut.speech else None

    def receive(self, work: Work, output: np.ndarray) -> np.ndarray:
        """The window's speaker probabilities ``[frames, speakers]`` with every frame
        outside the speech gate's (padded) speech regions set to 0: with a gate, no
        speaker is active where the VAD heard no speech (the edges of a window that holds
        speech elsewhere, the silence after the last words of a stream), and no x-vector
        pools such frames."""
        cut = self.cut(work)
        mask = None if cut is None else cut.speech_frames
        if mask is None or mask.all():
            return output
        if np.ndim(output) != 2 or len(output) != len(mask):
            # not [frames, speakers]: left as it is for the stitcher to refuse (an error that
            # ends the stream), never broadcast against the mask into something else
            return output
        return np.where(mask[:, None], output, np.zeros((), output.dtype))

    def embedding_masks(self, probs: np.ndarray, min_frames: int,
                        min_segment_frames: int) -> tuple[list[int], list[tuple[int, int, int]], np.ndarray] | None:
        """What the x-vector model must pool for one window: the local speakers alone for
        at least ``min_frames`` frames and the solo runs
        (:func:`~wavlm_live.engine.diarization.solo_runs`, at least ``min_segment_frames``
        long), with one frame mask per x-vector, in that order.

        Returns:
            ``(locals, runs, masks)`` with ``masks`` bool ``[len(locals) + len(runs),
            frames]``, or ``None`` when nothing needs an x-vector.
        """
        cfg = self.stitcher.config
        alone = solo_activity(self.stitcher.binarize(probs))
        if alone.shape[0] < min_frames:
            return None
        locals_ = [k for k in range(alone.shape[1]) if alone[:, k].sum() >= min_frames]
        runs: list[tuple[int, int, int]] = []
        if cfg.segment_min_frames > 0:
            runs = solo_runs(alone, max(cfg.segment_min_frames, min_segment_frames), cfg.segment_gap_frames)
        if not locals_ and not runs:
            return None
        masks = [alone[:, k] for k in locals_]
        for k, start, end in runs:
            mask = np.zeros(alone.shape[0], bool)
            mask[start:end] = alone[start:end, k]
            masks.append(mask)
        return locals_, runs, np.stack(masks)

    def apply(self, work: Work, output: Any | None) -> Iterable[Event]:
        cut = self.cut(work)
        if output is None:
            if cut.speech:
                return ()
            output = np.zeros((cut.window.frame_end - cut.window.frame_start, self.task.runner.num_labels), np.float32)
        embeddings: dict[int, np.ndarray] | None = None  # None: x-vectors are off
        segments: list[Segment] = []
        if "embeddings" in self.ctx.tasks:
            embeddings = {}
            request, vectors = work.requests.get("embeddings"), work.outputs.get("embeddings")
            if request is not None and vectors is not None and request[1] is not None:
                locals_, runs, _ = request[1]
                embeddings = {k: vectors[i] for i, k in enumerate(locals_)}
                segments = [Segment(k, start, end, vectors[len(locals_) + i]) for i, (k, start, end) in enumerate(runs)]
        result = self.stitcher.update(cut.window, output, embeddings, segments)
        self.last_turns = () if result.event is None else tuple(result.event.turns)
        events: list[Event] = [] if result.event is None else [result.event]
        events.extend(self.ctx.tracker.event(speaker) for speaker in result.changed)
        return events

    def finish(self) -> Iterable[Event]:
        turns = self.stitcher.finish()
        self.last_turns = tuple(turns)
        if not turns:
            return ()
        end = round(self.stitcher.settled_end * FRAME_SECONDS, 4)
        return (DiarizationEvent(start=end, end=end, frame=FRAME_SECONDS, labels=(), turns=tuple(turns)),)
