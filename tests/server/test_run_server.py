"""run_server: signals in a server process, the stop event in a background thread."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosedOK

from wavlm_live.engine.bus import EventBus
from wavlm_live.events import CaptionEvent
from wavlm_live.server import ServerConfig, run_server

SERVE = Path(__file__).with_name("_serve.py")


@pytest.mark.slow  # starts a process
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_closes_every_client_with_1001_and_exits_0(tools, sig: signal.Signals) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SERVE), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()
        assert line[0] == "URL", line
        subs = [await tools.Sub.connect(line[1]) for _ in range(5)]
        for sub in subs:
            assert (await sub.recv())["type"] == "hello"
        proc.stdin.write(b"go 0.3\n")
        await proc.stdin.drain()
        for sub in subs:  # the stream runs and ends; the server keeps serving
            await sub.recv_until(lambda m: m["type"] == "end")
        proc.send_signal(sig)
        for sub in subs:
            with pytest.raises(ConnectionClosedOK) as info:
                while True:
                    await sub.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        code = await asyncio.wait_for(proc.wait(), 15)
        stderr = (await proc.stderr.read()).decode()
        assert code == 0, stderr
        assert "Traceback" not in stderr
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_run_server_in_a_thread_stops_on_the_event(tools) -> None:
    bus = EventBus()
    ready, stop = threading.Event(), threading.Event()
    urls: list[str] = []
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(run_server(
        bus, tools.HELLO, None, ServerConfig(port=0), ready=ready, stop=stop, on_ready=urls.append)))
    thread.start()
    try:
        assert await asyncio.to_thread(ready.wait, 10)
        sub = await tools.Sub.connect(urls[0])
        assert (await sub.recv())["type"] == "hello"
        bus.publish(CaptionEvent(True, 0, 0.0, 1.0, "QUEUED BEFORE STOP"))
        stop.set()
        msgs = []
        with pytest.raises(ConnectionClosedOK) as info:
            while True:
                msgs.append(await sub.recv())
        assert info.value.rcvd.code == 1001
        assert [m["text"] for m in msgs] == ["QUEUED BEFORE STOP"]
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 10)
    assert result == [0]


def test_run_server_raises_when_the_port_is_taken(tools) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ready = threading.Event()
        with pytest.raises(OSError):
            run_server(EventBus(), tools.HELLO, None, ServerConfig(port=taken.getsockname()[1]), ready=ready)
        assert not ready.is_set()
