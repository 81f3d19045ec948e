"""docs/protocol.md, the schema dicts, events.py and the client-message parser agree."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from wavlm_live.events import EVENT_TYPES
from wavlm_live.server import CLIENT_SCHEMAS, JSONL_SCHEMAS, PROTOCOL_SCHEMAS, ServerConfig
from wavlm_live.server.protocol import BadMessage, Ping, Rename, Subscribe, parse_client_message

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
ENVELOPE = {"type", "v", "seq", "wall"}


def _json_blocks() -> list[dict]:
    text = DOC.read_text(encoding="utf-8")
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", text, re.S)]


def test_doc_schemas_equal_the_code_schemas() -> None:
    schemas = [b for b in _json_blocks() if "$schema" in b]
    server = {s["title"]: s for s in schemas if ":server:" in s["$id"]}
    client = {s["title"]: s for s in schemas if ":client:" in s["$id"]}
    jsonl = {s["title"]: s for s in schemas if ":jsonl:" in s["$id"]}
    assert len(server) + len(client) + len(jsonl) == len(schemas), "a schema in the doc is listed twice"
    assert server == PROTOCOL_SCHEMAS
    assert client == CLIENT_SCHEMAS
    assert jsonl == {"header": JSONL_SCHEMAS["header"]}  # the event lines are derived from the messages
    for schema in schemas:
        Draft202012Validator.check_schema(schema)


def test_doc_examples_are_valid_messages() -> None:
    examples = [b for b in _json_blocks() if "$schema" not in b]
    seen = set()
    for example in examples:
        if example["type"] == "header":
            Draft202012Validator(JSONL_SCHEMAS["header"]).validate(example)
            continue
        schema = PROTOCOL_SCHEMAS.get(example["type"]) or CLIENT_SCHEMAS[example["type"]]
        Draft202012Validator(schema).validate(example)
        seen.add(example["type"])
    assert seen == set(PROTOCOL_SCHEMAS) | set(CLIENT_SCHEMAS), "every message type has an example"


@pytest.mark.parametrize("kind", sorted(EVENT_TYPES))
def test_event_schemas_match_the_event_dataclasses(kind: str) -> None:
    schema = PROTOCOL_SCHEMAS[kind]
    fields = {f.name for f in dataclasses.fields(EVENT_TYPES[kind])}
    props = set(schema["properties"])
    extras = {"stats": {"clients", "engine"}}.get(kind, set())
    assert props - {"snapshot"} == fields | ENVELOPE | extras
    assert ("snapshot" in props) == (kind in ("caption", "speaker", "classification", "error", "end"))
    # to_dict always emits every field; only the speaker embedding may be withheld
    withheld = {"embedding"} if kind == "speaker" else set()
    assert set(schema["required"]) == (fields | ENVELOPE | extras) - withheld
    assert schema["additionalProperties"] is False


CLIENT_CASES = [
    '{"type": "subscribe"}',
    '{"type": "subscribe", "topics": []}',
    '{"type": "subscribe", "topics": ["caption", "end"], "embeddings": true, "snapshot": false}',
    '{"type": "subscribe", "topics": ["caption", "caption"]}',
    '{"type": "subscribe", "topics": ["captions"]}',
    '{"type": "subscribe", "topics": "caption"}',
    '{"type": "subscribe", "topics": null}',
    '{"type": "subscribe", "embeddings": 1}',
    '{"type": "subscribe", "snapshot": "yes"}',
    '{"type": "subscribe", "topic": ["caption"]}',
    '{"type": "rename", "speaker": "S1", "name": "Alice"}',
    '{"type": "rename", "speaker": "S1", "name": null}',
    '{"type": "rename", "speaker": "S1", "name": ""}',
    '{"type": "rename", "speaker": "S1"}',
    '{"type": "rename", "name": "Bob"}',
    '{"type": "rename", "speaker": "", "name": "Bob"}',
    '{"type": "rename", "speaker": 1, "name": "Bob"}',
    '{"type": "rename", "speaker": "S1", "name": 5}',
    '{"type": "rename", "speaker": "S1", "name": "%s"}' % ("x" * 65),
    '{"type": "rename", "speaker": "S1", "name": "%s"}' % ("x" * 64),
    '{"type": "ping"}',
    '{"type": "ping", "id": 7}',
    '{"type": "ping", "id": "abc"}',
    '{"type": "ping", "id": true}',
    '{"type": "ping", "id": 1.5}',
    '{"type": "ping", "id": null}',
    '{"type": "ping", "id": "%s"}' % ("x" * 65),
    '{"type": "hello"}',
    '{"type": 3}',
    '{}',
    '[]',
    '"ping"',
    'not json',
    '[' * 5000,
]


@pytest.mark.parametrize("raw", CLIENT_CASES)
def test_client_parser_agrees_with_client_schemas(raw: str) -> None:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        schema_ok = False
    else:
        schema = CLIENT_SCHEMAS.get(data.get("type")) if isinstance(data, dict) else None
        schema_ok = schema is not None and Draft202012Validator(schema).is_valid(data)
    try:
        parsed = parse_client_message(raw)
    except BadMessage:
        parsed = None
    assert (parsed is not None) == schema_ok, raw


def test_client_parser_results() -> None:
    assert parse_client_message('{"type": "subscribe", "topics": ["end", "caption"]}') == Subscribe(
        frozenset({"end", "caption"}), None, False)
    assert parse_client_message('{"type": "subscribe", "embeddings": false}') == Subscribe(None, False, False)
    assert parse_client_message('{"type": "rename", "speaker": "S2", "name": "  Bob "}') == Rename("S2", "Bob")
    assert parse_client_message('{"type": "rename", "speaker": "S2", "name": "   "}') == Rename("S2", None)
    assert parse_client_message('{"type": "ping", "id": "x"}') == Ping("x")
    with pytest.raises(BadMessage, match="binary"):
        parse_client_message(b'{"type": "ping"}')


@pytest.mark.parametrize("kwargs, error", [
    ({"port": 70000}, ValueError),
    ({"port": "8765"}, TypeError),
    ({"max_clients": 0}, ValueError),
    ({"stall_timeout_s": 31.0}, ValueError),
    ({"send_window": 2}, ValueError),
    ({"max_clients_per_address": 0}, ValueError),
    ({"message_rate": 0}, ValueError),
    ({"message_rate": float("inf")}, ValueError),
    ({"rename_burst": 0}, ValueError),
    ({"client_idle_s": float("nan")}, ValueError),
    ({"control_token": ""}, ValueError),
    ({"control_token": "same", "token": "same"}, ValueError),
    ({"stall_timeout_s": 0}, ValueError),
    ({"token": ""}, ValueError),
    ({"token": "has space"}, ValueError),
    ({"allowed_origins": "http://localhost"}, TypeError),
    ({"allowed_origins": ("",)}, ValueError),
    ({"recent_captions": 200, "queue_size": 256}, ValueError),
    ({"max_message_bytes": True}, TypeError),
])
def test_config_rejects_bad_values(kwargs: dict, error: type) -> None:
    with pytest.raises(error):
        ServerConfig(**kwargs)
