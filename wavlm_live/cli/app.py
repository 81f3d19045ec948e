"""Assembles the pipeline for the commands: models, engine, audio sources, the session
host, the websocket server thread and the offline runner."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from wavlm_live.engine.bus import EventBus
from wavlm_live.engine.engine import Engine, EngineConfig
from wavlm_live.events import ErrorEvent
from wavlm_live.timegrid import SAMPLE_RATE

from .defaults import DEFAULT_TASK_WINDOWS
from .options import AnalysisOptions
from .errors import CliError, UsageError

log = logging.getLogger(__name__)


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


@dataclass
class Models:
    """Loaded task runners (``None`` for disabled tasks)."""

    captions: Any = None
    diarization: Any = None
    embeddings: Any = None
    classification: Any = None
    demo: bool = False
    ids: dict[str, str] = field(default_factory=dict)


def model_sources(args: argparse.Namespace | AnalysisOptions, demo: bool) -> dict[str, str]:
    """Checkpoint (Hub id or folder) per enabled task, from the options.

    Raises:
        UsageError: every task is disabled.
    """
    opts = AnalysisOptions.of(args)
    if demo:
        base = demo_dir()
        chosen = {task: str(base / folder) for task, folder in DEMO_TASK_FOLDERS.items()
                  if (base / folder / "config.json").is_file()}
    else:
        chosen = dict(opts.models)
    chosen = {task: source for task, source in chosen.items() if opts.enabled(task)}
    if not chosen:
        raise UsageError("all tasks are disabled; drop one of --no-captions/--no-diarization/--no-embeddings"
                         "/--no-classification")
    return chosen


def load_models(args: argparse.Namespace | AnalysisOptions, demo: bool) -> Models:
    """Load the enabled task checkpoints on the requested device/dtype.

    Raises:
        CliError: a checkpoint cannot be found, downloaded or loaded (one sentence naming
            it and what to do), or the device/dtype is unavailable.
    """
    import torch  # noqa: PLC0415

    from wavlm_live.engine.tasks import CTCRunner, FrameRunner, SequenceRunner, XVectorRunner  # noqa: PLC0415
    from wavlm_live.model import ModelLoadError, load_pretrained  # noqa: PLC0415

    opts = AnalysisOptions.of(args)
    if opts.threads:
        torch.set_num_threads(max(1, opts.threads))
    sources = model_sources(opts, demo)
    runners = {"captions": (CTCRunner, "ctc"), "diarization": (FrameRunner, "frames"), "embeddings": (XVectorRunner, "xvector"),
               "classification": (SequenceRunner, "sequence")}
    models = Models(demo=demo)
    for task, source in sources.items():
        runner, expected = runners[task]
        try:
            pretrained = load_pretrained(source, device=opts.compute, dtype=opts.dtype, expected_task=expected)
            setattr(models, task, runner(pretrained))
        except (ModelLoadError, ValueError, RuntimeError) as exc:
            raise CliError(f"{task} model: {exc}") from None
        if task == "captions":
            attach_language_model(models.captions, opts)
        bundled = is_demo_checkpoint(pretrained.path)
        models.demo |= bundled
        models.ids[task] = f"demo/{pretrained.path.name}" if bundled else source
        getattr(models, task).name = f"{models.ids[task]} ({pretrained.family})"  # hello: "id (Wav2Vec2)"
    return models


def attach_language_model(runner: Any, args: argparse.Namespace | AnalysisOptions) -> None:
    """Give a :class:`~wavlm_live.engine.tasks.CTCRunner` a beam-search ``final_decoder``
    with the language model of ``--lm``, else of the checkpoint's ``language_model/``
    folder when it has one; nothing with ``--no-lm`` or without a model.

    Raises:
        CliError: the language model cannot be read (names the path and the reason), or
            ``--lm`` is combined with ``--no-lm``.
    """
    from wavlm_live.model.lm import CTCBeamDecoder, load_language_model  # noqa: PLC0415

    opts = AnalysisOptions.of(args)
    chosen = opts.lm
    if opts.no_lm:
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


def enrolments(args: argparse.Namespace | AnalysisOptions) -> list[tuple[str, str]]:
    """``(name, path)`` of each ``--enroll NAME=FILE``.

    Raises:
        UsageError: an item is not NAME=FILE, or the embeddings task is disabled.
    """
    opts = AnalysisOptions.of(args)
    out = []
    for item in opts.enroll:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path:
            raise UsageError(f"--enroll takes NAME=FILE, got {item!r}")
        out.append((name, path))
    if out and not opts.enabled("embeddings"):
        raise UsageError("--enroll needs the embeddings task; drop --no-embeddings")
    return out


def check_analysis_options(args: argparse.Namespace | AnalysisOptions) -> None:
    """Refuse option values that cannot work, before any file is read or model loaded:
    ``--enroll`` items (:func:`enrolments`) and window/hop pairs the window plans cannot
    run (:func:`engine_config`). ``--window`` alone changes only the window: the hop
    stays the default (1 s), so a window of 1 s or less needs a shorter ``--hop``.

    Raises:
        UsageError: a bad ``--enroll``, or a hop not at least one 20 ms frame shorter
            than its window.
    """
    opts = AnalysisOptions.of(args)
    enrolments(opts)
    engine_config(opts, demo=False, realtime=False)


def _plan_or_usage_error(window: float, hop: float, window_option: str, hop_option: str, hop_given: bool,
                         default_hop: float) -> None:
    from wavlm_live.engine.windows import WindowPlan  # noqa: PLC0415

    try:
        WindowPlan(window, hop)
    except ValueError as exc:
        given = hop_option if hop_given else f"the default hop of {default_hop:g} s"
        raise UsageError(f"{window_option} {window:g} s is too short for {given} ({exc}); pass a shorter "
                         f"{hop_option}, e.g. {hop_option} {window / 2:g}") from None


def task_windows(opts: AnalysisOptions, defaults: EngineConfig) -> dict[str, Any]:
    """The per-task windows of the options: ``--captions-window`` / ``--captions-hop``
    and ``--diarization-window`` / ``--diarization-hop``, each missing half taken from
    ``--window`` / ``--hop`` when one of those is given, else from the task's default
    (:data:`~wavlm_live.cli.defaults.DEFAULT_TASK_WINDOWS`). ``--window`` or ``--hop``
    alone sets one schedule for every task.

    Raises:
        UsageError: a window/hop pair the window plan cannot run.
    """
    from wavlm_live.engine.engine import TaskWindow  # noqa: PLC0415

    window = opts.window or defaults.window
    hop = opts.hop or defaults.hop
    _plan_or_usage_error(window, hop, "--window", "--hop", bool(opts.hop), defaults.hop)
    uniform = bool(opts.window or opts.hop)
    out = {}
    for task in ("captions", "diarization"):
        own_window, own_hop = getattr(opts, f"{task}_window"), getattr(opts, f"{task}_hop")
        if uniform and own_window is None and own_hop is None:
            continue
        base = (window, hop) if uniform else DEFAULT_TASK_WINDOWS[task]
        w, h = own_window or base[0], own_hop or base[1]
        _plan_or_usage_error(w, h, f"--{task}-window" if own_window else "--window",
                             f"--{task}-hop", own_hop is not None, hop)
        # a default's own right context applies to that default window and hop only
        right = base[2] if len(base) > 2 and own_window is None and own_hop is None else None
        out[task] = TaskWindow(w, h, right)
    return out


def engine_config(args: argparse.Namespace | AnalysisOptions, demo: bool, realtime: bool) -> EngineConfig:
    """Engine settings from the options (defaults where not given; ``--window`` without
    ``--hop`` keeps the default hop; per-task windows from :func:`task_windows`);
    ``demo``: the bundled demo checkpoints are loaded (their speaker threshold applies
    unless one is given).

    Raises:
        UsageError: settings that cannot run.
    """
    opts = AnalysisOptions.of(args)
    config = EngineConfig(realtime=realtime)
    changes: dict[str, Any] = {"task_windows": task_windows(opts, config)}
    if opts.window:
        changes["window"] = opts.window
    if opts.hop:
        changes["hop"] = opts.hop
    if opts.embedding_interval is not None:
        changes["embedding_interval"] = opts.embedding_interval
    if opts.speaker_threshold is not None:
        changes["speaker_threshold"] = opts.speaker_threshold
    elif demo:
        changes["speaker_threshold"] = DEMO_SPEAKER_THRESHOLD
    if opts.max_speakers:
        changes["max_speakers"] = opts.max_speakers
    if opts.vad:
        from wavlm_live.engine.vad import VADConfig  # noqa: PLC0415

        changes["vad"] = VADConfig()
    if opts.classify or opts.top_k:
        from wavlm_live.tasks.classification import ClassificationConfig  # noqa: PLC0415

        try:
            changes["classification"] = ClassificationConfig(mode=opts.classify or "auto", top_k=opts.top_k or 3)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return replace(config, **changes)


def build_engine(args: argparse.Namespace | AnalysisOptions, demo: bool, realtime: bool, bus: EventBus, source_stats: Any = None) -> Engine:
    """Load the models and create the engine (and enrol ``--enroll`` speakers).

    Raises:
        CliError: bad options, models or enrolment files.
    """
    opts = AnalysisOptions.of(args)
    check_analysis_options(opts)  # before minutes of model loading
    models = load_models(opts, demo)
    return make_engine(opts, models, engine_config(opts, models.demo, realtime), bus, source_stats)


def make_engine(args: argparse.Namespace | AnalysisOptions, models: Models, config: EngineConfig, bus: EventBus,
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


def session_host(args: argparse.Namespace | AnalysisOptions, models: Models, config: EngineConfig) -> Any:
    """The :class:`~wavlm_live.engine.sessions.SessionHost` that serves client sessions
    (and the server's own input) with ``models``.

    Raises:
        UsageError: bad limits.
    """
    from wavlm_live.engine.sessions import SessionHost  # noqa: PLC0415

    opts = AnalysisOptions.of(args)
    try:
        return SessionHost(config, captions=models.captions, diarization=models.diarization,
                           embeddings=models.embeddings, classification=models.classification, demo=models.demo,
                           max_sessions=opts.max_sessions, buffer_seconds=opts.session_buffer)
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
        """Start serving; returns the server's URL (``ws://host:port``, the real port;
        ``wss://`` over TLS).

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
    """:class:`wavlm_live.server.ServerConfig` from the options; warns on stderr when it
    binds a non-loopback address without a token (:func:`warn_if_exposed`); a ``--certfile``
    (and ``--keyfile``) is loaded once here, so that a bad one fails before the models load.

    Raises:
        UsageError: invalid values, a ``--certfile``/``--keyfile`` that is no readable
            file, ``--keyfile`` without ``--certfile``.
        CliError: the certificate or key cannot be loaded, or do not match.
    """
    from wavlm_live.server import ServerConfig  # noqa: PLC0415
    from wavlm_live.tls import server_context  # noqa: PLC0415

    try:
        config = ServerConfig(
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
            max_clients_per_address=getattr(args, "max_clients_per_address", 16),
            control_token=getattr(args, "control_token", None),
            max_sessions=getattr(args, "max_sessions", 16),
            session_buffer_s=getattr(args, "session_buffer", 30.0),
            session_idle_s=getattr(args, "session_idle", 30.0),
            client_idle_s=getattr(args, "client_idle", 30.0),
            certfile=getattr(args, "certfile", None),
            keyfile=getattr(args, "keyfile", None),
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if config.certfile is not None:
        try:
            server_context(config.certfile, config.keyfile)
        except ValueError as exc:
            raise CliError(f"cannot serve TLS: {exc}") from None
    warn_if_exposed(args)
    return config


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    import ipaddress  # noqa: PLC0415

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may well be reachable from elsewhere


def warn_if_exposed(args: argparse.Namespace) -> None:
    """Warn on stderr when the server binds an address other machines can reach
    (``--host`` not loopback) without a token: anyone who reaches the port may watch
    the streams, open sessions and rename speakers."""
    host = getattr(args, "host", "127.0.0.1")
    if getattr(args, "token", None) is None and not is_loopback(host):
        print(f"wavlm-live: warning: --host {host} accepts connections from other machines and no --token "
              "is set: anyone who can reach the port can watch the streams and open sessions; set --token "
              "(or WAVLM_LIVE_TOKEN)", file=sys.stderr, flush=True)


class FatalWatch:
    """Bus subscriber that keeps the first fatal :class:`~wavlm_live.events.ErrorEvent`
    of a stream (``event``; ``None`` while there is none). Called in the publishing
    thread; reading ``event`` from another thread is safe (one reference assignment)."""

    def __init__(self) -> None:
        self.event: ErrorEvent | None = None

    def __call__(self, event: Any) -> None:
        if self.event is None and isinstance(event, ErrorEvent) and event.fatal:
            self.event = event


def serve_failure(engine: Engine | None, watch: FatalWatch | None, host: Any) -> str | None:
    """Why ``serve`` must stop with a failure, in one line, or ``None``: its own input's
    stream ended with a fatal error (once its ``end`` is published), or the shared
    scheduler died (no session can be analysed)."""
    error = getattr(getattr(host, "scheduler", None), "error", None)
    if error is not None:
        return f"the analysis stopped: {type(error).__name__}: {error}"
    if engine is not None and watch is not None and watch.event is not None and engine.finished.is_set():
        return f"the input stopped ({watch.event.code} error): {watch.event.message}"
    return None


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


def _url(host: str, served: str) -> str:
    """The URL for this machine's clients of the server at ``served`` (its scheme and
    port) bound to ``host`` (``0.0.0.0``: reached at 127.0.0.1)."""
    scheme, port = served.split("://", 1)[0], _port_of(served)
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


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
