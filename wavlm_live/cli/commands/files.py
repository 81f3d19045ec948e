"""``transcribe``, ``convert``, ``bench``, ``eval`` and ``devices``: files and the machine."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from wavlm_live.engine.bus import EventBus
from wavlm_live.engine.engine import Engine
from wavlm_live.timegrid import SAMPLE_RATE

from ..app import check_analysis_options, demo_recording, run_file_offline
from ..defaults import DEFAULT_MODELS
from ..errors import CliError, UsageError


def cmd_devices(args: argparse.Namespace) -> int:
    """``devices``: the input device table; no device found is a failure (exit 1)."""
    from wavlm_live.audio import AudioError, format_device_table, list_input_devices  # noqa: PLC0415

    try:
        devices = list_input_devices()
    except AudioError as exc:
        raise CliError(str(exc)) from None
    if not devices:
        raise CliError(format_device_table(devices))  # one line on stderr, exit status 1
    print(format_device_table(devices))
    return 0


def _formats(text: str, allowed: tuple[str, ...]) -> set[str]:
    formats = {f.strip().lower() for f in text.split(",") if f.strip()}
    unknown = formats - set(allowed)
    if unknown or not formats:
        raise UsageError(f"unknown output format(s) {', '.join(sorted(unknown)) or '(none)'}; "
                         f"choose from {','.join(allowed)}")
    return formats


def _refuse_to_overwrite(paths: list[Path], force: bool) -> None:
    """Raise unless none of ``paths`` exists or ``force`` is set.

    Raises:
        CliError: results exist (exit status 1, like ``ln`` refusing an existing target).
    """
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise CliError(f"{existing[0]}{more} exist{'s' if not more else ''} already; pass --force to overwrite, "
                       "or -o another STEM")


def _make_parent(stem: Path) -> None:
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create {stem.parent}: {exc.strerror}") from None


def _file_id(name: str) -> str:
    """An RTTM file field from a file name's stem (whitespace becomes ``_``)."""
    return "".join(c if not c.isspace() else "_" for c in name) or "audio"


def cmd_transcribe(args: argparse.Namespace) -> int:
    """``transcribe FILE``: offline analysis writing JSONL/SRT/WebVTT/RTTM/TXT to
    ``STEM.<format>``; refuses to replace existing results without ``--force``."""
    from wavlm_live.engine.writers import JsonlWriter, ResultCollector, jsonl_header, output_path  # noqa: PLC0415

    formats = _formats(args.formats, ("jsonl", "srt", "vtt", "rttm", "txt"))
    check_analysis_options(args)
    src = Path(args.file)
    stem = Path(args.output) if args.output else src.with_name(src.stem)
    targets = [output_path(stem, fmt) for fmt in sorted(formats)]
    _refuse_to_overwrite(targets, args.force)
    _make_parent(stem)
    bus = EventBus()
    collector = ResultCollector()
    bus.subscribe(collector)
    jsonl = None
    part = output_path(stem, "jsonl.part")
    if "jsonl" in formats:
        # Written to a temporary name and renamed at the end: a failed run never leaves
        # a truncated result in place of a good one.
        try:
            jsonl = open(part, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise CliError(f"cannot write {part}: {exc.strerror}") from None

    def header_then_events(engine: Engine) -> None:
        if jsonl is not None:
            bus.subscribe(JsonlWriter(jsonl, header=jsonl_header(engine.hello(), str(src))))

    t0 = time.perf_counter()
    try:
        engine = run_file_offline(args, src, args.demo, bus, engine_hook=header_then_events)
    except BaseException:
        if jsonl is not None:
            jsonl.close()
            part.unlink(missing_ok=True)
        raise
    elapsed = time.perf_counter() - t0
    written = []
    try:
        if jsonl is not None:
            jsonl.close()
            part.replace(output_path(stem, "jsonl"))
            written.append(output_path(stem, "jsonl"))
        written += collector.write(stem, _file_id(src.stem), formats - {"jsonl"})
    except OSError as exc:
        raise CliError(f"cannot write the results next to {stem}: {exc.strerror or exc}") from None
    duration = engine.ring.written / SAMPLE_RATE
    print(collector.transcript)
    print(
        f"wavlm-live: {duration:.1f} s of audio in {elapsed:.1f} s (RTF {elapsed / max(duration, 1e-9):.3f}); "
        f"wrote {', '.join(str(p) for p in written)}",
        file=sys.stderr,
    )
    return 0


def read_event_log(path: Path, stream: int | None = None) -> tuple[list[Any], int, bool]:
    """The events of one stream of a JSON Lines event log (``--jsonl``, transcribe's
    ``STEM.jsonl``, or a websocket client's recording: envelope fields and non-event
    messages such as ``hello`` are ignored). Runs appended to one log are separate
    streams, each ending with an ``end`` event.

    Args:
        path: the log.
        stream: 1-based stream number; ``None`` when the log must hold exactly one.

    Returns:
        (events of the chosen stream, number of streams, whether it ends with ``end``).

    Raises:
        CliError: the log cannot be read, or a line is not a JSON object or not a valid
            event (names the line); a last line cut short by a crash is skipped with a
            warning instead.
        UsageError: several streams and no ``stream``, or ``stream`` out of range.
    """
    from wavlm_live.events import EVENT_TYPES, EndEvent, event_from_dict  # noqa: PLC0415

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"event log not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read event log {path}: {getattr(exc, 'strerror', None) or exc}") from None
    lines = text.split("\n")
    streams: list[list[Any]] = [[]]
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            if n == len(lines):  # no newline after it: the writer was cut off mid-line
                print(f"wavlm-live: warning: {path}:{n}: skipped an incomplete last line", file=sys.stderr)
                continue
            raise CliError(f"{path}:{n}: not a JSON event ({exc})") from None
        if data.get("type") == "header" and streams[-1]:
            streams.append([])  # a new run appended to the log (one that ended without end too)
        if data.get("type") not in EVENT_TYPES:
            continue  # the header, or hello, dropped, pong ... of a websocket recording
        try:
            event = event_from_dict(data)
        except ValueError as exc:
            raise CliError(f"{path}:{n}: {exc}") from None
        streams[-1].append(event)
        if isinstance(event, EndEvent):
            streams.append([])
    if not streams[-1]:
        streams.pop()
    if not streams:
        raise CliError(f"{path} holds no events")
    if stream is None and len(streams) > 1:
        raise UsageError(f"{path} holds {len(streams)} streams (one per run appended to it); "
                         f"choose one with --stream 1..{len(streams)}")
    index = 1 if stream is None else stream
    if index > len(streams):
        raise UsageError(f"--stream {index}: {path} holds {len(streams)} stream(s)")
    chosen = streams[index - 1]
    return chosen, len(streams), isinstance(chosen[-1], EndEvent)


def cmd_convert(args: argparse.Namespace) -> int:
    """``convert EVENTS.jsonl``: the SRT/WebVTT/RTTM/TXT files ``transcribe`` writes, from
    an event log, by the same :class:`~wavlm_live.engine.writers.ResultCollector`;
    refuses to replace existing files without ``--force``."""
    from wavlm_live.engine.writers import SUBTITLE_FORMATS, ResultCollector, output_path  # noqa: PLC0415

    formats = _formats(args.formats, SUBTITLE_FORMATS)
    src = Path(args.events)
    name = src.name[: -len(".jsonl")] if src.name.endswith(".jsonl") else src.stem
    stem = Path(args.output) if args.output else src.with_name(name)
    targets = [output_path(stem, fmt) for fmt in sorted(formats)]
    if src.resolve() in {t.resolve() for t in targets}:
        raise UsageError(f"-o {stem} would overwrite the log {src} itself")
    _refuse_to_overwrite(targets, args.force)
    events, streams, ended = read_event_log(src, args.stream)
    if not ended:
        print(f"wavlm-live: warning: stream {args.stream or 1} of {src} has no end event (the run did not finish); "
              "converting what it holds", file=sys.stderr)
    collector = ResultCollector()
    for event in events:
        collector(event)
    _make_parent(stem)
    try:
        written = collector.write(stem, _file_id(args.file_id or name), formats)
    except OSError as exc:
        raise CliError(f"cannot write the results next to {stem}: {exc.strerror or exc}") from None
    print(f"wavlm-live: {len(events)} events ({len(collector.words)} words, {len(collector.turns)} turns) of stream "
          f"{args.stream or 1}/{streams}; wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0


class TaskTimer:
    """Times one task's model calls: wraps the shared :class:`~wavlm_live.tasks.Task`'s
    ``run`` (the one call through which the scheduler sends every batch of windows to the
    task's model), adding each call's wall time to ``seconds`` (for ``bench``)."""

    def __init__(self, task: Any) -> None:
        self.seconds = 0.0
        run = task.run

        def timed(requests: list[Any]) -> list[Any]:
            t0 = time.perf_counter()
            try:
                return run(requests)
            finally:
                self.seconds += time.perf_counter() - t0

        task.run = timed


def cmd_bench(args: argparse.Namespace) -> int:
    """``bench [FILE]``: offline real-time factor of the pipeline and of each task's model
    (model seconds per audio second), as one JSON object. Without a model option the
    bundled demo models run (no network); otherwise the options not given are the
    public defaults.

    Printed keys: ``load_seconds`` (models and enrolment), ``wall_seconds`` (the run: file
    decoding, resampling, every window, stitching, language-model search), ``rtf`` (that
    per audio second), ``task_seconds``/``task_rtf`` (time inside each task's model calls,
    :class:`TaskTimer`) and
    ``other_seconds`` (the run's time outside them)."""
    given = [getattr(args, k, None) for k in ("ctc_model", "diarization_model", "embedding_model")]
    demo = args.demo or not any(given)
    if not demo:
        for key, task in (("ctc_model", "captions"), ("diarization_model", "diarization"), ("embedding_model", "embeddings")):
            if getattr(args, key, None) is None:
                setattr(args, key, DEFAULT_MODELS[task])
    path = args.file or str(demo_recording())
    bus = EventBus()
    timers: dict[str, TaskTimer] = {}
    started: list[float] = []

    def instrument(engine: Engine) -> None:
        started.append(time.perf_counter())
        for name, stream in engine.context.streams.items():
            timers[name] = TaskTimer(stream.task)

    t0 = time.perf_counter()
    engine = run_file_offline(args, path, demo, bus, progress=False, engine_hook=instrument)
    elapsed = time.perf_counter() - started[0]
    duration = engine.ring.written / SAMPLE_RATE
    task_seconds = {task: round(t.seconds, 3) for task, t in timers.items()}
    print(
        json.dumps(
            {
                "file": str(path),
                "models": engine.hello()["models"],
                "demo": engine.demo,
                "audio_seconds": round(duration, 2),
                "load_seconds": round(started[0] - t0, 3),
                "wall_seconds": round(elapsed, 3),
                "rtf": round(elapsed / max(duration, 1e-9), 4),
                "task_seconds": task_seconds,
                "task_rtf": {task: round(t.seconds / max(duration, 1e-9), 4) for task, t in timers.items()},
                "other_seconds": round(elapsed - sum(t.seconds for t in timers.values()), 3),
                "windows": engine.windows_analysed,
                "tasks": engine.tasks,
                "window": engine.main_plan.window_seconds,
                "hop": engine.main_plan.hop_seconds,
            }
        )
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``eval FOLDER``: metrics through the streaming pipeline."""
    from ..evaluate import evaluate_folder  # noqa: PLC0415

    return evaluate_folder(args)
