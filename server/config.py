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
    stall_timeout_s: float = 2.0
    """Seconds a client's write buffer may stay above ``write_buffer_limit`` before the
    client is disconnected (close code 1008); at most 5."""
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

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ValueError(f"host must be a non-empty string, got {self.host!r}")
        _check_int("port", self.port, 0, 65535)
        if self.token is not None:
            if not isinstance(self.token, str):
                raise TypeError(f"token must be a string or None, got {type(self.token).__name__}")
            if not self.token or any(c.isspace() for c in self.token) or not self.token.isprintable():
                raise ValueError("token must be non-empty printable text without whitespace")
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
        if not (math.isfinite(self.stall_timeout_s) and 0 < self.stall_timeout_s <= 5):
            raise ValueError(f"stall_timeout_s must be in (0, 5] seconds, got {self.stall_timeout_s}")
        _check_int("recent_captions", self.recent_captions, 0, self.queue_size // 2)
        _check_int("max_sessions", self.max_sessions, 0, 100_000)
        _check_int("max_audio_frame_bytes", self.max_audio_frame_bytes, 1024, 1 << 26)
        _check_seconds("session_buffer_s", self.session_buffer_s, 1.0, 3600.0)
        _check_seconds("session_idle_s", self.session_idle_s, 0.1, 86400.0)
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
