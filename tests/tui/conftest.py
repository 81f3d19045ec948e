"""Fixtures for the dashboard tests: the real websocket Publisher on its own event loop
in a thread, fed a recorded event stream through a real EventBus, and a fake Control."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from wavlm_live.server import Publisher, ServerConfig

from wavlm_live.engine.bus import EventBus
from wavlm_live.events import CaptionEvent, Event, SpeakerEvent, event_from_dict

DATA = Path(__file__).resolve().parent / "data"
RECORDING = DATA / "conversation.jsonl"
"""A two-speaker conversation with overlap, made by ``make_recording.py`` (readable text)."""
ENGINE_RECORDING = DATA / "demo-engine.jsonl"
"""What the real pipeline published for the bundled demo conversation with the bundled
random-weight demo checkpoints (``wavlm-live transcribe
wavlm_live/data/demo/conversation.flac --demo --formats jsonl``): meaningless text, but
the engine's own event stream (10 Hz levels, 1 s hop, words of several speakers in one
segment, ``[UNK]`` tokens)."""

HELLO: dict[str, Any] = {
    "version": "0.1.0",
    "sample_rate": 16000,
    "frame": 0.02,
    "tasks": ["captions", "diarization", "embeddings"],
    "models": {
        "captions": "patrickvonplaten/wavlm-libri-clean-100h-base-plus",
        "diarization": "microsoft/wavlm-base-plus-sd",
        "embeddings": "microsoft/wavlm-base-plus-sv",
    },
    "window": 4.0,
    "hop": 0.5,
    "demo": False,
}


def load_recording(path: Path = RECORDING) -> list[Event]:
    """Events of a JSONL event log, in order. Speaker events are rebuilt by hand:
    ``event_from_dict`` reads their integer ``turns`` as a list of turns."""
    events: list[Event] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        data = json.loads(line)
        if data["type"] == "speaker":
            names = {f.name for f in dataclasses.fields(SpeakerEvent)}
            events.append(SpeakerEvent(**{k: v for k, v in data.items() if k in names}))
        else:
            events.append(event_from_dict(data))
    return events


def shift_events(events: list[Event], seconds: float, segments: int) -> list[Event]:
    """The events moved ``seconds`` later in stream time and their caption segment
    numbers moved up by ``segments`` (to chain copies of a recording)."""
    out: list[Event] = []
    for e in events:
        changes: dict[str, Any] = {}
        for name in ("t", "start", "end", "first_seen", "last_seen"):
            if hasattr(e, name):
                changes[name] = round(getattr(e, name) + seconds, 2)
        if isinstance(e, CaptionEvent):
            changes["segment"] = e.segment + segments
            changes["words"] = tuple(dataclasses.replace(w, start=round(w.start + seconds, 2),
                                                         end=round(w.end + seconds, 2)) for w in e.words)
        if hasattr(e, "turns") and not isinstance(e, SpeakerEvent):
            changes["turns"] = tuple(dataclasses.replace(t, start=round(t.start + seconds, 2),
                                                         end=round(t.end + seconds, 2)) for t in e.turns)
        out.append(dataclasses.replace(e, **changes))
    return out


class FakeControl:
    """The engine's rename hook: remembers the latest SpeakerEvent per id (from the
    bus) and, on rename, publishes it again with the new name."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.renames: list[tuple[str, str | None]] = []
        self._speakers: dict[str, SpeakerEvent] = {}
        self._lock = threading.Lock()
        bus.subscribe(self._seen)

    def _seen(self, event: Event) -> None:
        if isinstance(event, SpeakerEvent):
            with self._lock:
                self._speakers[event.id] = event

    def rename_speaker(self, speaker_id: str, name: str | None) -> None:
        with self._lock:
            latest = self._speakers[speaker_id]  # KeyError for unknown ids, as documented
            self.renames.append((speaker_id, name))
        self.bus.publish(dataclasses.replace(latest, name=name))


class LiveServer:
    """A real :class:`Publisher` on an event loop of its own thread, on 127.0.0.1.

    ``start()`` binds (an ephemeral port first, the same port on later starts),
    ``stop()`` closes it; ``feed()`` publishes events on the bus from another thread,
    like the engine does.
    """

    def __init__(self, hello: dict[str, Any], token: str | None = None, **config: Any) -> None:
        self.hello = hello
        self.token = token
        self.config = config  # more ServerConfig fields
        self.bus = EventBus()
        self.control = FakeControl(self.bus)
        self.port = 0
        self.publisher: Publisher | None = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> int:
        config = ServerConfig(host="127.0.0.1", port=self.port, token=self.token, **self.config)
        self.publisher = Publisher(self.bus, self.hello, self.control, config)
        self.port = self.call(self.publisher.start())
        return self.port

    def stop(self) -> None:
        if self.publisher is not None:
            self.call(self.publisher.stop())
            self.publisher = None

    def clients(self) -> int:
        async def count() -> int:
            return self.publisher.clients if self.publisher is not None else 0

        return self.call(count())

    def feed(self, events: Iterable[Event], rate: float | None = None) -> threading.Thread:
        """Publish ``events`` from a new thread, ``rate`` per second (None: at once)."""

        def run() -> None:
            t0 = time.perf_counter()
            for i, event in enumerate(events):
                if rate is not None:
                    delay = t0 + i / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                self.bus.publish(event)

        thread = threading.Thread(target=run, name="test-feeder", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@pytest.fixture
def recording() -> list[Event]:
    """The recorded conversation (``data/conversation.jsonl``), in publish order."""
    return load_recording()


@pytest.fixture
def engine_recording() -> list[Event]:
    """The real engine's recording (``data/demo-engine.jsonl``), in publish order."""
    return load_recording(ENGINE_RECORDING)


@pytest.fixture
def hello() -> dict[str, Any]:
    """The stream description the test servers send (a copy)."""
    return json.loads(json.dumps(HELLO))


@pytest.fixture
def shifted() -> Callable[[list[Event], float, int], list[Event]]:
    """:func:`shift_events`."""
    return shift_events


@pytest.fixture
def make_server() -> Iterable[Callable[..., LiveServer]]:
    """``make_server(hello=HELLO, token=None, **ServerConfig fields)`` -> a started
    :class:`LiveServer`."""
    servers: list[LiveServer] = []

    def make(hello: dict[str, Any] = HELLO, token: str | None = None, **config: Any) -> LiveServer:
        server = LiveServer(hello, token, **config)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.close()
