"""Captions: CTC speech recognition with word timings, stitched across windows.

The model is a CTC checkpoint (``WavLMForCTC`` and its Wav2Vec2/HuBERT equivalents, run by
:class:`~wavlm_live.engine.tasks.CTCRunner`); the stitcher is
:class:`~wavlm_live.engine.captions.CaptionStitcher`. Per window: the logits of the whole
window; events: a preview partial right after the model (lowest latency), then, once the
speakers of the window are known, the final segments and the new partial.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from wavlm_live.engine.captions import CaptionStitcher
from wavlm_live.engine.windows import FRAME_SECONDS
from wavlm_live.events import Event

from .base import StreamContext, Task, TaskStream, Work


def silence_logits(frames: int, vocab: int, blank: int) -> np.ndarray:
    """CTC logits float32 ``[frames, vocab]`` of silence: blank wins every frame by 30
    nats (its log-softmax probability is 1 to float32 precision), for windows that the
    speech gate skips."""
    out = np.full((frames, vocab), -30.0, np.float32)
    out[:, blank] = 0.0
    return out


class CaptionsTask(Task):
    """Shared CTC model (a :class:`~wavlm_live.engine.tasks.CTCRunner`)."""

    name = "captions"
    kind = "ctc"
    early = True

    def describe(self) -> dict[str, Any]:
        """``captions_decoder``: ``"greedy"`` or the beam search with its LM."""
        return {"captions_decoder": self.runner.decoding}

    def warmup(self, samples: int) -> None:
        self.runner.logits(np.zeros(samples, np.float32))

    def run(self, requests: list[np.ndarray]) -> list[np.ndarray]:
        """Windows ``[samples]`` -> logits ``[frames, vocab]`` each."""
        return self.runner.logits_batch(requests)

    def open(self, ctx: StreamContext) -> CaptionsStream:
        return CaptionsStream(self, ctx)


class CaptionsStream(TaskStream):
    """One stream's caption stitching.

    Attributes:
        stitcher: the :class:`~wavlm_live.engine.captions.CaptionStitcher`.
    """

    def __init__(self, task: CaptionsTask, ctx: StreamContext) -> None:
        super().__init__(task, ctx)
        runner = task.runner
        pause = ctx.config.pause_seconds
        pause_frames = None if pause is None else max(1, round(pause / FRAME_SECONDS))
        speakers = "diarization" in ctx.tasks or "embeddings" in ctx.tasks
        self.stitcher = CaptionStitcher(
            runner.decoder,
            runner.blank_id,
            runner.delimiter_id,
            pause_frames=pause_frames,
            speaker_of=self._speaker_of if speakers else None,
            final_decoder=runner.final_decoder,
            speakers_settled=self._speakers_settled if "diarization" in ctx.tasks else None,
        )

    def _speakers_settled(self) -> int:
        """Frame up to which the diarization stream has settled its labels (its windows
        may lag the captions' ones: finals wait for their speakers)."""
        stream = self.ctx.streams.get("diarization")
        return stream.stitcher.settled_end if stream is not None else 1 << 62

    def _speaker_of(self, start: int, end: int) -> str | None:
        lookup = self.ctx.speaker_of
        return None if lookup is None else lookup(start, end)

    def request(self, work: Work) -> np.ndarray | None:
        cut = self.cut(work)
        return cut.audio if cut is not None and cut.speech else None

    def apply(self, work: Work, output: Any | None) -> Iterable[Event]:
        cut = self.cut(work)
        if output is None:
            if cut.speech:
                return ()
            output = silence_logits(cut.window.frame_end - cut.window.frame_start, self.task.runner.vocab_size,
                                    self.task.runner.blank_id)
        preview = self.stitcher.add(cut.window, output)
        return () if preview is None else (preview,)

    def settle(self, work: Work) -> Iterable[Event]:
        return self.stitcher.commit()

    def finish(self) -> Iterable[Event]:
        return self.stitcher.finish()
