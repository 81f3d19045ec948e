"""The streaming engine: ring buffer -> windows -> task models -> stitchers -> events.

An :class:`Engine` is the state of one stream (one session): its ring buffer, window
schedule, stitchers, speaker tracker and statistics. It does not run models by itself:
a :class:`~wavlm_live.engine.scheduler.Scheduler` takes the due windows of every engine it
serves (:meth:`Engine.take`), runs each shared task model once per batch and hands each
engine its own outputs (:meth:`Engine.apply`). :meth:`Engine.start` runs a private
scheduler for a single live stream, :meth:`Engine.run_offline` analyses a whole stream in
the calling thread.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from wavlm_live.version import __version__
from wavlm_live.audio.level import LevelMeter
from wavlm_live.engine.bus import EventBus
from wavlm_live.engine.diarization import DiarizationConfig
from wavlm_live.engine.ringbuffer import OverwrittenError, RingBuffer
from wavlm_live.engine.scheduler import Scheduler, analyse
from wavlm_live.engine.speakers import Speaker, SpeakerTracker
from wavlm_live.engine.vad import CHUNK_SAMPLES, SpeechGate, VADConfig
from wavlm_live.engine.windows import FRAME_SECONDS, HOP_SAMPLES, SAMPLE_RATE, Schedule, Window, WindowPlan
from wavlm_live.events import EndEvent, ErrorEvent, Event, LevelEvent, StatsEvent
from wavlm_live.tasks import REGISTRY, Cut, StreamContext, TaskStream, Work, task_for
from wavlm_live.tasks.classification import ClassificationConfig

log = logging.getLogger(__name__)

FAIL_LOG_SECONDS = 10.0
"""Window failures after the first are logged as one summary line at most this often."""


def _nothing() -> None:
    pass


class CaptionModel(Protocol):
    """A CTC model wrapper (see :class:`wavlm_live.engine.tasks.CTCRunner`).

    Attributes:
        name: model id shown to clients.
        blank_id: CTC blank id; delimiter_id: word delimiter id (``None``: none).
        decoder: greedy decoder of partial captions.
        final_decoder: decoder of final segments (beam search + LM), or ``None``.
        decoding: one line saying how finals are decoded (``hello``'s ``captions_decoder``).
    """

    name: str
    blank_id: int
    delimiter_id: int | None
    decoder: Any
    final_decoder: Any
    decoding: str

    def logits(self, audio: np.ndarray) -> np.ndarray:
        """``audio`` float32 ``[samples]`` at 16 kHz -> float32 logits ``[frames, vocab]``."""
        ...

    def logits_batch(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """:meth:`logits` of several windows, in order."""
        ...


class DiarizationModel(Protocol):
    """A frame-classification model wrapper (see :class:`wavlm_live.engine.tasks.FrameRunner`)."""

    name: str

    def activity(self, audio: np.ndarray) -> np.ndarray:
        """``audio`` float32 ``[samples]`` -> activity probabilities ``[frames, speakers]``."""
        ...

    def activity_batch(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """:meth:`activity` of several windows, in order."""
        ...


class EmbeddingModel(Protocol):
    """An x-vector model wrapper (see :class:`wavlm_live.engine.tasks.XVectorRunner`).

    Attributes:
        name: model id; min_frames: fewest WavLM frames it accepts.
    """

    name: str
    min_frames: int

    def embed(self, audio: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        """``audio`` float32 ``[samples]``, optional frame masks ``[n, frames]`` (bool) ->
        x-vectors ``[n, dim]`` (``[1, dim]`` without masks)."""
        ...

    def embed_batch(self, audios: list[np.ndarray], masks: list[np.ndarray | None]) -> list[np.ndarray]:
        """:meth:`embed` of several windows with their masks, in order."""
        ...


@dataclass(frozen=True)
class TaskWindow:
    """A task's own window and hop (see :class:`~wavlm_live.engine.windows.Schedule`).

    Attributes:
        window: window length in seconds (snapped to 20 ms).
        hop: seconds between the task's window ends (snapped to 20 ms).
        right_context: frames of right context (``None``: half the overlap).
    """

    window: float
    hop: float
    right_context: int | None = None


FOLLOWS = {"embeddings": "diarization"}
"""Tasks that run on another task's windows when both are enabled: the x-vectors of the
diarization's local speakers are pooled from the diarization windows' activity."""


@dataclass(frozen=True)
class EngineConfig:
    """Engine settings.

    Attributes:
        window: analysis window length in seconds (snapped to 20 ms).
        hop: seconds between window ends (snapped to 20 ms): the result update period.
        right_context: frames of right context before a frame settles (``None``: half
            the overlap).
        buffer_seconds: audio that may wait for analysis or be read back (classified
            turns), seconds; the ring buffer holds this plus one window and two hops
            (:meth:`ring_seconds`, the one ring-size policy).
        task_windows: task name -> :class:`TaskWindow` for tasks with their own window
            and hop; the others use ``window`` / ``hop`` / ``right_context``. Embeddings
            follow the diarization windows when diarization is on (:data:`FOLLOWS`).
        realtime: widen the hop, and skip windows as a last resort, when analysis falls
            behind (live input). Offline runs (:meth:`Engine.run_offline`) never do.
        max_backlog: ticks (finest hops) that may wait before the engine catches up: it
            cuts the next windows at the newest tick that leaves no frame unsettled (a
            wider hop, counted in ``stats.windows_widened``).
        max_lag: seconds of audio that may still wait after widening; beyond it the
            engine skips to the newest tick (a gap, counted in ``windows_skipped``).
        pause_seconds: blank (silence) that closes a caption word; ``None`` disables.
        speaker_threshold: cosine similarity at which an x-vector joins a tracked
            speaker (the microsoft/wavlm-base-plus-sv card suggests 0.86).
        max_speakers: most global speakers to create (``None``: no limit); see
            :class:`~wavlm_live.engine.speakers.SpeakerTracker`.
        min_embedding_seconds: active speech a local speaker needs in a window before an
            x-vector is computed for it.
        embedding_interval: with diarization, seconds of settled solo speech between
            x-vector passes (0: every diarization window); a window where a voice
            continues nobody, or before any speaker has a centroid, gets them anyway
            (:meth:`~wavlm_live.tasks.embeddings.EmbeddingsStream._due`).
        level_interval: seconds between ``level`` events.
        diarization: diarization stitching settings.
        classification: what the classification task classifies (turns or windows).
        vad: speech gating (:mod:`wavlm_live.engine.vad`): windows without speech skip
            every model and settle as silence (counted in ``stats.windows_silent``);
            ``None`` (the library default) runs the models on every window. The command
            line and :mod:`wavlm_live.api` turn it on unless ``--no-vad`` is given.
    """

    window: float = 4.0
    hop: float = 1.0
    right_context: int | None = None
    task_windows: Mapping[str, TaskWindow] = field(default_factory=dict)
    buffer_seconds: float = 30.0
    realtime: bool = True
    max_backlog: int = 1
    max_lag: float = 2.0
    pause_seconds: float | None = 0.6
    speaker_threshold: float = 0.86
    max_speakers: int | None = None
    min_embedding_seconds: float = 1.0
    embedding_interval: float = 0.0
    level_interval: float = 0.1
    diarization: DiarizationConfig = field(default_factory=DiarizationConfig)
    classification: ClassificationConfig = field(default_factory=ClassificationConfig)
    vad: VADConfig | None = None

    @property
    def ring_seconds(self) -> float:
        """Seconds the ring buffer holds: ``buffer_seconds`` of audio waiting for analysis
        (or read back), the longest window being cut and two of the longest hops of
        slack for the producer."""
        windows = [self.window, *(t.window for t in self.task_windows.values())]
        hops = [self.hop, *(t.hop for t in self.task_windows.values())]
        return self.buffer_seconds + max(windows) + 2 * max(hops)


class Engine:
    """Runs the enabled task models over overlapping windows of a live or file stream.

    Data flow: a producer (audio source thread) calls :meth:`feed` with 16 kHz mono
    float32 blocks, which go into the :class:`RingBuffer`; the engine thread cuts windows
    per the :class:`WindowPlan`, runs the task models, feeds the stitchers and publishes
    :mod:`wavlm_live.events` events on ``bus``. :meth:`feed` never blocks on analysis;
    when the engine falls behind it skips windows (``realtime``) and reports them in
    ``stats`` events.

    Args:
        config: engine settings.
        bus: where events are published.
        captions / diarization / embeddings / classification: the enabled task models
            (runners; any subset, at least one).
        demo: the models are the bundled demo checkpoints (reported in :meth:`hello`).
        source_stats: optional callable returning a mapping with ``overflows`` and
            ``sanitised`` counts of the audio source, included in ``stats`` events.

    Thread safety: :meth:`feed`/:meth:`close_input` from one producer thread;
    :meth:`rename_speaker` from any thread; everything else from the owner.

    Raises:
        ValueError: no task model given, or inconsistent settings.
    """

    def __init__(
        self,
        config: EngineConfig,
        bus: EventBus,
        *,
        captions: CaptionModel | None = None,
        diarization: DiarizationModel | None = None,
        embeddings: EmbeddingModel | None = None,
        classification: Any = None,
        demo: bool = False,
        source_stats: Callable[[], Any] | None = None,
    ) -> None:
        runners = {"captions": captions, "diarization": diarization, "embeddings": embeddings,
                   "classification": classification}
        runners = {name: runner for name, runner in runners.items() if runner is not None}
        if not runners:
            raise ValueError("enable at least one task (captions, diarization, embeddings or classification)")
        self.config = config
        self.bus = bus
        self.plan = WindowPlan(config.window, config.hop, config.right_context)
        """The default window plan (tasks without a :class:`TaskWindow`)."""
        if not config.buffer_seconds > 0:
            raise ValueError(f"buffer_seconds must be > 0, got {config.buffer_seconds!r}")
        self.ring = RingBuffer(config.ring_seconds, SAMPLE_RATE)
        self.demo = demo
        self.source_stats = source_stats
        self.stream_id = secrets.token_hex(8)
        """Random id of this stream (``hello``'s ``stream``): a client that reconnects and
        sees another one knows the stream restarted."""
        self.tracker = SpeakerTracker(config.speaker_threshold, config.max_speakers)
        names = tuple(name for name in REGISTRY if name in runners)
        unknown = sorted(set(config.task_windows) - set(REGISTRY))
        if unknown:
            raise ValueError(f"unknown task in task_windows: {', '.join(unknown)}")
        self.leader = {name: FOLLOWS[name] if FOLLOWS.get(name) in names else name for name in names}
        """Task name -> the task whose windows it runs on (itself unless it follows one)."""
        for name, lead in self.leader.items():
            if lead != name and name in config.task_windows:
                raise ValueError(f"{name} runs on the {lead} windows; set the {lead} window and hop instead")
        plans = {}
        for name in names:
            if self.leader[name] == name:
                tw = config.task_windows.get(name)
                plans[name] = self.plan if tw is None else WindowPlan(tw.window, tw.hop, tw.right_context)
        self.schedule = Schedule(plans)
        """Every leading task's window plan on one tick grid."""
        self.context = StreamContext(config, self.schedule, self.ring, self.tracker, names)
        self.streams: list[TaskStream] = []
        for name in names:
            stream = task_for(name, runners[name]).open(self.context)
            self.context.streams[name] = stream
            self.streams.append(stream)
        self.gate: SpeechGate | None = SpeechGate(config.vad) if config.vad is not None else None
        self.windows_analysed = 0
        self.windows_skipped = 0
        self.windows_silent = 0
        self.windows_failed = 0
        self.windows_widened = 0
        self._fail_logged = (0.0, 0)  # (monotonic time, windows_failed) of the last failure log line
        self.samples_sanitised = 0
        self.compute_seconds = 0.0
        self._rtf = 0.0
        self._meter = LevelMeter(config.level_interval, SAMPLE_RATE)
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._scheduler: Scheduler | None = None
        self._own_scheduler: Scheduler | None = None
        self._wake: Callable[[], None] = _nothing
        self._tick = 0  # next tick
        self._ticked = 0  # end sample of the latest tick taken
        self._hop_seconds = self.schedule.tick_seconds  # tick advance of the latest work
        self._index = dict.fromkeys(plans, 0)  # next window number per plan
        self._keep = dict.fromkeys(plans, 0)  # first frame not settled yet, per plan
        self._last_end = dict.fromkeys(plans, 0)  # end sample of each plan's latest window
        self._final_taken = False
        self.error: BaseException | None = None

    # -- description --------------------------------------------------------------------

    @property
    def tasks(self) -> list[str]:
        """Enabled tasks, in fixed order (:data:`wavlm_live.tasks.REGISTRY`)."""
        return list(self.context.tasks)

    def runner(self, task: str) -> Any:
        """The model runner of an enabled task, or ``None``."""
        stream = self.context.streams.get(task)
        return None if stream is None else stream.task.runner

    @property
    def captioner(self) -> Any:
        """The caption stitcher (``None`` without captions)."""
        stream = self.context.streams.get("captions")
        return None if stream is None else stream.stitcher

    @property
    def diarizer(self) -> Any:
        """The diarization stitcher (``None`` without diarization)."""
        stream = self.context.streams.get("diarization")
        return None if stream is None else stream.stitcher

    def hello(self) -> dict[str, Any]:
        """Stream description for subscribers (the websocket ``hello`` message body)."""
        extra: dict[str, Any] = {}
        for stream in self.streams:
            extra.update(stream.task.describe())
        return {
            "version": __version__,
            "sample_rate": SAMPLE_RATE,
            "frame": FRAME_SECONDS,
            "tasks": self.tasks,
            "models": {stream.task.name: stream.task.model_name for stream in self.streams},
            "window": self.main_plan.window_seconds,
            "hop": self.main_plan.hop_seconds,
            "right_context": self.main_plan.right_frames * FRAME_SECONDS,
            "schedule": self.schedule_description(),
            "demo": self.demo,
            "stream": self.stream_id,
            **extra,
        }

    @property
    def main_plan(self) -> WindowPlan:
        """The window plan of the first enabled task (the captions' when they run): the
        ``window`` and ``hop`` that ``hello`` and ``started`` report."""
        return self.schedule.plans[self.leader[self.context.tasks[0]]]

    def schedule_description(self) -> dict[str, dict[str, float]]:
        """Task name -> ``{"window", "hop", "right_context"}`` in seconds, the windows
        each task runs on (``hello``'s ``schedule``)."""
        out = {}
        for name in self.context.tasks:
            plan = self.schedule.plans[self.leader[name]]
            out[name] = {"window": plan.window_seconds, "hop": plan.hop_seconds,
                         "right_context": round(plan.right_frames * FRAME_SECONDS, 4)}
        return out

    # -- producer side ------------------------------------------------------------------

    def feed(self, block: np.ndarray) -> None:
        """Append 16 kHz mono samples (1-D, float) to the stream and publish ``level``
        events every ``level_interval`` seconds. Non-finite samples are replaced by 0 and
        counted. Never waits for the analysis. Called from the producer thread only.
        After :meth:`abort` or a failure of the stream the block is ignored."""
        if self._stop.is_set():
            return  # aborted or failed: the stream has ended, nothing more is published
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        bad = ~np.isfinite(block)
        if bad.any():
            self.samples_sanitised += int(bad.sum())
            block = np.where(bad, np.float32(0.0), block)
        self.ring.write(block)
        for end, rms, peak in self._meter.update(block):
            self.bus.publish(LevelEvent(t=round(end / SAMPLE_RATE, 4), rms_db=round(rms, 2), peak_db=round(peak, 2)))
        self._wake()

    def close_input(self) -> None:
        """The producer has no more audio: the engine settles everything and ends."""
        self.ring.close()
        self._wake()

    # -- analysis (the scheduler's thread) ------------------------------------------------

    def warmup(self) -> None:
        """Run every enabled model once on a window of silence, so that one-time costs
        (kernel selection, allocator growth) are not paid by the first live windows."""
        for stream in self.streams:
            stream.task.warmup(self.schedule.plans[self.leader[stream.task.name]].window_samples)

    def start(self) -> None:
        """Warm the models up (:meth:`warmup`) and analyse the live stream in a private
        :class:`~wavlm_live.engine.scheduler.Scheduler` thread (a stream served with
        others is added to a shared scheduler instead)."""
        if self._scheduler is not None:
            raise RuntimeError("engine already started")
        self.warmup()
        scheduler = Scheduler(name="wavlm-live-engine")
        scheduler.add(self)
        scheduler.start()
        self._own_scheduler = scheduler

    def stop(self, timeout: float | None = 10.0) -> None:
        """End the stream (as if the input ended) and wait up to ``timeout`` seconds for
        the engine to settle and publish the rest. Idempotent."""
        self.close_input()
        self.join(timeout)
        if self._own_scheduler is not None and self._finished.is_set():
            self._own_scheduler.stop()

    def abort(self) -> None:
        """Stop analysing after the current window without settling the rest."""
        self._stop.set()
        self.ring.close()
        self._wake()

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the stream to be fully analysed (or
        aborted); True when it is."""
        if self._scheduler is None:
            return self._finished.is_set()
        return self._finished.wait(timeout)

    @property
    def finished(self) -> threading.Event:
        """Set when the stream has been fully analysed (``end`` published) or aborted."""
        return self._finished

    @property
    def pending_seconds(self) -> float:
        """Seconds of received audio that the next windows still need: from the start of
        the next due window (or the first unsettled frame, if earlier) to the newest
        sample. A producer that must not lose audio waits while this nears the ring's
        capacity. Readable from any thread."""
        return max(0, self.ring.written - self._needed()) / SAMPLE_RATE

    def _needed(self) -> int:
        """The first sample the next windows may read: the earliest of every plan's next
        window start and first unsettled frame."""
        end = self.schedule.end_of(self._tick)
        return min(min(max(0, end - plan.window_samples), self._keep[name] * HOP_SAMPLES)
                   for name, plan in self.schedule.plans.items())

    @property
    def aborted(self) -> bool:
        """True after :meth:`abort`."""
        return self._stop.is_set()

    def attach(self, scheduler: Scheduler, wake: Callable[[], None]) -> None:
        """Called by :meth:`Scheduler.add`: ``wake()`` is called after every fed block and
        when the input closes.

        Raises:
            RuntimeError: the engine already belongs to a scheduler.
        """
        if self._scheduler is not None:
            raise RuntimeError("engine already belongs to a scheduler")
        self._scheduler = scheduler
        self._wake = wake

    def take(self) -> Work | None:
        """The next piece of analysis this stream is due for, or ``None`` when it must
        wait for audio: the next tick at which some task is due, with each due task's
        window (:class:`~wavlm_live.engine.windows.Schedule`), or, once the input is
        closed and every running window is done, the final tick (``Work.final``: every
        task's last window; its ``window`` is ``None`` when nothing is left to settle).
        A live stream that fell behind catches up first (:meth:`_catch_up`). After the
        final work, or after :meth:`abort`, it returns ``None`` for ever."""
        if self._stop.is_set() or self._final_taken:
            return None
        schedule = self.schedule
        while True:
            end = schedule.end_of(self._tick)
            written = self.ring.written
            if written < end:
                if not self.ring.closed:
                    return None
                self._final_taken = True
                return self._final_work(written)
            if self.config.realtime:
                self._catch_up(written)
                end = schedule.end_of(self._tick)
            self._tick += 1
            windows: dict[str, Window] = {}
            for name, plan in schedule.plans.items():
                if not schedule.due(name, end, self._last_end[name]):
                    continue
                window = plan.window_ending(self._index[name], end, self._keep[name])
                self._index[name] += 1
                self._last_end[name] = end
                if window.frame_end > window.frame_start:
                    windows[name] = window
                    self._keep[name] = window.keep_end
            if not windows:
                continue
            work = self._work(windows, end)
            if work is not None:
                return work

    def _catch_up(self, written: int) -> None:
        """A live stream more than ``max_backlog`` ticks behind moves its next tick to
        the newest one whose windows still reach back to every plan's first unsettled
        frame (a wider hop: nothing is lost, the windows have less left context; counted
        in ``windows_widened``), and, only when even that leaves more than
        ``max_lag`` seconds waiting, to the newest tick (the frames in between are never
        analysed; ``windows_skipped`` counts the ticks jumped)."""
        schedule = self.schedule
        newest = written // schedule.tick_samples - 1
        if newest - self._tick <= self.config.max_backlog:
            return
        reach = min(schedule.reach(name, keep) for name, keep in self._keep.items())
        target = min(newest, max(self._tick, reach // schedule.tick_samples - 1))
        if (newest - target) * schedule.tick_samples > self.config.max_lag * SAMPLE_RATE:
            self.windows_skipped += newest - self._tick
            target = newest
            end = schedule.end_of(target)
            for name, plan in schedule.plans.items():  # the frames jumped are never settled
                self._keep[name] = max(self._keep[name], max(0, end - plan.window_samples) // HOP_SAMPLES)
        elif target > self._tick:
            self.windows_widened += 1
        self._tick = target

    def _work(self, windows: dict[str, Window], end: int, final: bool = False) -> Work | None:
        """The work of one tick: the samples of every window (read once, as the span
        from the earliest start to ``end``) and each task's :class:`Cut`; ``None``
        (counted as skipped) when the ring has already overwritten them."""
        start = min(w.start for w in windows.values())
        index = self._tick - 1 if not final else self._tick
        span = Window(index, start, end, min(w.keep_start for w in windows.values()),
                      max(w.keep_end for w in windows.values()), final=final)
        audio = self._read(span)
        if audio is None:
            return None
        cuts: dict[str, Cut] = {}
        for name, window in windows.items():
            speech = self._speech(window, final=final)
            frames = self.gate.speech_frames(window.start, window.end) if speech and self.gate is not None else None
            cuts[name] = Cut(window, audio[window.start - start : window.end - start], speech, frames)
        for name, lead in self.leader.items():
            if lead != name and lead in cuts:
                cuts[name] = cuts[lead]
        self._hop_seconds = (end - self._ticked) / SAMPLE_RATE if end > self._ticked else self._hop_seconds
        self._ticked = end
        return Work(span, audio, final=final, speech=any(c.speech for c in cuts.values()), cuts=cuts)

    def _final_work(self, written: int) -> Work:
        """The final tick: every plan's last window, settling all it has left."""
        windows = {}
        for name, plan in self.schedule.plans.items():
            window = plan.final_window(self._index[name], written, self._keep[name])
            if window is not None:
                windows[name] = window
        work = self._work(windows, written, final=True) if windows else None
        return work if work is not None else Work(None, None, final=True)

    def _speech(self, window: Window, final: bool = False) -> bool:
        """Whether the speech gate finds speech in ``window`` (True without a gate). The
        gate first reads every whole 512-sample chunk up to the window's end (a final
        window also the last part chunk, zero-padded), never beyond it: the decision
        depends on the audio up to the window's end only, not on how much more had
        arrived when the window was taken, so a live stream and an offline run of the
        same audio gate the same windows."""
        gate = self.gate
        if gate is None:
            return True
        written = self.ring.written
        end = min(written, window.end)
        end -= end % CHUNK_SAMPLES
        if final and window.end >= written and end < written:
            end += CHUNK_SAMPLES
        if end > gate.position:
            try:
                audio = self.ring.read(gate.position, min(end, written))
            except OverwrittenError:
                start = self.ring.oldest + CHUNK_SAMPLES  # the producer may write on meanwhile
                gate.restart(start - start % CHUNK_SAMPLES)
                if end <= gate.position:
                    return True
                audio = self.ring.read(gate.position, min(end, written))
            if audio.size < end - gate.position:
                audio = np.concatenate([audio, np.zeros(end - gate.position - audio.size, np.float32)])
            gate.advance(audio)
        return gate.has_speech(window.start, window.end)

    def _read(self, window: Window) -> np.ndarray | None:
        """The window's samples, or ``None`` (counted as skipped) when the ring has
        already overwritten them; then releases what no later window reads."""
        try:
            audio = self.ring.read(window.start, window.end)
        except OverwrittenError:
            self.windows_skipped += 1
            return None
        self.ring.release(self._needed())
        return audio

    def run_offline(self, blocks: Iterable[np.ndarray], progress: Callable[[int], None] | None = None) -> None:
        """Analyse a whole stream synchronously in the calling thread, without skipping:
        every window is analysed as soon as its audio has been fed. ``progress`` gets the
        number of samples fed so far after each block."""
        for block in blocks:
            self.feed(block)
            if progress is not None:
                progress(self.ring.written)
            while (work := self.take()) is not None:
                analyse([(self, work)])
        self.close_input()
        while (work := self.take()) is not None:
            analyse([(self, work)])
        self._finished.set()

    def apply(self, work: Work, seconds: float) -> None:
        """Stitch one window's model outputs (``work.outputs``, filled in by the
        scheduler) and publish the resulting events: every task stream's ``apply`` in
        order, then every ``settle``, then ``stats``.

        Args:
            work: what :meth:`take` returned, with the task outputs filled in.
            seconds: compute time spent on this window (its batch's time), for ``rtf``
                and ``compute_seconds``.
        """
        publish = self.bus.publish
        for stream in self.streams:
            name = stream.task.name
            if name in work.applied or (name not in work.cuts and name not in work.requests):
                continue  # applied early, or not due at this tick
            for event in stream.apply(work, work.outputs.get(name)):
                publish(event)
        for stream in self.streams:
            for event in stream.settle(work):
                publish(event)
        self.compute_seconds += seconds
        self.windows_analysed += 1
        if not work.speech:
            self.windows_silent += 1
        rtf = seconds / self._hop_seconds
        self._rtf = rtf if self.windows_analysed == 1 else 0.8 * self._rtf + 0.2 * rtf
        if not work.final:
            publish(self._stats(work.window.end))

    def apply_task(self, work: Work, name: str) -> None:
        """Stitch one task's output of ``work`` now and publish its events (for an
        :attr:`~wavlm_live.tasks.base.Task.early` task, before the other tasks have run);
        :meth:`apply` then skips it."""
        stream = self.context.streams[name]
        work.applied.add(name)
        for event in stream.apply(work, work.outputs.get(name)):
            self.bus.publish(event)

    def fail_window(self, work: Work, exc: BaseException) -> None:
        """Report a window whose analysis raised (published as a non-fatal ``model``
        error; the window counts as skipped and in ``windows_failed``). The stream goes
        on. The first failure is logged with its traceback, later ones as one summary
        line at most every ``FAIL_LOG_SECONDS``."""
        if work.window is None:
            return
        self.windows_failed += 1
        now = time.monotonic()
        if self.windows_failed == 1:
            # the first failure once with its traceback; later ones are counted and
            # summed up in one line at most every FAIL_LOG_SECONDS
            log.error("analysis of window %d failed: %s", work.window.index, exc, exc_info=exc)
            self._fail_logged = (now, 1)
        elif now - self._fail_logged[0] >= FAIL_LOG_SECONDS:
            more = self.windows_failed - self._fail_logged[1]
            log.error("%d more window(s) failed in the last %.0f s (%d in all; latest: %s)", more,
                      now - self._fail_logged[0], self.windows_failed, exc)
            self._fail_logged = (now, self.windows_failed)
        self.bus.publish(ErrorEvent(code="model", message=f"window at {work.window.start / SAMPLE_RATE:.2f} s failed: {exc}"))
        self.windows_skipped += 1

    def complete(self) -> None:
        """After the final work: settle everything and publish the closing events (each
        task stream's ``finish``: final captions, last turns...; then every speaker,
        ``stats`` and ``end``)."""
        total = self.ring.written
        for stream in self.streams:
            for event in stream.finish():
                self.bus.publish(event)
        for speaker in list(self.tracker.speakers.values()):
            self.bus.publish(self.tracker.event(speaker))
        self.bus.publish(self._stats(total))
        self.bus.publish(EndEvent(t=round(total / SAMPLE_RATE, 4)))
        self._finished.set()

    def fail(self, exc: BaseException) -> None:
        """The stream cannot go on (a stitcher or the scheduler failed): publish a fatal
        ``engine`` error, then ``end`` at the audio received so far, and finish."""
        log.debug("engine failed", exc_info=exc)  # the error event says it; front ends print it once
        self.error = exc
        self._stop.set()
        self.bus.publish(ErrorEvent(code="engine", message=f"analysis stopped: {exc}", fatal=True))
        self.bus.publish(EndEvent(t=round(self.ring.written / SAMPLE_RATE, 4)))
        self._finished.set()

    def _stats(self, analysed_end: int) -> StatsEvent:
        overflows = sanitised = 0
        if self.source_stats is not None:
            try:
                stats = self.source_stats()
                overflows = int(getattr(stats, "overflows", 0)) + int(getattr(stats, "dropped_blocks", 0))
                sanitised = int(getattr(stats, "sanitised", 0))
            except Exception:  # noqa: BLE001 - stats are best effort
                log.debug("source stats unavailable", exc_info=True)
        written = self.ring.written
        return StatsEvent(
            t=round(written / SAMPLE_RATE, 4),
            windows_analysed=self.windows_analysed,
            windows_skipped=self.windows_skipped,
            rtf=round(self._rtf, 4),
            lag=round(max(0, written - analysed_end) / SAMPLE_RATE, 4),
            input_overflows=overflows,
            samples_sanitised=sanitised + self.samples_sanitised,
            ring_overwrites=self.ring.overwritten,
            windows_silent=self.windows_silent,
            windows_widened=self.windows_widened,
            hop=round(self._hop_seconds, 4),
        )

    # -- control (any thread) -----------------------------------------------------------

    def rename_speaker(self, speaker_id: str, name: str | None) -> None:
        """Set or clear a speaker's display name and publish the updated ``speaker`` event.

        Raises:
            KeyError: unknown speaker id.
            ValueError: bad name (too long, control characters, not a string).
        """
        speaker = self.tracker.rename(speaker_id, name)
        self.bus.publish(self.tracker.event(speaker))

    def enroll(self, name: str, audio: np.ndarray, chunk_seconds: float = 3.0) -> Speaker:
        """Create a named speaker from a reference recording (16 kHz mono float32): one
        x-vector per ``chunk_seconds`` piece, averaged into the centroid.

        Raises:
            ValueError: embeddings are disabled, the recording is shorter than one second,
                or the name is bad/taken.
        """
        embedder = self.runner("embeddings")
        if embedder is None:
            raise ValueError("speaker enrolment needs the embeddings task")
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size < SAMPLE_RATE:
            raise ValueError(f"enrolment audio for {name!r} is {audio.size / SAMPLE_RATE:.2f} s; at least 1 s is needed")
        step = max(SAMPLE_RATE, int(chunk_seconds * SAMPLE_RATE) // HOP_SAMPLES * HOP_SAMPLES)
        pieces = [audio[i : i + step] for i in range(0, audio.size, step)]
        pieces = [p for p in pieces if p.size >= SAMPLE_RATE] or [audio]
        vectors = np.concatenate([embedder.embed(p) for p in pieces])
        speaker = self.tracker.enroll(name, vectors)
        self.bus.publish(self.tracker.event(speaker))
        return speaker

    def publish(self, event: Event) -> None:
        """Publish an event on the engine's bus (for sources and front ends)."""
        self.bus.publish(event)
