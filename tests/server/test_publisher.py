"""Publisher against real websocket clients: snapshot, topics, fan-out, client messages."""

from __future__ import annotations

import asyncio
import threading

import pytest
from websockets.exceptions import ConnectionClosedError
from wavlm_live.server import TOPICS

from wavlm_live.events import (
    CaptionEvent,
    DiarizationEvent,
    EndEvent,
    ErrorEvent,
    LevelEvent,
    SpeakerEvent,
    StatsEvent,
    Turn,
    Word,
)


def final(i: int, text: str | None = None, speaker: str | None = "S1") -> CaptionEvent:
    text = text or f"SEGMENT {i}"
    words = tuple(Word(w, i + 0.1 * k, i + 0.1 * k + 0.08, speaker) for k, w in enumerate(text.split()))
    return CaptionEvent(True, i, float(i), i + 0.9, text, words, speaker)


def partial(i: int, text: str = "PARTIAL") -> CaptionEvent:
    return CaptionEvent(False, i, float(i), i + 0.5, text, (Word(text, float(i), i + 0.5, None),), None)


def speaker(sid: str, name: str | None = None, talk: float = 1.0,
            embedding: tuple[float, ...] | None = None) -> SpeakerEvent:
    return SpeakerEvent(sid, name, talk, 1, 2, 0.9, 0.5, 0.5 + talk, embedding)


def level(t: float) -> LevelEvent:
    return LevelEvent(t, -20.0, -6.0)


def stats(t: float) -> StatsEvent:
    return StatsEvent(t, 3, 0, 0.25, 0.1)


def diar(t: float) -> DiarizationEvent:
    return DiarizationEvent(t, t + 0.06, 0.02, (("S1",), ("S1", "S2"), ()), (Turn("S1", 0.0, t),))


async def test_late_joiner_gets_hello_and_snapshot(tools) -> None:
    async with tools.running_publisher(recent_captions=50) as (pub, bus):
        events = [speaker("S1", talk=1.0), speaker("S2", talk=2.0), speaker("S1", "Ann", talk=3.0)]
        events += [final(i) for i in range(60)]
        events += [partial(60, "TAIL"), level(60.0), stats(60.0), diar(0.0)]
        await tools.join(tools.feed(bus, events))
        sub = await tools.Sub.connect(pub.url)
        hello = await sub.recv()
        assert hello["type"] == "hello" and hello["seq"] == 0
        assert hello["sample_rate"] == 16000 and hello["demo"] is True
        assert hello["tasks"] == tools.HELLO["tasks"] and hello["models"] == tools.HELLO["models"]
        snap = [await sub.recv() for _ in range(2 + 50 + 1)]
        assert all(m["snapshot"] is True for m in snap)
        assert [(m["type"], m["id"], m["name"], m["talk_time"]) for m in snap[:2]] == [
            ("speaker", "S1", "Ann", 3.0), ("speaker", "S2", None, 2.0)]
        assert all("embedding" not in m for m in snap[:2])
        assert [m["segment"] for m in snap[2:52]] == list(range(10, 60))
        assert all(m["type"] == "caption" and m["final"] for m in snap[2:52])
        assert snap[2]["words"][0] == {"text": "SEGMENT", "start": 10.0, "end": 10.08, "speaker": "S1"}
        assert (snap[52]["final"], snap[52]["text"], snap[52]["segment"]) == (False, "TAIL", 60)
        # then live messages, without the snapshot flag
        tools.feed(bus, [final(60), EndEvent(61.0)])
        live = await sub.recv_until(lambda m: m["type"] == "end")
        assert [(m["type"], "snapshot" in m) for m in live] == [("caption", False), ("end", False)]
        await sub.close()

        # a partial older than the last final is not state; the end is
        sub = await tools.Sub.connect(pub.url)
        msgs = await sub.recv_until(lambda m: m["type"] == "end")
        assert [m["type"] for m in msgs] == ["hello", "speaker", "speaker"] + ["caption"] * 50 + ["end"]
        assert msgs[-2]["segment"] == 60 and msgs[-1]["snapshot"] is True
        await sub.close()


async def test_topic_filtering(tools) -> None:
    async with tools.running_publisher() as (pub, bus):
        only_captions = await tools.Sub.connect(pub.url)
        everything = await tools.Sub.connect(pub.url)
        await only_captions.recv()
        await everything.recv()
        ack = await only_captions.subscribe(topics=["caption"])
        assert ack["topics"] == ["caption"] and ack["embeddings"] is False
        mix = []
        for i in range(20):
            mix += [level(i), stats(i), diar(i), speaker("S1", talk=i + 1.0), partial(i), final(i),
                    ErrorEvent("audio", "overflow")]
        tools.feed(bus, mix + [final(20, "LAST"), EndEvent(21.0)])
        got = await only_captions.recv_until(lambda m: m.get("text") == "LAST")
        assert {m["type"] for m in got} == {"caption"}
        assert [m["segment"] for m in got if m["final"]] == list(range(21))
        assert len(got) == 41
        every = await everything.recv_until(lambda m: m["type"] == "end")
        counts = {t: sum(m["type"] == t for m in every) for t in
                  ("level", "stats", "diarization", "speaker", "caption", "error", "end")}
        assert counts == {"level": 20, "stats": 20, "diarization": 20, "speaker": 20, "caption": 41,
                          "error": 20, "end": 1}
        assert all(m["clients"] == 2 for m in every if m["type"] == "stats")

        # topics may change at any time; the ack separates old and new subscriptions
        ack = await only_captions.subscribe(topics=["level", "end"])
        assert ack["topics"] == ["level", "end"]
        tools.feed(bus, [final(21), level(22.0), speaker("S2"), EndEvent(23.0)])
        got = await only_captions.recv_until(lambda m: m["type"] == "end")
        assert [m["type"] for m in got] == ["level", "end"]
        ack = await only_captions.subscribe(topics=[])
        tools.feed(bus, [final(22), level(23.0)])
        await only_captions.send({"type": "ping", "id": "after"})
        pong = await only_captions.recv()
        assert pong["type"] == "pong" and pong["id"] == "after"
        await everything.recv_until(lambda m: m["type"] == "level")
        await only_captions.close()
        await everything.close()


async def test_embeddings_only_for_clients_that_ask(tools) -> None:
    vector = (0.6, 0.8, 0.0)
    async with tools.running_publisher() as (pub, bus):
        await tools.join(tools.feed(bus, [speaker("S1", embedding=vector)]))
        plain = await tools.Sub.connect(pub.url)
        wants = await tools.Sub.connect(pub.url)
        for sub in (plain, wants):
            snap = await sub.recv_until(lambda m: m["type"] == "speaker")
            assert "embedding" not in snap[-1]
        ack = await wants.subscribe(embeddings=True, snapshot=True)
        assert ack["embeddings"] is True and ack["topics"] == list(TOPICS)
        again = await wants.recv()
        assert again["type"] == "speaker" and again["snapshot"] and again["embedding"] == list(vector)
        tools.feed(bus, [speaker("S1", "Zoe", embedding=vector), speaker("S2", embedding=None)])
        a = [await wants.recv(), await wants.recv()]
        b = [await plain.recv(), await plain.recv()]
        assert [m.get("embedding", "absent") for m in a] == [list(vector), None]
        assert [m.get("embedding", "absent") for m in b] == ["absent", "absent"]
        assert [m["name"] for m in b] == ["Zoe", None]
        await plain.close()
        await wants.close()


async def test_100_subscribers_each_receive_every_final_in_order(tools) -> None:
    n_clients, n_finals = 100, 100
    async with tools.running_publisher(max_clients=128, max_clients_per_address=128) as (pub, bus):
        subs = await asyncio.gather(*(tools.Sub.connect(pub.url, strict=False) for _ in range(n_clients)))
        for sub in subs:
            assert (await sub.recv())["type"] == "hello"
        assert pub.clients == n_clients
        events = []
        for i in range(n_finals):
            events += [partial(i), level(float(i)), final(i, f"WORD{i} NUMBER {i}")]
        feeder = tools.feed(bus, events + [EndEvent(float(n_finals))], interval=0.0005)

        async def finals(sub) -> list[tuple[int, str]]:
            msgs = await sub.recv_until(lambda m: m["type"] == "end", timeout=60)
            return [(m["segment"], m["text"]) for m in msgs if m["type"] == "caption" and m["final"]]

        results = await asyncio.gather(*(finals(sub) for sub in subs))
        await tools.join(feeder)
        expected = [(i, f"WORD{i} NUMBER {i}") for i in range(n_finals)]
        assert all(r == expected for r in results)
        await asyncio.gather(*(sub.close() for sub in subs))


class FakeControl:
    """Engine stand-in: keeps names and publishes the updated SpeakerEvent on the bus."""

    def __init__(self, bus) -> None:
        self.bus = bus
        self.names: dict[str, str | None] = {"S1": None, "S2": None}
        self.calls: list[tuple[str, str | None, str]] = []

    def rename_speaker(self, speaker_id: str, name: str | None) -> None:
        self.calls.append((speaker_id, name, threading.current_thread().name))
        if speaker_id not in self.names:
            raise KeyError(speaker_id)
        if name is not None and name.lower() == "forbidden":
            raise ValueError("the name 'forbidden' is not allowed")
        if name == "crash":
            raise RuntimeError("engine broke")
        self.names[speaker_id] = name
        self.bus.publish(speaker(speaker_id, name))


async def test_rename_round_trip_through_control(tools) -> None:
    from wavlm_live.engine.bus import EventBus
    from wavlm_live.server import Publisher, ServerConfig

    bus = EventBus()
    control = FakeControl(bus)
    async with Publisher(bus, tools.HELLO, control, ServerConfig(port=0)) as pub:
        asker = await tools.Sub.connect(pub.url)
        other = await tools.Sub.connect(pub.url)
        await asker.recv()
        await other.recv()
        await asker.send({"type": "rename", "speaker": "S1", "name": " Alice "})
        for sub in (asker, other):
            msg = await sub.recv()
            assert (msg["type"], msg["id"], msg["name"]) == ("speaker", "S1", "Alice")
        await asker.send({"type": "rename", "speaker": "S1", "name": ""})
        assert (await other.recv())["name"] is None
        assert (await asker.recv())["name"] is None
        assert control.calls[0][:2] == ("S1", "Alice") and control.calls[1][:2] == ("S1", None)
        assert all(c[2] != threading.main_thread().name for c in control.calls), "control ran on the loop"

        for request, code in [({"speaker": "S9", "name": "X"}, "unknown_speaker"),
                              ({"speaker": "S2", "name": "Forbidden"}, "bad_name"),
                              ({"speaker": "S2", "name": "crash"}, "rename_failed"),
                              ({"speaker": "S2", "name": 3}, "bad_message")]:
            await asker.send({"type": "rename", **request})
            err = await asker.recv()
            assert (err["type"], err["code"], err["fatal"]) == ("error", code, False)
        assert control.calls[2][0] == "S9"
        # the other client saw none of the failures; both still work
        await other.send({"type": "ping"})
        assert (await other.recv())["type"] == "pong"
        await asker.close()
        await other.close()

    async with tools.running_publisher(control=None) as (pub, bus):
        sub = await tools.Sub.connect(pub.url)
        await sub.recv()
        await sub.send({"type": "rename", "speaker": "S1", "name": "Alice"})
        assert (await sub.recv())["code"] == "unsupported"
        await sub.close()


BAD_MESSAGES = [
    "not json",
    "[1, 2]",
    '"subscribe"',
    "{}",
    '{"type": "nope"}',
    '{"type": "subscribe", "topics": "caption"}',
    '{"type": "subscribe", "topics": ["bogus"]}',
    '{"type": "subscribe", "embeddings": "yes"}',
    '{"type": "subscribe", "extra": 1}',
    '{"type": "rename", "speaker": 1, "name": "x"}',
    '{"type": "rename", "speaker": "S1"}',
    '{"type": "ping", "id": true}',
    "[" * 3000,
    b"\x00\x01binary",
]


async def test_bad_messages_get_an_error_and_the_connection_stays_open(tools) -> None:
    async with tools.running_publisher() as (pub, bus):
        sub = await tools.Sub.connect(pub.url)
        await sub.recv()
        for raw in BAD_MESSAGES:
            await sub.send(raw)
            err = await sub.recv()
            assert (err["type"], err["code"], err["fatal"]) == ("error", "bad_message", False), raw
            assert err["message"]
        await sub.send({"type": "ping", "id": 5})
        assert (await sub.recv())["id"] == 5
        tools.feed(bus, [final(0)])
        assert (await sub.recv())["text"] == "SEGMENT 0"
        assert pub.clients == 1
        await sub.close()


async def test_oversized_message_closes_with_1009(tools) -> None:
    async with tools.running_publisher(max_message_bytes=4096) as (pub, bus):
        big = await tools.Sub.connect(pub.url)
        fine = await tools.Sub.connect(pub.url)
        assert (await big.recv())["max_message_bytes"] == 4096
        await fine.recv()
        await big.send('{"type": "ping", "id": "%s"}' % ("x" * 5000))
        with pytest.raises(ConnectionClosedError) as info:
            await big.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        # a message of exactly the limit is fine (and answered: the id is too long)
        await fine.send('{"type": "ping", "id": "%s"}' % ("x" * (4096 - 26)))
        assert (await fine.recv())["code"] == "bad_message"
        tools.feed(bus, [final(0)])
        assert (await fine.recv())["type"] == "caption"
        await fine.close()


async def test_stop_sends_what_was_published_then_closes_with_1001(tools) -> None:
    from websockets.exceptions import ConnectionClosedOK

    async with tools.running_publisher() as (pub, bus):
        subs = [await tools.Sub.connect(pub.url) for _ in range(3)]
        for sub in subs:
            await sub.recv()
        for i in range(20):  # published from this thread: still in the inbox when stop() starts
            bus.publish(final(i))
        await pub.stop()
        assert pub.clients == 0
        for sub in subs:
            got = []
            with pytest.raises(ConnectionClosedOK) as info:
                while True:
                    got.append(await sub.recv())
            assert info.value.rcvd.code == 1001
            assert [m["segment"] for m in got] == list(range(20))
        with pytest.raises(OSError):
            await tools.Sub.connect(pub.url)


@pytest.mark.parametrize("change", [
    {"sample_rate": 16000.0},
    {"frame": 0},
    {"tasks": ["captions", "asr"]},
    {"models": {"captions": None}},
    {"demo": "no"},
    {"window": float("nan")},
])
def test_publisher_rejects_a_bad_hello(tools, change) -> None:
    from wavlm_live.engine.bus import EventBus
    from wavlm_live.server import Publisher, ServerConfig

    with pytest.raises(ValueError):
        Publisher(EventBus(), {**tools.HELLO, **change}, None, ServerConfig())
    with pytest.raises(ValueError, match="lacks key"):
        Publisher(EventBus(), {k: v for k, v in tools.HELLO.items() if k != "hop"}, None, ServerConfig())
    with pytest.raises(TypeError):
        Publisher(EventBus(), tools.HELLO, object(), ServerConfig())
