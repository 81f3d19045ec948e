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

from wavlm_live.cli import DEFAULT_MODELS, CliError, UsageError
from wavlm_live.engine.bus import EventBus
from wavlm_live.timegrid import SAMPLE_RATE
from wavlm_live.engine.engine import Engine, EngineConfig
from wavlm_live.events import ErrorEvent

log = logging.getLogger(__name__)

DEMO_TASK_FOLDERS = {"captions": "captions", "diarization": "diarization", "embeddings": "embeddings",
                     "classification": "language"}
"""Sub-folders of the bundled demo checkpoints in ``wavlm_live/data/demo`` (the
classification one: spoken-language identification)."""

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
    classification: Any = None
    demo: bool = False
    ids: dict[str, str] = field(default_factory=dict)


def model_sources(args: argparse.Namespace, demo: bool) -> dict[str, str]:
    """Checkpoint (Hub id or folder) per enabled task, from the options."""
    if demo:
        base = demo_dir()
        chosen = {task: str(base / folder) for task, folder in DEMO_TASK_FOLDERS.items()
                  if (base / folder / "config.json").is_file()}
    else:
        chosen = {
            "captions": getattr(args, "ctc_model", DEFAULT_MODELS["captions"]),
            "diarization": getattr(args, "diarization_model", DEFAULT_MODELS["diarization"]),
            "embeddings": getattr(args, "embedding_model", DEFAULT_MODELS["embeddings"]),
        }
        if getattr(args, "classification_model", None):
            chosen["classification"] = args.classification_model
    for task in list(chosen):
        if getattr(args, f"no_{task}", False):
            del chosen[task]
    if not chosen:
        raise UsageError("all tasks are disabled; drop one of --no-captions/--no-diarization/--no-embeddings"
                         "/--no-classification")
    return chosen


def load_models(args: argparse.Namespace, demo: bool) -> Models:
    """Load the enabled task checkpoints on the requested device/dtype.

    Raises:
        CliError: a checkpoint cannot be found, downloaded or loaded (one sentence naming
            it and what to do), or the device/dtype is unavailable.
    """
    import torch  # noqa: PLC0415

    from wavlm_live.engine.tasks import CTCRunner, FrameRunner, SequenceRunner, XVectorRunner  # noqa: PLC0415
    from wavlm_live.model import ModelLoadError, load_pretrained  # noqa: PLC0415

    if getattr(args, "threads", None):
        torch.set_num_threads(max(1, args.threads))
    sources = model_sources(args, demo)
    runners = {"captions": (CTCRunner, "ctc"), "diarization": (FrameRunner, "frames"), "embeddings": (XVectorRunner, "xvector"),
               "classification": (SequenceRunner, "sequence")}
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
            raise UsageError("--lm and --no-lm contradict each other; pass one")
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


def enrolments(args: argparse.Namespace) -> list[tuple[str, str]]:
    """``(name, path)`` of each ``--enroll NAME=FILE``.

    Raises:
        UsageError: an item is not NAME=FILE, or the embeddings task is disabled.
    """
    out = []
    for item in getattr(args, "enroll", []) or []:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path:
            raise UsageError(f"--enroll takes NAME=FILE, got {item!r}")
        out.append((name, path))
    if out and getattr(args, "no_embeddings", False):
        raise UsageError("--enroll needs the embeddings task; drop --no-embeddings")
    return out


def check_analysis_options(args: argparse.Namespace) -> None:
    """Refuse option values that cannot work, before any file is read or model loaded:
    ``--enroll`` items (:func:`enrolments`) and a ``--window``/``--hop`` pair the window
    plan cannot run. ``--window`` alone changes only the window: the hop stays the
    default (1 s), so a window of 1 s or less needs a shorter ``--hop``.

    Raises:
        UsageError: a bad ``--enroll``, or a hop not at least one 20 ms frame shorter
            than the window.
    """
    enrolments(args)
    from wavlm_live.engine.windows import WindowPlan  # noqa: PLC0415

    defaults = EngineConfig()
    window = getattr(args, "window", None) or defaults.window
    hop = getattr(args, "hop", None) or defaults.hop
    try:
        WindowPlan(window, hop)
    except ValueError as exc:
        given = "--hop" if getattr(args, "hop", None) else f"the default hop of {defaults.hop:g} s"
        raise UsageError(f"--window {window:g} s is too short for {given} ({exc}); pass a shorter --hop, "
                         f"e.g. --hop {window / 2:g}") from None


def engine_config(args: argparse.Namespace, demo: bool, realtime: bool) -> EngineConfig:
    """Engine settings from the options (defaults where not given; ``--window`` without
    ``--hop`` keeps the default hop); ``demo``: the bundled demo checkpoints are loaded
    (their speaker threshold applies unless one is given)."""
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
    if getattr(args, "classify", None) or getattr(args, "top_k", None):
        from wavlm_live.tasks.classification import ClassificationConfig  # noqa: PLC0415

        try:
            changes["classification"] = ClassificationConfig(mode=args.classify or "auto", top_k=args.top_k or 3)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return replace(config, **changes)


def build_engine(args: argparse.Namespace, demo: bool, realtime: bool, bus: EventBus, source_stats: Any = None) -> Engine:
    """Load the models and create the engine (and enrol ``--enroll`` speakers).

    Raises:
        CliError: bad options, models or enrolment files.
    """
    check_analysis_options(args)  # before minutes of model loading
    models = load_models(args, demo)
    return make_engine(args, models, engine_config(args, models.demo, realtime), bus, source_stats)


def make_engine(args: argparse.Namespace, models: Models, config: EngineConfig, bus: EventBus,
                source_stats: Any = None) -> Engine:
    """An engine over already loaded (possibly shared) models, with the ``--enroll``
    speakers enrolled.

    Raises:
        CliError: bad settings or enrolment files.
    """
    import gc  # noqa: PLC0415

    enrol = enrolments(args)
    gc.collect()
    gc.freeze()  # the model objects never die: keep them out of the collector's scans (shorter pauses)
    try:
        engine = Engine(
            config,
            bus,
            captions=models.captions,
            diarization=models.diarization,
            embeddings=models.embeddings,
            classification=models.classification,
            demo=models.demo,
            source_stats=source_stats,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for name, path in enrol:
        try:
            engine.enroll(name, read_audio(path))
        except ValueError as exc:
            raise CliError(f"cannot enrol {name!r}: {exc}") from None
    return engine


def session_host(args: argparse.Namespace, models: Models, config: EngineConfig) -> Any:
    """The :class:`~wavlm_live.engine.sessions.SessionHost` that serves client sessions
    (and the server's own input) with ``models``.

    Raises:
        UsageError: bad limits.
    """
    from wavlm_live.engine.sessions import SessionHost  # noqa: PLC0415

    try:
        return SessionHost(config, captions=models.captions, diarization=models.diarization,
                           embeddings=models.embeddings, classification=models.classification, demo=models.demo,
                           max_sessions=getattr(args, "max_sessions", 16),
                           buffer_seconds=getattr(args, "session_buffer", 30.0))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def read_audio(path: str | Path) -> np.ndarray:
    """A whole audio file as 16 kHz mono float32 (any format and rate :class:`FileSource`
    decodes: libsndfile's formats, and MP3/M4A/video sound tracks through FFmpeg).

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
    """Runs :func:`wavlm_live.server.run_server` in a daemon thread (for ``run``/``demo``
    and ``serve``, where the dashboard or the signal handling owns the main thread).

    Args:
        bus, hello, control, config: as for :class:`wavlm_live.server.Publisher`.
        sessions: the session host for client audio sessions, or ``None``.
    """

    def __init__(self, bus: EventBus | None, hello: dict[str, Any], control: Any, config: Any,
                 sessions: Any = None) -> None:
        self._args = (bus, hello, control, config)
        self._sessions = sessions
        self._ready = threading.Event()
        self._stop = threading.Event()
        self.first_client = threading.Event()
        self.url = ""
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="wavlm-live-server", daemon=True)

    def start(self, timeout: float = 10.0) -> str:
        """Start serving; returns the server's URL (``ws://host:port``, the real port).

        Raises:
            CliError: the address cannot be bound.
        """
        self._thread.start()
        while not self._ready.wait(0.05):
            if not self._thread.is_alive() or (timeout := timeout - 0.05) <= 0:
                break
        if not self._ready.is_set():
            error = self.error
            if isinstance(error, OSError) and error.errno == 98:
                raise CliError(f"cannot start the websocket server: port {self._args[3].port} is in use "
                               "(pick another with --port, or --port 0 for any free port)")
            raise CliError(f"cannot start the websocket server: {error or 'timed out'}")
        return self.url

    def _run(self) -> None:
        from wavlm_live.server import run_server  # noqa: PLC0415

        def ready(url: str) -> None:
            self.url = url

        try:
            run_server(*self._args, ready=self._ready, stop=self._stop, on_ready=ready,
                       sessions=self._sessions, first_client=self.first_client)
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self.error = exc

    def stop(self, timeout: float = 5.0) -> None:
        """Close every client (1001) and stop the thread."""
        self._stop.set()
        self._thread.join(timeout)


class Pipeline:
    """A source feeding an engine, with the glue threads: when the source ends the engine
    settles and ends the stream; a source error is published as an ``error`` event."""

    def __init__(self, engine: Engine, source: Any, host: Any = None) -> None:
        self.engine = engine
        self.source = source
        self.host = host
        self._watcher = threading.Thread(target=self._watch, name="wavlm-live-source-watch", daemon=True)

    def start(self) -> None:
        """Start the engine (in the session host's scheduler when there is one, else in a
        thread of its own), then the source."""
        from wavlm_live.audio import AudioError  # noqa: PLC0415

        if self.host is not None:
            self.host.add(self.engine)
        else:
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
            # No other site's page may read the stream or talk into it unless its origin
            # is allowed explicitly (--allow-origin, '*' for any): a token-less local server
            # would otherwise be open to any web page. The server's own page is accepted;
            # clients that send no Origin (the dashboard, listen, send, scripts) too.
            allowed_origins=(None if args.allow_origin and "*" in args.allow_origin
                             else tuple(args.allow_origin) if args.allow_origin else ()),
            max_clients=args.max_clients,
            max_sessions=getattr(args, "max_sessions", 16),
            session_buffer_s=getattr(args, "session_buffer", 30.0),
            session_idle_s=getattr(args, "session_idle", 30.0),
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def _subscribe_jsonl(args: argparse.Namespace, bus: EventBus, engine: Engine, source: str) -> Any:
    """Append every event of ``engine``'s stream to ``--jsonl``, after a header line."""
    if not getattr(args, "jsonl", None):
        return None
    from wavlm_live.engine.writers import JsonlWriter, jsonl_header  # noqa: PLC0415

    try:
        stream = open(args.jsonl, "a", encoding="utf-8")  # noqa: SIM115 - closed at exit
    except OSError as exc:
        raise CliError(f"cannot open {args.jsonl} for writing: {exc.strerror}") from None
    bus.subscribe(JsonlWriter(stream, header=jsonl_header(engine.hello(), source)))
    return stream


def _url(host: str, port: int) -> str:
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"ws://[{host}]:{port}" if ":" in host else f"ws://{host}:{port}"


# -- commands ---------------------------------------------------------------------------


def _served(args: argparse.Namespace, demo: bool, spec: str | None) -> tuple[Any, Engine | None, Any, Any]:
    """Models loaded once and shared: the session host, the engine of the server's own
    input (``None`` without ``spec``) and its source, and the JSONL file (or ``None``).

    Raises:
        CliError: bad options, models, input or files.
    """
    source = open_source(spec, args.input_device, args.speed, args.loop) if spec is not None else None
    models = load_models(args, demo)
    config = engine_config(args, models.demo, realtime=True)
    host = session_host(args, models, config)
    engine = None
    jsonl = None
    if source is not None:
        bus = EventBus()
        engine = make_engine(args, models, config, bus, source_stats=source.stats)
        jsonl = _subscribe_jsonl(args, bus, engine, str(spec))
    elif getattr(args, "jsonl", None):
        raise UsageError("--jsonl records the server's own input; give --input too")
    return host, engine, source, jsonl


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def cmd_run(args: argparse.Namespace, demo: bool = False) -> int:
    """``run`` and ``demo``: capture, analyse, serve, and show the dashboard (or print
    captions when ``--no-tui`` or not on a terminal). Returns the exit status."""
    spec = args.input
    if demo and spec is None:
        spec = str(demo_recording())
    host, engine, source, jsonl = _served(args, demo, spec)
    assert engine is not None and source is not None
    host.start()
    server = ServerThread(engine.bus, engine.hello(), engine, server_config(args), sessions=host)
    try:
        url = _url(args.host, _port_of(server.start()))
    except BaseException:
        host.stop()
        raise
    pipeline = Pipeline(engine, source, host)
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
        host.stop()
        if jsonl is not None:
            jsonl.close()
    return status


def cmd_serve(args: argparse.Namespace) -> int:
    """``serve``: headless server until SIGINT/SIGTERM (or the end of a file with
    ``--exit-at-end``): client audio sessions on the shared models, plus the server's own
    ``--input`` if given. On a signal every client is closed with 1001 and the exit status
    is 0."""
    import signal  # noqa: PLC0415

    if args.exit_at_end and args.input is None:
        raise UsageError("--exit-at-end needs --input (a file whose end ends the server)")
    if args.wait_client and args.input is None:
        raise UsageError("--wait-client needs --input (the input that waits for the first client)")
    host, engine, source, jsonl = _served(args, args.demo, args.input)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    host.start()
    server = ServerThread(engine.bus if engine else None, (engine or host.template()).hello(), engine,
                          server_config(args), sessions=host)
    pipeline = Pipeline(engine, source, host) if engine is not None else None
    try:
        url = _url(args.host, _port_of(server.start()))
        what = source.describe() if source is not None else "client sessions"
        demo_note = " (demo models)" if host.demo else ""
        print(f"wavlm-live: serving {what} on {url}{demo_note}; browser page at "
              f"{url.replace('ws://', 'http://', 1)}/", file=sys.stderr, flush=True)
        if args.wait_client and pipeline is not None:
            while not stop.is_set() and not server.first_client.is_set():
                stop.wait(0.05)
        if not stop.is_set() and pipeline is not None:
            pipeline.start()
        while not stop.is_set():
            if args.exit_at_end and engine is not None and engine.finished.is_set():
                break  # stopping the server first sends what was published
            stop.wait(0.1)
    finally:
        server.stop()
        if pipeline is not None:
            pipeline.stop(timeout=5.0)
        host.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if jsonl is not None:
            jsonl.close()
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    """``tui URL``: the dashboard only."""
    from wavlm_live.tui import run_dashboard  # noqa: PLC0415

    return run_dashboard(args.url, args.token, session=args.session)


def cmd_send(args: argparse.Namespace) -> int:
    """``send FILE|mic URL``: stream audio into a session of a running server and print
    its results (or show them in the dashboard with ``--tui``). Exit status 0 when the
    session ended normally, 1 when the server refused or ended it with an error."""
    tasks = None
    if args.tasks:
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        unknown = [t for t in tasks if t not in DEMO_TASK_FOLDERS]
        if unknown or not tasks:
            raise UsageError(f"unknown task(s) {', '.join(unknown) or '(none)'}; "
                             f"choose from {','.join(DEMO_TASK_FOLDERS)}")
    options: dict[str, Any] = {"token": args.token, "tasks": tasks, "speaker_threshold": args.speaker_threshold}
    if args.input != "mic":
        from wavlm_live.audio import AudioError, FileSource  # noqa: PLC0415

        try:
            FileSource(args.input, speed=None).describe()  # a bad file fails here, in one line
        except AudioError as exc:
            raise CliError(str(exc)) from None
    if args.tui:
        return _send_with_dashboard(args, options)
    return asyncio.run(_send(args, options, print))


async def _send(args: argparse.Namespace, options: dict[str, Any], print_fn: Any,
                on_started: Any = None, stop: threading.Event | None = None) -> int:
    """Stream ``args.input`` and print the results with the ``listen`` printer."""
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI  # noqa: PLC0415

    from wavlm_live.client import SessionError, open_session, send_file  # noqa: PLC0415
    from wavlm_live.server.client import Printer  # noqa: PLC0415

    printer = Printer(print_fn, partials=print_fn is print and sys.stdout.isatty())
    failed = False
    stats: dict[str, Any] = {}
    try:
        if args.input == "mic":
            messages = _send_microphone(args, options, open_session, stop)
        else:
            messages = send_file(args.url, args.input, speed=args.speed, live=args.live, **options)
        async for msg in messages:
            if msg["type"] == "started":
                printer.line(f"session {msg['session']} started ({', '.join(msg['tasks'])}; "
                             f"window {msg['window']:g} s, hop {msg['hop']:g} s)")
                if on_started is not None:
                    on_started(msg["session"])
                continue
            failed |= msg.get("type") == "error" and bool(msg.get("fatal"))
            if msg["type"] == "stats":
                stats = msg
            printer.handle(msg)
        if stats:
            printer.line(f"{stats['windows_analysed']} windows analysed, {stats['windows_skipped']} skipped "
                         f"(RTF {stats['rtf']})")
    except SessionError as exc:
        print_fn(f"wavlm-live: the server refused the session: {exc}")
        return 1
    except InvalidStatus as exc:
        print_fn(f"wavlm-live: cannot connect to {args.url}: HTTP {exc.response.status_code}")
        return 1
    except InvalidURI:
        print_fn(f"wavlm-live: not a websocket URL: {args.url!r} (expected ws://host:port)")
        return 2
    except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        print_fn(f"wavlm-live: cannot stream to {args.url}: {detail}")
        return 1
    return 1 if failed else 0


async def _send_microphone(args: argparse.Namespace, options: dict[str, Any], open_session: Any,
                           stop: threading.Event | None) -> Any:
    """Messages of a live session fed from the local microphone until Ctrl-C (or ``stop``)."""
    source = open_source("mic", args.input_device, 1.0, False)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize=200)

    def sink(block: Any) -> None:  # audio thread: hand over, never block
        def put() -> None:
            if not queue.full():
                queue.put_nowait(block)
        loop.call_soon_threadsafe(put)

    async with open_session(args.url, sample_rate=SAMPLE_RATE, channels=1, format="f32le", live=True, **options) as session:
        yield session.started
        source.start(sink)

        async def pump() -> None:
            try:
                while not (stop is not None and stop.is_set()) and not source.finished.is_set():
                    try:
                        block = await asyncio.wait_for(queue.get(), 0.2)
                    except TimeoutError:
                        continue
                    await session.send(block)
            finally:
                source.stop()
                await session.stop()

        task = asyncio.create_task(pump())
        try:
            async for msg in session:
                yield msg
        finally:
            task.cancel()
            source.stop()


def _send_with_dashboard(args: argparse.Namespace, options: dict[str, Any]) -> int:
    """``send --tui``: the sender in a thread, the dashboard watching its session."""
    from wavlm_live.tui import run_dashboard  # noqa: PLC0415

    started = threading.Event()
    stop = threading.Event()
    result: dict[str, Any] = {}
    lines: list[str] = []

    def on_started(session_id: str) -> None:
        result["session"] = session_id
        started.set()

    def worker() -> None:
        result["status"] = asyncio.run(_send(args, options, lambda *a, **k: lines.append(" ".join(map(str, a))),
                                             on_started, stop))
        started.set()

    thread = threading.Thread(target=worker, name="wavlm-live-send", daemon=True)
    thread.start()
    started.wait()
    if "session" not in result:
        thread.join(5)
        for line in lines:
            print(line, file=sys.stderr)
        return int(result.get("status", 1))
    status = run_dashboard(args.url, args.token, session=result["session"])
    stop.set()
    thread.join(10)
    return status or int(result.get("status", 0))


def cmd_listen(args: argparse.Namespace) -> int:
    """``listen URL``: print captions and speakers."""
    from wavlm_live.server import listen  # noqa: PLC0415

    return asyncio.run(listen(args.url, token=args.token))


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


def run_file_offline(args: argparse.Namespace, path: str | Path, demo: bool, bus: EventBus, progress: bool = True,
                     engine_hook: Any = None) -> Engine:
    """Run the streaming engine over a whole file as fast as possible (no skipping).

    With ``progress``, a bar on a terminal, else a plain line on stderr at most every
    ``args.progress_interval`` seconds (:class:`wavlm_live.progress.Progress`).
    ``engine_hook(engine)`` runs once the engine is built, before the first block.

    Raises:
        CliError: unreadable file or models.
    """
    from wavlm_live.audio import AudioError, FileSource  # noqa: PLC0415
    from wavlm_live.progress import Progress  # noqa: PLC0415

    check_analysis_options(args)
    try:
        source = FileSource(path, speed=None)
    except AudioError as exc:
        raise CliError(str(exc)) from None
    engine = build_engine(args, demo, realtime=False, bus=bus, source_stats=source.stats)
    if engine_hook is not None:
        engine_hook(engine)
    meter = None
    if progress:
        meter = Progress(Path(path).name, round(source.duration, 1), "s",
                         interval=getattr(args, "progress_interval", 10.0))

    def on_progress(samples: int) -> None:
        if meter is not None:
            meter.update(samples / SAMPLE_RATE)

    try:
        engine.run_offline(source.blocks(), progress=on_progress)
    except AudioError as exc:
        raise CliError(str(exc)) from None
    finally:
        if meter is not None:
            meter.close()
    return engine


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


class TimedModel:
    """Wraps a task runner: every call of one of its ``methods`` adds its wall time to
    ``seconds``; everything else is the runner's own (for ``bench``'s per-task times)."""

    def __init__(self, runner: Any, methods: tuple[str, ...]) -> None:
        self._runner = runner
        self._methods = methods
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._runner, name)
        if name not in self._methods:
            return attr

        def timed(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return attr(*a, **k)
            finally:
                self.seconds += time.perf_counter() - t0

        return timed


BENCH_METHODS = {"captions": ("logits", "logits_batch"), "diarization": ("activity", "activity_batch"),
                 "embeddings": ("embed", "embed_batch")}
"""The model calls of each task that ``bench`` times (the Engine's model protocols; the
scheduler calls the ``*_batch`` forms)."""


def cmd_bench(args: argparse.Namespace) -> int:
    """``bench [FILE]``: offline real-time factor of the pipeline and of each task's model
    (model seconds per audio second), as one JSON object. Without a model option the
    bundled demo models run (no network); otherwise the options not given are the
    public defaults.

    Printed keys: ``load_seconds`` (models and enrolment), ``wall_seconds`` (the run: file
    decoding, resampling, every window, stitching, language-model search), ``rtf`` (that
    per audio second), ``task_seconds``/``task_rtf`` (time inside each task's model calls:
    captions' ``logits``, diarization's ``activity``, embeddings' ``embed``, single or
    batched) and
    ``other_seconds`` (the run's time outside them)."""
    given = [getattr(args, k, None) for k in ("ctc_model", "diarization_model", "embedding_model")]
    demo = args.demo or not any(given)
    if not demo:
        for key, task in (("ctc_model", "captions"), ("diarization_model", "diarization"), ("embedding_model", "embeddings")):
            if getattr(args, key, None) is None:
                setattr(args, key, DEFAULT_MODELS[task])
    path = args.file or str(demo_recording())
    bus = EventBus()
    timers: dict[str, TimedModel] = {}
    started: list[float] = []

    def instrument(engine: Engine) -> None:
        started.append(time.perf_counter())
        for task, method in BENCH_METHODS.items():
            attr = f"{task}_model"
            if getattr(engine, attr) is not None:
                timers[task] = TimedModel(getattr(engine, attr), method)
                setattr(engine, attr, timers[task])

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
        "send": cmd_send,
        "devices": cmd_devices,
        "transcribe": cmd_transcribe,
        "convert": cmd_convert,
        "bench": cmd_bench,
        "eval": cmd_eval,
    }
    return handlers[command](args)
