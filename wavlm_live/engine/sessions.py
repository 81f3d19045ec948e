"""Many streams, one set of models: the sessions of a server.

A :class:`SessionHost` holds one instance of each task model and one
:class:`~wavlm_live.engine.scheduler.Scheduler`; every stream it opens
(:meth:`SessionHost.open`) is an :class:`~wavlm_live.engine.engine.Engine` of its own
(ring buffer, window schedule, stitchers, speaker tracker, statistics, event bus) whose
windows the scheduler batches with the other streams'. The server's own input, if any,
is one more stream (:meth:`SessionHost.add`). No I/O here: the websocket server feeds the
streams and forwards their events.
"""

from __future__ import annotations

import math
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from wavlm_live.engine.bus import EventBus
from wavlm_live.engine.engine import Engine, EngineConfig
from wavlm_live.engine.scheduler import Scheduler


class SessionLimitError(RuntimeError):
    """No more sessions may be opened now (``max_sessions`` are running)."""


@dataclass(frozen=True)
class SessionOptions:
    """What a client may choose for its own session.

    Attributes:
        tasks: the tasks to run, a subset of the host's (``None``: all of them).
        speaker_threshold: cosine similarity for an x-vector to join a known speaker
            (``None``: the host's).
        live: a real-time stream: when the machine falls behind, its oldest due windows
            are skipped (counted in ``stats``). ``False``: every window is analysed and the
            sender is slowed down instead (the server stops reading while
            ``buffer_seconds`` of audio wait), as for a file sent faster than real time.
    """

    tasks: tuple[str, ...] | None = None
    speaker_threshold: float | None = None
    live: bool = True


class SessionHost:
    """Shared task models and one scheduler serving any number of streams.

    Args:
        config: engine settings of every stream (window, hop, thresholds...).
        captions, diarization, embeddings, classification: the loaded task runners
            (shared; any subset, at least one).
        demo: the models are the bundled demo checkpoints.
        max_sessions: most client sessions open at once (the server's own input stream
            does not count); 0 refuses client sessions.
        buffer_seconds: per-session cap on audio waiting for analysis, in seconds (see
            :class:`SessionOptions`); each session's ring buffer holds this plus one
            window and two hops (``EngineConfig.ring_seconds``).

    Raises:
        ValueError: no model, or limits out of range.
    """

    def __init__(self, config: EngineConfig, *, captions: Any = None, diarization: Any = None,
                 embeddings: Any = None, classification: Any = None, demo: bool = False, max_sessions: int = 16,
                 buffer_seconds: float = 30.0) -> None:
        if captions is None and diarization is None and embeddings is None and classification is None:
            raise ValueError("enable at least one task (captions, diarization, embeddings or classification)")
        if isinstance(max_sessions, bool) or not isinstance(max_sessions, int) or not 0 <= max_sessions <= 100_000:
            raise ValueError(f"max_sessions must be a whole number in [0, 100000], got {max_sessions!r}")
        if not (isinstance(buffer_seconds, (int, float)) and math.isfinite(buffer_seconds) and 1 <= buffer_seconds <= 3600):
            raise ValueError(f"buffer_seconds must be within [1, 3600] s, got {buffer_seconds!r}")
        self.config = config
        self.models = {"captions": captions, "diarization": diarization, "embeddings": embeddings,
                       "classification": classification}
        self.demo = demo
        self.max_sessions = max_sessions
        self.buffer_seconds = float(buffer_seconds)
        self.scheduler = Scheduler()
        self._lock = threading.Lock()
        self._sessions: dict[str, Engine] = {}
        self._started = False
        self.opened = 0

    @property
    def tasks(self) -> list[str]:
        """The tasks this host's models serve, in fixed order."""
        return [task for task, model in self.models.items() if model is not None]

    def template(self, bus: EventBus | None = None) -> Engine:
        """An engine with every task and the host's settings (not added to the scheduler):
        for ``hello`` and warm-up."""
        return Engine(self.config, bus or EventBus(), **self.models, demo=self.demo)

    def start(self) -> None:
        """Warm every model up once and start the scheduler thread. Idempotent."""
        if self._started:
            return
        self._started = True
        self.template().warmup()
        self.scheduler.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the scheduler (streams not yet complete stay unfinished)."""
        self.scheduler.stop(timeout)

    def add(self, engine: Engine) -> None:
        """Serve an engine made elsewhere (the server's own input) with the shared scheduler."""
        self.scheduler.add(engine)

    def open(self, bus: EventBus, options: SessionOptions = SessionOptions(),
             source_stats: Callable[[], Any] | None = None) -> tuple[str, Engine]:
        """Open a client session: a new stream publishing on ``bus``.

        Returns:
            ``(session id, engine)``: the id is random and unguessable (URL-safe text); feed
            the engine with :meth:`Engine.feed` and end it with :meth:`Engine.close_input`.

        Raises:
            SessionLimitError: ``max_sessions`` sessions are running.
            ValueError: unknown or unavailable tasks, or a bad threshold.
        """
        tasks = self.tasks if options.tasks is None else list(options.tasks)
        unknown = [t for t in tasks if t not in self.models]
        if unknown:
            raise ValueError(f"unknown task(s) {', '.join(map(repr, unknown))}; tasks are {', '.join(self.models)}")
        missing = [t for t in tasks if self.models[t] is None]
        if missing:
            raise ValueError(f"this server does not run {', '.join(missing)} (it runs {', '.join(self.tasks)})")
        if not tasks:
            raise ValueError("a session needs at least one task")
        changes: dict[str, Any] = {
            "realtime": options.live,
            "buffer_seconds": self.buffer_seconds,
        }
        if options.speaker_threshold is not None:
            t = options.speaker_threshold
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not -1.0 <= t <= 1.0:
                raise ValueError(f"speaker_threshold must be a cosine similarity in [-1, 1], got {t!r}")
            changes["speaker_threshold"] = float(t)
        config = replace(self.config, **changes)
        models = {task: (self.models[task] if task in tasks else None) for task in self.models}
        with self._lock:
            self._sessions = {k: e for k, e in self._sessions.items() if not e.finished.is_set()}
            if len(self._sessions) >= self.max_sessions:
                raise SessionLimitError(f"{self.max_sessions} sessions are running; try again later")
            engine = Engine(config, bus, **models, demo=self.demo, source_stats=source_stats)
            session_id = secrets.token_urlsafe(9)
            self._sessions[session_id] = engine
            self.opened += 1
        self.scheduler.add(engine)
        return session_id, engine

    @property
    def active(self) -> int:
        """Client sessions whose stream has not completed yet."""
        with self._lock:
            return sum(1 for e in self._sessions.values() if not e.finished.is_set())

    def describe(self) -> dict[str, Any]:
        """Health summary (``/healthz``): tasks, models, active and maximum sessions."""
        return {
            "tasks": self.tasks,
            "models": {task: model.name for task, model in self.models.items() if model is not None},
            "sessions": self.active,
            "max_sessions": self.max_sessions,
            "window": self.config.window,
            "hop": self.config.hop,
            "task_windows": {task: {"window": tw.window, "hop": tw.hop}
                             for task, tw in self.config.task_windows.items()},
        }
