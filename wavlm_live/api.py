"""The high-level Python API: analyse a file or an array to results in memory, or stream
events from a source or from pushed numpy blocks, with the command line's model options.
Like transformers' ``pipeline()`` and diart's ``StreamingInference``, it hides the engine,
the event bus and the threads.

>>> import wavlm_live
>>> result = wavlm_live.transcribe("meeting.flac", demo=True)      # the bundled demo models
>>> for caption in result.captions:
...     print(caption.start, caption.speaker, caption.text)
>>> analyzer = wavlm_live.Analyzer(demo=True)                       # models loaded once
>>> for event in analyzer.stream(blocks, sample_rate=48000):        # any iterable of arrays
...     print(event.to_dict())

Options (keywords, the long command-line options with ``_`` for ``-``): ``ctc_model``,
``diarization_model``, ``embedding_model``, ``classification_model`` (Hub ids or folders),
``tasks`` (a subset of captions, diarization, embeddings, classification), ``lm`` /
``no_lm``, ``compute`` ("auto", "cpu", "cuda"), ``dtype``, ``threads``, ``window`` and
``hop`` (seconds), ``speaker_threshold``, ``max_speakers``, ``classify``, ``top_k``,
``enroll`` (``{name: audio file}``). Errors are :class:`wavlm_live.cli.CliError` (one
sentence, e.g. a model that cannot be loaded) or ``ValueError`` / ``TypeError`` for bad
arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wavlm_live.engine.bus import EventBus
from wavlm_live.events import (
    CaptionEvent,
    ClassificationEvent,
    DiarizationEvent,
    EndEvent,
    Event,
    SpeakerEvent,
    Turn,
)
from wavlm_live.text import join_words
from wavlm_live.timegrid import SAMPLE_RATE

__all__ = ["Analyzer", "Result", "transcribe"]

_TASKS = ("captions", "diarization", "embeddings", "classification")


@dataclass
class Result:
    """Everything an analysis found, in stream order.

    Attributes:
        captions: the final captions (text, words with times and speakers, speaker).
        turns: speaker turns (speaker, start, end in seconds).
        speakers: speaker id -> its last state (name, talk time, ``embedding``: the
            L2-normalised x-vector centroid, a tuple of floats, with embeddings on).
        classifications: utterance classifications (per turn or per window).
        events: every event published (levels and stats included), in order.
        duration: seconds of audio analysed.
    """

    captions: list[CaptionEvent] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    speakers: dict[str, SpeakerEvent] = field(default_factory=dict)
    classifications: list[ClassificationEvent] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    duration: float = 0.0

    @property
    def text(self) -> str:
        """The whole transcript: the final captions' text, joined."""
        return join_words([c.text for c in self.captions if c.text])

    def add(self, event: Event) -> None:
        """Take one event into the result (what :class:`Analyzer` does for each)."""
        self.events.append(event)
        if isinstance(event, CaptionEvent) and event.final and event.text:
            self.captions.append(event)
        elif isinstance(event, DiarizationEvent):
            self.turns.extend(event.turns)
        elif isinstance(event, SpeakerEvent):
            self.speakers[event.id] = event
        elif isinstance(event, ClassificationEvent):
            self.classifications.append(event)
        elif isinstance(event, EndEvent):
            self.duration = event.t


def _namespace(demo: bool, options: dict[str, Any]) -> argparse.Namespace:
    """The command line's options (``transcribe``'s defaults) with ``options`` applied.

    Raises:
        TypeError: an unknown option.
        ValueError: a bad ``tasks`` entry.
    """
    from wavlm_live.cli.parser import build_parser  # noqa: PLC0415 - the one place options are defined

    args = build_parser().parse_args(["transcribe", "-", *(["--demo"] if demo else [])])
    tasks = options.pop("tasks", None)
    enroll = options.pop("enroll", None)
    for key, value in options.items():
        if key in ("file", "output", "formats", "force", "command", "verbose") or not hasattr(args, key):
            raise TypeError(f"unknown option {key!r}")
        setattr(args, key, value)
    if tasks is not None:
        tasks = list(tasks)
        unknown = [t for t in tasks if t not in _TASKS]
        if unknown or not tasks:
            raise ValueError(f"tasks must be a non-empty subset of {', '.join(_TASKS)}, got {tasks!r}")
        for task in _TASKS:
            setattr(args, f"no_{task}", task not in tasks)
    if enroll:
        args.enroll = [f"{name}={path}" for name, path in dict(enroll).items()]
    if getattr(args, "threads", None) is not None and args.threads < 1:
        raise ValueError(f"threads must be >= 1, got {args.threads}")
    return args


class Analyzer:
    """Loaded models and settings, reusable for any number of files and streams.

    Args:
        demo: use the bundled demo checkpoints (no download).
        options: see the module docstring.

    Raises:
        wavlm_live.cli.CliError: a model cannot be found or loaded, or bad settings.
    """

    def __init__(self, *, demo: bool = False, **options: Any) -> None:
        from wavlm_live.cli import app  # noqa: PLC0415

        self._app = app
        self._args = _namespace(demo, options)
        app.check_analysis_options(self._args)
        self.models = app.load_models(self._args, demo)
        self.config = app.engine_config(self._args, self.models.demo, realtime=False)

    def _engine(self, bus: EventBus) -> Any:
        return self._app.make_engine(self._args, self.models, self.config, bus)

    def transcribe(self, audio: str | Path | np.ndarray, sample_rate: int | None = None) -> Result:
        """Analyse a whole file (any format the CLI reads) or array through the streaming
        engine, as fast as the machine allows (no window skipped).

        Args:
            audio: a path, or float samples ``[frames]`` / ``[frames, channels]``.
            sample_rate: Hz of an array (required for arrays).

        Raises:
            wavlm_live.cli.CliError: the file cannot be read.
            ValueError: an array without a sample rate, or of a bad shape.
        """
        result = Result()
        for event in self.stream(audio, sample_rate=sample_rate):
            result.add(event)
        return result

    def stream(self, source: str | Path | np.ndarray | Iterable[np.ndarray], *, sample_rate: int | None = None,
               channels: int | None = None) -> Iterator[Event]:
        """Events of the analysis of ``source``, as they are published, ending with ``end``.

        Args:
            source: a file path; ``"mic"`` (the default microphone, until the iteration
                stops); one array; or an iterable of arrays (pushed blocks, e.g. from your
                own capture), float ``[frames]`` or ``[frames, channels]``.
            sample_rate: Hz of arrays (they are resampled to 16 kHz as files are).
            channels: channels of the blocks (default: from the first block).

        Raises:
            wavlm_live.cli.CliError: a file or the microphone cannot be opened.
            ValueError: arrays without a sample rate, or blocks of changing channel count.
        """
        if isinstance(source, (str, Path)) and str(source) == "mic":
            yield from self._microphone()
            return
        if isinstance(source, (str, Path)):
            blocks: Iterable[np.ndarray] = self._file_blocks(source)
        else:
            if sample_rate is None:
                raise ValueError("pass sample_rate= with arrays (Hz)")
            arrays = [source] if isinstance(source, np.ndarray) else source
            blocks = _converted(arrays, int(sample_rate), channels)
        yield from self._run(blocks)

    async def astream(self, source: Any, **kwargs: Any) -> AsyncIterator[Event]:
        """:meth:`stream` as an async iterator: the analysis runs in a worker thread and
        the events come to the event loop as they are published."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        done = object()

        def work() -> None:
            try:
                for event in self.stream(source, **kwargs):
                    loop.call_soon_threadsafe(events.put_nowait, event)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                loop.call_soon_threadsafe(events.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(events.put_nowait, done)

        worker = threading.Thread(target=work, name="wavlm-live-astream", daemon=True)
        worker.start()
        while (item := await events.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item

    def _file_blocks(self, path: str | Path) -> Iterator[np.ndarray]:
        from wavlm_live.audio import AudioError, FileSource  # noqa: PLC0415
        from wavlm_live.cli.errors import CliError  # noqa: PLC0415

        try:
            source = FileSource(path, speed=None)
        except AudioError as exc:
            raise CliError(str(exc)) from None
        try:
            yield from source.blocks()
        except AudioError as exc:
            raise CliError(str(exc)) from None

    def _run(self, blocks: Iterable[np.ndarray]) -> Iterator[Event]:
        """Feed the blocks to a new engine in this thread; yield what it publishes."""
        from wavlm_live.engine.scheduler import analyse  # noqa: PLC0415

        bus, pending = EventBus(), []
        bus.subscribe(pending.append)
        engine = self._engine(bus)
        for block in blocks:
            engine.feed(block)
            while (work := engine.take()) is not None:
                analyse([(engine, work)])
            yield from pending
            pending.clear()
        engine.close_input()
        while (work := engine.take()) is not None:
            analyse([(engine, work)])
        yield from pending

    def _microphone(self) -> Iterator[Event]:
        from wavlm_live.audio import AudioError  # noqa: PLC0415
        from wavlm_live.cli.errors import CliError  # noqa: PLC0415

        source = self._app.open_source("mic", getattr(self._args, "input_device", None), 1.0, False)
        blocks: queue.Queue = queue.Queue(maxsize=500)
        try:
            source.start(lambda block: blocks.put_nowait(block) if not blocks.full() else None)
        except AudioError as exc:
            raise CliError(str(exc)) from None

        def pull() -> Iterator[np.ndarray]:
            while not source.finished.is_set() or not blocks.empty():
                try:
                    yield blocks.get(timeout=0.2)
                except queue.Empty:
                    continue

        try:
            yield from self._run(pull())
        finally:
            source.stop()


def _converted(arrays: Iterable[np.ndarray], rate: int, channels: int | None) -> Iterator[np.ndarray]:
    """Blocks at ``rate`` Hz -> 16 kHz mono blocks (the sources' sanitising, down-mix and
    libsoxr resampler)."""
    from wavlm_live.audio.resample import BlockConverter  # noqa: PLC0415

    converter = None
    for block in arrays:
        x = np.asarray(block, dtype=np.float32)
        if x.ndim not in (1, 2):
            raise ValueError(f"blocks must be [frames] or [frames, channels], got shape {x.shape}")
        found = 1 if x.ndim == 1 else x.shape[1]
        if converter is None:
            converter = BlockConverter(rate, channels or found, block_seconds=0.1)
        out, _ = converter.process(x)
        yield from out
    if converter is not None:
        yield from converter.flush()


def transcribe(audio: str | Path | np.ndarray, *, sample_rate: int | None = None, demo: bool = False,
               **options: Any) -> Result:
    """Analyse one file or array with new models: ``Analyzer(demo=demo, **options)
    .transcribe(audio, sample_rate)`` (see :class:`Analyzer` and the module docstring).

    >>> result = transcribe("talk.flac", demo=True, tasks=["captions", "diarization"])
    >>> result.text, [(t.speaker, t.start, t.end) for t in result.turns]
    """
    return Analyzer(demo=demo, **options).transcribe(audio, sample_rate=sample_rate)
