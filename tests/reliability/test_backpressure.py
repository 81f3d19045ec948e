"""Backpressure as docs/protocol.md says: a client that reads at half its stream's rate
gets ``dropped`` notices and every final caption; one that stops reading is closed with
1008 within 5 s (and reads that code when it reads again); nobody else notices."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

SYNTHETIC = Path(__file__).resolve().parents[1] / "server" / "_serve.py"


async def synthetic_server():
    """tests/server/_serve.py: run_server in a process of its own, an engine stand-in
    publishing 50 finals, 100 level and 20 stats messages a second on ``go SECONDS``."""
    proc = await asyncio.create_subprocess_exec(sys.executable, str(SYNTHETIC), "--final-every", "2",
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()
    assert line[0] == "URL", line
    return proc, line[1]


async def read_paced(net, ws, rate: float, stop_at: str = "end") -> list[dict]:
    """Read at most ``rate`` messages a second until ``stop_at``."""
    out, t0 = [], time.monotonic()
    while True:
        msg = await net.recv(ws, 30)
        out.append(msg)
        if msg["type"] == stop_at:
            return out
        await asyncio.sleep(max(0.0, t0 + len(out) / rate - time.monotonic()))


def check_seq(messages: list[dict], last: int = 0) -> tuple[int, int]:
    """(seq gaps, sum of dropped counts) of the messages after the one numbered ``last``
    (``hello``'s 0 by default); seq never goes back."""
    gaps = 0
    for m in messages:
        assert m["seq"] > last
        gaps += m["seq"] - last - 1
        last = m["seq"]
    return gaps, sum(m["count"] for m in messages if m["type"] == "dropped")


async def test_half_rate_reader_gets_dropped_notices_and_every_final(net) -> None:
    proc, url = await synthetic_server()
    try:
        ws = await net.client(url)
        assert (await net.recv(ws))["type"] == "hello"
        proc.stdin.write(b"go 12\n")
        await proc.stdin.drain()
        got = await read_paced(net, ws, rate=85.0)  # the stream is 170 messages a second
        finals = [m["segment"] for m in got if m["type"] == "caption" and m["final"]]
        gaps, dropped = check_seq(got)
        notices = [m for m in got if m["type"] == "dropped"]
        print(f"\nhalf-rate reader: {len(got)} messages, {len(finals)} finals, {len(notices)} dropped notices, "
              f"{dropped} dropped ({gaps} seq gaps)")
        assert finals == list(range(len(finals))) and len(finals) >= 500  # every final, in order
        assert notices and dropped == gaps > 300
        assert {t for n in notices for t in n["types"]} <= {"level", "stats"}
        await ws.close()
    finally:
        proc.terminate()
        await proc.wait()


async def test_reader_that_stops_is_closed_with_1008_within_5_s(net) -> None:
    proc, url = await synthetic_server()
    try:
        observer = await net.client(url)
        stopper = await net.client(url)
        await net.recv(observer)
        await net.recv(stopper)
        proc.stdin.write(b"go 14\n")
        await proc.stdin.drain()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0:  # reads normally for a second
            await net.recv(stopper)
        stopped = time.monotonic()
        dropped_at = None
        async for raw in observer:  # the observer sees the client count fall to 1
            msg = json.loads(raw)
            if msg["type"] == "stats" and msg["clients"] == 1 and dropped_at is None:
                dropped_at = time.monotonic()
            if msg["type"] == "end":
                break
        assert dropped_at is not None, "the client that stopped reading was never closed"
        print(f"\nstopped reader closed {dropped_at - stopped:.2f} s after it stopped reading")
        assert dropped_at - stopped < 5.0
        with pytest.raises(ConnectionClosed) as closed:  # it reads again: the rest, then the close
            while True:
                await net.recv(stopper, 10)
        assert closed.value.rcvd is not None, "no close frame: the connection was reset"
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "client too slow: not reading")
    finally:
        proc.terminate()
        await proc.wait()


async def test_real_server_half_rate_and_stopped_readers(serve, net) -> None:
    """`wavlm-live serve --demo` on the bundled conversation at 4x: a half-rate reader
    keeps every final and is told about drops; a stopped one is gone within 5 s."""
    server = serve("--demo", "--input", str(net.CONVERSATION), "--speed", "4", "--wait-client")
    half = await net.client(server.url)
    stopper = await net.client(server.url)
    hello = await net.recv(half)
    assert hello["engine"] == "running"
    await net.recv(stopper)

    async def clients() -> int:
        def get() -> int:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as r:
                return json.loads(r.read())["clients"]
        return await asyncio.to_thread(get)

    async def watch_stopper() -> float:
        await asyncio.sleep(2.0)  # reads nothing from here on
        t0 = time.monotonic()
        while await clients() == 2:
            await asyncio.sleep(0.1)
            assert time.monotonic() - t0 < 20
        return time.monotonic() - t0

    async def read_stopper() -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.0:
            await net.recv(stopper)

    rate = await _stream_rate(net, half, 3.0)
    got_task = asyncio.create_task(read_paced(net, half, rate=rate / 2))
    await read_stopper()
    closed_after = await watch_stopper()
    got = await got_task
    finals = [m["segment"] for m in got if m["type"] == "caption" and m["final"]]
    gaps, dropped = check_seq(got, last=got[0]["seq"] - 1)  # read at full rate before got[0]
    print(f"\nreal stream {rate:.0f} msg/s; half-rate reader: {len(finals)} finals, {dropped} dropped "
          f"({gaps} gaps); stopped reader closed {closed_after:.2f} s after it stopped")
    assert closed_after < 5.0
    assert finals == list(range(finals[0], finals[0] + len(finals)))
    assert dropped == gaps > 0
    assert got[-1]["type"] == "end"
    assert await asyncio.to_thread(server.stop) == 0


async def _stream_rate(net, ws, seconds: float) -> float:
    t0, n = time.monotonic(), 0
    while time.monotonic() - t0 < seconds:
        await net.recv(ws)
        n += 1
    return n / (time.monotonic() - t0)
