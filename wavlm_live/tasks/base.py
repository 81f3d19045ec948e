"""The task interface: what the engine and the scheduler know of a task.

A task is a capability of the engine (captions, diarization, speaker embeddings,
utterance classification). It has two halves:

- :class:`Task`, one per loaded model and shared by every stream: it names itself, says
  which checkpoint kind it takes, warms its model up and runs it over a *batch* of
  requests from many streams (:meth:`Task.run`);
- :class:`TaskStream`, one per stream: it turns each window into a request for its task's
  model (:meth:`TaskStream.request`), stitches the task's output into events
  (:meth:`TaskStream.apply`, then :meth:`TaskStream.settle` once every task has applied)
  and settles what is left when the stream ends (:meth:`TaskStream.finish`).

The engine owns only what all tasks share (ring buffer, window schedule, skip policy,
statistics, speaker tracker) and iterates its task streams in registration order; the
scheduler runs the tasks stage by stage (a task of stage 2 may read stage-1 outputs of its
own stream in :meth:`TaskStream.request`). Adding a task is one module (its runner, its
stitcher, its events) plus its registration in :mod:`wavlm_live.tasks`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from wavlm_live.engine.windows import Window
from wavlm_live.events import Event

if TYPE_CHECKING:
    from wavlm_live.engine.engine import EngineConfig
    from wavlm_live.engine.ringbuffer import RingBuffer
    from wavlm_live.engine.speakers import SpeakerTracker
    from wavlm_live.engine.windows import Schedule


@dataclass(slots=True)
class Cut:
    """One task's window of a tick (tasks have their own window and hop, see
    :class:`~wavlm_live.engine.windows.Schedule`).

    Attributes:
        window: the task's window.
        audio: its samples, float32 ``[window.num_samples]`` at 16 kHz.
        speech: the speech gate found speech in it (always True without a gate); without
            speech the task's model does not run on it and it settles as silence.
        speech_frames: with a gate and speech, which of the window's frames lie in a
            (padded) speech region, bool ``[window frames]``
            (:meth:`~wavlm_live.engine.vad.SpeechGate.speech_frames`); ``None`` without
            a gate.
    """

    window: Window
    audio: np.ndarray
    speech: bool = True
    speech_frames: np.ndarray | None = None


@dataclass(slots=True)
class Work:
    """One tick of one stream on its way through the task models.

    Attributes:
        window: the span of the tick's windows (earliest start to the tick's end;
            ``None`` for a final work with nothing left to settle).
        audio: the samples of that span, float32 ``[window.num_samples]`` at 16 kHz.
        final: the stream's last tick: the stream completes after it.
        speech: some window of the tick has speech.
        cuts: task name -> that task's window, for the tasks due at this tick (a task
            that follows another, as embeddings follow diarization, has its leader's).
        requests: task name -> what that task's model is asked for this tick.
        outputs: task name -> that task's model output for this tick.
        applied: tasks whose output was already stitched (early tasks).
    """

    window: Window | None
    audio: np.ndarray | None
    final: bool = False
    speech: bool = True
    cuts: dict[str, Cut] = field(default_factory=dict)
    requests: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    applied: set[str] = field(default_factory=set)


@dataclass
class StreamContext:
    """What the task streams of one stream share.

    Attributes:
        config: the stream's engine settings.
        schedule: its window plans (task leader name -> plan).
        ring: its ring buffer (tasks that look back at earlier audio read from it).
        tracker: its global speakers.
        tasks: the names of the stream's tasks, in order.
        streams: task name -> task stream (filled in as they open).
        speaker_of: ``speaker_of(start_frame, end_frame)``, the global speaker active over
            most of the absolute frames, set by the task that knows (diarization, or
            embeddings without diarization); ``None`` while no task does.
    """

    config: EngineConfig
    schedule: Schedule
    ring: RingBuffer
    tracker: SpeakerTracker
    tasks: tuple[str, ...]
    streams: dict[str, TaskStream] = field(default_factory=dict)
    speaker_of: Callable[[int, int], str | None] | None = None


class Task(ABC):
    """One loaded model serving a task for every stream (see the module docstring).

    Args:
        runner: the model wrapper (numpy in, numpy out; torch inside).

    Class attributes:
        name: task name used in ``hello``, ``tasks`` lists and options (``"captions"``).
        kind: the checkpoint kind the task takes (``Pretrained.task``: ``"ctc"``,
            ``"frames"``, ``"xvector"``, ``"sequence"``).
        stage: 1 for tasks that need only the audio, 2 for tasks whose request reads
            stage-1 outputs of the same window.
        early: the task's :meth:`TaskStream.apply` needs no other task's output, so its
            events are published as soon as its model has run (captions: the preview
            partial does not wait for the diarization and x-vector passes).
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    stage: ClassVar[int] = 1
    early: ClassVar[bool] = False

    def __init__(self, runner: Any) -> None:
        self.runner = runner

    @property
    def model_name(self) -> str:
        """The model's id as clients see it (``hello``'s ``models``)."""
        return str(self.runner.name)

    def describe(self) -> dict[str, Any]:
        """Extra ``hello`` fields of this task (e.g. how captions are decoded)."""
        return {}

    @abstractmethod
    def warmup(self, samples: int) -> None:
        """Run the model once on ``samples`` samples of silence (one-time costs)."""

    @abstractmethod
    def run(self, requests: list[Any]) -> list[Any]:
        """The model over the requests of several streams, outputs in the same order
        (batched by the runner). Raises what the runner raises."""

    @abstractmethod
    def open(self, ctx: StreamContext) -> TaskStream:
        """This task's state for a new stream."""


class TaskStream:
    """One stream's state of a task: requests, stitching, finishing (see the module
    docstring). Every method is called from the stream's analysis thread only."""

    def __init__(self, task: Task, ctx: StreamContext) -> None:
        self.task = task
        self.ctx = ctx

    def cut(self, work: Work) -> Cut | None:
        """This task's window of the tick (``None``: the task is not due)."""
        return work.cuts.get(self.task.name)

    def request(self, work: Work) -> Any | None:
        """What to ask the task's model for this tick (``None``: nothing). Called for
        every tick, due or not (:meth:`cut`). For a window without speech
        (``Cut.speech`` False) a task asks for nothing that reads the window's audio."""
        return None

    def receive(self, work: Work, output: Any) -> Any:
        """The task model's output for this tick as the stream keeps it in
        ``work.outputs`` (what later stages and :meth:`apply` read); by default
        unchanged. Called right after the model ran."""
        return output

    def apply(self, work: Work, output: Any | None) -> Iterable[Event]:
        """Stitch the output of this task's window (``None`` when nothing was
        requested); returns the events to publish now. Called only on ticks where the
        task is due. A window without speech settles as silence."""
        return ()

    def settle(self, work: Work) -> Iterable[Event]:
        """After every task of the stream has applied this tick, due or not: events
        that need them all (captions use the speakers of the settled frames)."""
        return ()

    def finish(self) -> Iterable[Event]:
        """The stream ended: settle everything left."""
        return ()
