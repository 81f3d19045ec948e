"""Wire encoding of server messages and checking of client messages (no I/O).

A server message is one JSON object whose first keys are the envelope ``type``, ``v``,
``seq`` and ``wall``. The body (everything after the envelope) is the same for every
client, so it is encoded once per event (:class:`Outgoing`) and each client only
prefixes its own envelope (:func:`render`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from wavlm_live.events import PROTOCOL_VERSION, CaptionEvent, Event, SpeakerEvent

from .schemas import DROPPABLE_TYPES, TOPICS

_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))

MAX_SPEAKER_ID_CHARS = 32
MAX_NAME_CHARS = 64
MAX_PING_ID_CHARS = 64


def encode_body(fields: dict[str, Any]) -> bytes:
    """UTF-8 JSON of ``fields`` (the message without its envelope).

    Raises:
        ValueError: a float is NaN/inf (``to_dict`` already maps those to ``null``).
        TypeError: a value is not JSON-serialisable.
    """
    return _ENCODER.encode(fields).encode()


def render(kind: str, seq: int, wall: float, body: bytes) -> bytes:
    """One complete message: envelope ``type, v, seq, wall`` followed by ``body``'s keys.

    ``body`` is :func:`encode_body` output; ``wall`` is unix time in seconds.
    """
    head = b'{"type":"%s","v":%d,"seq":%d,"wall":%.6f' % (kind.encode(), PROTOCOL_VERSION, seq, wall)
    return head + b"}" if body == b"{}" else head + b"," + body[1:]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A server message ready for any client: type, body bytes, emit time.

    Attributes:
        kind: message ``type``.
        body: encoded fields without the envelope (shared by all clients).
        wall: unix time in seconds when the server emitted it.
        droppable: may be dropped for a slow client (level, stats, partial captions).
        body_embedding: for ``speaker`` messages, the body including ``embedding``
            (sent to clients that asked for embeddings); ``body`` omits that field.
    """

    kind: str
    body: bytes
    wall: float
    droppable: bool = False
    body_embedding: bytes | None = None

    @classmethod
    def from_event(cls, event: Event, wall: float, *, snapshot: bool = False,
                   extra: dict[str, Any] | None = None) -> Outgoing:
        """Encode an engine event (``Event.to_dict`` minus ``type``/``v``), optionally
        flagged ``"snapshot": true`` and with ``extra`` fields appended."""
        fields = event.to_dict()
        kind = fields.pop("type")
        fields.pop("v")
        if extra:
            fields.update(extra)
        if snapshot:
            fields["snapshot"] = True
        droppable = kind in DROPPABLE_TYPES and not (isinstance(event, CaptionEvent) and event.final)
        if isinstance(event, SpeakerEvent):
            with_embedding = encode_body(fields)
            fields.pop("embedding")
            return cls(kind, encode_body(fields), wall, False, with_embedding)
        return cls(kind, encode_body(fields), wall, droppable)

    @classmethod
    def make(cls, kind: str, wall: float, **fields: Any) -> Outgoing:
        """A server-made message (never droppable)."""
        return cls(kind, encode_body(fields), wall)


class BadMessage(ValueError):
    """A client message that is not valid protocol; its text is sent back to the client."""


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Parsed ``subscribe``: ``None`` fields keep the client's current setting;
    ``session`` switches the connection to watching that session (read-only)."""

    topics: frozenset[str] | None
    embeddings: bool | None
    snapshot: bool
    session: str | None = None


@dataclass(frozen=True, slots=True)
class Start:
    """Parsed ``start``: open an audio session on this connection.

    Attributes:
        sample_rate: input rate in Hz; channels: interleaved channels; format: sample
            format (``pcm_s16le`` or ``f32le``); tasks: subset of the server's tasks
            (``None``: all); speaker_threshold: cosine similarity (``None``: the
            server's); live: real-time stream (skips windows when behind) or paced.
    """

    sample_rate: int
    channels: int = 1
    format: str = "pcm_s16le"
    tasks: tuple[str, ...] | None = None
    speaker_threshold: float | None = None
    live: bool = True


@dataclass(frozen=True, slots=True)
class Stop:
    """Parsed ``stop``: no more audio; analyse the rest and send ``end``."""


@dataclass(frozen=True, slots=True)
class Rename:
    """Parsed ``rename``: ``name`` is ``None`` to clear the name."""

    speaker: str
    name: str | None


@dataclass(frozen=True, slots=True)
class Ping:
    """Parsed ``ping`` with its optional ``id`` to echo."""

    id: str | int | None


MAX_SESSION_ID_CHARS = 64

_FIELDS = {
    "subscribe": {"type", "topics", "embeddings", "snapshot", "session"},
    "start": {"type", "sample_rate", "channels", "format", "tasks", "speaker_threshold", "live"},
    "stop": {"type"},
    "rename": {"type", "speaker", "name"},
    "ping": {"type", "id"},
}


def parse_client_message(raw: str | bytes) -> Subscribe | Rename | Ping | Start | Stop:
    """Check one client text message against the protocol (``CLIENT_SCHEMAS``) and parse
    it. (Binary frames are a session's audio; the server handles them apart.)

    Raises:
        BadMessage: binary frame, invalid JSON, not an object, unknown ``type``, unknown
            or missing fields, or a field of the wrong type or length.
    """
    if not isinstance(raw, str):
        raise BadMessage("binary frames are not accepted; send JSON text")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadMessage("message is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadMessage(f"message must be a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in _FIELDS:
        raise BadMessage(f"unknown message type {kind!r}; expected subscribe, start, stop, rename or ping")
    unknown = sorted(set(data) - _FIELDS[kind])
    if unknown:
        raise BadMessage(f"{kind} has unknown field(s) {', '.join(map(repr, unknown))}")
    if kind == "subscribe":
        return _parse_subscribe(data)
    if kind == "rename":
        return _parse_rename(data)
    if kind == "start":
        return _parse_start(data)
    if kind == "stop":
        return Stop()
    ping_id = data.get("id")
    if "id" in data:
        if isinstance(ping_id, bool) or not isinstance(ping_id, (str, int)):
            raise BadMessage("ping id must be a string or an integer")
        if isinstance(ping_id, str) and len(ping_id) > MAX_PING_ID_CHARS:
            raise BadMessage(f"ping id is longer than {MAX_PING_ID_CHARS} characters")
    return Ping(ping_id)


def _parse_subscribe(data: dict[str, Any]) -> Subscribe:
    topics = data.get("topics")
    if topics is not None or "topics" in data:
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            raise BadMessage("subscribe topics must be a list of strings")
        unknown = [t for t in topics if t not in TOPICS]
        if unknown:
            raise BadMessage(f"unknown topic(s) {unknown!r}; topics are {', '.join(TOPICS)}")
        if len(set(topics)) != len(topics):
            raise BadMessage("subscribe topics must not repeat")
        topics = frozenset(topics)
    flags = {}
    for key in ("embeddings", "snapshot"):
        value = data.get(key)
        if key in data and not isinstance(value, bool):
            raise BadMessage(f"subscribe {key} must be true or false, got {value!r}")
        flags[key] = value
    session = data.get("session")
    if "session" in data and (not isinstance(session, str) or not 1 <= len(session) <= MAX_SESSION_ID_CHARS):
        raise BadMessage(f"subscribe session must be a session id string, got {session!r}")
    return Subscribe(topics, flags["embeddings"], bool(flags["snapshot"]), session)


def _parse_start(data: dict[str, Any]) -> Start:
    """Types only; the ranges (rates, channels, tasks the server runs) are the
    session's to check, with ``bad_start`` errors."""
    if "sample_rate" not in data:
        raise BadMessage("start needs 'sample_rate' (Hz)")
    for key in ("sample_rate", "channels"):
        value = data.get(key)
        if key in data and (isinstance(value, bool) or not isinstance(value, int)):
            raise BadMessage(f"start {key} must be an integer, got {value!r}")
    fmt = data.get("format", "pcm_s16le")
    if not isinstance(fmt, str):
        raise BadMessage(f"start format must be a string, got {fmt!r}")
    tasks = data.get("tasks")
    if "tasks" in data:
        if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks) or len(set(tasks)) != len(tasks):
            raise BadMessage("start tasks must be a list of distinct task names")
        tasks = tuple(tasks)
    threshold = data.get("speaker_threshold")
    if "speaker_threshold" in data and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
        raise BadMessage(f"start speaker_threshold must be a number, got {threshold!r}")
    live = data.get("live", True)
    if not isinstance(live, bool):
        raise BadMessage(f"start live must be true or false, got {live!r}")
    return Start(data["sample_rate"], data.get("channels", 1), fmt, tasks,
                 None if threshold is None else float(threshold), live)


def _parse_rename(data: dict[str, Any]) -> Rename:
    if "speaker" not in data or "name" not in data:
        raise BadMessage("rename needs both 'speaker' and 'name' (null clears the name)")
    speaker, name = data["speaker"], data["name"]
    if not isinstance(speaker, str) or not 1 <= len(speaker) <= MAX_SPEAKER_ID_CHARS:
        raise BadMessage(f"rename speaker must be a speaker id string, got {speaker!r}")
    if name is not None:
        if not isinstance(name, str):
            raise BadMessage(f"rename name must be a string or null, got {type(name).__name__}")
        if len(name) > MAX_NAME_CHARS:
            raise BadMessage(f"rename name is longer than {MAX_NAME_CHARS} characters")
        name = name.strip() or None
    return Rename(speaker, name)
