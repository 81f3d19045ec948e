"""Configuration of the websocket publisher."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerConfig:
    """Settings of one :class:`~wavlm_live.server.Publisher`; validated on construction.

    The defaults are the safe ones: loopback only, no compression, small inbound
    messages, bounded per-client buffers. Raises ``TypeError``/``ValueError`` naming the
    field for a value of the wrong type or out of range.
    """

    host: str = "127.0.0.1"
    """Interface to bind. ``"127.0.0.1"`` keeps the server local; use an IP address
    (not a host name) with ``port=0``, or each resolved address gets its own port."""
    port: int = 8765
    """TCP port; 0 picks a free ephemeral port (see ``Publisher.port``)."""
    token: str | None = None
    """Bearer token clients must send as ``Authorization: Bearer <token>``; ``None``
    disables authentication. Never logged."""
    allowed_origins: tuple[str, ...] | None = None
    """Exact ``Origin`` header values accepted from browsers besides the server's own
    page (e.g. ``"http://localhost:3000"``); requests carrying another Origin get HTTP
    403. The page the server serves itself (Origin host and port equal to the request's
    Host header) and requests without an Origin header (non-browser clients) are always
    accepted. ``None`` accepts every origin."""
    max_clients: int = 32
    """Concurrent connections (including ones still in the handshake); more get 503."""
    max_message_bytes: int = 4096
    """Largest inbound (client -> server) message in bytes; bigger closes with 1009."""
    queue_size: int = 256
    """Messages queued per client before the oldest droppable ones are dropped."""
    write_buffer_limit: int = 32 * 1024
    """Bytes in a client's transport write buffer above which sending pauses."""
    socket_send_buffer: int = 64 * 1024
    """Kernel send buffer (``SO_SNDBUF``) of each client socket, in bytes (Linux
    doubles it). Bounds what a client that stops reading can hold in the kernel: with
    autotuning it grows to megabytes, and the write buffer (hence the stall check below)
    only fills once the kernel buffer is full."""
    stall_timeout_s: float = 3.0
    """Seconds a client may leave the server's ping unanswered while messages are on their
    way to it before it is closed (1008, ``client too slow: not reading``); at most 30.
    The server pings every few messages and sends at most ``send_window`` messages
    beyond the last answered ping, so a client that reads slowly gets ``dropped`` notices
    from its queue instead, and one that stops reading is found within about this long
    (see docs/protocol.md, "Backpressure")."""
    send_window: int = 16
    """Messages the server sends to a client beyond the last one the client's pong has
    acknowledged; the rest wait in its queue (where the oldest droppable ones are
    dropped). Small enough that a ping is answered within ``stall_timeout_s`` by any
    client that keeps reading."""
    recent_captions: int = 50
    """Final captions kept for the snapshot sent to a new client; at most
    ``queue_size // 2``."""
    max_sessions: int = 16
    """Client audio sessions open at once (``start`` beyond gets ``too_many_sessions``);
    0 refuses sessions."""
    max_audio_frame_bytes: int = 1 << 20
    """Largest binary (audio) frame in bytes; bigger closes with 1009."""
    session_buffer_s: float = 30.0
    """Per-session cap on buffered audio, in seconds: a live session may not send more
    than this ahead of real time (``buffer_full``), a paced one is slowed down (the
    server stops reading) while this much audio waits for analysis."""
    session_idle_s: float = 30.0
    """A session that sends no audio for this many seconds is ended (``idle_timeout``)."""
    certfile: str | None = None
    """PEM certificate (chain) to serve TLS with: ``wss://`` websockets and the page over
    ``https://``; ``None`` serves plain ``ws://``/``http://``. Its content is read when the
    server starts (see :func:`wavlm_live.tls.server_context`)."""
    keyfile: str | None = None
    """PEM private key of ``certfile``; ``None``: the key is in ``certfile`` too."""

    max_clients_per_address: int = 16
    """Concurrent connections from one IP address; more get HTTP 429. Behind a reverse
    proxy or load balancer every client has the proxy's address: set it to
    ``max_clients`` there."""
    client_idle_s: float = 30.0
    """A connection that watches no stream (no server input, no session) and has sent no
    message for this many seconds is closed (1008, ``idle``)."""
    message_rate: float = 20.0
    """Text messages per second a client may send on average (a token bucket of
    ``message_burst``); messages beyond it are discarded and answered by one
    ``rate_limited`` error per second. Binary audio frames are not counted."""
    message_burst: int = 40
    """Text messages a client may send at once before ``message_rate`` applies."""
    rename_rate: float = 1.0
    """Renames per second a client may send on average (each is published to every
    client), besides ``message_rate``; a bucket of ``rename_burst``."""
    rename_burst: int = 5
    """Renames a client may send at once before ``rename_rate`` applies."""
    control_token: str | None = None
    """When set, renaming the speakers of the server's own input needs a connection
    that sent ``Authorization: Bearer <control_token>`` (that header is accepted in
    place of ``token``); others get ``forbidden``. A session's owner may always rename
    its own speakers. Never logged."""

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ValueError(f"host must be a non-empty string, got {self.host!r}")
        _check_int("port", self.port, 0, 65535)
        for name in ("token", "control_token"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a string or None, got {type(value).__name__}")
            if not value or any(c.isspace() for c in value) or not value.isprintable():
                raise ValueError(f"{name} must be non-empty printable text without whitespace")
        if self.token is not None and self.token == self.control_token:
            raise ValueError("control_token must differ from token (it grants more)")
        if self.allowed_origins is not None:
            if isinstance(self.allowed_origins, str) or not isinstance(self.allowed_origins, tuple):
                raise TypeError(
                    f"allowed_origins must be a tuple of strings or None, got {self.allowed_origins!r}"
                )
            for origin in self.allowed_origins:
                if not isinstance(origin, str) or not origin:
                    raise ValueError(f"allowed_origins holds an invalid origin {origin!r}")
        _check_int("max_clients", self.max_clients, 1, 100_000)
        _check_int("max_message_bytes", self.max_message_bytes, 256, 1 << 20)
        _check_int("queue_size", self.queue_size, 16, 1 << 20)
        _check_int("write_buffer_limit", self.write_buffer_limit, 1024, 1 << 26)
        _check_int("socket_send_buffer", self.socket_send_buffer, 4096, 1 << 26)
        if isinstance(self.stall_timeout_s, bool) or not isinstance(self.stall_timeout_s, (int, float)):
            raise TypeError(f"stall_timeout_s must be a number, got {self.stall_timeout_s!r}")
        if not (math.isfinite(self.stall_timeout_s) and 0 < self.stall_timeout_s <= 30):
            raise ValueError(f"stall_timeout_s must be in (0, 30] seconds, got {self.stall_timeout_s}")
        _check_int("send_window", self.send_window, 4, 4096)
        _check_int("recent_captions", self.recent_captions, 0, self.queue_size // 2)
        _check_int("max_sessions", self.max_sessions, 0, 100_000)
        _check_int("max_audio_frame_bytes", self.max_audio_frame_bytes, 1024, 1 << 26)
        _check_seconds("session_buffer_s", self.session_buffer_s, 1.0, 3600.0)
        _check_seconds("session_idle_s", self.session_idle_s, 0.1, 86400.0)
        _check_int("max_clients_per_address", self.max_clients_per_address, 1, 100_000)
        _check_seconds("client_idle_s", self.client_idle_s, 0.1, 86400.0)
        _check_rate("message_rate", self.message_rate)
        _check_int("message_burst", self.message_burst, 1, 100_000)
        _check_rate("rename_rate", self.rename_rate)
        _check_int("rename_burst", self.rename_burst, 1, 100_000)
        if self.keyfile is not None and self.certfile is None:
            raise ValueError("keyfile needs a certfile (the certificate it is the key of)")
        for name in ("certfile", "keyfile"):
            path = getattr(self, name)
            if path is None:
                continue
            if not isinstance(path, str) or not path:
                raise TypeError(f"{name} must be a path string or None, got {path!r}")
            if not os.path.isfile(path) or not os.access(path, os.R_OK):
                raise ValueError(f"{name} {path} is not a readable file")

    @property
    def scheme(self) -> str:
        """``"wss"`` when serving TLS (``certfile``), else ``"ws"``."""
        return "ws" if self.certfile is None else "wss"


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


def _check_seconds(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be in [{low:g}, {high:g}] seconds, got {value}")


def _check_rate(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number per second, got {value!r}")
    if not (math.isfinite(value) and 0.01 <= value <= 100_000):
        raise ValueError(f"{name} must be in [0.01, 100000] per second, got {value}")
