"""JSON Schemas (draft 2020-12) of every protocol message, version 1.

These dicts are the machine-readable copy of ``docs/protocol.md``; a test checks that the
schemas in that document equal them. The server itself does not need jsonschema: it
checks client messages by hand (``protocol.parse_client_message``), and the tests check
both against these schemas.
"""

from __future__ import annotations

from typing import Any

from wavlm_live.protocol import DROPPABLE_TYPES, TASKS, TOPICS  # noqa: F401 - the shared vocabulary

_DRAFT = "https://json-schema.org/draft/2020-12/schema"


def _message(direction: str, kind: str, properties: dict[str, Any], required: list[str],
             *, extra: bool = False, seq: dict[str, Any] | None = None) -> dict[str, Any]:
    """One server (envelope added) or client message schema."""
    props: dict[str, Any] = {"type": {"const": kind}}
    req = ["type"]
    if direction == "server":
        props["v"] = {"const": 1}
        props["seq"] = seq or {"type": "integer", "minimum": 0}
        props["wall"] = {"type": "number"}
        req += ["v", "seq", "wall"]
    props.update(properties)
    return {
        "$schema": _DRAFT,
        "$id": f"urn:wavlm-live:protocol:v1:{direction}:{kind}",
        "title": kind,
        "type": "object",
        "properties": props,
        "required": req + required,
        "additionalProperties": extra,
    }


_NUMBER = {"type": "number"}
_SECONDS = {"type": "number", "minimum": 0}
_COUNT = {"type": "integer", "minimum": 0}
_SPEAKER_ID = {"type": "string", "pattern": "^S[0-9]+$"}
_SNAPSHOT = {"const": True}
_TOPIC_LIST = {"type": "array", "items": {"enum": list(TOPICS)}, "uniqueItems": True}
_SESSION_ID = {"type": "string", "minLength": 1, "maxLength": 64}

ENGINE_STATES: tuple[str, ...] = ("running", "stalled", "failed", "ended")
"""Health of a stream's analysis, in ``hello``, ``stats`` and ``/healthz``: analysing;
no window finished for a while although audio waits; stopped by a fatal error; ended."""
_ENGINE_STATE = {"enum": list(ENGINE_STATES)}

PCM_FORMAT_NAMES: tuple[str, ...] = ("pcm_s16le", "f32le")
"""Sample formats of session audio frames (``wavlm_live.audio.pcm.PCM_FORMATS``)."""

PROTOCOL_SCHEMAS: dict[str, dict[str, Any]] = {
    "hello": _message("server", "hello", {
        "version": {"type": "string"},
        "sample_rate": {"type": "integer", "minimum": 1},
        "frame": {"type": "number", "exclusiveMinimum": 0},
        "tasks": {"type": "array", "items": {"enum": list(TASKS)}, "uniqueItems": True},
        "models": {"type": "object", "additionalProperties": {"type": "string"}},
        "window": {"type": "number", "exclusiveMinimum": 0},
        "hop": {"type": "number", "exclusiveMinimum": 0},
        "schedule": {"type": "object", "additionalProperties": {
            "type": "object",
            "properties": {
                "window": {"type": "number", "exclusiveMinimum": 0},
                "hop": {"type": "number", "exclusiveMinimum": 0},
                "right_context": {"type": "number", "minimum": 0},
            },
            "required": ["window", "hop", "right_context"],
            "additionalProperties": False,
        }},
        "demo": {"type": "boolean"},
        "captions_decoder": {"type": "string"},
        "classification_labels": {"type": "array", "items": {"type": "string"}},
        "topics": {"type": "array", "items": {"enum": list(TOPICS)}},
        "max_message_bytes": {"type": "integer", "minimum": 1},
        "input": {"type": "boolean"},
        "stream": {"type": "string"},
        "engine": _ENGINE_STATE,
        "sessions": {
            "type": "object",
            "properties": {
                "formats": {"type": "array", "items": {"enum": list(PCM_FORMAT_NAMES)}},
                "sample_rates": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
                "max_channels": {"type": "integer", "minimum": 1},
                "max_audio_frame_bytes": {"type": "integer", "minimum": 1},
                "buffer_seconds": {"type": "number", "exclusiveMinimum": 0},
                "idle_timeout": {"type": "number", "exclusiveMinimum": 0},
            },
            "required": ["formats", "sample_rates", "max_channels", "max_audio_frame_bytes",
                         "buffer_seconds", "idle_timeout"],
            "additionalProperties": False,
        },
    }, ["version", "sample_rate", "frame", "tasks", "models", "window", "hop", "demo",
        "topics", "max_message_bytes", "engine"], extra=True, seq={"const": 0}),
    "caption": _message("server", "caption", {
        "final": {"type": "boolean"},
        "segment": _COUNT,
        "start": _SECONDS,
        "end": _SECONDS,
        "text": {"type": "string"},
        "words": {"type": "array", "items": {
            "type": "object",
            "properties": {
                "text": {"type": "string"},
                "start": _SECONDS,
                "end": _SECONDS,
                "speaker": {"anyOf": [_SPEAKER_ID, {"type": "null"}]},
            },
            "required": ["text", "start", "end", "speaker"],
            "additionalProperties": False,
        }},
        "speaker": {"anyOf": [_SPEAKER_ID, {"type": "null"}]},
        "snapshot": _SNAPSHOT,
    }, ["final", "segment", "start", "end", "text", "words", "speaker"]),
    "diarization": _message("server", "diarization", {
        "start": _SECONDS,
        "end": _SECONDS,
        "frame": {"type": "number", "exclusiveMinimum": 0},
        "labels": {"type": "array", "items": {"type": "array", "items": _SPEAKER_ID}},
        "turns": {"type": "array", "items": {
            "type": "object",
            "properties": {"speaker": _SPEAKER_ID, "start": _SECONDS, "end": _SECONDS},
            "required": ["speaker", "start", "end"],
            "additionalProperties": False,
        }},
    }, ["start", "end", "frame", "labels", "turns"]),
    "speaker": _message("server", "speaker", {
        "id": _SPEAKER_ID,
        "name": {"type": ["string", "null"]},
        "talk_time": _SECONDS,
        "turns": _COUNT,
        "updates": _COUNT,
        "similarity": {"type": ["number", "null"]},
        "first_seen": _SECONDS,
        "last_seen": _SECONDS,
        "embedding": {"anyOf": [{"type": "array", "items": _NUMBER}, {"type": "null"}]},
        "snapshot": _SNAPSHOT,
    }, ["id", "name", "talk_time", "turns", "updates", "similarity", "first_seen", "last_seen"]),
    "classification": _message("server", "classification", {
        "start": _SECONDS,
        "end": _SECONDS,
        "speaker": {"anyOf": [_SPEAKER_ID, {"type": "null"}]},
        "scope": {"enum": ["turn", "window"]},
        "labels": {"type": "array", "items": {
            "type": "object",
            "properties": {"label": {"type": "string"}, "score": {"type": "number", "minimum": 0, "maximum": 1}},
            "required": ["label", "score"],
            "additionalProperties": False,
        }, "minItems": 1},
        "snapshot": _SNAPSHOT,
    }, ["start", "end", "speaker", "scope", "labels"]),
    "level": _message("server", "level", {
        "t": _SECONDS,
        "rms_db": _NUMBER,
        "peak_db": _NUMBER,
    }, ["t", "rms_db", "peak_db"]),
    "stats": _message("server", "stats", {
        "t": _SECONDS,
        "windows_analysed": _COUNT,
        "windows_skipped": _COUNT,
        "rtf": {"type": ["number", "null"]},
        "lag": {"type": ["number", "null"]},
        "input_overflows": _COUNT,
        "samples_sanitised": _COUNT,
        "ring_overwrites": _COUNT,
        "windows_silent": _COUNT,
        "windows_widened": _COUNT,
        "hop": _SECONDS,
        "clients": _COUNT,
        "engine": _ENGINE_STATE,
    }, ["t", "windows_analysed", "windows_skipped", "rtf", "lag", "input_overflows",
        "samples_sanitised", "ring_overwrites", "windows_silent", "windows_widened", "hop", "clients", "engine"]),
    "error": _message("server", "error", {
        "code": {"type": "string", "minLength": 1},
        "message": {"type": "string"},
        "fatal": {"type": "boolean"},
        "snapshot": _SNAPSHOT,
    }, ["code", "message", "fatal"]),
    "end": _message("server", "end", {
        "t": _SECONDS,
        "snapshot": _SNAPSHOT,
    }, ["t"]),
    "dropped": _message("server", "dropped", {
        "count": {"type": "integer", "minimum": 1},
        "types": {
            "type": "object",
            "propertyNames": {"enum": list(DROPPABLE_TYPES)},
            "additionalProperties": {"type": "integer", "minimum": 1},
        },
    }, ["count", "types"]),
    "subscribed": _message("server", "subscribed", {
        "topics": _TOPIC_LIST,
        "embeddings": {"type": "boolean"},
        "session": _SESSION_ID,
    }, ["topics", "embeddings"]),
    "started": _message("server", "started", {
        "session": _SESSION_ID,
        "sample_rate": {"type": "integer", "minimum": 1},
        "channels": {"type": "integer", "minimum": 1},
        "format": {"enum": list(PCM_FORMAT_NAMES)},
        "tasks": {"type": "array", "items": {"enum": list(TASKS)}, "uniqueItems": True},
        "window": {"type": "number", "exclusiveMinimum": 0},
        "hop": {"type": "number", "exclusiveMinimum": 0},
        "live": {"type": "boolean"},
        "buffer_seconds": {"type": "number", "exclusiveMinimum": 0},
        "idle_timeout": {"type": "number", "exclusiveMinimum": 0},
    }, ["session", "sample_rate", "channels", "format", "tasks", "window", "hop", "live",
        "buffer_seconds", "idle_timeout"]),
    "pong": _message("server", "pong", {
        "id": {"type": ["string", "integer"]},
    }, []),
}
"""Server -> client message type -> JSON Schema."""

CLIENT_SCHEMAS: dict[str, dict[str, Any]] = {
    "subscribe": _message("client", "subscribe", {
        "topics": _TOPIC_LIST,
        "embeddings": {"type": "boolean"},
        "snapshot": {"type": "boolean"},
        "session": _SESSION_ID,
    }, []),
    "start": _message("client", "start", {
        "sample_rate": {"type": "integer", "minimum": 8000, "maximum": 192000},
        "channels": {"type": "integer", "minimum": 1, "maximum": 8},
        "format": {"enum": list(PCM_FORMAT_NAMES)},
        "tasks": {"type": "array", "items": {"enum": list(TASKS)}, "uniqueItems": True, "minItems": 1},
        "speaker_threshold": {"type": "number", "minimum": -1, "maximum": 1},
        "live": {"type": "boolean"},
    }, ["sample_rate"]),
    "stop": _message("client", "stop", {}, []),
    "rename": _message("client", "rename", {
        "speaker": {"type": "string", "minLength": 1, "maxLength": 32},
        "name": {"type": ["string", "null"], "maxLength": 64},
    }, ["speaker", "name"]),
    "ping": _message("client", "ping", {
        "id": {"anyOf": [{"type": "string", "maxLength": 64}, {"type": "integer"}]},
    }, []),
}
"""Client -> server message type -> JSON Schema."""


def _jsonl_line(schema: dict[str, Any]) -> dict[str, Any]:
    """A server message schema as a JSON Lines file line: no websocket envelope (``seq``,
    ``wall``), no fields the server adds (``clients``, ``engine``, ``snapshot``)."""
    drop = {"seq", "wall", "clients", "engine", "snapshot"}
    out = dict(schema)
    out["$id"] = schema["$id"].replace(":protocol:v1:server:", ":jsonl:v1:")
    out["properties"] = {k: v for k, v in schema["properties"].items() if k not in drop}
    out["required"] = [k for k in schema["required"] if k not in drop]
    return out


JSONL_SCHEMAS: dict[str, dict[str, Any]] = {
    "header": {
        "$schema": _DRAFT,
        "$id": "urn:wavlm-live:jsonl:v1:header",
        "title": "header",
        "type": "object",
        "properties": {
            "type": {"const": "header"},
            "v": {"const": 1},
            **{k: PROTOCOL_SCHEMAS["hello"]["properties"][k] for k in (
                "version", "sample_rate", "frame", "tasks", "models", "window", "hop", "demo", "captions_decoder")},
            "source": {"type": "string"},
            "started": {"type": "number"},
        },
        "required": ["type", "v", "version", "sample_rate", "frame", "tasks", "models", "window", "hop", "demo",
                     "source", "started"],
        "additionalProperties": True,
    },
    **{kind: _jsonl_line(PROTOCOL_SCHEMAS[kind]) for kind in TOPICS},
}
"""Lines of a JSON Lines event file (``transcribe``'s STEM.jsonl, ``--jsonl``): one
``header`` first, then one engine event per line (the message schemas without the
websocket envelope). docs/protocol.md, "JSON Lines files"."""
