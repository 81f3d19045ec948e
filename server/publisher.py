"""Websocket publisher: fans engine events out to any number of subscribers.

Threads are crossed one way: the engine thread calls the bus subscriber
(:meth:`Publisher._on_event`), which appends to an inbox and wakes the asyncio loop with
``loop.call_soon_threadsafe``; everything else runs on that loop. Each client has a
bounded outgoing queue and its own writer task, so a slow client never delays the engine
or the other clients (see ``docs/protocol.md``, "Backpressure").
"""

from __future__ import annotations

import asyncio
import hmac
import http
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from wavlm_live.engine.bus import EventBus
from wavlm_live.events import CaptionEvent, Event, LevelEvent, StatsEvent

from .config import ServerConfig
from .protocol import BadMessage, Outgoing, Ping, Rename, Subscribe, encode_body, parse_client_message, render
from .schemas import TASKS, TOPICS
from .state import StreamState

log = logging.getLogger(__name__)

HELLO_KEYS = ("version", "sample_rate", "frame", "tasks", "models", "window", "hop", "demo")
"""Keys the ``hello`` dict given to :class:`Publisher` must have."""

CLOSE_GOING_AWAY = 1001
CLOSE_TOO_SLOW = 1008
_TOO_SLOW_GRACE_S = 1.0  # a dropped slow client's close handshake, then abort
_FLUSH_GRACE_S = 3.0  # shutdown: flush queue + close handshake, then abort
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


class _Client:
    """Per-connection state: subscription, bounded queue, sequence counter."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        peer = ws.remote_address
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.topics: frozenset[str] = frozenset(TOPICS)
        self.embeddings = False
        self.queue: deque[_Queued | _DroppedNotice] = deque()
        self.notice: _DroppedNotice | None = None
        self.seq = 0
        self.wake = asyncio.Event()
        self.stalled_since: float | None = None
        self.closing: tuple[int, str, bool] | None = None  # code, reason, flush queue first

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
    """Websocket server publishing the events of ``bus`` to its clients.

    Args:
        bus: the engine's event bus; subscribed on :meth:`start`, unsubscribed on
            :meth:`stop`. Events published before :meth:`start` are not seen (start the
            server before the engine).
        hello: stream description sent in every ``hello`` message: at least ``version``,
            ``sample_rate`` (Hz), ``frame`` and ``window``/``hop`` (seconds), ``tasks``,
            ``models``, ``demo``; more keys are passed through. JSON-serialisable.
        control: the engine's rename hook, or ``None`` (``rename`` then gets an error).
        config: server settings.

    Use ``async with Publisher(...) as pub:`` or ``await pub.start()`` /
    ``await pub.stop()`` inside one running event loop. Every method except the bus
    callback must be called from that loop's thread.

    Raises:
        TypeError: ``config`` is not a ServerConfig, ``hello`` not a dict, ``control``
            lacks ``rename_speaker``.
        ValueError: ``hello`` misses a key, has a value of the wrong type, or is not
            JSON-serialisable.
    """

    def __init__(self, bus: EventBus, hello: dict[str, Any], control: Control | None,
                 config: ServerConfig) -> None:
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
        try:
            self._hello_body = encode_body(fields)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"hello is not JSON-serialisable: {exc}") from None
        self._bus = bus
        self._control = control
        self._config = config
        self._state = StreamState(config.recent_captions)
        self._clients: set[_Client] = set()
        self._slots: set[ServerConnection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._inbox: list[Event] = []
        self._inbox_lock = threading.Lock()
        self._inbox_wake_pending = False
        self._inbox_shed = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._port: int | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._stop_started = False
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> int:
        """Bind, start serving and subscribe to the bus; returns the bound TCP port.

        Raises:
            RuntimeError: already started.
            OSError: the address cannot be bound (e.g. port in use).
        """
        if self._server is not None:
            raise RuntimeError("publisher already started")
        cfg = self._config
        self._loop = asyncio.get_running_loop()
        self._server = await serve(
            self._handle,
            cfg.host,
            cfg.port,
            process_request=self._process_request,
            compression=None,
            max_size=cfg.max_message_bytes,
            write_limit=cfg.write_buffer_limit,
            close_timeout=_CLOSE_TIMEOUT_S,
            server_header=None,
            logger=_WS_LOGGER,
        )
        self._port = self._server.sockets[0].getsockname()[1]
        self._unsubscribe = self._bus.subscribe(self._on_event)
        self._watchdog = asyncio.create_task(self._watch_stalls())
        log.info("publishing on %s", self.url)
        return self.port

    async def stop(self, code: int = CLOSE_GOING_AWAY) -> None:
        """Unsubscribe from the bus, stop accepting connections (handshakes in progress
        get 503), send each client what is already queued, then close it with ``code``.
        A client that does not complete the close within about 3 s is aborted.
        Idempotent; returns when every connection is closed."""
        if self._server is None or self._stop_started:
            return
        self._stop_started = True
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._drain_inbox()  # what the engine published before stop() still goes out
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
        """``ws://host:port`` of the server."""
        host = self._config.host
        return f"ws://[{host}]:{self.port}" if ":" in host else f"ws://{host}:{self.port}"

    @property
    def clients(self) -> int:
        """Number of connected clients being served (read it on the loop's thread)."""
        return len(self._clients)

    # -- engine thread -> loop --------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        """Bus subscriber, called in the engine thread: hand ``event`` to the loop.

        Never blocks. If the loop is so far behind that ``_INBOX_LIMIT`` events wait,
        level, stats and partial-caption events are shed (counted and logged).
        """
        with self._inbox_lock:
            if len(self._inbox) >= _INBOX_LIMIT and _sheddable(event):
                self._inbox_shed += 1
                return
            self._inbox.append(event)
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
        for event in events:
            self._fan_out(event)

    def _fan_out(self, event: Event) -> None:
        self._state.update(event)
        if not self._clients:
            return
        extra = {"clients": len(self._clients)} if isinstance(event, StatsEvent) else None
        try:
            out = Outgoing.from_event(event, time.time(), extra=extra)
        except (TypeError, ValueError):
            log.exception("cannot encode %s event; not sent", type(event).__name__)
            return
        for client in list(self._clients):
            if out.kind in client.topics:
                self._offer(client, out)

    # -- per client --------------------------------------------------------------------

    def _offer(self, client: _Client, out: Outgoing) -> None:
        if client.closing is None and not client.offer(out, self._config.queue_size):
            self._close_client(client, CLOSE_TOO_SLOW, "client too slow: send queue full", flush=False)

    def _offer_snapshot(self, client: _Client) -> None:
        wall = time.time()
        for event in self._state.snapshot():
            out = Outgoing.from_event(event, wall, snapshot=True)
            if out.kind in client.topics:
                self._offer(client, out)

    def _close_client(self, client: _Client, code: int, reason: str, *, flush: bool) -> None:
        """Stop serving ``client``: with ``flush`` its writer sends the queue and then
        closes; otherwise the queue is discarded and the close starts now. Either way
        the TCP connection is aborted if it is still open after a grace period."""
        if client.closing is not None:
            return
        client.closing = (code, reason, flush)
        self._clients.discard(client)
        client.wake.set()
        if not flush:
            client.queue.clear()
            client.notice = None
            log.warning("dropping client %s (%s)", client.peer, reason)
            self._spawn(client.ws.close(code, reason))
        grace = _FLUSH_GRACE_S if flush else _TOO_SLOW_GRACE_S
        asyncio.get_running_loop().call_later(grace, _abort_if_open, client.ws)

    async def _handle(self, ws: ServerConnection) -> None:
        """Connection handler: queue hello and snapshot, run the writer, read messages."""
        client = _Client(ws)
        client.offer(Outgoing("hello", self._hello_body, time.time()), self._config.queue_size)
        if self._stopping:
            self._close_client(client, CLOSE_GOING_AWAY, "server shutting down", flush=True)
        else:
            self._clients.add(client)
            self._offer_snapshot(client)
        log.info("client %s connected (%d clients)", client.peer, len(self._clients))
        writer = asyncio.create_task(self._write_loop(client))
        try:
            async for raw in ws:
                await self._on_message(client, raw)
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(client)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            log.info("client %s disconnected (code %s)", client.peer, ws.close_code)

    async def _write_loop(self, client: _Client) -> None:
        """Send ``client``'s queue in order; then close when asked to."""
        ws = client.ws
        try:
            while True:
                if client.closing is not None and not client.closing[2]:
                    return  # dropped: _close_client closes the connection
                if not client.queue:
                    if client.closing is not None:
                        break
                    client.wake.clear()
                    await client.wake.wait()
                    continue
                item = client.queue.popleft()
                if item is client.notice:
                    client.notice = None
                await ws.send(item.encode(), text=True)
            code, reason, _ = client.closing
            await ws.close(code, reason)
        except ConnectionClosed:
            pass

    async def _on_message(self, client: _Client, raw: str | bytes) -> None:
        try:
            msg = parse_client_message(raw)
        except BadMessage as exc:
            self._reply_error(client, "bad_message", str(exc))
            return
        if isinstance(msg, Subscribe):
            if msg.topics is not None:
                client.topics = msg.topics
            if msg.embeddings is not None:
                client.embeddings = msg.embeddings
            topics = [t for t in TOPICS if t in client.topics]
            self._offer(client, Outgoing.make("subscribed", time.time(), topics=topics,
                                              embeddings=client.embeddings))
            if msg.snapshot:
                self._offer_snapshot(client)
        elif isinstance(msg, Ping):
            fields = {} if msg.id is None else {"id": msg.id}
            self._offer(client, Outgoing.make("pong", time.time(), **fields))
        elif isinstance(msg, Rename):
            await self._rename(client, msg)

    async def _rename(self, client: _Client, msg: Rename) -> None:
        if self._control is None:
            self._reply_error(client, "unsupported", "this server does not accept renames")
            return
        try:
            await asyncio.to_thread(self._control.rename_speaker, msg.speaker, msg.name)
        except KeyError:
            self._reply_error(client, "unknown_speaker", f"no speaker with id {msg.speaker!r}")
        except ValueError as exc:
            self._reply_error(client, "bad_name", str(exc) or "the name was refused")
        except Exception:  # noqa: BLE001 - a broken control must not end the connection
            log.exception("rename of %r failed", msg.speaker)
            self._reply_error(client, "rename_failed", "the engine could not rename the speaker")

    def _reply_error(self, client: _Client, code: str, message: str) -> None:
        self._offer(client, Outgoing.make("error", time.time(), code=code, message=message, fatal=False))

    # -- handshake and watchdog ----------------------------------------------------

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        """Refuse tokens in the URL (400), a missing/wrong bearer token (401), a foreign
        Origin (403) and connections beyond ``max_clients`` (503); else take a slot,
        freed when the connection closes. Never logs the token."""
        cfg = self._config
        peer = ws.remote_address
        query = urlsplit(request.path).query
        if any(k.lower() in ("token", "access_token") for k, _ in parse_qsl(query, keep_blank_values=True)):
            log.warning("refused %s: token in the URL", peer)
            return ws.respond(http.HTTPStatus.BAD_REQUEST,
                              "Tokens in the URL are refused; send 'Authorization: Bearer <token>'.\n")
        if cfg.token is not None and not _token_ok(request.headers.get_all("Authorization"), cfg.token):
            log.warning("refused %s: missing or invalid bearer token", peer)
            response = ws.respond(http.HTTPStatus.UNAUTHORIZED, "Missing or invalid bearer token.\n")
            response.headers["WWW-Authenticate"] = 'Bearer realm="wavlm-live"'
            return response
        origins = request.headers.get_all("Origin")
        if cfg.allowed_origins is not None and origins and (
                len(origins) != 1 or origins[0] not in cfg.allowed_origins):
            log.warning("refused %s: origin %r not allowed", peer, origins[0][:200])
            return ws.respond(http.HTTPStatus.FORBIDDEN, "Origin not allowed.\n")
        if len(self._slots) >= cfg.max_clients:
            log.warning("refused %s: %d clients already connected", peer, len(self._slots))
            response = ws.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "Too many clients.\n")
            response.headers["Retry-After"] = "5"
            return response
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, cfg.socket_send_buffer)
        self._slots.add(ws)
        self._spawn(self._free_slot_when_closed(ws))
        return None

    async def _free_slot_when_closed(self, ws: ServerConnection) -> None:
        try:
            await ws.wait_closed()
        finally:
            self._slots.discard(ws)

    async def _watch_stalls(self) -> None:
        """Disconnect clients whose transport write buffer stays above
        ``write_buffer_limit`` for ``stall_timeout_s``: they stopped reading (their
        keepalive ping would wait behind the full buffer, so keepalive cannot tell)."""
        limit, timeout = self._config.write_buffer_limit, self._config.stall_timeout_s
        period = min(0.1, timeout / 4)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            for client in list(self._clients):
                try:
                    buffered = client.ws.transport.get_write_buffer_size()
                except Exception:  # noqa: BLE001 - a broken transport is closing anyway
                    continue
                if buffered <= limit:
                    client.stalled_since = None
                elif client.stalled_since is None:
                    client.stalled_since = now
                elif now - client.stalled_since >= timeout:
                    self._close_client(client, CLOSE_TOO_SLOW, "client too slow: not reading", flush=False)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


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
