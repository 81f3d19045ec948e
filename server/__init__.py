"""Websocket publisher of wavlm-live events (installed as ``wavlm_live.server``).

``Publisher`` serves the events of an ``EventBus`` to any number of websocket clients;
``run_server`` runs one until SIGINT/SIGTERM; ``listen`` is the example subscriber. The
protocol, with a JSON Schema per message, is documented in ``docs/protocol.md`` and kept
in ``PROTOCOL_SCHEMAS`` (server -> client) and ``CLIENT_SCHEMAS`` (client -> server).
"""

from .client import listen
from .config import ServerConfig
from .publisher import Control, Publisher
from .run import run_server
from .schemas import CLIENT_SCHEMAS, DROPPABLE_TYPES, JSONL_SCHEMAS, PROTOCOL_SCHEMAS, TOPICS

__all__ = [
    "CLIENT_SCHEMAS",
    "DROPPABLE_TYPES",
    "JSONL_SCHEMAS",
    "PROTOCOL_SCHEMAS",
    "TOPICS",
    "Control",
    "Publisher",
    "ServerConfig",
    "listen",
    "run_server",
]
