"""Fixtures for server tests: real servers on ephemeral ports, real websocket clients,
events fed through a real EventBus from another thread, and JSON Schema validation of
every message the server sends."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection

from wavlm_live.engine.bus import EventBus
from wavlm_live.events import Event
from wavlm_live.server import PROTOCOL_SCHEMAS, Publisher, ServerConfig

HELLO = {
    "version": "0.1.0",
    "sample_rate": 16000,
    "frame": 0.02,
    "tasks": ["captions", "diarization", "embeddings"],
    "models": {"captions": "tiny-ctc", "diarization": "tiny-sd", "embeddings": "tiny-sv"},
    "window": 4.0,
    "hop": 1.0,
    "demo": True,
    "captions_decoder": "beam search (width 4, 2-gram LM of 9 words, alpha 0.5, beta 1.5)",
}

VALIDATORS = {kind: Draft202012Validator(schema) for kind, schema in PROTOCOL_SCHEMAS.items()}


_VALID_CACHE: set[str] = set()


def validate_message(msg: Any) -> None:
    """Raise AssertionError unless ``msg`` is a valid server message.

    Fan-out sends the same body to many clients with different ``seq``/``wall``; the
    schemas only ask ``seq`` to be an integer >= 0 (0 for hello) and ``wall`` a number,
    so messages equal up to those values share one (cached) validation.
    """
    assert isinstance(msg, dict), f"message is not an object: {msg!r}"
    validator = VALIDATORS.get(msg.get("type"))
    assert validator is not None, f"unknown message type in {msg!r}"
    canonical = dict(msg)
    if type(msg.get("seq")) is int and msg["seq"] >= 0:
        canonical["seq"] = min(msg["seq"], 1)
    if type(msg.get("wall")) in (int, float):
        canonical["wall"] = 0.0
    key = json.dumps(canonical, sort_keys=True)
    if key in _VALID_CACHE:
        return
    errors = sorted(validator.iter_errors(msg), key=str)
    assert not errors, f"{msg.get('type')} message invalid: {errors[0].message} in {msg!r}"
    if len(_VALID_CACHE) > 20_000:
        _VALID_CACHE.clear()
    _VALID_CACHE.add(key)


class ServerSendLog:
    """Counts and checks every text message any ServerConnection sends in this test."""

    def __init__(self) -> None:
        self.count = 0
        self.errors: list[str] = []


@pytest.fixture(autouse=True)
def server_messages_valid(monkeypatch: pytest.MonkeyPatch) -> Iterable[ServerSendLog]:
    """Validate, on the server side, every message sent by an in-process server."""
    record = ServerSendLog()
    original = ServerConnection.send

    async def checked_send(self: ServerConnection, message: Any, text: bool | None = None) -> None:
        if isinstance(message, (str, bytes)):
            record.count += 1
            try:
                validate_message(json.loads(message))
            except (AssertionError, ValueError) as exc:
                record.errors.append(str(exc))
        await original(self, message, text=text)

    monkeypatch.setattr(ServerConnection, "send", checked_send)
    yield record
    assert not record.errors, record.errors[:3]


class Sub:
    """A websocket client that validates every message and checks ``seq``.

    ``gaps`` counts missing seq values; with ``strict`` (default) a gap fails the test.
    With ``keep`` (default) every message is kept in ``received``.
    """

    def __init__(self, ws: ClientConnection, strict: bool = True, keep: bool = True) -> None:
        self.ws = ws
        self.strict = strict
        self.keep = keep
        self.next_seq = 0
        self.gaps = 0
        self.received: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, url: str, *, strict: bool = True, keep: bool = True, **kwargs: Any) -> Sub:
        kwargs.setdefault("open_timeout", 10)
        return cls(await connect(url, **kwargs), strict, keep)

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(raw, str), "server sent a binary frame"
        msg = json.loads(raw)
        validate_message(msg)
        assert msg["seq"] >= self.next_seq, f"seq went back: {msg['seq']} after {self.next_seq - 1}"
        if self.strict:
            assert msg["seq"] == self.next_seq, f"seq gap: {msg['seq']} after {self.next_seq - 1}"
        self.gaps += msg["seq"] - self.next_seq
        self.next_seq = msg["seq"] + 1
        if self.keep:
            self.received.append(msg)
        return msg

    async def recv_until(self, pred: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Messages up to and including the first one matching ``pred``."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.recv(max(0.01, deadline - time.monotonic()))
            out.append(msg)
            if pred(msg):
                return out

    async def send(self, msg: Any) -> None:
        await self.ws.send(msg if isinstance(msg, (str, bytes)) else json.dumps(msg))

    async def subscribe(self, **fields: Any) -> dict[str, Any]:
        await self.send({"type": "subscribe", **fields})
        return (await self.recv_until(lambda m: m["type"] == "subscribed"))[-1]

    async def close(self) -> None:
        await self.ws.close()


def feed(bus: EventBus, events: Iterable[Event], interval: float = 0.0) -> threading.Thread:
    """Publish ``events`` on ``bus`` from a new thread (like the engine), ``interval``
    seconds apart; returns the started thread."""

    def run() -> None:
        for event in events:
            bus.publish(event)
            if interval:
                time.sleep(interval)

    thread = threading.Thread(target=run, name="test-engine", daemon=True)
    thread.start()
    return thread


async def join(thread: threading.Thread, timeout: float = 30.0) -> None:
    await asyncio.to_thread(thread.join, timeout)
    assert not thread.is_alive(), "feeder thread did not finish"


@contextlib.asynccontextmanager
async def running_publisher(control: Any = None, hello: dict[str, Any] | None = None, **config: Any):
    """A started Publisher on 127.0.0.1:<ephemeral> with its bus: yields (pub, bus)."""
    bus = EventBus()
    config.setdefault("port", 0)
    async with Publisher(bus, hello or HELLO, control, ServerConfig(**config)) as pub:
        yield pub, bus


def silent_socket(port: int, rcvbuf: int = 4096, headers: str = "") -> socket.socket:
    """A raw TCP client that completes the websocket handshake and then never reads.

    ``SO_RCVBUF`` is set before connecting so that the TCP window stays small.
    Blocking; call it in a thread.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n").encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, "server closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def rss_bytes(pid: int | None = None) -> int:
    import psutil

    return psutil.Process(pid or os.getpid()).memory_info().rss


@pytest.fixture
def tools() -> Any:
    """The helpers above, for test modules (conftest is not importable by name)."""

    class Tools:
        HELLO = HELLO
        Sub = Sub
        feed = staticmethod(feed)
        join = staticmethod(join)
        running_publisher = staticmethod(running_publisher)
        silent_socket = staticmethod(silent_socket)
        rss_bytes = staticmethod(rss_bytes)
        validate_message = staticmethod(validate_message)

    return Tools
