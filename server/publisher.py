"""Websocket server: fans the events of its streams out to subscribers and takes client
audio sessions.

A *stream* is one engine's event sequence: the server's own input (the ``bus`` given to
:class:`Publisher`, if any) and every client session opened with ``start`` (its own
:class:`~wavlm_live.engine.engine.Engine` from the :class:`SessionHost`, whose binary
frames this server decodes and feeds). Every connection watches at most one stream: the
server's input by default, its own session after ``start``, or any session by id after
``subscribe`` with ``session``.

Threads are crossed one way: the scheduler thread calls the bus subscribers
(:meth:`Publisher._on_event`), which append to an inbox and wake the asyncio loop with
``loop.call_soon_threadsafe``; everything else runs on that loop. Each client has a
bounded outgoing queue and its own writer task, so a slow client never delays the engine
or the other clients (see ``docs/protocol.md``, "Backpressure"): the writer pings the
client every few messages and sends at most ``send_window`` messages beyond the last one
a pong acknowledged, so a client that reads slowly has its oldest droppable messages
dropped in its queue (and is told), and one that stops reading stops answering pings and
is closed. Client messages are rate limited per connection (token buckets) and replies
are paced: after a message whose replies fill a quarter of the queue the server reads on
only once the client has read them. Plain HTTP requests get the browser page (``GET /``)
and the health report (``GET /healthz``).
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import http
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from wavlm_live.version import __version__
from wavlm_live.audio.pcm import MAX_CHANNELS, MAX_RATE, MIN_RATE, PCM_FORMATS, PcmError, PcmStream
from wavlm_live.engine.bus import EventBus
from wavlm_live.engine.sessions import SessionHost, SessionLimitError, SessionOptions
from wavlm_live.engine.scheduler import Scheduler
from wavlm_live.events import CaptionEvent, EndEvent, ErrorEvent, Event, LevelEvent, StatsEvent
from wavlm_live.tls import server_context

from .config import ServerConfig
from .protocol import (
    BadMessage,
    Outgoing,
    Ping,
    Rename,
    Start,
    Stop,
    Subscribe,
    encode_body,
    parse_client_message,
    render,
)
from .schemas import TASKS, TOPICS
from .state import StreamState

log = logging.getLogger(__name__)

HELLO_KEYS = ("version", "sample_rate", "frame", "tasks", "models", "window", "hop", "demo")
"""Keys the ``hello`` dict given to :class:`Publisher` must have."""

CLOSE_GOING_AWAY = 1001
CLOSE_TOO_SLOW = 1008
CLOSE_POLICY = 1008  # the client broke a rule of its session (bad audio, idle, too fast)
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011  # the session's analysis failed on the server
_DROPPED_GRACE_S = 10.0  # a dropped client's socket: its close frame and FIN queued, then abort
_PING_SPACING_S = 0.25  # a ping at least this often while messages are sent (and every send_window // 4)
_KEEPALIVE_S = 5.0  # a ping to an idle connection this often
_REFUSAL_LOG_S = 10.0  # refused handshakes and dropped clients: one log line per reason this often
_FLUSH_GRACE_S = 3.0  # shutdown: flush queue + close handshake, then abort
_SESSION_DRAIN_S = 10.0  # shutdown: open sessions' last windows analysed, at most this long
_CLOSE_TIMEOUT_S = 2.0  # websockets' wait for the client's close frame
_INBOX_LIMIT = 10_000  # events waiting for the loop before level/stats/partials are shed


class Control(Protocol):
    """What the server may ask of the engine on behalf of clients.

    Called from a worker thread of the server's loop (``asyncio.to_thread``), so an
    implementation must be thread-safe; it should return quickly.
    """

    def rename_speaker(self, speaker_id: str, name: str | None) -> None:
        """Set (or clear, with ``None``) the display name of a speaker. The engine then
        publishes the updated ``SpeakerEvent`` through the bus.

        Raises:
            KeyError: ``speaker_id`` is unknown.
            ValueError: ``name`` is not acceptable.
        """


class _Bucket:
    """A token bucket on the loop's clock: ``rate`` tokens per second up to ``burst``."""

    __slots__ = ("rate", "burst", "tokens", "stamp", "warned")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, float(burst), now
        self.warned = float("-inf")  # when the client was last told it is over the limit

    def take(self, now: float) -> bool:
        """Take one token; False when the bucket is empty."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class _LogThrottle:
    """Warnings that may come in floods (refused handshakes, dropped clients): the first
    of each kind is logged at once; more of that kind within ``interval`` seconds are
    counted and summed up in one line (by :meth:`flush`, or with the next one logged)."""

    def __init__(self, logger: logging.Logger, interval: float) -> None:
        self._log, self.interval = logger, interval
        self._state: dict[str, list[Any]] = {}  # kind -> [monotonic time of the last line, suppressed]

    def warning(self, kind: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        state = self._state.get(kind)
        if state is not None and now - state[0] < self.interval:
            state[1] += 1
            return
        if state is not None and state[1]:
            msg += f" ({state[1]} more of these in the last {now - state[0]:.0f} s)"
        self._log.warning(msg, *args)
        self._state[kind] = [now, 0]

    def flush(self) -> None:
        """Log the counts of suppressed lines whose interval has passed."""
        now = time.monotonic()
        for kind, state in list(self._state.items()):
            if now - state[0] >= self.interval:
                if state[1]:
                    self._log.warning("%d more %s in the last %.0f s", state[1], kind, now - state[0])
                del self._state[kind]


class _Queued:
    """One message in a client's queue (body shared between clients)."""

    __slots__ = ("seq", "kind", "wall", "body", "droppable")

    def __init__(self, seq: int, kind: str, wall: float, body: bytes, droppable: bool) -> None:
        self.seq, self.kind, self.wall, self.body, self.droppable = seq, kind, wall, body, droppable

    def encode(self) -> bytes:
        return render(self.kind, self.seq, self.wall, self.body)


class _DroppedNotice:
    """The queued ``dropped`` message; its counts grow until the writer sends it."""

    __slots__ = ("seq", "wall", "counts", "droppable")

    def __init__(self, seq: int, wall: float) -> None:
        self.seq, self.wall, self.counts, self.droppable = seq, wall, {}, False

    def encode(self) -> bytes:
        body = encode_body({"count": sum(self.counts.values()), "types": self.counts})
        return render("dropped", self.seq, self.wall, body)


class _Stream:
    """One engine's events as the server sees them: the state for late joiners and the
    clients watching it (``session`` is set for client sessions)."""

    def __init__(self, stream_id: str, recent_captions: int, control: Any = None) -> None:
        self.id = stream_id
        self.state = StreamState(recent_captions)
        self.clients: set[_Client] = set()
        self.control = control
        self.session: _Session | None = None
        self.unsubscribe: Callable[[], None] | None = None
        self.ended = False
        self.health = "running"  # the engine state last sent to its clients


class _Session:
    """A client's audio session: its decoder, engine, stream and owner connection."""

    def __init__(self, session_id: str, engine: Any, stream: _Stream, owner: _Client, pcm: PcmStream,
                 live: bool, now: float) -> None:
        self.id = session_id
        self.engine = engine
        self.stream = stream
        self.owner: _Client | None = owner
        self.pcm = pcm
        self.live = live
        self.started = now
        self.last_audio = now
        self.input_closed = False
        self.close_code: tuple[int, str] | None = None  # close the owner so once ``end`` is out
        self.warned_nonfinite = False
        self.warned_stopped = False

    def stats(self) -> Any:
        """Source counters for the engine's ``stats`` (called from the scheduler thread)."""
        return _SessionStats(self.pcm.sanitised)


class _SessionStats:
    __slots__ = ("overflows", "sanitised", "dropped_blocks")

    def __init__(self, sanitised: int) -> None:
        self.overflows, self.sanitised, self.dropped_blocks = 0, sanitised, 0


class _Client:
    """Per-connection state: subscription, bounded queue, sequence counter, flow control
    (messages sent and acknowledged by pongs, pings outstanding) and rate limits."""

    def __init__(self, ws: ServerConnection, config: ServerConfig | None = None, now: float = 0.0,
                 control: bool = False) -> None:
        config = config or ServerConfig()
        self.ws = ws
        self.stream: _Stream | None = None  # the stream this connection watches
        self.session: _Session | None = None  # the session this connection owns
        self.peer = _peer(ws)
        self.topics: frozenset[str] = frozenset(TOPICS)
        self.embeddings = False
        self.queue: deque[_Queued | _DroppedNotice] = deque()
        self.notice: _DroppedNotice | None = None
        self.seq = 0
        self.wake = asyncio.Event()
        self.room = asyncio.Event()  # set by the writer when the queue is short again
        self.closing: tuple[int, str, bool] | None = None  # code, reason, flush queue first
        self.control = control  # sent the control token
        self.sent = 0  # messages written to the connection
        self.acked = 0  # messages a pong has acknowledged (the client's library read them)
        self.pings: deque[tuple[float, int]] = deque()  # outstanding: (loop time sent, self.sent then)
        self.last_ping = float("-inf")
        self.sent_at_ping = 0
        self.last_write = now
        self.hold = 0  # reasons the server does not read this connection now (pacing)
        self.hold_started = now
        self.hold_ended = now
        self.last_message = now  # the client's last text message
        self.messages = _Bucket(config.message_rate, config.message_burst, now)
        self.renames = _Bucket(config.rename_rate, config.rename_burst, now)

    def offer(self, out: Outgoing, queue_size: int) -> bool:
        """Queue ``out`` with the next seq, dropping the oldest droppable message when
        the queue holds ``queue_size`` messages. Returns False when nothing could be
        dropped for a non-droppable message: the client must be disconnected."""
        if len(self.queue) - (self.notice is not None) >= queue_size:
            victim = next((i for i, q in enumerate(self.queue) if q.droppable), None)
            if victim is None:
                if not out.droppable:
                    return False
                self._count_drop(out.kind, out.wall)
                self.seq += 1  # the new message's seq, missing like any dropped one
                return True
            dropped = self.queue[victim]
            del self.queue[victim]
            self._count_drop(dropped.kind, out.wall)
        body = out.body_embedding if self.embeddings and out.body_embedding is not None else out.body
        self.queue.append(_Queued(self.seq, out.kind, out.wall, body, out.droppable))
        self.seq += 1
        self.wake.set()
        return True

    def _count_drop(self, kind: str, wall: float) -> None:
        if self.notice is None:
            self.notice = _DroppedNotice(self.seq, wall)
            self.seq += 1
            self.queue.append(self.notice)
            self.wake.set()
        self.notice.counts[kind] = self.notice.counts.get(kind, 0) + 1


class Publisher:
    """Websocket server publishing the events of its streams and taking client sessions.

    Args:
        bus: the event bus of the server's own input stream, or ``None`` when the server
            serves client sessions only; subscribed on :meth:`start`, unsubscribed on
            :meth:`stop`. Events published before :meth:`start` are not seen (start the
            server before the engine).
        hello: stream description sent in every ``hello`` message: at least ``version``,
            ``sample_rate`` (Hz), ``frame`` and ``window``/``hop`` (seconds), ``tasks``,
            ``models``, ``demo``; more keys are passed through. JSON-serialisable.
        control: the input stream's rename hook (its engine), or ``None`` (``rename`` then
            gets an error).
        config: server settings.
        sessions: the shared models that client sessions run on (``start`` messages), or
            ``None`` to refuse sessions. Its scheduler must be running; its health is
            reported as ``engine`` in ``hello``, ``stats`` and ``/healthz`` (also with
            ``max_sessions`` 0, when it serves the input stream alone).
        first_client: set (from the loop's thread) when the first client has connected,
            for other threads that wait for one.

    Use ``async with Publisher(...) as pub:`` or ``await pub.start()`` /
    ``await pub.stop()`` inside one running event loop. Every method except the bus
    callback must be called from that loop's thread.

    Raises:
        TypeError: ``config`` is not a ServerConfig, ``hello`` not a dict, ``control``
            lacks ``rename_speaker``.
        ValueError: ``hello`` misses a key, has a value of the wrong type, or is not
            JSON-serialisable.
    """

    def __init__(self, bus: EventBus | None, hello: dict[str, Any], control: Control | None,
                 config: ServerConfig, *, sessions: SessionHost | None = None,
                 first_client: threading.Event | None = None) -> None:
        if not isinstance(config, ServerConfig):
            raise TypeError(f"config must be a ServerConfig, got {type(config).__name__}")
        if not isinstance(hello, dict):
            raise TypeError(f"hello must be a dict, got {type(hello).__name__}")
        _check_hello(hello)
        if control is not None and not callable(getattr(control, "rename_speaker", None)):
            raise TypeError(f"control must have a rename_speaker method, got {type(control).__name__}")
        fields = {k: v for k, v in hello.items() if k not in ("type", "v", "seq", "wall")}
        fields["topics"] = list(TOPICS)
        fields["max_message_bytes"] = config.max_message_bytes
        fields["input"] = bus is not None
        if sessions is not None and config.max_sessions > 0:
            fields["sessions"] = {
                "formats": list(PCM_FORMATS),
                "sample_rates": [MIN_RATE, MAX_RATE],
                "max_channels": MAX_CHANNELS,
                "max_audio_frame_bytes": config.max_audio_frame_bytes,
                "buffer_seconds": config.session_buffer_s,
                "idle_timeout": config.session_idle_s,
            }
        try:
            self._hello_body = encode_body(fields)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"hello is not JSON-serialisable: {exc}") from None
        self._hello = fields
        self._bus = bus
        self._control = control
        self._config = config
        self._host = sessions if config.max_sessions > 0 else None
        self._scheduler: Scheduler | None = sessions.scheduler if sessions is not None else None
        self._main: _Stream | None = _Stream("main", config.recent_captions, control) if bus is not None else None
        self._streams: dict[str, _Stream] = {}
        self._sessions: dict[str, _Session] = {}
        self._clients: set[_Client] = set()
        self._slots: set[ServerConnection] = set()
        self._per_address: collections.Counter[str] = collections.Counter()
        self._controllers: set[ServerConnection] = set()  # handshakes that carried the control token
        self._throttle = _LogThrottle(log, _REFUSAL_LOG_S)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._inbox: list[tuple[_Stream, Event]] = []
        self._inbox_lock = threading.Lock()
        self._inbox_wake_pending = False
        self._inbox_shed = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._port: int | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._stop_started = False
        self._stopping = False
        self._first_client = first_client

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> int:
        """Bind, start serving (over TLS with ``config.certfile``) and subscribe to the
        bus; returns the bound TCP port.

        Raises:
            RuntimeError: already started.
            OSError: the address cannot be bound (e.g. port in use).
            ValueError: the certificate or key cannot be loaded or do not match.
        """
        if self._server is not None:
            raise RuntimeError("publisher already started")
        cfg = self._config
        tls = server_context(cfg.certfile, cfg.keyfile) if cfg.certfile is not None else None
        self._loop = asyncio.get_running_loop()
        self._server = await serve(
            self._handle,
            cfg.host,
            cfg.port,
            process_request=self._process_request,
            compression=None,
            max_size=max(cfg.max_message_bytes, cfg.max_audio_frame_bytes if self._host else 0),
            write_limit=cfg.write_buffer_limit,
            close_timeout=_CLOSE_TIMEOUT_S,
            ping_interval=None,  # the writer pings (flow control and stall detection)
            server_header=None,
            logger=_WS_LOGGER,
            ssl=tls,
        )
        self._port = self._server.sockets[0].getsockname()[1]
        if self._main is not None and self._bus is not None:
            self._streams[self._main.id] = self._main
            main = self._main
            self._main.unsubscribe = self._bus.subscribe(lambda event: self._on_event(main, event))
        self._watchdog = asyncio.create_task(self._watch())
        log.info("publishing on %s", self.url)
        return self.port

    async def stop(self, code: int = CLOSE_GOING_AWAY) -> None:
        """Unsubscribe from the buses, stop accepting connections (handshakes in progress
        get 503), send each client what is already queued, then close it with ``code``.
        Open client sessions are ended first: their input is closed and their last
        windows are analysed and sent (waiting up to 10 s). A client that does not
        complete the close within about 3 s is aborted. Idempotent; returns when every
        connection is closed."""
        if self._server is None or self._stop_started:
            return
        self._stop_started = True
        sessions = list(self._sessions.values())
        for session in sessions:
            self._close_input(session)
        # the open sessions' last windows are analysed and sent before the clients go
        deadline = asyncio.get_running_loop().time() + _SESSION_DRAIN_S
        while any(not s.engine.finished.is_set() for s in sessions) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        for stream in self._streams.values():
            if stream.unsubscribe is not None:
                stream.unsubscribe()
        self._drain_inbox()  # what the engines published before stop() still goes out
        self._stopping = True
        self._server.close(close_connections=False)
        for client in list(self._clients):
            self._close_client(client, code, "server shutting down", flush=True)
        try:
            await asyncio.wait_for(self._server.wait_closed(), _FLUSH_GRACE_S + 1.0)
        except TimeoutError:
            for ws in list(self._slots):
                ws.transport.abort()
            await self._server.wait_closed()
        if self._watchdog is not None:
            self._watchdog.cancel()
        log.info("publisher stopped")

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """Bound TCP port (the real one when ``config.port`` is 0). Raises RuntimeError
        before :meth:`start`."""
        if self._port is None:
            raise RuntimeError("publisher not started")
        return self._port

    @property
    def url(self) -> str:
        """``ws://host:port`` of the server (``wss://`` over TLS)."""
        host, scheme = self._config.host, self._config.scheme
        return f"{scheme}://[{host}]:{self.port}" if ":" in host else f"{scheme}://{host}:{self.port}"

    @property
    def clients(self) -> int:
        """Number of connected clients being served (read it on the loop's thread)."""
        return len(self._clients)

    @property
    def sessions(self) -> int:
        """Client sessions whose input is still open (read it on the loop's thread)."""
        return sum(1 for s in self._sessions.values() if not s.input_closed)

    # -- engine threads -> loop -------------------------------------------------------

    def _on_event(self, stream: _Stream, event: Event) -> None:
        """Bus subscriber, called in the publishing thread: hand ``event`` to the loop.

        Never blocks. If the loop is so far behind that ``_INBOX_LIMIT`` events wait,
        level, stats and partial-caption events are shed (counted and logged).
        """
        with self._inbox_lock:
            if len(self._inbox) >= _INBOX_LIMIT and _sheddable(event):
                self._inbox_shed += 1
                return
            self._inbox.append((stream, event))
            if self._inbox_wake_pending:
                return
            self._inbox_wake_pending = True
        try:
            self._loop.call_soon_threadsafe(self._drain_inbox)  # type: ignore[union-attr]
        except RuntimeError:  # loop closed: the server is gone
            pass

    def _drain_inbox(self) -> None:
        with self._inbox_lock:
            events, self._inbox = self._inbox, []
            self._inbox_wake_pending = False
            shed, self._inbox_shed = self._inbox_shed, 0
        if shed:
            log.warning("server loop fell behind: shed %d level/stats/partial events", shed)
        if self._stopping:
            return
        for stream, event in events:
            self._fan_out(stream, event)

    def _fan_out(self, stream: _Stream, event: Event) -> None:
        if stream.state.fatal is not None and isinstance(event, LevelEvent):
            return  # no input level once a fatal error has stopped the stream
        stream.state.update(event)
        session = stream.session
        if isinstance(event, ErrorEvent) and event.fatal and session is not None:
            if session.close_code is None:
                session.close_code = (CLOSE_INTERNAL, "session analysis failed")
            if event.code == "engine":
                log.warning("session %s failed: %s", session.id, event.message)
        if stream.clients:
            extra = None
            if isinstance(event, StatsEvent):
                stream.health = self._stream_health(stream)
                extra = {"clients": len(self._clients), "engine": stream.health}
            try:
                out = Outgoing.from_event(event, time.time(), extra=extra)
            except (TypeError, ValueError):
                log.exception("cannot encode %s event; not sent", type(event).__name__)
                out = None
            if out is not None:
                for client in list(stream.clients):
                    if out.kind in client.topics:
                        self._offer(client, out)
        if isinstance(event, EndEvent):
            stream.ended = True
            if session is not None:
                self._session_ended(session)

    # -- sessions ----------------------------------------------------------------------

    def _start_session(self, client: _Client, msg: Start) -> None:
        host, cfg = self._host, self._config
        if host is None:
            self._reply_error(client, "unsupported", "this server does not accept audio sessions")
            return
        if client.session is not None:
            self._reply_error(client, "already_started",
                              f"this connection already has session {client.session.id}; one per connection")
            return
        try:
            pcm = PcmStream(msg.sample_rate, msg.channels, msg.format)
        except ValueError as exc:
            self._reply_error(client, "bad_start", str(exc))
            return
        live = msg.live
        bus = EventBus()
        holder: list[_Session] = []
        try:
            session_id, engine = host.open(bus, SessionOptions(msg.tasks, msg.speaker_threshold, live),
                                           source_stats=lambda: holder[0].stats() if holder else None)
        except SessionLimitError as exc:
            self._reply_error(client, "too_many_sessions", str(exc))
            return
        except ValueError as exc:
            self._reply_error(client, "bad_start", str(exc))
            return
        stream = _Stream(session_id, cfg.recent_captions, engine)
        session = _Session(session_id, engine, stream, client, pcm, live, asyncio.get_running_loop().time())
        holder.append(session)
        stream.session = session
        self._streams[session_id] = stream
        self._sessions[session_id] = session
        client.session = session
        self._watch_stream(client, stream)
        stream.unsubscribe = bus.subscribe(lambda event: self._on_event(stream, event))
        self._offer(client, Outgoing.make(
            "started", time.time(), session=session_id, sample_rate=pcm.sample_rate, channels=pcm.channels,
            format=pcm.format, tasks=engine.tasks, window=engine.main_plan.window_seconds,
            hop=engine.main_plan.hop_seconds, live=live, buffer_seconds=cfg.session_buffer_s,
            idle_timeout=cfg.session_idle_s))
        log.info("client %s started session %s (%d Hz, %d ch, %s, %s)", client.peer, session_id,
                 pcm.sample_rate, pcm.channels, pcm.format, "live" if live else "paced")

    async def _on_audio(self, client: _Client, data: bytes) -> None:
        session = client.session
        if session is None:
            self._reply_error(client, "no_session", "audio before start: send a start message first")
            return
        if session.input_closed:
            if not session.warned_stopped and session.close_code is None:
                # once, after the client's own stop (a session ended for cause got its fatal error)
                session.warned_stopped = True
                self._reply_error(client, "session_stopped", f"session {session.id} takes no more audio; "
                                  "frames after stop (or after a fatal error) are discarded")
            return
        loop = asyncio.get_running_loop()
        try:
            blocks = session.pcm.decode(data)
        except PcmError as exc:
            self._end_session(session, "bad_audio", str(exc), CLOSE_POLICY)
            return
        if session.pcm.nonfinite and not session.warned_nonfinite:
            session.warned_nonfinite = True
            session.engine.publish(ErrorEvent(
                code="bad_samples", message="the audio holds NaN or infinite samples; they are replaced "
                "(counted in stats' samples_sanitised)"))
        now = loop.time()
        session.last_audio = now
        cap = self._config.session_buffer_s
        if session.live and session.pcm.seconds - (now - session.started) > cap:
            self._end_session(session, "buffer_full",
                              f"the audio arrives more than {cap:g} s ahead of real time; send at real-time "
                              "pace or start the session with live false", CLOSE_POLICY)
            return
        engine = session.engine
        for block in blocks:
            # paced sessions: stop reading (TCP backpressure) while the cap of audio waits
            if not session.live and engine.pending_seconds > cap:
                self._hold(client, True)
                try:
                    while (engine.pending_seconds > cap and not engine.finished.is_set()
                           and not session.input_closed and client.closing is None):
                        await asyncio.sleep(0.01)
                        session.last_audio = loop.time()
                finally:
                    self._hold(client, False)
            if session.input_closed:
                return
            engine.feed(block)

    def _close_input(self, session: _Session) -> None:
        """No more audio for ``session``: feed the resampler's tail and let the engine
        analyse the last window and publish ``end``."""
        if session.input_closed:
            return
        session.input_closed = True
        try:
            for block in session.pcm.flush():
                session.engine.feed(block)
        finally:
            session.engine.close_input()

    def _end_session(self, session: _Session, code: str, message: str, close_code: int) -> None:
        """The session cannot go on: ``error`` (fatal), then every result of the audio
        received so far and ``end``, then the owner is closed with ``close_code``."""
        log.warning("ending session %s: %s", session.id, message)
        if session.close_code is None:
            session.close_code = (close_code, code)
        session.engine.publish(ErrorEvent(code=code, message=message, fatal=True))
        self._close_input(session)

    def _session_ended(self, session: _Session) -> None:
        session.input_closed = True
        owner = session.owner
        if owner is not None and session.close_code is not None:
            code, reason = session.close_code
            self._close_client(owner, code, reason, flush=True)
        self._sessions.pop(session.id, None)
        self._forget_if_unwatched(session.stream)

    def _forget_if_unwatched(self, stream: _Stream) -> None:
        if stream.session is not None and stream.ended and not stream.clients:
            self._streams.pop(stream.id, None)
            if stream.unsubscribe is not None:
                stream.unsubscribe()

    def _watch_stream(self, client: _Client, stream: _Stream | None) -> None:
        old = client.stream
        if old is not None:
            old.clients.discard(client)
            self._forget_if_unwatched(old)
        client.stream = stream
        if stream is not None and client.closing is None:
            stream.clients.add(client)

    # -- per client --------------------------------------------------------------------

    def _offer(self, client: _Client, out: Outgoing) -> None:
        if client.closing is None and not client.offer(out, self._config.queue_size):
            self._close_client(client, CLOSE_TOO_SLOW, "client too slow: send queue full", flush=False)

    def _hold(self, client: _Client, on: bool) -> None:
        """The server stops (``on``) or resumes reading ``client``'s connection: while it
        does not read, the client's pongs wait behind its unread frames, so the writer
        sends without the window and the stall check looks at the writer's progress."""
        now = asyncio.get_running_loop().time()
        if on:
            if client.hold == 0:
                client.hold_started = now
            client.hold += 1
        else:
            client.hold -= 1
            if client.hold == 0:
                client.hold_ended = now
        client.wake.set()

    async def _pace(self, client: _Client) -> None:
        """After a client message: while the replies and messages queued for ``client``
        fill more than a quarter of its queue, read nothing more from it (its own burst
        is answered at the pace it reads, instead of filling the queue)."""
        limit = self._config.queue_size // 4
        if len(client.queue) <= limit or client.closing is not None:
            return
        self._hold(client, True)
        try:
            while len(client.queue) > limit and client.closing is None:
                client.room.clear()
                await client.room.wait()
        finally:
            self._hold(client, False)

    def _rate_limited(self, client: _Client, bucket: _Bucket, what: str) -> None:
        """A message over ``bucket``'s limit is discarded; the client is told at most once
        a second."""
        now = asyncio.get_running_loop().time()
        if now - bucket.warned >= 1.0:
            bucket.warned = now
            self._reply_error(client, "rate_limited", f"more than {bucket.rate:g} {what} per second (bursts of "
                              f"{bucket.burst}): this one and any more until the rate allows are discarded")

    def _offer_snapshot(self, client: _Client) -> None:
        if client.stream is None:
            return
        wall = time.time()
        for event in client.stream.state.snapshot():
            out = Outgoing.from_event(event, wall, snapshot=True)
            if out.kind in client.topics:
                self._offer(client, out)

    def _close_client(self, client: _Client, code: int, reason: str, *, flush: bool) -> None:
        """Stop serving ``client``: with ``flush`` its writer sends the queue and then
        closes (handshake); otherwise the queue is discarded, the close frame is queued
        behind what the connection holds already and the socket is closed after it (the
        client reads the close code once it reads again). Either way the TCP connection
        is aborted if it is still open after a grace period (3 s, or 10 s)."""
        if client.closing is not None:
            return
        client.closing = (code, reason, flush)
        self._clients.discard(client)
        self._watch_stream(client, None)
        client.wake.set()
        client.room.set()
        if not flush:
            client.queue.clear()
            client.notice = None
            self._throttle.warning(f"dropped clients ({reason})", "dropping client %s (%s)", client.peer, reason)
            _close_now(client.ws, code, reason)
        grace = _FLUSH_GRACE_S if flush else _DROPPED_GRACE_S
        asyncio.get_running_loop().call_later(grace, _abort_if_open, client.ws)

    async def _handle(self, ws: ServerConnection) -> None:
        """Connection handler: queue hello and snapshot, run the writer, read messages
        (text ones rate limited and paced, binary ones a session's audio)."""
        loop = asyncio.get_running_loop()
        cfg = self._config
        client = _Client(ws, cfg, loop.time(), control=ws in self._controllers)
        stream = None if self._stopping else self._main
        client.offer(Outgoing("hello", self._hello_for(stream), time.time()), cfg.queue_size)
        if self._stopping:
            self._close_client(client, CLOSE_GOING_AWAY, "server shutting down", flush=True)
        else:
            self._clients.add(client)
            self._watch_stream(client, self._main)
            self._offer_snapshot(client)
            if self._first_client is not None:
                self._first_client.set()
        log.info("client %s connected (%d clients)", client.peer, len(self._clients))
        writer = asyncio.create_task(self._write_loop(client))
        limit = cfg.max_message_bytes
        try:
            async for raw in ws:
                if isinstance(raw, str):
                    if len(raw) > limit and len(raw.encode()) > limit:
                        await ws.close(CLOSE_TOO_BIG, f"message over {limit} bytes")
                        break
                    now = loop.time()
                    client.last_message = now
                    if not client.messages.take(now):
                        self._rate_limited(client, client.messages, "messages")
                        continue
                    await self._on_message(client, raw)
                    await self._pace(client)
                elif self._host is None or len(raw) > cfg.max_audio_frame_bytes:
                    if self._host is not None:
                        await ws.close(CLOSE_TOO_BIG, f"audio frame over {cfg.max_audio_frame_bytes} bytes")
                        break
                    if client.messages.take(loop.time()):
                        self._reply_error(client, "bad_message", "binary frames are not accepted; send JSON text")
                elif client.session is None:
                    # not a session's audio: counted like a text message
                    if client.messages.take(loop.time()):
                        self._reply_error(client, "no_session", "audio before start: send a start message first")
                else:
                    await self._on_audio(client, raw)
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(client)
            self._watch_stream(client, None)
            session = client.session
            if session is not None:
                session.owner = None
                if not session.input_closed:
                    log.info("client %s left session %s: analysing the audio received", client.peer, session.id)
                    self._close_input(session)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            log.info("client %s disconnected (code %s)", client.peer, ws.close_code)

    async def _write_loop(self, client: _Client) -> None:
        """Send ``client``'s queue in order, with flow control: a ping after every
        ``send_window // 4`` messages (or 0.25 s), and no message more than
        ``send_window`` beyond the last one a pong acknowledged, unless the server is
        holding back reading this connection or it owns a session (its sender reads
        when it can: TCP alone slows it down). Then close when asked to."""
        ws = client.ws
        loop = asyncio.get_running_loop()
        window = self._config.send_window
        every = max(1, window // 4)
        room = self._config.queue_size // 4
        try:
            while True:
                if client.closing is not None and not client.closing[2]:
                    return  # dropped: _close_client closes the connection
                if not client.queue:
                    client.room.set()
                    if client.closing is not None:
                        break
                    client.wake.clear()
                    try:
                        await asyncio.wait_for(client.wake.wait(), _KEEPALIVE_S)
                    except TimeoutError:
                        if not client.pings:
                            await self._ping(client)  # keepalive: a peer that is gone is found
                    continue
                if client.session is None and client.hold == 0 and client.sent - client.acked >= window:
                    client.wake.clear()
                    await client.wake.wait()  # a pong, a hold, new messages or the close
                    continue
                item = client.queue.popleft()
                if item is client.notice:
                    client.notice = None
                if len(client.queue) <= room:
                    client.room.set()
                await ws.send(item.encode(), text=True)
                client.sent += 1
                now = loop.time()
                client.last_write = now
                if client.sent - client.sent_at_ping >= every or now - client.last_ping >= _PING_SPACING_S:
                    await self._ping(client)
            code, reason, _ = client.closing
            await ws.close(code, reason)
        except ConnectionClosed:
            pass

    async def _ping(self, client: _Client) -> None:
        """Ping ``client``; its pong acknowledges every message written before."""
        loop = asyncio.get_running_loop()
        count, now = client.sent, loop.time()
        client.pings.append((now, count))  # before the await: the pong may come during it
        client.last_ping, client.sent_at_ping = now, count
        waiter = await client.ws.ping()

        def acknowledged(future: asyncio.Future[float]) -> None:
            if future.cancelled() or future.exception() is not None:
                return
            client.acked = max(client.acked, count)
            while client.pings and client.pings[0][1] <= count:
                client.pings.popleft()
            client.wake.set()

        waiter.add_done_callback(acknowledged)

    async def _on_message(self, client: _Client, raw: str | bytes) -> None:
        try:
            msg = parse_client_message(raw)
        except BadMessage as exc:
            self._reply_error(client, "bad_message", str(exc))
            return
        if isinstance(msg, Subscribe):
            if msg.session is not None:
                stream = self._streams.get(msg.session)
                if stream is None or stream.session is None:
                    self._reply_error(client, "unknown_session", f"no session with id {msg.session!r}")
                    return
            if msg.topics is not None:
                client.topics = msg.topics
            if msg.embeddings is not None:
                client.embeddings = msg.embeddings
            topics = [t for t in TOPICS if t in client.topics]
            fields: dict[str, Any] = {"topics": topics, "embeddings": client.embeddings}
            if msg.session is not None:
                self._watch_stream(client, self._streams[msg.session])
            if client.stream is not None and client.stream.session is not None:
                fields["session"] = client.stream.id
            self._offer(client, Outgoing.make("subscribed", time.time(), **fields))
            if msg.snapshot or msg.session is not None:
                self._offer_snapshot(client)
        elif isinstance(msg, Start):
            self._start_session(client, msg)
        elif isinstance(msg, Stop):
            if client.session is None:
                self._reply_error(client, "no_session", "stop without a session")
            else:
                self._close_input(client.session)
        elif isinstance(msg, Ping):
            fields = {} if msg.id is None else {"id": msg.id}
            self._offer(client, Outgoing.make("pong", time.time(), **fields))
        elif isinstance(msg, Rename):
            await self._rename(client, msg)

    async def _rename(self, client: _Client, msg: Rename) -> None:
        stream = client.stream
        own_session = stream is not None and stream.session is not None
        control = self._control if not own_session else stream.control
        if own_session and stream.session is not client.session:
            self._reply_error(client, "read_only", "only the session's own connection may rename its speakers")
            return
        if control is None:
            self._reply_error(client, "unsupported", "this server does not accept renames")
            return
        if not own_session and self._config.control_token is not None and not client.control:
            self._reply_error(client, "forbidden", "renaming the speakers of the server's input needs the control "
                              "token (Authorization: Bearer <control token>)")
            return
        if not client.renames.take(asyncio.get_running_loop().time()):
            self._rate_limited(client, client.renames, "renames")
            return
        try:
            await asyncio.to_thread(control.rename_speaker, msg.speaker, msg.name)
        except KeyError:
            self._reply_error(client, "unknown_speaker", f"no speaker with id {msg.speaker!r}")
        except ValueError as exc:
            self._reply_error(client, "bad_name", str(exc) or "the name was refused")
        except Exception:  # noqa: BLE001 - a broken control must not end the connection
            log.exception("rename of %r failed", msg.speaker)
            self._reply_error(client, "rename_failed", "the engine could not rename the speaker")

    def _reply_error(self, client: _Client, code: str, message: str) -> None:
        self._offer(client, Outgoing.make("error", time.time(), code=code, message=message, fatal=False))

    # -- HTTP, handshake and watchdog ------------------------------------------------

    def _stream_health(self, stream: _Stream | None) -> str:
        """The ``engine`` state of ``stream`` (``None``: of the shared scheduler alone):
        ``failed`` after a fatal error (or when the scheduler died), ``ended`` after its
        ``end``, ``stalled`` while one batch of the scheduler has run for more than 5 s,
        else ``running``."""
        if stream is not None:
            if stream.state.fatal is not None:
                return "failed"
            if stream.ended:
                return "ended"
        if self._scheduler is not None:
            return self._scheduler.health()
        return "running"

    def _hello_for(self, stream: _Stream | None) -> bytes:
        """The ``hello`` body for a connection that watches ``stream``, with its ``engine`` state."""
        return self._hello_body[:-1] + b',"engine":"%s"}' % self._stream_health(stream).encode()

    def health(self) -> dict[str, Any]:
        """The ``GET /healthz`` report: ready, the engine state (of the server's input
        when it has one, else of the shared scheduler), version, connected clients, open
        sessions and their limit, the models."""
        engine = self._stream_health(self._main)
        scheduler = self._stream_health(None)
        report: dict[str, Any] = {
            "ready": not self._stopping and scheduler != "failed",
            "engine": engine,
            "version": __version__,
            "clients": len(self._clients),
            "input": self._main is not None,
            "sessions": self.sessions,
            "max_sessions": self._config.max_sessions if self._host is not None else 0,
            "tasks": self._hello.get("tasks", []),
            "models": self._hello.get("models", {}),
        }
        return report

    def _http(self, ws: ServerConnection, request: Request) -> Response:
        """A plain HTTP request (no websocket upgrade): the page, its scripts, health."""
        path = urlsplit(request.path).path
        if path == "/healthz":
            body = json.dumps(self.health()).encode()
            return _response(http.HTTPStatus.OK, body, "application/json")
        page = _PAGE_FILES.get(path)
        if page is not None:
            name, kind = page
            return _response(http.HTTPStatus.OK, _page_file(name), kind)
        return _response(http.HTTPStatus.NOT_FOUND, b"Not found. This is a wavlm-live server: open / in a browser.\n",
                         "text/plain; charset=utf-8")

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        """Serve plain HTTP requests (page, ``/healthz``); for websocket handshakes refuse
        tokens in the URL (400), a missing/wrong bearer token (401: the access token, or
        the control token in its place), a foreign Origin (403), more than
        ``max_clients_per_address`` connections from the client's address (429) and
        connections beyond ``max_clients`` (503); else take a slot, freed when the
        connection closes. Never logs a token; refusals are logged once per reason and
        then counted (one line per reason every 10 s)."""
        cfg = self._config
        peer = _peer(ws)
        if "websocket" not in request.headers.get("Upgrade", "").lower():
            return self._http(ws, request)
        refuse = self._throttle.warning
        query = urlsplit(request.path).query
        if any(k.lower() in ("token", "access_token") for k, _ in parse_qsl(query, keep_blank_values=True)):
            refuse("handshakes refused: token in the URL", "refused %s: token in the URL", peer)
            return ws.respond(http.HTTPStatus.BAD_REQUEST,
                              "Tokens in the URL are refused; send 'Authorization: Bearer <token>'.\n")
        authorization = request.headers.get_all("Authorization")
        control = cfg.control_token is not None and _token_ok(authorization, cfg.control_token)
        needs = cfg.token is not None or (cfg.control_token is not None and bool(authorization))
        if needs and not control and not (cfg.token is not None and _token_ok(authorization, cfg.token)):
            refuse("handshakes refused: bad token", "refused %s: missing or invalid bearer token", peer)
            response = ws.respond(http.HTTPStatus.UNAUTHORIZED, "Missing or invalid bearer token.\n")
            response.headers["WWW-Authenticate"] = 'Bearer realm="wavlm-live"'
            return response
        origins = request.headers.get_all("Origin")
        if origins and not _origin_ok(origins, cfg.allowed_origins, request.headers.get_all("Host")):
            refuse("handshakes refused: origin", "refused %s: origin %r not allowed", peer, origins[0][:200])
            return ws.respond(http.HTTPStatus.FORBIDDEN, "Origin not allowed.\n")
        address = _address(ws)
        if self._per_address[address] >= cfg.max_clients_per_address:
            refuse("handshakes refused: too many from one address", "refused %s: %d connections from %s already",
                   peer, self._per_address[address], address)
            response = ws.respond(http.HTTPStatus.TOO_MANY_REQUESTS, "Too many connections from your address.\n")
            response.headers["Retry-After"] = "5"
            return response
        if len(self._slots) >= cfg.max_clients:
            refuse("handshakes refused: server full", "refused %s: %d clients already connected", peer, len(self._slots))
            response = ws.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "Too many clients.\n")
            response.headers["Retry-After"] = "5"
            return response
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, cfg.socket_send_buffer)
        self._slots.add(ws)
        self._per_address[address] += 1
        if control:
            self._controllers.add(ws)
        self._spawn(self._free_slot_when_closed(ws, address))
        return None

    async def _free_slot_when_closed(self, ws: ServerConnection, address: str) -> None:
        try:
            await ws.wait_closed()
        finally:
            self._slots.discard(ws)
            self._controllers.discard(ws)
            self._per_address[address] -= 1
            if self._per_address[address] <= 0:
                del self._per_address[address]

    async def _watch(self) -> None:
        """Every 0.1 s: close clients that stopped reading (a ping unanswered for
        ``stall_timeout_s``; for a session's owner, or while the server holds back
        reading a connection, its writer blocked that long with messages waiting
        instead) and connections that watch nothing and
        sent nothing for ``client_idle_s``; end sessions that sent no audio for
        ``session_idle_s``; tell the clients of a stream when its engine state changes
        (a ``stats`` message); sum up throttled log lines."""
        cfg = self._config
        timeout, idle, client_idle = cfg.stall_timeout_s, cfg.session_idle_s, cfg.client_idle_s
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.1)
            now = loop.time()
            for client in list(self._clients):
                if client.session is None and client.hold == 0:
                    if client.pings and now - max(client.pings[0][0], client.hold_ended) > timeout:
                        self._close_client(client, CLOSE_TOO_SLOW, "client too slow: not reading", flush=False)
                        continue
                elif client.queue and now - max(client.last_write, client.hold_started) > timeout:
                    self._close_client(client, CLOSE_TOO_SLOW, "client too slow: not reading", flush=False)
                    continue
                if client.stream is None and client.session is None and now - client.last_message > client_idle:
                    self._close_client(client, CLOSE_POLICY, "idle: no subscribe or start", flush=True)
            for session in list(self._sessions.values()):
                if not session.input_closed and now - session.last_audio > idle:
                    self._end_session(session, "idle_timeout", f"no audio for {idle:g} s", CLOSE_POLICY)
            for stream in list(self._streams.values()):
                if not stream.ended and stream.clients:
                    health = self._stream_health(stream)
                    if health != stream.health:
                        stream.health = health
                        self._announce_health(stream)
            self._throttle.flush()

    def _announce_health(self, stream: _Stream) -> None:
        """Send ``stream``'s latest ``stats`` again with its new ``engine`` state (no
        engine event comes while it is stalled)."""
        last = stream.state.last_stats
        if last is None:
            return
        out = Outgoing.from_event(last, time.time(), extra={"clients": len(self._clients), "engine": stream.health})
        for client in list(stream.clients):
            if "stats" in client.topics:
                self._offer(client, out)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


_PAGE_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/worklet.js": ("worklet.js", "text/javascript; charset=utf-8"),
}
"""Paths of the browser page (files in ``wavlm_live/server/page``)."""


def _page_file(name: str) -> bytes:
    return (resources.files(__package__) / "page" / name).read_bytes()


def _response(status: http.HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers([
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("Connection", "close"),
    ])
    return Response(status.value, status.phrase, headers, body)


def _origin_ok(origins: list[str], allowed: tuple[str, ...] | None, hosts: list[str]) -> bool:
    """One Origin that is the server's own (the page it serves: the same host and port as
    the request's Host header), in the allow-list, or any when ``allowed`` is ``None``."""
    if len(origins) != 1:
        return False
    origin = origins[0]
    if allowed is None or origin in allowed:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and len(hosts) == 1 and parts.netloc.lower() == hosts[0].strip().lower()


def _check_hello(hello: dict[str, Any]) -> None:
    """Raise ValueError unless ``hello`` has the keys and types of the hello schema."""
    missing = [k for k in HELLO_KEYS if k not in hello]
    if missing:
        raise ValueError(f"hello lacks key(s) {', '.join(missing)}")

    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0

    problems = []
    if not isinstance(hello["version"], str):
        problems.append("version must be a string")
    if isinstance(hello["sample_rate"], bool) or not isinstance(hello["sample_rate"], int) \
            or hello["sample_rate"] <= 0:
        problems.append("sample_rate must be a positive int (Hz)")
    for key in ("frame", "window", "hop"):
        if not number(hello[key]):
            problems.append(f"{key} must be a positive number of seconds")
    tasks = hello["tasks"]
    if not isinstance(tasks, (list, tuple)) or any(t not in TASKS for t in tasks) or len(set(tasks)) != len(tasks):
        problems.append(f"tasks must be distinct names from {', '.join(TASKS)}")
    models = hello["models"]
    if not isinstance(models, dict) or not all(isinstance(v, str) for v in models.values()):
        problems.append("models must map task names to model id strings")
    if not isinstance(hello["demo"], bool):
        problems.append("demo must be a bool")
    if problems:
        raise ValueError(f"bad hello: {'; '.join(problems)}, got {hello!r}")


def _sheddable(event: Event) -> bool:
    return isinstance(event, (LevelEvent, StatsEvent)) or (isinstance(event, CaptionEvent) and not event.final)


def _token_ok(values: list[str], token: str) -> bool:
    """One ``Authorization: Bearer <token>`` header equal to ``token`` (constant time)."""
    if len(values) != 1:
        return False
    scheme, _, given = values[0].partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def _abort_if_open(ws: ServerConnection) -> None:
    if ws.state is not State.CLOSED:
        ws.transport.abort()


def _close_now(ws: ServerConnection, code: int, reason: str) -> None:
    """Queue a close frame behind what ``ws`` holds and half-close the socket after it
    (FIN), without waiting for the client: a client that stopped reading still reads the
    close code when it reads again. (A full close would answer the client's next pong
    with a reset, which discards what it has not read yet.) The caller aborts the
    connection if the client does not finish the close within a grace period."""
    try:
        if ws.protocol.state is State.OPEN:
            ws.protocol.send_close(code, reason)
            ws.send_data()
        if ws.transport.can_write_eof():
            ws.transport.write_eof()
        else:  # pragma: no cover - TCP transports can
            ws.transport.close()
    except Exception:  # noqa: BLE001 - a broken transport: just drop it
        ws.transport.abort()


def _peer(ws: ServerConnection) -> str:
    """``host:port`` of the client (for logs)."""
    peer = ws.remote_address
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


def _address(ws: ServerConnection) -> str:
    """The client's IP address (the key of the per-address connection cap)."""
    peer = ws.remote_address
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)


class _RedactSecrets(logging.Filter):
    """Keeps tokens out of websockets' debug log of request lines and headers."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and isinstance(args[0], str) \
                and args[0].lower() in ("authorization", "cookie", "proxy-authorization"):
            record.args = (args[0], "[redacted]")
        elif isinstance(args, tuple) and len(args) == 3 and record.msg == "< %s %s %s" \
                and isinstance(args[1], str) and "?" in args[1]:
            record.args = (args[0], args[1].split("?", 1)[0] + "?[redacted]", args[2])
        return True


_WS_LOGGER = logging.getLogger("wavlm_live.server.websockets")
_WS_LOGGER.addFilter(_RedactSecrets())
