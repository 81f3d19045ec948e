"""The per-client queue: drop order, dropped notices and seq accounting (no network)."""

from __future__ import annotations

import json
import random

from wavlm_live.events import CaptionEvent, LevelEvent, SpeakerEvent, StatsEvent
from wavlm_live.server.protocol import Outgoing
from wavlm_live.server.publisher import _Client


class FakeConnection:
    remote_address = ("127.0.0.1", 1)


def out(event) -> Outgoing:
    return Outgoing.from_event(event, 1.0)


FINAL = out(CaptionEvent(True, 0, 0.0, 1.0, "F"))
PARTIAL = out(CaptionEvent(False, 1, 1.0, 1.5, "P"))
LEVEL = out(LevelEvent(1.0, -20.0, -6.0))
STATS = out(StatsEvent(1.0, 1, 0, 0.5, 0.1))
SPEAKER = out(SpeakerEvent("S1", None, 1.0, 1, 1, None, 0.0, 1.0, (1.0, 0.0)))


def drain(client: _Client) -> list[dict]:
    msgs = [json.loads(item.encode()) for item in client.queue]
    client.queue.clear()
    client.notice = None
    return msgs


def test_full_queue_drops_oldest_droppable_first() -> None:
    client = _Client(FakeConnection())
    for item in (LEVEL, FINAL, PARTIAL, FINAL, STATS, FINAL):
        assert client.offer(item, queue_size=6)
    assert client.offer(SPEAKER, queue_size=6)  # drops the level (seq 0)
    assert client.offer(FINAL, queue_size=6)  # drops the partial (seq 2)
    msgs = drain(client)
    assert [(m["type"], m["seq"]) for m in msgs] == [
        ("caption", 1), ("caption", 3), ("stats", 4), ("caption", 5),
        ("dropped", 6), ("speaker", 7), ("caption", 8)]
    assert msgs[4]["count"] == 2 and msgs[4]["types"] == {"level": 1, "caption": 1}
    assert "embedding" not in msgs[5]


def test_queue_full_of_finals_drops_new_droppables_and_refuses_finals() -> None:
    client = _Client(FakeConnection())
    for _ in range(16):
        assert client.offer(FINAL, queue_size=16)
    for _ in range(5):
        assert client.offer(LEVEL, queue_size=16)
    assert not client.offer(FINAL, queue_size=16)
    msgs = drain(client)
    seqs = [m["seq"] for m in msgs]
    assert msgs[-1]["type"] == "dropped" and msgs[-1]["count"] == 5
    assert seqs[:16] == list(range(16)) and seqs[16] == 16
    # the dropped levels took seqs 17..21: the next message shows the gap
    client.embeddings = True
    assert client.offer(SPEAKER, queue_size=16)
    nxt = drain(client)[0]
    assert nxt["seq"] == 22 and nxt["embedding"] == [1.0, 0.0]


def test_dropped_counts_always_equal_seq_gaps() -> None:
    rng = random.Random(5)
    client = _Client(FakeConnection())
    kinds = [FINAL, PARTIAL, LEVEL, STATS, SPEAKER]
    sent: list[dict] = []
    for _ in range(20_000):
        if rng.random() < 0.55:
            if not client.offer(rng.choice(kinds[1:4] * 3 + kinds), queue_size=32):
                break
            assert len(client.queue) <= 32 + 1  # plus at most one dropped notice
        elif client.queue:  # the writer sends one message
            item = client.queue.popleft()
            if item is client.notice:
                client.notice = None
            sent.append(json.loads(item.encode()))
    sent += drain(client)
    seqs = [m["seq"] for m in sent]
    assert seqs == sorted(set(seqs))
    gaps = seqs[-1] + 1 - len(seqs)
    notices = [m for m in sent if m["type"] == "dropped"]
    assert gaps > 100 and len(notices) > 10
    assert sum(n["count"] for n in notices) == gaps
    assert all(set(n["types"]) <= {"caption", "level", "stats"} for n in notices)
    assert len(client.queue) == 0
