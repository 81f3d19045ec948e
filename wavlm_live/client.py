"""Python client of a wavlm-live server: stream audio into a session of your own and read
its results (the protocol of ``docs/protocol.md``, "Audio sessions").

>>> import asyncio
>>> from wavlm_live.client import open_session
>>> async def main(samples):                      # float32 [-1, 1], 16 kHz mono
...     async with open_session("ws://127.0.0.1:8765", live=False) as session:
...         await session.send(samples)
...         await session.stop()
...         async for msg in session:             # every server message, until "end"
...             if msg["type"] == "caption" and msg["final"]:
...                 print(msg["speaker"], msg["text"])

:func:`send_file` streams a file at real-time pace (or faster) and yields the messages.
This module is an I/O adapter (it imports websockets), like ``wavlm_live.server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from wavlm_live.protocol import decode_message
from wavlm_live.timegrid import SAMPLE_RATE
from wavlm_live.tls import client_context

FORMATS = {"pcm_s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
"""Sample formats a session can send (interleaved, little-endian)."""


class SessionError(RuntimeError):
    """The server refused the session or ended it with an error.

    Attributes:
        code: the server's error code (``too_many_sessions``, ``bad_start``, ...), or
            ``"closed"`` when the connection closed first.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code


class Session:
    """An open audio session on a wavlm-live server (made by :func:`open_session`).

    Attributes:
        id: the session id (others may watch it: ``subscribe`` with ``session``).
        hello: the server's ``hello`` message.
        started: the server's ``started`` message (``window``, ``hop``, ``tasks``...).

    Iterate (``async for msg in session``) to get every later server message as a dict,
    in order, up to and including ``end``; the iteration also stops when the connection
    closes. Not safe to use from several tasks at once, except that one task may send
    while another iterates.
    """

    def __init__(self, ws: ClientConnection, hello: dict[str, Any], started: dict[str, Any],
                 pending: list[dict[str, Any]]) -> None:
        self._ws = ws
        self.hello = hello
        self.started = started
        self.id: str = started["session"]
        self.channels: int = started["channels"]
        self._dtype = FORMATS[started["format"]]
        self._pending = pending
        self.ended = False

    async def send(self, samples: np.ndarray) -> None:
        """Send audio: float samples in [-1, 1] or int16 samples, shape ``[frames]`` (mono)
        or ``[frames, channels]``, at the session's sample rate; converted to its format.

        Raises:
            ValueError: wrong channel count.
            websockets.exceptions.ConnectionClosed: the server closed the connection.
        """
        x = np.asarray(samples)
        frames = x.reshape(-1, 1) if x.ndim == 1 else x
        if frames.ndim != 2 or frames.shape[1] != self.channels:
            raise ValueError(f"expected [frames] or [frames, {self.channels}] samples, got shape {x.shape}")
        if self._dtype.kind == "i":
            if x.dtype.kind == "f":
                frames = np.clip(np.round(frames * 32767.0), -32768, 32767)
            data = frames.astype("<i2").tobytes()
        else:
            if x.dtype.kind == "i":
                frames = frames / 32768.0
            data = frames.astype("<f4").tobytes()
        if data:
            await self._ws.send(data)

    async def stop(self) -> None:
        """No more audio: the server analyses the rest and sends the final captions and
        ``end`` (keep iterating to get them)."""
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(json.dumps({"type": "stop"}))

    async def close(self) -> None:
        """Close the connection (the server still analyses the audio it received)."""
        await self._ws.close()

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        while self._pending:
            msg = self._pending.pop(0)
            yield msg
            if msg.get("type") == "end":
                self.ended = True
                return
        try:
            async for raw in self._ws:
                msg = decode_message(raw)
                if msg is None:
                    continue
                yield msg
                if msg.get("type") == "end":
                    self.ended = True
                    return
        except ConnectionClosed:
            return

    @property
    def close_code(self) -> int | None:
        """The close code once the connection has closed (1008: the session broke a rule,
        1011: its analysis failed on the server; see the protocol)."""
        return self._ws.close_code


@contextlib.asynccontextmanager
async def open_session(url: str, *, sample_rate: int = SAMPLE_RATE, channels: int = 1, format: str = "f32le",  # noqa: A002
                       tasks: Iterable[str] | None = None, speaker_threshold: float | None = None,
                       live: bool = True, token: str | None = None, cafile: str | None = None,
                       ssl: Any = None, open_timeout: float = 10.0) -> AsyncIterator[Session]:
    """Connect to a wavlm-live server and open an audio session (async context manager;
    the connection is closed on exit).

    Args:
        url: ``ws://host:port`` (or ``wss://``) of the server.
        sample_rate: Hz of the audio you will send (the server resamples to 16 kHz).
        channels: interleaved channels you will send (the server down-mixes).
        format: ``"f32le"`` or ``"pcm_s16le"`` on the wire.
        tasks: a subset of the server's tasks (default: all).
        speaker_threshold: this session's cosine similarity threshold.
        live: ``True`` for real-time audio (the server skips windows if it falls behind);
            ``False`` to have every window analysed, the server slowing the sender down.
        token: bearer token, sent in the ``Authorization`` header.
        cafile: PEM of the CA (or the certificate) of a ``wss://`` server; default: the
            system's trust store.
        ssl: an ``ssl.SSLContext`` for ``wss://`` URLs, instead of ``cafile``'s.

    Raises:
        SessionError: the server refused the session (``code`` says why).
        ValueError: a bad ``format``, or ``cafile`` given for a ``ws://`` URL or unreadable.
        OSError, websockets.exceptions.InvalidHandshake: the connection failed
            (``ssl.SSLError``, an ``OSError``, when the server's TLS certificate is
            refused: :func:`wavlm_live.tls.describe_tls_error` says why in one line).
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    start: dict[str, Any] = {"type": "start", "sample_rate": sample_rate, "channels": channels,
                             "format": format, "live": live}
    if tasks is not None:
        start["tasks"] = list(tasks)
    if speaker_threshold is not None:
        start["speaker_threshold"] = speaker_threshold
    headers = {"Authorization": f"Bearer {token}"} if token else None
    context = ssl if ssl is not None else client_context(url, cafile)
    async with connect(url, additional_headers=headers, compression=None, max_size=2**24,
                       open_timeout=open_timeout, ssl=context) as ws:
        hello = decode_message(await ws.recv()) or {}
        await ws.send(json.dumps(start))
        pending: list[dict[str, Any]] = []
        try:
            while True:
                msg = decode_message(await ws.recv()) or {}
                if msg.get("type") == "started":
                    break
                if msg.get("type") == "error":
                    raise SessionError(msg.get("code", "error"), msg.get("message", "the server refused the session"))
                # the snapshot of the server's own input, if any, before the session starts
        except ConnectionClosed as exc:
            raise SessionError("closed", f"the server closed the connection ({exc})") from None
        yield Session(ws, hello, msg, pending)


async def send_file(url: str, path: str | Path, *, speed: float | None = 1.0, **options: Any) -> AsyncIterator[dict[str, Any]]:
    """Stream an audio file into a new session and yield every server message until ``end``.

    The file is decoded and resampled to 16 kHz mono as ``wavlm-live transcribe`` reads it,
    and sent as ``f32le`` in the reader's blocks (about 0.1 s), at ``speed`` times real time
    (``None``: as fast as the server takes it). The session is paced (``live=False``)
    unless ``live=True`` is passed, so every window is analysed: the results equal
    ``transcribe``'s for the same window and hop. The first message yielded is the
    server's ``started``.

    Args:
        url, options: as for :func:`open_session` (``token``, ``tasks``, ``cafile``...).

    Raises:
        wavlm_live.audio.AudioError: the file cannot be read.
        SessionError: the server refused the session.
        ValueError, OSError, websockets.exceptions.InvalidHandshake: as for
            :func:`open_session`.
    """
    from wavlm_live.audio import FileSource  # noqa: PLC0415

    source = FileSource(path, speed=None, block_seconds=0.1)
    options.setdefault("live", False)
    async with open_session(url, sample_rate=SAMPLE_RATE, channels=1, format="f32le", **options) as session:
        yield session.started

        async def pump() -> None:
            t0 = time.monotonic()
            sent = 0
            for block in source.blocks():
                await _send_paced(session, block, sent, t0, speed)
                sent += block.size
            await session.stop()

        task = asyncio.create_task(pump())
        try:
            async for msg in session:
                yield msg
            if task.done() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await task


async def _send_paced(session: Session, block: np.ndarray, sent: int, t0: float, speed: float | None) -> None:
    if speed is not None:
        due = t0 + sent / SAMPLE_RATE / speed
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    await session.send(block)
