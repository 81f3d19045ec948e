"""Assembles the pipeline for the command line: models, engine, audio source, websocket
server and dashboard, and runs each ``wavlm-live`` subcommand."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from wavlm_live.cli import DEFAULT_MODELS, CliError
from wavlm_live.engine.bus import EventBus
from wavlm_live.engine.engine import Engine, EngineConfig
from wavlm_live.events import ErrorEvent

log = logging.getLogger(__name__)

DEMO_TASK_FOLDERS = {"captions": "captions", "diarization": "diarization", "embeddings": "embeddings"}
"""Sub-folders of the bundled demo checkpoints in ``wavlm_live/data/demo``."""

DEMO_SPEAKER_THRESHOLD = 0.86
"""Cosine-similarity threshold for the bundled demo x-vector model, between its equal-error
points on two sets of verification trials of held-out voices through the streaming
pipeline: 0.839 (1000 trials) and 0.883 (600); see wavlm_live/data/demo/embeddings/README.md."""


def demo_dir() -> Path:
    """Folder of the bundled demo checkpoints and recording."""
    return Path(str(resources.files("wavlm_live") / "data" / "demo"))


def demo_recording() -> Path:
    """The bundled demo conversation."""
    folder = demo_dir()
    for name in ("conversation.flac", "conversation.ogg", "conversation.wav"):
        if (folder / name).is_file():
            return folder / name
    raise CliError(f"the bundled demo recording is missing from {folder}; reinstall wavlm-live")


# -- models ---------------------------------------------------------------------------


@dataclass
class Models:
    """Loaded task runners (``None`` for disabled tasks)."""

    captions: Any = None
    diarization: Any = None
    embeddings: Any = None
    demo: bool = False
    ids: dict[str, str] = field(default_factory=dict)


def model_sources(args: argparse.Namespace, demo: bool) -> dict[str, str]:
    """Checkpoint (Hub id or folder) per enabled task, from the options."""
    if demo:
        base = demo_dir()
        chosen = {task: str(base / folder) for task, folder in DEMO_TASK_FOLDERS.items()}
    else:
        chosen = {
            "captions": getattr(args, "ctc_model", DEFAULT_MODELS["captions"]),
            "diarization": getattr(args, "diarization_model", DEFAULT_MODELS["diarization"]),
            "embeddings": getattr(args, "embedding_model", DEFAULT_MODELS["embeddings"]),
        }
    for task in list(chosen):
        if getattr(args, f"no_{task}", False):
            del chosen[task]
    if not chosen:
        raise CliError("all tasks are disabled; drop one of --no-captions/--no-diarization/--no-embeddings")
    return chosen


def load_models(args: argparse.Namespace, demo: bool) -> Models:
    """Load the enabled task checkpoints on the requested device/dtype.

    Raises:
        CliError: a checkpoint cannot be found, downloaded or loaded (one sentence naming
            it and what to do), or the device/dtype is unavailable.
    """
    import torch  # noqa: PLC0415

    from wavlm_live.engine.tasks import CTCRunner, FrameRunner, XVectorRunner  # noqa: PLC0415
    from wavlm_live.model import ModelLoadError, load_pretrained  # noqa: PLC0415

    if getattr(args, "threads", None):
        torch.set_num_threads(max(1, args.threads))
    sources = model_sources(args, demo)
    runners = {"captions": (CTCRunner, "ctc"), "diarization": (FrameRunner, "frames"), "embeddings": (XVectorRunner, "xvector")}
    models = Models(demo=demo)
    for task, source in sources.items():
        runner, expected = runners[task]
        try:
            pretrained = load_pretrained(source, device=args.compute, dtype=args.dtype, expected_task=expected)
            setattr(models, task, runner(pretrained))
        except (ModelLoadError, ValueError, RuntimeError) as exc:
            raise CliError(f"{task} model: {exc}") from None
        if task == "captions":
            attach_language_model(models.captions, args)
        bundled = is_demo_checkpoint(pretrained.path)
        models.demo |= bundled
        models.ids[task] = f"demo/{pretrained.path.name}" if bundled else source
        getattr(models, task).name = f"{models.ids[task]} ({pretrained.family})"  # hello: "id (Wav2Vec2)"
    return models


def attach_language_model(runner: Any, args: argparse.Namespace) -> None:
    """Give a :class:`~wavlm_live.engine.tasks.CTCRunner` a beam-search ``final_decoder``
    with the language model of ``--lm``, else of the checkpoint's ``language_model/``
    folder when it has one; nothing with ``--no-lm`` or without a model.

    Raises:
        CliError: the language model cannot be read (names the path and the reason), or
            ``--lm`` is combined with ``--no-lm``.
    """
    from wavlm_live.model.lm import CTCBeamDecoder, load_language_model  # noqa: PLC0415

    chosen = getattr(args, "lm", None)
    if getattr(args, "no_lm", False):
        if chosen:
            raise CliError("--lm and --no-lm contradict each other; pass one")
        return
    pretrained = runner.pretrained
    path = Path(chosen).expanduser() if chosen else pretrained.path / "language_model"
    if not chosen and not path.is_dir():
        return
    try:
        lm, settings = load_language_model(path)
        runner.final_decoder = CTCBeamDecoder(pretrained.vocab, lm, settings,
                                              frame_seconds=pretrained.decoder.frame_seconds)
    except (OSError, ValueError) as exc:
        raise CliError(f"captions language model: {exc}; pass --no-lm to decode greedily") from None
    log.info("captions: beam search with the %d-gram language model %s", lm.order, path)


def is_demo_checkpoint(path: Path) -> bool:
    """True when ``path`` is one of the bundled demo checkpoints (however it was named)."""
    try:
        return Path(path).resolve().parent == demo_dir().resolve()
    except OSError:
        return False


def engine_config(args: argparse.Namespace, demo: bool, realtime: bool) -> EngineConfig:
    """Engine settings from the options (defaults where not given); ``demo``: the bundled
    demo checkpoints are loaded (their speaker threshold applies unless one is given)."""
    config = EngineConfig(realtime=realtime)
    changes: dict[str, Any] = {}
    if getattr(args, "window", None):
        changes["window"] = args.window
    if getattr(args, "hop", None):
        changes["hop"] = args.hop
    threshold = getattr(args, "speaker_threshold", None)
    if threshold is not None:
        changes["speaker_threshold"] = threshold
    elif demo:
        changes["speaker_threshold"] = DEMO_SPEAKER_THRESHOLD
    if getattr(args, "max_speakers", None):
        changes["max_speakers"] = args.max_speakers
    if "window" in changes and "hop" not in changes:
        changes["hop"] = min(config.hop, changes["window"] / 2)
    config = replace(config, **changes)
    needed = config.window + 3 * config.hop + 5
    if config.ring_seconds < needed:
        config = replace(config, ring_seconds=needed)
    return config


def build_engine(args: argparse.Namespace, demo: bool, realtime: bool, bus: EventBus, source_stats: Any = None) -> Engine:
    """Load the models and create the engine (and enrol ``--enroll`` speakers).

    Raises:
        CliError: bad options, models or enrolment files.
    """
    import gc  # noqa: PLC0415

    models = load_models(args, demo)
    config = engine_config(args, models.demo, realtime)
    gc.collect()
    gc.freeze()  # the model objects never die: keep them out of the collector's scans (shorter pauses)
    try:
        engine = Engine(
            config,
            bus,
            captions=models.captions,
            diarization=models.diarization,
            embeddings=models.embeddings,
            demo=models.demo,
            source_stats=source_stats,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    for item in getattr(args, "enroll", []) or []:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path:
            raise CliError(f"--enroll takes NAME=FILE, got {item!r}")
        try:
            engine.enroll(name, read_audio(path))
        except ValueError as exc:
            raise CliError(f"cannot enrol {name!r}: {exc}") from None
    return engine


def read_audio(path: str | Path) -> np.ndarray:
    """A whole audio file as 16 kHz mono float32 (any format/rate soundfile reads).

    Raises:
        CliError: unreadable, corrupt or empty file.
    """
    from wavlm_live.audio import AudioError, FileSource  # noqa: PLC0415

    try:
        blocks = list(FileSource(path, speed=None).blocks())
    except AudioError as exc:
        raise CliError(str(exc)) from None
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


# -- sources and threads ----------------------------------------------------------------


def open_source(spec: str | None, device: str | None, speed: float, loop: bool) -> Any:
    """An audio source for ``--input``: ``"mic"`` (optionally ``device`` by index or name
    substring) or a file path, replayed at ``speed`` times real time.

    Raises:
        CliError: the file cannot be read or the microphone cannot be opened.
    """
    from wavlm_live.audio import AudioError, FileSource, MicrophoneSource  # noqa: PLC0415

    try:
        if spec is None or spec == "mic":
            dev: int | str | None = None
            if device is not None:
                dev = int(device) if device.strip().isdigit() else device
            return MicrophoneSource(dev)
        return FileSource(spec, speed=speed, loop=loop)
    except AudioError as exc:
        raise CliError(str(exc)) from None


class ServerThread:
    """Runs a :class:`wavlm_live.server.Publisher` on its own asyncio loop in a daemon
    thread (for ``run``/``demo``, where the dashboard owns the main thread)."""

    def __init__(self, bus: EventBus, hello: dict[str, Any], control: Any, config: Any) -> None:
        self._args = (bus, hello, control, config)
        self._ready = threading.Event()
        self._stop = threading.Event()
        self.port = 0
        self.error: BaseException | None = None
        self.publisher: Any = None
        self._thread = threading.Thread(target=self._run, name="wavlm-live-server", daemon=True)

    def start(self, timeout: float = 10.0) -> int:
        """Start serving; returns the bound port.

        Raises:
            CliError: the address cannot be bound.
        """
        self._thread.start()
        if not self._ready.wait(timeout) or self.error is not None:
            raise CliError(f"cannot start the websocket server: {self.error or 'timed out'}")
        return self.port

    def _run(self) -> None:
        from wavlm_live.server import Publisher  # noqa: PLC0415

        async def main() -> None:
            publisher = self.publisher = Publisher(*self._args)
            try:
                self.port = await publisher.start()
            except BaseException as exc:  # noqa: BLE001 - reported by start()
                self.error = exc
                self._ready.set()
                return
            self._ready.set()
            try:
                while not self._stop.is_set():
                    await asyncio.sleep(0.1)
            finally:
                await publisher.stop()

        asyncio.run(main())

    def clients(self) -> int:
        """Connected clients now."""
        return 0 if self.publisher is None else int(self.publisher.clients)

    def stop(self, timeout: float = 5.0) -> None:
        """Close every client (1001) and stop the thread."""
        self._stop.set()
        self._thread.join(timeout)


class Pipeline:
    """A source feeding an engine, with the glue threads: when the source ends the engine
    settles and ends the stream; a source error is published as an ``error`` event."""

    def __init__(self, engine: Engine, source: Any) -> None:
        self.engine = engine
        self.source = source
        self._watcher = threading.Thread(target=self._watch, name="wavlm-live-source-watch", daemon=True)

    def start(self) -> None:
        """Start the engine thread, then the source."""
        from wavlm_live.audio import AudioError  # noqa: PLC0415

        self.engine.start()
        try:
            self.source.start(self.engine.feed)
        except AudioError as exc:
            self.engine.abort()
            raise CliError(str(exc)) from None
        self._watcher.start()

    def _watch(self) -> None:
        self.source.finished.wait()
        if self.source.error is not None:
            self.engine.publish(ErrorEvent(code="audio", message=str(self.source.error), fatal=True))
        self.engine.close_input()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the source and let the engine settle what it has."""
        self.source.stop()
        self.engine.stop(timeout)


def server_config(args: argparse.Namespace) -> Any:
    """:class:`wavlm_live.server.ServerConfig` from the options.

    Raises:
        CliError: invalid values.
    """
    from wavlm_live.server import ServerConfig  # noqa: PLC0415

    try:
        return ServerConfig(
            host=args.host,
            port=args.port,
            token=args.token,
            # No browser page may read the stream unless its origin is allowed explicitly:
            # a token-less local server would otherwise be readable by any open web page.
            # Clients that send no Origin (the dashboard, listen, scripts) are unaffected.
            allowed_origins=tuple(args.allow_origin) if args.allow_origin else (),
            max_clients=args.max_clients,
        )
    except (TypeError, ValueError) as exc:
        raise CliError(str(exc)) from None


def _subscribe_jsonl(args: argparse.Namespace, bus: EventBus) -> Any:
    if not getattr(args, "jsonl", None):
        return None
    from wavlm_live.engine.writers import JsonlWriter  # noqa: PLC0415

    try:
        stream = open(args.jsonl, "a", encoding="utf-8")  # noqa: SIM115 - closed at exit
    except OSError as exc:
        raise CliError(f"cannot open {args.jsonl} for writing: {exc.strerror}") from None
    bus.subscribe(JsonlWriter(stream))
    return stream


def _url(host: str, port: int) -> str:
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"ws://[{host}]:{port}" if ":" in host else f"ws://{host}:{port}"


# -- commands ---------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, demo: bool = False) -> int:
    """``run`` and ``demo``: capture, analyse, serve, and show the dashboard (or print
    captions when ``--no-tui`` or not on a terminal). Returns the exit status."""
    spec = args.input
    if demo and spec is None:
        spec = str(demo_recording())
    source = open_source(spec, args.input_device, args.speed, args.loop)
    bus = EventBus()
    engine = build_engine(args, demo, realtime=True, bus=bus, source_stats=source.stats)
    jsonl = _subscribe_jsonl(args, bus)
    server = ServerThread(bus, engine.hello(), engine, server_config(args))
    port = server.start()
    url = _url(args.host, port)
    pipeline = Pipeline(engine, source)
    use_tui = not args.no_tui and sys.stdin.isatty() and sys.stdout.isatty()
    print(f"wavlm-live: {source.describe()} -> {url}" + (" (demo models)" if demo else ""), file=sys.stderr)
    try:
        pipeline.start()
        if use_tui:
            from wavlm_live.tui import run_dashboard  # noqa: PLC0415

            status = run_dashboard(url, args.token)
        else:
            from wavlm_live.server import listen  # noqa: PLC0415

            status = asyncio.run(listen(url, token=args.token))
    except KeyboardInterrupt:
        status = 130
    finally:
        pipeline.stop(timeout=5.0)
        server.stop()
        if jsonl is not None:
            jsonl.close()
    return status


def cmd_serve(args: argparse.Namespace) -> int:
    """``serve``: headless publisher until SIGINT/SIGTERM (or the end of a file with
    ``--exit-at-end``); on a signal every client is closed with 1001 and the exit status
    is 0."""
    import signal  # noqa: PLC0415

    source = open_source(args.input, args.input_device, args.speed, args.loop)
    bus = EventBus()
    engine = build_engine(args, False, realtime=True, bus=bus, source_stats=source.stats)
    jsonl = _subscribe_jsonl(args, bus)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = ServerThread(bus, engine.hello(), engine, server_config(args))
    pipeline = Pipeline(engine, source)
    try:
        port = server.start()
        print(f"wavlm-live: serving {source.describe()} on {_url(args.host, port)}", file=sys.stderr, flush=True)
        if args.wait_client:
            while not stop.is_set() and server.clients() == 0:
                stop.wait(0.05)
        if not stop.is_set():
            pipeline.start()
        while not stop.is_set():
            if args.exit_at_end and engine.finished.is_set():
                break  # stopping the server first sends what was published
            stop.wait(0.1)
    finally:
        server.stop()
        pipeline.stop(timeout=5.0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if jsonl is not None:
            jsonl.close()
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    """``tui URL``: the dashboard only."""
    from wavlm_live.tui import run_dashboard  # noqa: PLC0415

    return run_dashboard(args.url, args.token)


def cmd_listen(args: argparse.Namespace) -> int:
    """``listen URL``: print captions and speakers."""
    from wavlm_live.server import listen  # noqa: PLC0415

    return asyncio.run(listen(args.url, token=args.token))


def cmd_devices(args: argparse.Namespace) -> int:
    """``devices``: the input device table."""
    from wavlm_live.audio import AudioError, format_device_table, list_input_devices  # noqa: PLC0415

    try:
        devices = list_input_devices()
    except AudioError as exc:
        raise CliError(str(exc)) from None
    print(format_device_table(devices))
    return 0


def run_file_offline(args: argparse.Namespace, path: str | Path, demo: bool, bus: EventBus, progress: bool = True) -> Engine:
    """Run the streaming engine over a whole file as fast as possible (no skipping).

    Raises:
        CliError: unreadable file or models.
    """
    from wavlm_live.audio import AudioError, FileSource  # noqa: PLC0415

    try:
        source = FileSource(path, speed=None)
    except AudioError as exc:
        raise CliError(str(exc)) from None
    engine = build_engine(args, demo, realtime=False, bus=bus)
    total = int(round(source.duration * 16000))
    bar = None
    if progress and sys.stderr.isatty():
        from tqdm import tqdm  # noqa: PLC0415

        bar = tqdm(total=round(source.duration, 1), unit="s", desc=Path(path).name, file=sys.stderr, leave=False)

    def on_progress(samples: int) -> None:
        if bar is not None:
            bar.n = round(min(samples, total) / 16000, 1)
            bar.refresh()

    try:
        engine.run_offline(source.blocks(), progress=on_progress)
    except AudioError as exc:
        raise CliError(str(exc)) from None
    finally:
        if bar is not None:
            bar.close()
    return engine


def cmd_transcribe(args: argparse.Namespace) -> int:
    """``transcribe FILE``: offline analysis writing JSONL/SRT/WebVTT/RTTM/TXT."""
    from wavlm_live.engine.writers import JsonlWriter, ResultCollector  # noqa: PLC0415

    formats = {f.strip().lower() for f in args.formats.split(",") if f.strip()}
    unknown = formats - {"jsonl", "srt", "vtt", "rttm", "txt"}
    if unknown or not formats:
        raise CliError(f"unknown output format(s) {', '.join(sorted(unknown)) or '(none)'}; choose from jsonl,srt,vtt,rttm,txt")
    src = Path(args.file)
    stem = Path(args.output) if args.output else src.with_suffix("")
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create {stem.parent}: {exc.strerror}") from None
    bus = EventBus()
    collector = ResultCollector()
    bus.subscribe(collector)
    jsonl = None
    if "jsonl" in formats:
        # Written to a temporary name and renamed at the end: a failed run never leaves
        # a truncated result in place of a good one.
        tmp = stem.with_suffix(".jsonl.part")
        jsonl = open(tmp, "w", encoding="utf-8")  # noqa: SIM115
        bus.subscribe(JsonlWriter(jsonl))
    t0 = time.perf_counter()
    try:
        engine = run_file_offline(args, src, args.demo, bus)
    except BaseException:
        if jsonl is not None:
            jsonl.close()
            stem.with_suffix(".jsonl.part").unlink(missing_ok=True)
        raise
    elapsed = time.perf_counter() - t0
    written = []
    if jsonl is not None:
        jsonl.close()
        final = stem.with_suffix(".jsonl")
        stem.with_suffix(".jsonl.part").replace(final)
        written.append(final)
    file_id = "".join(c if not c.isspace() else "_" for c in src.stem) or "audio"
    written += collector.write(stem, file_id, formats - {"jsonl"})
    duration = engine.ring.written / 16000
    print(collector.transcript)
    print(
        f"wavlm-live: {duration:.1f} s of audio in {elapsed:.1f} s (RTF {elapsed / max(duration, 1e-9):.3f}); "
        f"wrote {', '.join(str(p) for p in written)}",
        file=sys.stderr,
    )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``bench [FILE]``: offline real-time factor of the configured pipeline."""
    path = args.file or str(demo_recording())
    bus = EventBus()
    t0 = time.perf_counter()
    engine = run_file_offline(args, path, args.demo, bus, progress=False)
    elapsed = time.perf_counter() - t0
    duration = engine.ring.written / 16000
    print(
        json.dumps(
            {
                "file": str(path),
                "audio_seconds": round(duration, 2),
                "wall_seconds": round(elapsed, 3),
                "model_seconds": round(engine.compute_seconds, 3),
                "rtf": round(elapsed / max(duration, 1e-9), 4),
                "windows": engine.windows_analysed,
                "tasks": engine.tasks,
                "window": engine.plan.window_seconds,
                "hop": engine.plan.hop_seconds,
            }
        )
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``eval FOLDER``: metrics through the streaming pipeline."""
    from wavlm_live.evaluate import evaluate_folder  # noqa: PLC0415

    return evaluate_folder(args)


def dispatch(args: argparse.Namespace) -> int:
    """Run the subcommand chosen on the command line; returns the exit status.

    Raises:
        CliError: any user-facing failure (printed by :func:`wavlm_live.cli.main`).
    """
    command = args.command
    if command == "run":
        return cmd_run(args)
    if command == "demo":
        return cmd_run(args, demo=True)
    handlers = {
        "serve": cmd_serve,
        "tui": cmd_tui,
        "listen": cmd_listen,
        "devices": cmd_devices,
        "transcribe": cmd_transcribe,
        "bench": cmd_bench,
        "eval": cmd_eval,
    }
    return handlers[command](args)
