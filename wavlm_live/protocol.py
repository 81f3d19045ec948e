"""The websocket protocol's shared vocabulary, for the server, the dashboard, ``listen``,
``send`` and the Python client alike (no I/O, no torch): the version, the topics, the task
names, what may be dropped for slow clients, and the decoding of a message.

The JSON Schemas of every message are in ``wavlm_live.server.schemas`` (and
docs/protocol.md); the event dataclasses and their encoding in :mod:`wavlm_live.events`.
"""

from __future__ import annotations

import json
from typing import Any

from wavlm_live.events import EVENT_TYPES, PROTOCOL_VERSION

__all__ = ["DROPPABLE_TYPES", "PROTOCOL_VERSION", "TASKS", "TOPICS", "decode_message"]

TOPICS: tuple[str, ...] = tuple(EVENT_TYPES)
"""Engine event types a client can subscribe to (caption, diarization, speaker,
classification, level, stats, error, end)."""

TASKS: tuple[str, ...] = ("captions", "diarization", "embeddings", "classification")
"""Task names in ``hello``/``started``/``start`` (``wavlm_live.tasks.REGISTRY``'s keys)."""

DROPPABLE_TYPES: tuple[str, ...] = ("caption", "level", "stats")
"""Types whose messages may be dropped for a slow client (captions only when partial)."""


def decode_message(raw: str | bytes) -> dict[str, Any] | None:
    """A server message as a dict, or ``None`` when it is not a JSON object of this
    protocol version (clients skip those rather than fail)."""
    try:
        msg = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(msg, dict) or msg.get("v") != PROTOCOL_VERSION or not isinstance(msg.get("type"), str):
        return None
    return msg
