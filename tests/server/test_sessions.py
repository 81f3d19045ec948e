"""Client audio sessions against a real server: the bundled demo models shared by every
session, real websocket clients streaming real recordings, every bad input, close codes,
watchers, the page and /healthz."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from websockets.exceptions import ConnectionClosed, InvalidStatus

from wavlm_live.cli import app
from wavlm_live.audio import FileSource
from wavlm_live.cli import build_parser
from wavlm_live.engine.bus import EventBus
from wavlm_live.engine.engine import Engine
from wavlm_live.engine.sessions import SessionHost
from wavlm_live.events import CaptionEvent, DiarizationEvent, EndEvent
from wavlm_live.server import Publisher, ServerConfig

DATA = Path(__file__).resolve().parents[1] / "data"
CLIP_A = DATA / "sense_and_sensibility_01_austen_64kb-0870.wav"  # 7.1 s
CLIP_B = DATA / "sense_and_sensibility_01_austen_64kb-0890.wav"  # 5.3 s
CONVERSATION = app.demo_recording()  # 46 s, two synthetic voices


@pytest.fixture(scope="module")
def demo_models():
    # float32: a batch gives bit for bit the outputs of its windows run one by one (in
    # bfloat16, oneDNN's blocking depends on the batch size: ~1 bf16 ulp apart)
    args = build_parser().parse_args(["serve", "--demo", "--dtype", "float32"])
    models = app.load_models(args, demo=True)
    return models, app.engine_config(args, models.demo, realtime=True)


@pytest.fixture
def host(demo_models):
    models, config = demo_models
    made: list[SessionHost] = []

    def make(**limits: Any) -> SessionHost:
        h = SessionHost(config, captions=models.captions, diarization=models.diarization,
                        embeddings=models.embeddings, demo=True, **limits)
        h.start()
        made.append(h)
        return h

    yield make
    for h in made:
        h.stop()


@contextlib.asynccontextmanager
async def session_server(host, *, limits: dict | None = None, **config: Any):
    """A Publisher serving client sessions only (no input of its own)."""
    h = host(**(limits or {}))
    config.setdefault("port", 0)
    hello = h.template().hello()
    async with Publisher(None, hello, None, ServerConfig(**config), sessions=h) as pub:
        yield pub, h


def offline(models_and_config, path: Path, **overrides: Any) -> list:
    """What ``transcribe`` computes for ``path``: every event of an offline engine."""
    models, config = models_and_config
    bus, events = EventBus(), []
    bus.subscribe(events.append)
    from dataclasses import replace

    engine = Engine(replace(config, realtime=False, **overrides), bus, captions=models.captions,
                    diarization=models.diarization, embeddings=models.embeddings, demo=True)
    engine.run_offline(FileSource(path, speed=None).blocks())
    return events


def finals(messages: list[dict]) -> list[tuple[str, str | None]]:
    return [(m["text"], m["speaker"]) for m in messages if m["type"] == "caption" and m["final"] and m["text"]]


def offline_finals(events: list) -> list[tuple[str, str | None]]:
    return [(e.text, e.speaker) for e in events if isinstance(e, CaptionEvent) and e.final and e.text]


def labels(messages: list[dict]) -> list:
    out = []
    for m in messages:
        if m["type"] == "diarization":
            out.extend(tuple(x) for x in m["labels"])
    return out


def pcm_frames(audio: np.ndarray, rate: int, fmt: str, seconds: float = 0.1) -> list[bytes]:
    """Interleaved frames of ``audio`` ([frames] or [frames, channels], float) in ``fmt``."""
    step = max(1, int(rate * seconds))
    x = audio if audio.ndim == 2 else audio[:, None]
    if fmt == "pcm_s16le":
        data = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")
    else:
        data = x.astype("<f4")
    return [data[i : i + step].tobytes() for i in range(0, len(data), step)]


async def start(sub, **fields: Any) -> dict:
    await sub.send({"type": "start", "sample_rate": 16000, "channels": 1, "format": "f32le", **fields})
    return (await sub.recv_until(lambda m: m["type"] in ("started", "error")))[-1]


async def until_end(sub, timeout: float = 60.0) -> list[dict]:
    return await sub.recv_until(lambda m: m["type"] == "end", timeout)


async def closed_code(sub, timeout: float = 10.0) -> int:
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await sub.recv(timeout)
    return info.value.rcvd.code if info.value.rcvd is not None else 1006


@pytest.mark.slow
async def test_48k_stereo_session_gives_the_file_sources_results(tools, host, demo_models, tmp_path) -> None:
    mono, rate = sf.read(CLIP_A, dtype="float32")
    assert rate == 16000
    import soxr

    stereo = soxr.resample(np.stack([mono, 0.5 * mono], axis=1), 16000, 48000)
    path = tmp_path / "stereo48k.wav"
    sf.write(path, stereo, 48000, subtype="PCM_16")
    pcm, _ = sf.read(path, dtype="float32")  # exactly what the file holds
    expected = offline(demo_models, path)
    async with session_server(host) as (pub, h):
        sub = await tools.Sub.connect(pub.url)
        hello = await sub.recv()
        assert hello["input"] is False and "pcm_s16le" in hello["sessions"]["formats"]
        started = await start(sub, sample_rate=48000, channels=2, format="pcm_s16le", live=False)
        assert started["type"] == "started" and started["channels"] == 2 and started["live"] is False
        assert started["tasks"] == ["captions", "diarization", "embeddings"]
        for frame in pcm_frames(pcm, 48000, "pcm_s16le", 0.07):
            await sub.send(frame)
        await sub.send({"type": "stop"})
        got = await until_end(sub)
        await sub.close()
    assert finals(got) == offline_finals(expected) and finals(got)
    want_labels = [e.labels for e in expected if isinstance(e, DiarizationEvent)]
    assert labels(got) == [lab for block in want_labels for lab in block]
    end = next(e for e in expected if isinstance(e, EndEvent))
    assert got[-1]["t"] == end.t
    stats = [m for m in got if m["type"] == "stats"]
    assert stats[-1]["windows_skipped"] == 0


@pytest.mark.slow
async def test_concurrent_sessions_do_not_hear_each_other(tools, host, demo_models) -> None:
    clips = [CLIP_A, CLIP_B, CONVERSATION]
    expected = [offline_finals(offline(demo_models, c)) for c in clips]
    async with session_server(host) as (pub, h):

        async def one(path: Path) -> list[dict]:
            sub = await tools.Sub.connect(pub.url)
            await sub.recv()
            assert (await start(sub, live=False))["type"] == "started"
            audio, _ = sf.read(path, dtype="float32")
            for frame in pcm_frames(audio, 16000, "f32le"):
                await sub.send(frame)
            await sub.send({"type": "stop"})
            got = await until_end(sub, 120)
            await sub.close()
            return got

        results = await asyncio.gather(*(one(c) for c in clips))
        assert h.scheduler.windows > h.scheduler.cycles  # windows of several sessions were batched
    for got, want, clip in zip(results, expected, clips):
        assert finals(got) == want, clip.name
        assert got[-1]["t"] == round(sf.info(clip).frames / 16000, 4)


@pytest.mark.slow
async def test_watchers_get_the_session_read_only_and_closing_loses_nothing(tools, host) -> None:
    audio, _ = sf.read(CONVERSATION, dtype="float32")
    audio = audio[: 20 * 16000]
    async with session_server(host) as (pub, h):
        owner = await tools.Sub.connect(pub.url)
        await owner.recv()
        started = await start(owner, live=False)
        frames = pcm_frames(audio, 16000, "f32le")
        for frame in frames[: len(frames) // 2]:
            await owner.send(frame)
        watcher = await tools.Sub.connect(pub.url)
        await watcher.recv()
        ack = await watcher.subscribe(session=started["session"])
        assert ack["session"] == started["session"]
        unknown = tools.Sub
        other = await unknown.connect(pub.url)
        await other.recv()
        await other.send({"type": "subscribe", "session": "nope"})
        assert (await other.recv())["code"] == "unknown_session"
        await other.close()
        # the watcher reads all along (a watcher that stops reading is closed, 1008)
        watched = asyncio.create_task(until_end(watcher, 60))
        for frame in frames[len(frames) // 2 :]:
            await owner.send(frame)
        # the watcher cannot rename the owner's speakers
        await watcher.send({"type": "rename", "speaker": "S1", "name": "Eve"})
        # the owner leaves without stop: every received sample is still analysed
        await owner.ws.close()
        got = await watched
        assert [m["code"] for m in got if m["type"] == "error"] == ["read_only"]
        await watcher.close()
    assert got[-1]["t"] == round(len(audio) / 16000, 4)
    assert finals(got)


async def test_bad_start_messages_and_audio_before_start(tools, host) -> None:
    async with session_server(host, limits={"max_sessions": 1}) as (pub, h):
        sub = await tools.Sub.connect(pub.url)
        await sub.recv()
        await sub.send(b"\x00\x00" * 100)
        assert (await sub.recv())["code"] == "no_session"
        await sub.send({"type": "stop"})
        assert (await sub.recv())["code"] == "no_session"
        for fields, code in [
            ({"sample_rate": 5}, "bad_start"),
            ({"sample_rate": 10**9}, "bad_start"),
            ({"channels": 0}, "bad_start"),
            ({"channels": 64}, "bad_start"),
            ({"format": "mp3"}, "bad_start"),
            ({"tasks": ["translation"]}, "bad_start"),
            ({"speaker_threshold": 7}, "bad_start"),
            ({"sample_rate": "16000"}, "bad_message"),
            ({"live": "yes"}, "bad_message"),
        ]:
            reply = await start(sub, **fields)
            assert (reply["type"], reply["code"], reply["fatal"]) == ("error", code, False), fields
        assert (await start(sub))["type"] == "started"
        again = await start(sub)
        assert again["code"] == "already_started"
        other = await tools.Sub.connect(pub.url)
        await other.recv()
        assert (await start(other))["code"] == "too_many_sessions"
        assert json.loads(await asyncio.to_thread(_get, pub.port, "/healthz"))["sessions"] == 1
        # the first session still works after all that
        audio, _ = sf.read(CLIP_B, dtype="float32")
        for frame in pcm_frames(audio, 16000, "f32le"):
            await sub.send(frame)
        await sub.send({"type": "stop"})
        got = await until_end(sub)
        assert got[-1]["t"] == round(len(audio) / 16000, 4)
        await sub.close()
        await other.close()


async def test_broken_frame_ends_the_session_after_its_results(tools, host) -> None:
    audio, _ = sf.read(CONVERSATION, dtype="float32")
    audio = audio[: 12 * 16000]
    async with session_server(host) as (pub, h):
        sub = await tools.Sub.connect(pub.url)
        await sub.recv()
        await start(sub, format="pcm_s16le", live=False)
        for frame in pcm_frames(audio, 16000, "pcm_s16le"):
            await sub.send(frame)
        await sub.send(b"\x01\x02\x03")  # not a whole 16-bit sample
        got = await until_end(sub)
        errors = [m for m in got if m["type"] == "error"]
        assert [(e["code"], e["fatal"]) for e in errors] == [("bad_audio", True)]
        assert got[-1]["t"] == round(len(audio) / 16000, 4)
        assert finals(got), "the finals of the audio received before the bad frame were lost"
        assert await closed_code(sub) == 1008


async def test_nan_samples_are_repaired_counted_and_reported_once(tools, host) -> None:
    audio, _ = sf.read(CLIP_B, dtype="float32")
    audio = audio.copy()
    audio[1000:1100] = np.nan
    audio[20000:20010] = np.inf
    async with session_server(host) as (pub, h):
        sub = await tools.Sub.connect(pub.url)
        await sub.recv()
        await start(sub, live=False)
        for frame in pcm_frames(audio, 16000, "f32le"):
            await sub.send(frame)
        await sub.send({"type": "stop"})
        got = await until_end(sub)
        await sub.close()
    errors = [m for m in got if m["type"] == "error"]
    assert [(e["code"], e["fatal"]) for e in errors] == [("bad_samples", False)]
    assert [m for m in got if m["type"] == "stats"][-1]["samples_sanitised"] == 110
    assert got[-1]["t"] == round(len(audio) / 16000, 4)


async def test_idle_session_is_ended_with_its_results(tools, host) -> None:
    audio, _ = sf.read(CLIP_B, dtype="float32")
    async with session_server(host, session_idle_s=0.5) as (pub, h):
        sub = await tools.Sub.connect(pub.url)
        await sub.recv()
        await start(sub, live=False)
        for frame in pcm_frames(audio, 16000, "f32le"):
            await sub.send(frame)
        got = await until_end(sub, 30)
        assert [(m["code"], m["fatal"]) for m in got if m["type"] == "error"] == [("idle_timeout", True)]
        assert got[-1]["t"] == round(len(audio) / 16000, 4)
        assert await closed_code(sub) == 1008


async def test_live_session_far_ahead_of_real_time_is_ended(tools, host) -> None:
    audio, _ = sf.read(CONVERSATION, dtype="float32")
    async with session_server(host, session_buffer_s=2.0) as (pub, h):
        sub = await tools.Sub.connect(pub.url)
        await sub.recv()
        started = await start(sub)  # live
        assert started["live"] is True and started["buffer_seconds"] == 2.0
        with contextlib.suppress(ConnectionClosed):
            for frame in pcm_frames(audio, 16000, "f32le"):
                await sub.send(frame)
        got = await until_end(sub, 30)
        # frames sent after the end are discarded without a flood of notices
        assert [(m["code"], m["fatal"]) for m in got if m["type"] == "error"] == [("buffer_full", True)]
        assert 2.0 <= got[-1]["t"] <= 3.0  # what was accepted, all of it analysed
        assert await closed_code(sub) == 1008


async def test_oversized_audio_frame_closes_with_1009(tools, host) -> None:
    async with session_server(host, max_audio_frame_bytes=4096) as (pub, h):
        sub = await tools.Sub.connect(pub.url)
        await sub.recv()
        await start(sub)
        await sub.send(b"\x00" * 8192)
        assert await closed_code(sub) == 1009


async def test_a_failing_session_ends_with_error_end_and_1011(tools, demo_models) -> None:
    models, config = demo_models

    class BrokenDiarization:
        """The real demo model, whose output the stitcher cannot use (wrong rank)."""

        name = "broken"

        def activity(self, audio):
            return models.diarization.activity(audio)[:, 0]

        def activity_batch(self, audios):
            return [self.activity(a) for a in audios]

    h = SessionHost(config, diarization=BrokenDiarization(), demo=True)
    h.start()
    try:
        async with Publisher(None, h.template().hello(), None, ServerConfig(port=0), sessions=h) as pub:
            sub = await tools.Sub.connect(pub.url)
            await sub.recv()
            await start(sub, live=False)
            audio, _ = sf.read(CLIP_B, dtype="float32")
            for frame in pcm_frames(audio, 16000, "f32le"):
                await sub.send(frame)
            got = await until_end(sub)
            assert [(m["code"], m["fatal"]) for m in got if m["type"] == "error"][-1] == ("engine", True)
            assert await closed_code(sub) == 1011
    finally:
        h.stop()


def _get(port: int, path: str, headers: dict | None = None) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise AssertionError((response.status, body[:100]))
        return body
    finally:
        conn.close()


async def test_page_health_and_same_origin(tools, host) -> None:
    async with session_server(host, allowed_origins=()) as (pub, h):
        page = (await asyncio.to_thread(_get, pub.port, "/")).decode()
        assert "<title>wavlm-live</title>" in page and "/app.js" in page
        script = (await asyncio.to_thread(_get, pub.port, "/app.js")).decode()
        assert '"start"' in script and "audioWorklet" in script
        assert "registerProcessor" in (await asyncio.to_thread(_get, pub.port, "/worklet.js")).decode()
        with pytest.raises(AssertionError, match="404"):
            await asyncio.to_thread(_get, pub.port, "/nothing-here")
        health = json.loads(await asyncio.to_thread(_get, pub.port, "/healthz"))
        assert health["ready"] is True and health["sessions"] == 0 and health["max_sessions"] == 16
        assert health["input"] is False and set(health["models"]) == {"captions", "diarization", "embeddings"}
        # the page's own origin is accepted without an allow-list; other sites' are not
        own = await tools.Sub.connect(pub.url, origin=f"http://127.0.0.1:{pub.port}")
        assert (await own.recv())["type"] == "hello"
        await own.close()
        with pytest.raises(InvalidStatus) as info:
            await tools.Sub.connect(pub.url, origin=f"http://127.0.0.1:{pub.port + 1}")
        assert info.value.response.status_code == 403
        with pytest.raises(InvalidStatus):
            await tools.Sub.connect(pub.url, origin="http://evil.example")


def test_pcm_stream_rejects_partial_frames_and_counts_nonfinite() -> None:
    from wavlm_live.audio.pcm import PcmError, PcmStream

    stream = PcmStream(16000, 2, "f32le")
    with pytest.raises(PcmError, match="whole number"):
        stream.decode(b"\x00" * 12)
    x = np.zeros((160, 2), "<f4")
    x[3, 1] = np.nan
    x[4, 0] = -math.inf
    blocks = stream.decode(x.tobytes())
    assert stream.nonfinite == 2 and stream.sanitised == 2
    assert sum(b.size for b in blocks) == 160 and all(np.isfinite(b).all() for b in blocks)
    for bad in [dict(sample_rate=7999), dict(channels=9), dict(format="s24")]:
        with pytest.raises(ValueError):
            PcmStream(**{"sample_rate": 16000, "channels": 1, "format": "f32le", **bad})


async def test_python_client_and_the_dashboard_watching_the_session(tools, host, demo_models) -> None:
    from wavlm_live.client import SessionError, open_session, send_file
    from wavlm_live.tui import DashboardApp, DashboardConfig

    expected = offline_finals(offline(demo_models, CLIP_A))
    async with session_server(host, limits={"max_sessions": 1}) as (pub, h):
        messages = send_file(pub.url, CLIP_A, speed=4.0)
        started = await messages.__anext__()
        assert started["type"] == "started" and started["live"] is False
        app = DashboardApp(pub.url, session=started["session"],
                           config=DashboardConfig(refresh_s=0.1, backoff_initial_s=0.2, backoff_max_s=0.4))
        async with app.run_test(size=(100, 30)) as pilot:
            # a second session is refused while the first runs (max_sessions 1)
            with pytest.raises(SessionError) as refused:
                async with open_session(pub.url):
                    pass
            assert refused.value.code == "too_many_sessions"
            got = [msg async for msg in messages]
            assert got[-1]["type"] == "end"
            assert finals(got) == expected and expected
            deadline = asyncio.get_running_loop().time() + 15
            while app.state.ended is None:
                assert asyncio.get_running_loop().time() < deadline, "the dashboard never saw the end"
                await pilot.pause(0.05)
            assert [(e.text, e.speaker) for e in app.state.finals if e.text] == expected
            while "ended at" not in app.top_bar.plain:
                assert asyncio.get_running_loop().time() < deadline, app.top_bar.plain
                await pilot.pause(0.05)


async def test_server_shutdown_finishes_open_sessions_first(tools, host) -> None:
    audio, _ = sf.read(CLIP_B, dtype="float32")
    async with session_server(host) as (pub, h):
        sub = await tools.Sub.connect(pub.url)
        await sub.recv()
        await start(sub, live=False)
        for frame in pcm_frames(audio, 16000, "f32le"):
            await sub.send(frame)
        await sub.send({"type": "ping", "id": 1})
        await sub.recv_until(lambda m: m["type"] == "pong")  # every frame was taken
    # the server stopped without a stop from the client: the session was finished first
    got = await until_end(sub)
    assert got[-1]["t"] == round(len(audio) / 16000, 4)
    assert await closed_code(sub) == 1001
