"""Slow and silent clients: bounded queues, dropped notices, disconnection, others unaffected.

The latency and memory bounds here are behaviour checks with generous margins (the test
box is a loaded 2-core machine); the measured numbers are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosedError

from wavlm_live.events import CaptionEvent, EndEvent, LevelEvent

SERVE = Path(__file__).with_name("_serve.py")
MB = 1 << 20


def final(i: int, text: str = "") -> CaptionEvent:
    return CaptionEvent(True, i, float(i), i + 0.5, text or f"FINAL {i}")


def partial(i: int, text: str) -> CaptionEvent:
    return CaptionEvent(False, i, float(i), i + 0.5, text)


@pytest.mark.slow  # starts a process
async def test_silent_client_is_dropped_and_others_keep_low_latency(tools) -> None:
    """A server process publishes ~120 KB/s per client (50 finals/s of 2 KB, 100 level/s,
    20 stats/s) for 8 s to 10 readers and one client that never reads.

    The readers run in this (pytest) process; its garbage collector is frozen during the
    measurement so that full collections of the test session's heap (0.3 s each on a
    loaded box) are not counted as server latency.
    """
    import gc

    import psutil

    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SERVE), "--final-every", "2", "--text-bytes", "2000",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    silent = None
    readers = []
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()
        assert line[0] == "URL", line
        url = line[1]
        port = int(url.rsplit(":", 1)[1])
        readers = [await tools.Sub.connect(url, keep=False) for _ in range(10)]
        for sub in readers:
            assert (await sub.recv())["type"] == "hello"
        server = psutil.Process(proc.pid)
        await asyncio.sleep(0.3)
        rss_start = server.memory_info().rss
        silent = await asyncio.to_thread(tools.silent_socket, port, 4096)
        silent_since = time.time()
        proc.stdin.write(b"go 8\n")
        await proc.stdin.drain()

        rss_max = rss_start
        done = asyncio.Event()

        async def sample_rss() -> None:
            nonlocal rss_max
            while not done.is_set():
                rss_max = max(rss_max, server.memory_info().rss)
                await asyncio.sleep(0.05)

        async def read(sub) -> tuple[list[float], float | None]:
            latencies, dropped_at, most = [], None, 0
            while True:
                msg = await sub.recv(timeout=20)
                now = time.time()
                if msg["type"] == "caption":
                    latencies.append(now - float(msg["text"].split()[0]))
                elif msg["type"] == "stats":
                    most = max(most, msg["clients"])
                    if most == 11 and msg["clients"] == 10 and dropped_at is None:
                        dropped_at = now
                elif msg["type"] == "end":
                    return latencies, dropped_at

        sampler = asyncio.create_task(sample_rss())
        gc.freeze()
        try:
            results = await asyncio.gather(*(read(sub) for sub in readers))
        finally:
            gc.unfreeze()
        done.set()
        await sampler

        latencies = sorted(x for lat, _ in results for x in lat)
        p50 = statistics.median(latencies)
        p99 = latencies[int(0.99 * (len(latencies) - 1))]
        drop_times = [d - silent_since for _, d in results if d is not None]
        growth = rss_max - rss_start
        print(f"\nfinals delivered: {len(latencies)} ({len(latencies) // 10} per reader), "
              f"latency p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms, max {latencies[-1] * 1e3:.1f} ms; "
              f"silent client dropped after {min(drop_times):.2f} s; "
              f"server RSS {rss_start / MB:.1f} MB -> max {rss_max / MB:.1f} MB (+{growth / MB:.2f} MB)")
        assert all(len(lat) == len(results[0][0]) > 300 for lat, _ in results), "a reader missed finals"
        assert len(drop_times) == 10, "the silent client was not dropped (stats never showed 10 clients)"
        assert max(drop_times) < 5.0
        assert p99 < 0.100
        assert growth < 20 * MB
        # the silent client's connection was closed by the server
        silent.settimeout(5)
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            while silent.recv(65536):
                pass
            raise ConnectionResetError("EOF")  # a clean EOF is also a close
    finally:
        if silent is not None:
            silent.close()
        for sub in readers:
            await sub.close()
        if proc.returncode is None:
            proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 15) == 0


async def test_server_memory_stays_bounded_under_a_flood(tools) -> None:
    """Three clients that never read while 60 MB of partial captions are published: the
    queues keep the newest `queue_size` messages, so memory grows by a few MB, not 60."""
    text = "W" * 10_000
    async with tools.running_publisher(queue_size=256, stall_timeout_s=5.0) as (pub, bus):
        silents = [await asyncio.to_thread(tools.silent_socket, pub.port, 4096) for _ in range(3)]
        await asyncio.sleep(0.2)
        rss_start = tools.rss_bytes()
        rss_max = rss_start
        feeder = tools.feed(bus, [partial(i, text) for i in range(6000)] + [LevelEvent(1.0, -1.0, -1.0)])
        while feeder.is_alive():
            rss_max = max(rss_max, tools.rss_bytes())
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # let the loop drain the inbox
        rss_max = max(rss_max, tools.rss_bytes())
        queued = [len(c.queue) for c in pub._clients]
        print(f"\nflood of {6000 * len(text) / MB:.0f} MB to {len(silents)} silent clients: RSS "
              f"{rss_start / MB:.1f} -> max {rss_max / MB:.1f} MB (+{(rss_max - rss_start) / MB:.2f} MB), "
              f"queues {queued}")
        assert pub.clients == 3, "the silent clients should still be within their stall timeout"
        assert all(n <= 256 + 1 for n in queued)
        assert rss_max - rss_start < 20 * MB
        for sock in silents:
            sock.close()


async def test_slow_reader_loses_oldest_droppables_and_is_told(tools) -> None:
    """A client that pauses reading while 30 finals and 600 partials of 1 KB arrive: it
    gets every final in order, and `dropped` notices whose counts equal its seq gaps."""
    async with tools.running_publisher(queue_size=64, recent_captions=8, write_buffer_limit=4096,
                                       socket_send_buffer=8192, stall_timeout_s=5.0) as (pub, bus):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", pub.port))
        sub = await tools.Sub.connect(pub.url, strict=False, sock=sock, max_queue=4)
        assert (await sub.recv())["type"] == "hello"
        events = []
        for i in range(30):
            events += [partial(i, f"P{i} " + "x" * 1000) for _ in range(20)] + [final(i)]
        await tools.join(tools.feed(bus, events + [EndEvent(31.0)]))  # the client is not reading
        msgs = await sub.recv_until(lambda m: m["type"] == "end")
        finals = [m["segment"] for m in msgs if m["type"] == "caption" and m["final"]]
        notices = [m for m in msgs if m["type"] == "dropped"]
        lost = sum(n["count"] for n in notices)
        types = {t for n in notices for t in n["types"]}
        print(f"\nslow reader: {len(msgs)} messages, {len(notices)} dropped notices, {lost} lost, "
              f"{sub.gaps} seq gaps")
        assert finals == list(range(30))
        assert notices and lost == sub.gaps > 0
        assert types == {"caption"}
        assert sum(n["types"]["caption"] for n in notices) == lost
        # what arrived of the partials is the newest ones (the oldest were dropped)
        partials = [m for m in msgs if m["type"] == "caption" and not m["final"]]
        assert len(partials) == 600 - lost
        assert partials[-1]["text"].startswith("P29 ")
        await sub.close()


async def test_client_behind_on_finals_is_disconnected_with_1008(tools) -> None:
    async with tools.running_publisher(queue_size=16, write_buffer_limit=4096, socket_send_buffer=8192,
                                       recent_captions=4) as (pub, bus):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", pub.port))
        slow = await tools.Sub.connect(pub.url, sock=sock, max_queue=4)
        fast = await tools.Sub.connect(pub.url)
        await slow.recv()
        await fast.recv()
        fast_reader = asyncio.create_task(fast.recv_until(lambda m: m.get("segment") == 199))
        await tools.join(tools.feed(bus, [final(i, f"F{i} " + "y" * 2000) for i in range(200)], interval=0.002))

        async def read_slow() -> ConnectionClosedError:  # it starts reading only now
            with pytest.raises(ConnectionClosedError) as info:
                while True:
                    await slow.recv()
            return info.value

        closed, got = await asyncio.gather(read_slow(), fast_reader)
        assert [m["segment"] for m in got] == list(range(200))
        assert pub.clients == 1
        assert closed.rcvd is not None, "aborted before the close frame was read"
        assert (closed.rcvd.code, closed.rcvd.reason) == (1008, "client too slow: send queue full")
        assert 0 < len(slow.received) < 200
        await fast.close()
