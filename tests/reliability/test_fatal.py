"""A fatal error ends the stream loudly: ``error`` then ``end`` (also in a late joiner's
snapshot), no ``level`` after it, one line on stderr without a traceback, exit status 1;
a window that fails is logged once with its traceback and counted after that."""

from __future__ import annotations

import asyncio
import signal

import soundfile as sf


def truncated_flac(net, tmp_path):
    data = net.CONVERSATION.read_bytes()
    path = tmp_path / "truncated.flac"
    path.write_bytes(data[: len(data) // 3])  # the decoder loses sync after about 16 s
    return path


def after_error(messages):
    i = next(i for i, m in enumerate(messages) if m["type"] == "error" and m["fatal"])
    return messages[i], messages[i + 1:]


def one_failure_line(server, what):
    lines = [line for line in server.lines if not line.startswith("wavlm-live: serving ")]
    assert "Traceback" not in server.stderr, server.stderr
    assert len(lines) == 1 and lines[0].startswith(f"wavlm-live: {what}"), server.stderr


async def test_truncated_input_with_exit_at_end_fails_loudly(serve, net, tmp_path) -> None:
    server = serve("--demo", "--input", str(truncated_flac(net, tmp_path)), "--speed", "8", "--exit-at-end",
                   "--wait-client")
    ws = await net.client(server.url)
    got = await net.until(ws, lambda m: m["type"] == "end", 60)
    error, rest = after_error(got)
    assert error["code"] == "audio" and "truncated" in error["message"]
    assert [m["type"] for m in rest if m["type"] in ("level", "end")] == ["end"]  # no level after the error
    assert rest[-1]["type"] == "end"
    assert await asyncio.to_thread(server.wait, 30) == 1
    one_failure_line(server, "the input stopped (audio error): ")


async def test_late_joiner_sees_the_error_and_end_and_the_exit_status_is_1(serve, net, tmp_path) -> None:
    server = serve("--demo", "--input", str(truncated_flac(net, tmp_path)), "--speed", "8", "--wait-client")
    first = await net.client(server.url)
    await net.until(first, lambda m: m["type"] == "end", 60)
    late = await net.client(server.url)
    hello = await net.recv(late)
    assert hello["engine"] == "failed"
    snapshot = await net.until(late, lambda m: m["type"] == "end", 10)
    assert [m["type"] for m in snapshot[-2:]] == ["error", "end"]
    assert snapshot[-2]["fatal"] and snapshot[-2]["snapshot"] and snapshot[-1]["snapshot"]
    # the server goes on serving sessions meanwhile; the failure shows in the exit status
    assert server.proc.poll() is None
    assert await asyncio.to_thread(server.stop, signal.SIGTERM) == 1
    one_failure_line(server, "the input stopped (audio error): ")


async def test_engine_failure_ends_the_stream_and_sessions_go_on(serve, net) -> None:
    server = serve("--demo", "--input", str(net.CONVERSATION), "--loop", "--speed", "2", "--wait-client",
                   fault="stitch-fail:6")
    ws = await net.client(server.url)
    got = await net.until(ws, lambda m: m["type"] == "end", 60)
    error, rest = after_error(got)
    assert error["code"] == "engine" and "injected stitching fault" in error["message"]
    assert [m["type"] for m in rest] == ["end"]
    await asyncio.sleep(1.0)  # the looped file source has stopped: nothing more comes
    assert not [m for m in await _drain(net, ws, 1.0) if m["type"] == "level"]
    late = await net.client(server.url)
    assert (await net.recv(late))["engine"] == "failed"
    snapshot = await net.until(late, lambda m: m["type"] == "end", 10)
    assert [(m["type"], m.get("code")) for m in snapshot[-2:]] == [("error", "engine"), ("end", None)]
    # a client session still works on the same models
    audio, rate = sf.read(net.DATA / "sense_and_sensibility_01_austen_64kb-0890.wav", dtype="float32")
    sender = await net.client(server.url)
    await net.recv(sender)
    await sender.send('{"type": "start", "sample_rate": 16000, "format": "f32le", "live": false}')
    await net.until(sender, lambda m: m["type"] == "started")
    for i in range(0, len(audio), 1600):
        await sender.send(audio[i:i + 1600].astype("<f4").tobytes())
    await sender.send('{"type": "stop"}')
    tail = await net.until(sender, lambda m: m["type"] == "end", 60)
    assert not [m for m in tail if m["type"] == "error"]
    assert await asyncio.to_thread(server.stop) == 1
    one_failure_line(server, "the input stopped (engine error): ")


async def test_failing_windows_log_one_traceback_and_count_the_rest(serve, net) -> None:
    clip = net.DATA / "sense_and_sensibility_01_austen_64kb-0870.wav"  # 7.1 s
    server = serve("--demo", "--input", str(clip), "--speed", "2", "--exit-at-end", "--wait-client",
                   "--diarization-hop", "1", fault="model-fail")  # a diarization window per second: 8 fail
    ws = await net.client(server.url)
    got = await net.until(ws, lambda m: m["type"] == "end", 60)
    failed = [m for m in got if m["type"] == "error"]
    assert len(failed) >= 6 and {m["code"] for m in failed} == {"model"} and not any(m["fatal"] for m in failed)
    assert await asyncio.to_thread(server.wait, 30) == 0  # windows fail, the stream goes on
    assert server.stderr.count("Traceback") == 1, server.stderr
    window_lines = [line for line in server.lines if "window" in line and "failed" in line]
    assert 1 <= len(window_lines) <= 2, server.stderr  # the first, and a summary every 10 s at most


async def _drain(net, ws, seconds: float) -> list[dict]:
    """Whatever arrives within ``seconds`` of each message."""
    out = []
    try:
        while True:
            out.append(await net.recv(ws, seconds))
    except TimeoutError:
        return out
